"""sparsebound: sparsity-aware generalization certificates for deep ReLU networks.

Muthukumar & Sulam, "Sparsity-aware generalization theory for deep neural
networks", COLT 2023.  The mathematical contract is THEORY.md (restated with
proofs in docs/theory.md).

The public names are imported lazily, so that ``sparsebound --help`` and the
CLI's input checks answer without loading torch first.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NetworkError,
    ShapeMismatchError,
    SparseboundError,
)

__version__ = "0.1.0"

_LAZY = {
    "Activations": "network",
    "ReLUNetwork": "network",
    "Certificate": "certificate",
    "MethodCertificate": "certificate",
    "certify": "certificate",
    "PriorValidityWarning": "certificate",
    "load_model": "models",
}

__all__ = [
    "Activations",
    "Certificate",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MethodCertificate",
    "NetworkError",
    "PriorValidityWarning",
    "ReLUNetwork",
    "ShapeMismatchError",
    "SparseboundError",
    "__version__",
    "certify",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sparsebound' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
