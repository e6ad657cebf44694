"""The one exception family for everything a user can cause.

Every error raised at an input boundary (data, checkpoints, networks, options)
is a :class:`SparseboundError`.  Its message names the problem *and the fix*
in one line; the CLI prints that line and exits with status 2, never a
traceback.  Internal bugs are not wrapped: they stay ordinary exceptions.
"""

from __future__ import annotations


class SparseboundError(Exception):
    """Base class: a problem with the user's input, with the fix in the message."""


class DataError(SparseboundError):
    """Bad or missing data: unknown dataset, missing/corrupt IDX files, empty data,
    labels out of range, NaN inputs."""


class NetworkError(SparseboundError):
    """A network the tool cannot certify: unsupported layer, NaN/Inf weights,
    shape mismatch between layers, fewer than two weight layers."""


class ShapeMismatchError(NetworkError):
    """Network and data do not fit together (input dimension, number of classes)."""


class CheckpointError(SparseboundError):
    """A checkpoint that cannot be read or does not match what it is used with."""


class ConfigError(SparseboundError):
    """An option out of its range (delta outside (0, 1), too few bound samples,
    depth < 2, unknown width list, unwritable output folder, ...)."""


class RunFailedError(SparseboundError):
    """Some runs of a study failed on their workers (``reproduce --executor ray``); the
    other runs finished and were recorded, the failures are in ``results.json``
    (``failed_runs``) and the report.  The CLI exits with status 1.

    Attributes:
        study: the :class:`~sparsebound.study.results.StudyResult` written (``None`` when
            no run finished, so nothing was written).
        failures: the :class:`~sparsebound.study.runner.RunFailure` of each failed run.
    """

    def __init__(self, message: str, study: object = None, failures: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.study = study
        self.failures = failures


SEED_MAX = 2**63 - 1
"""Largest seed accepted anywhere (seeds are stored as int64 in results files)."""


def check_seed(value: object, name: str = "seed") -> int:
    """The one seed rule of the project: an integer in ``[0, 2**63 - 1]``.

    ``name`` is the option or argument the message tells the user to change
    (``--seed``, ``--split-seed``, ``mc_seed`` ...).

    Raises:
        ConfigError: a negative, fractional, boolean, non-numeric or too large seed.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer in [0, 2^63 - 1], got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{name} must be an integer in [0, 2^63 - 1], got {value!r}")
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise ConfigError(f"{name} must be an integer in [0, 2^63 - 1], got {value!r}") from None
    try:
        import operator

        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{name} must be an integer in [0, 2^63 - 1], got {value!r}") from None
    if v < 0 or v > SEED_MAX:
        raise ConfigError(f"{name} must be an integer in [0, 2^63 - 1], got {v}; use a non-negative seed")
    return int(v)
