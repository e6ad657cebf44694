"""Linear operators as the certificate sees them: one class per kind of layer.

Every quantity the certificate takes from a layer's weights goes through the few
questions of :class:`LinearOperator` (the way verification libraries keep one class
per operator).  A layer ``z = A x (+ b)`` with ``d_out`` output units and ``d_in``
input units answers:

* **apply** (THEORY.md 1, docs/theory.md section 7 "Forward pass"):
  :meth:`~LinearOperator.apply` computes ``z`` in float64 with an entrywise bound of
  its rounding error; :meth:`~LinearOperator.input_norm_upper` bounds the norm of the
  layer's input as the recursions count it (``n_{k-1}``: the bias's constant 1
  included).
* **reduced norms** (THEORY.md 2 and 5): valid UPPER bounds of the norm of the operator
  restricted to output units J (rows) and input units J' (columns): the spectral norm
  (:meth:`~LinearOperator.spectral_norm_upper`), the uniform sparse-norm table over
  all row/column sets of given sizes (:meth:`~LinearOperator.uniform_sparse_norms`),
  per-sample exact reduced norms at given sets
  (:meth:`~LinearOperator.exact_reduced_norms`) and the row norms restricted to column
  sets (:meth:`~LinearOperator.row_norms_upper`,
  :meth:`~LinearOperator.restricted_row_norms`).  Input sets are given in the layer's
  input units; the operator adds what the bias contributes (its column is always
  active).
* **Gaussian noise of its weights** (THEORY.md 3): the noise events need the row count
  (``out_features``) and the column count of every active input set
  (:meth:`~LinearOperator.columns`: the bias column included), the shape of the noise
  matrix (:attr:`~LinearOperator.noise_shape`, what ``sparse-mc`` draws) and the
  Frobenius distance to the prior's operator
  (:meth:`~LinearOperator.frobenius_sq_distance_upper`, the KL term).

:class:`DenseLinear` (a dense matrix ``[W | b]``, today's only kind) implements them
with the functions of :mod:`sparsebound.norms` and :mod:`sparsebound.rounding`.  A
``Conv2d`` or average-pooling operator would implement the same questions for its
structured matrix (and its kernel-shaped noise); the certificate code does not change.
``sparse-mc``'s batched forward of perturbed networks (``montecarlo._forward_f64``)
is still dense-only.

Source: THEORY.md sections 1-3 and 5; docs/theory.md sections 7 and 11.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch

from .rounding import TINY64, frobenius_sq_distance_upper, gamma_n, next_up, norm_upper

if TYPE_CHECKING:
    from .norms import UniformNormTable

__all__ = ["DenseLinear", "LinearOperator"]


class LinearOperator(abc.ABC):
    """One linear layer ``z = A x (+ b)``: what the certificate asks of it.

    Attributes:
        in_features: ``d_in``, the input units (without the bias's constant input).
        out_features: ``d_out``, the output units (rows).
        has_bias: whether the layer adds a bias (an extra, always active, input column).
    """

    in_features: int
    out_features: int
    has_bias: bool

    # ---- apply --------------------------------------------------------------
    @abc.abstractmethod
    def apply(self, x: torch.Tensor, err: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = A x (+ b)`` for a batch and a bound of its rounding error.

        Args:
            x: ``(n, d_in)`` float64 computed inputs ``xhat``.
            err: ``(n, d_in)`` entrywise bound of ``|xhat - x|`` (None: the input is exact).

        Returns:
            ``(zhat, e)``: ``(n, d_out)`` float64 computed outputs and an entrywise upper bound
            ``e >= |zhat - z|`` of the exact outputs' distance (docs/theory.md section 7).
        """

    @abc.abstractmethod
    def input_norm_upper(self, x: torch.Tensor, err: torch.Tensor | None = None) -> torch.Tensor:
        """``(n,)`` upper bound of the exact input's norm as the recursions use it (``||(x, 1)||``
        with a bias), from the computed ``x`` and its error bound ``err``."""

    # ---- reduced norms ------------------------------------------------------
    @abc.abstractmethod
    def spectral_norm_upper(self) -> float:
        """Upper bound of the operator's spectral norm (bias column included)."""

    @abc.abstractmethod
    def uniform_sparse_norms(self, row_sizes: Iterable[int], col_sizes: Iterable[int], *,
                             spectral: float | None = None, progress: bool = False) -> UniformNormTable:
        """Bounds valid for every row set of size <= a and column set of size <= b (THEORY.md 5.2);
        ``col_sizes`` count columns as :meth:`columns` does (bias included)."""

    @abc.abstractmethod
    def row_norms_upper(self) -> torch.Tensor:
        """``(d_out,)`` upper bounds of every row's norm over all columns (bias included)."""

    @abc.abstractmethod
    def restricted_row_norms(self, input_mask: torch.Tensor) -> torch.Tensor:
        """``(n, d_out)`` upper bounds of every row's norm on each sample's active input set
        (``input_mask``: ``(n, d_in)`` bool; the bias column is added)."""

    @abc.abstractmethod
    def exact_reduced_norms(self, rows: torch.Tensor | None, inputs: torch.Tensor | None, *,
                            device: str | torch.device | None = None) -> torch.Tensor:
        """``(n,)`` upper bounds of ``||A[J_n, J'_n]||`` per sample (THEORY.md 5.1).

        ``rows``: ``(n, a)`` output indices (None: all); ``inputs``: ``(n, b)`` input indices
        (None: all columns); the bias column is added to given input sets.  Samples are computed
        in batches of :meth:`exact_batch` (results may depend on the batch composition in the last
        bits, so callers that split work keep these batches)."""

    @abc.abstractmethod
    def exact_batch(self, n_rows: int | None, n_inputs: int | None) -> int:
        """Samples per batch of :meth:`exact_reduced_norms` for ``n_rows`` row indices and ``n_inputs``
        input indices per sample (None: all rows, all columns)."""

    # ---- noise --------------------------------------------------------------
    @abc.abstractmethod
    def columns(self, active_inputs: np.ndarray) -> np.ndarray:
        """Column counts of the weight noise for the given numbers of active inputs (int64 array:
        ``active_inputs`` plus the bias column)."""

    @property
    @abc.abstractmethod
    def noise_shape(self) -> tuple[int, int]:
        """Shape of the Gaussian noise matrix of the weights (rows, columns with the bias)."""

    @abc.abstractmethod
    def frobenius_norm_upper(self) -> float:
        """Upper bound of the weights' Frobenius norm (bias included)."""

    @abc.abstractmethod
    def frobenius_sq_distance_upper(self, prior: LinearOperator, scale: float = 1.0, *,
                                    norm: float | None = None) -> float:
        """Upper bound of ``||scale * A - A0||_F^2`` to the prior's operator ``A0`` (biases included);
        ``norm``: :meth:`frobenius_norm_upper` when already computed."""


class DenseLinear(LinearOperator):
    """A dense layer ``z = W x (+ b)``: the matrix ``[W | b]`` of shape ``(d_out, d_in (+ 1))``.

    Args:
        weight: ``(d_out, d_in)`` float64 tensor.
        bias: ``(d_out,)`` float64 tensor or None.

    Reduced norms, spectral norm and distances act on the augmented matrix ``[W | b]``
    (THEORY.md 1: the bias is a constant input column); the forward pass adds ``b``
    separately (docs/theory.md section 7, "Forward pass").
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight = weight
        self.bias = bias
        self.out_features = int(weight.shape[0])
        self.in_features = int(weight.shape[1])
        self.has_bias = bias is not None
        self._abs: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __repr__(self) -> str:
        return f"DenseLinear({self.out_features} x {self.in_features}, bias={self.has_bias})"

    def __getstate__(self) -> dict[str, object]:
        return {"weight": self.weight, "bias": self.bias}

    def __setstate__(self, state: dict[str, torch.Tensor | None]) -> None:
        weight = state["weight"]
        assert weight is not None
        DenseLinear.__init__(self, weight, state["bias"])

    @property
    def augmented(self) -> torch.Tensor:
        """``[W | b]`` (``W`` itself without a bias)."""
        if self.bias is None:
            return self.weight
        return torch.cat([self.weight, self.bias.view(-1, 1)], dim=1)

    def to(self, device: torch.device | str) -> DenseLinear:
        """The same operator with its tensors on ``device``."""
        return DenseLinear(self.weight.to(device), self.bias.to(device) if self.bias is not None else None)

    # ---- apply --------------------------------------------------------------
    def _abs_parts(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._abs is None:
            self._abs = (self.weight.abs(), self.bias.abs() if self.bias is not None else None)
        return self._abs

    def apply(self, x: torch.Tensor, err: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = W x + b`` with the bound ``gamma_n (|W||xhat| + |b|) + |W| e + 3 d eta`` of its rounding
        error (n = terms per dot product, the bias one more), evaluated in float64 with a factor
        ``1 + 1e-9 + 4 gamma_n`` and an absolute term covering its own evaluation (docs/theory.md
        section 7, "Forward pass")."""
        wabs, babs = self._abs_parts()
        d = self.in_features
        gam = gamma_n(d + (1 if self.has_bias else 0))
        fac = 1.0 + 1e-9 + 4.0 * gam
        absolute = float(3 * d + 4) * TINY64
        z = x @ self.weight.T
        t = gam * (x.abs() @ wabs.T if babs is None else x.abs() @ wabs.T + babs)
        if self.bias is not None:
            z = z + self.bias
        if err is not None:
            t = t + err @ wabs.T
        return z, t * fac + absolute

    def input_norm_upper(self, x: torch.Tensor, err: torch.Tensor | None = None) -> torch.Tensor:
        """``||(x, 1)||`` (``||x||`` without a bias) bounded from the computed ``x``: ``||x|| <=
        ||xhat|| + ||xhat - x||`` (every step rounded up, ``rounding.norm_upper``)."""
        nrm = norm_upper(x, 1)
        if self.has_bias:  # ||(x, 1)|| <= ||(nrm, 1)||
            nrm = norm_upper(torch.stack([nrm, torch.ones_like(nrm)], dim=1), 1)
        if err is not None:
            nrm = next_up(nrm + norm_upper(err, 1))
        return nrm

    # ---- reduced norms ------------------------------------------------------
    def spectral_norm_upper(self) -> float:
        """``norms.spectral_norm`` of ``[W | b]`` (float64 SVD times ``1 + NORM_SAFETY``)."""
        from .norms import spectral_norm

        return float(spectral_norm(self.augmented))

    def uniform_sparse_norms(self, row_sizes: Iterable[int], col_sizes: Iterable[int], *,
                             spectral: float | None = None, progress: bool = False) -> UniformNormTable:
        """``norms.uniform_sparse_norms`` of ``[W | b]`` (pruned: the babel bound only where it can
        help; the same table as without pruning)."""
        from .norms import uniform_sparse_norms

        return uniform_sparse_norms(self.augmented, list(row_sizes), list(col_sizes), progress=progress,
                                    spectral=spectral, prune=True)

    def row_norms_upper(self) -> torch.Tensor:
        """``rounding.norm_upper`` of every row of ``[W | b]`` (valid at any scale)."""
        return norm_upper(self.augmented, 1)

    def restricted_row_norms(self, input_mask: torch.Tensor) -> torch.Tensor:
        """``norms.exact_row_norms_restricted`` of ``[W | b]`` on ``input_mask`` plus the bias column."""
        from .norms import exact_row_norms_restricted

        if self.has_bias:
            input_mask = torch.cat([input_mask, torch.ones(input_mask.shape[0], 1, dtype=torch.bool)], dim=1)
        return exact_row_norms_restricted(self.augmented, input_mask)

    def _with_bias_column(self, inputs: torch.Tensor | None) -> torch.Tensor | None:
        if inputs is None or not self.has_bias:
            return inputs
        return torch.cat([inputs, torch.full((inputs.shape[0], 1), self.in_features, dtype=torch.int64)], dim=1)

    def exact_reduced_norms(self, rows: torch.Tensor | None, inputs: torch.Tensor | None, *,
                            device: str | torch.device | None = None) -> torch.Tensor:
        """``norms.exact_reduced_norms`` of ``[W | b]`` at ``rows`` x (``inputs`` + the bias column)."""
        from .norms import exact_reduced_norms

        return exact_reduced_norms(self.augmented, rows, self._with_bias_column(inputs), device=device)

    def exact_batch(self, n_rows: int | None, n_inputs: int | None) -> int:
        """The batch :func:`sparsebound.norms.exact_reduced_norms` uses for these sizes."""
        from .norms import exact_norms_batch

        bias = 1 if self.has_bias else 0
        a = self.out_features if n_rows is None else n_rows
        b = self.in_features + bias if n_inputs is None else n_inputs + bias
        return exact_norms_batch(a, b)

    # ---- noise --------------------------------------------------------------
    def columns(self, active_inputs: np.ndarray) -> np.ndarray:
        return np.asarray(active_inputs, dtype=np.int64) + (1 if self.has_bias else 0)

    @property
    def noise_shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features + (1 if self.has_bias else 0))

    def frobenius_norm_upper(self) -> float:
        return float(norm_upper(self.augmented.reshape(-1), 0))

    def frobenius_sq_distance_upper(self, prior: LinearOperator, scale: float = 1.0, *,
                                    norm: float | None = None) -> float:
        """``rounding.frobenius_sq_distance_upper`` of ``[W | b]`` and the prior's ``[W0 | b0]``."""
        if not isinstance(prior, DenseLinear):
            raise TypeError(f"the prior of a dense layer must be dense, got {type(prior).__name__}")
        return frobenius_sq_distance_upper(self.augmented, prior.augmented, scale, a_norm=norm)

