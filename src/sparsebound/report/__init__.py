"""Reporting: figures and, for ``reproduce``, the written report.

Modules:

* :mod:`sparsebound.report.figures` -- matplotlib figures (Agg canvas, PNG,
  written atomically).  Every function takes plain numbers, arrays and dicts
  (read from the results' ``to_dict()`` records, never recomputed) and a path,
  and returns the path; :func:`~sparsebound.report.figures.study_figures` draws
  all of a study's figures from its typed results.
* :mod:`sparsebound.report.markdown` -- ``report.md`` of a study
  (:func:`~sparsebound.report.markdown.build_report`), from its typed results
  only, with bounded-width numbers and aligned tables.

Nothing is imported here eagerly, so ``import sparsebound.report`` does not pull
in matplotlib.
"""

from __future__ import annotations

__all__ = ["figures", "markdown"]
