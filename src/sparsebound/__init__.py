"""sparsebound: sparsity-aware generalization certificates for deep ReLU networks.

Muthukumar & Sulam, "Sparsity-aware generalization theory for deep neural
networks", COLT 2023.  The mathematical contract is THEORY.md (restated with
proofs in docs/theory.md).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .certificate import Certificate, MethodCertificate, certify
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NetworkError,
    ShapeMismatchError,
    SparseboundError,
)
from .network import Activations, ReLUNetwork

__all__ = [
    "Activations",
    "Certificate",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MethodCertificate",
    "NetworkError",
    "ReLUNetwork",
    "ShapeMismatchError",
    "SparseboundError",
    "__version__",
    "certify",
]
