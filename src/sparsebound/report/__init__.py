"""Reporting: figures (and, for ``reproduce``, the written report).

Modules:

* :mod:`sparsebound.report.figures` -- matplotlib figures (Agg canvas, PNG,
  written atomically).  Every function takes plain numbers, arrays and dicts
  (read from the results' ``to_dict()`` records, never recomputed) and a path,
  and returns the path.

Nothing is imported here eagerly, so ``import sparsebound.report`` does not pull
in matplotlib.
"""

from __future__ import annotations

__all__ = ["figures"]
