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
