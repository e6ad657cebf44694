"""Sparsity of one sample: witnesses, sparse local radii, effective activity (THEORY.md 2).

For a sparsity level ``s_k`` at hidden layer k, the *witness* of W at x is
``I_k`` = the ``s_k`` units with the smallest pre-activations (ties broken by
index) and ``J_k`` its complement; the *sparse local radius*

    rho_k(x; s_k) = -(s_k-th smallest entry of z^k)

says that every unit of ``I_k`` is inactive with margin ``rho_k``.  The
effective activity ratio is ``a_k / d_k`` with ``a_k = d_k - s_k``.

All radii here are *lower* bounds of the exact values: the float64 forward pass
reports a bound on its rounding error (``Activations.preact_error``), which is
subtracted.  Everything is vectorised: each layer's pre-activations are sorted
once (O(N d log d)).

Source: Muthukumar & Sulam, COLT 2023, section 3 (sparse local radius,
effective activity ratio); THEORY.md section 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError
from .network import Activations
from .noise import DEFAULT_ACTIVE_FRACTIONS, active_size_grid


@dataclass(frozen=True)
class SparsityGrid:
    """A-priori grid of allowed sparsity levels for each hidden layer (THEORY.md 4.3).

    Attributes:
        widths: ``(d_0, ..., d_K)``.
        active: K-1 int64 arrays of allowed active sizes, *descending* (so that
            position ``t`` = ascending sparsity ``s = d_k - active[t]``;
            ``t = 0`` is the dense level ``s = 0``).
        fractions: the active fractions the grid was built from (for the record).
    """

    widths: tuple[int, ...]
    active: tuple[np.ndarray, ...]
    fractions: tuple[float, ...]

    @classmethod
    def from_fractions(
        cls, widths: Sequence[int], fractions: Sequence[float] = DEFAULT_ACTIVE_FRACTIONS
    ) -> SparsityGrid:
        """Grid ``round(f d_k)`` for every hidden layer (fixed before any data is seen)."""
        widths = tuple(int(d) for d in widths)
        if len(widths) < 3:
            raise ConfigError("a sparsity grid needs at least one hidden layer (K >= 2)")
        active = tuple(active_size_grid(d, fractions)[::-1].copy() for d in widths[1:-1])
        return cls(widths=widths, active=active, fractions=tuple(float(f) for f in fractions))

    @classmethod
    def dense(cls, widths: Sequence[int]) -> SparsityGrid:
        """The grid with s = 0 only (dense / norm-based certificate)."""
        widths = tuple(int(d) for d in widths)
        return cls(widths=widths, active=tuple(np.array([d]) for d in widths[1:-1]), fractions=(1.0,))

    def sparsity(self, k: int) -> np.ndarray:
        """Ascending sparsity levels ``s`` of hidden layer k (1-based)."""
        return self.widths[k] - self.active[k - 1]

    def to_dict(self) -> dict:
        return {
            "active_fractions": list(self.fractions),
            "active_sizes": [a.tolist() for a in self.active],
        }


@dataclass(frozen=True)
class SparsityTable:
    """Per-sample witnesses and radii for a whole data set and a grid.

    Attributes:
        grid: the :class:`SparsityGrid`.
        order: K-1 int64 tensors ``(N, d_k)``: units of layer k sorted by
            ascending pre-activation (stable, so ties go by index).  The witness
            for level ``s`` is ``I_k = order[:, :s]``, ``J_k = order[:, s:]``.
        radii: K-1 float64 tensors ``(N, T_k)``: lower bounds of
            ``rho_k(x; s)`` for each grid level (``+inf`` at s = 0).
        active_units: ``(N, K-1)`` int64, number of units with positive
            pre-activation (computed values).
    """

    grid: SparsityGrid
    order: tuple[torch.Tensor, ...]
    radii: tuple[torch.Tensor, ...]
    active_units: torch.Tensor

    @classmethod
    def build(cls, acts: Activations, grid: SparsityGrid) -> SparsityTable:
        """Sort each hidden layer's pre-activations once and read off the radii.

        Args:
            acts: float64 forward pass with ``pre_activations`` kept.
            grid: sparsity grid for the same widths.

        Raises:
            ConfigError: the activations were computed without pre-activations or
                do not match the grid's widths.

        Source: THEORY.md section 2 (witness, sparse local radius).
        """
        K = len(grid.widths) - 1
        if len(acts.pre_activations) != K - 1:
            raise ConfigError(
                "the forward pass kept no hidden pre-activations; call forward(..., keep_pre_activations=True)"
            )
        orders, radii, active = [], [], []
        for k in range(1, K):
            z = acts.pre_activations[k - 1]
            if z.shape[1] != grid.widths[k]:
                raise ConfigError(f"layer {k} has width {z.shape[1]}, grid expects {grid.widths[k]}")
            vals, idx = torch.sort(z, dim=1, stable=True)
            err = acts.preact_error[:, k - 1]
            s = torch.as_tensor(grid.sparsity(k), dtype=torch.int64)
            rho = torch.full((z.shape[0], s.numel()), float("inf"), dtype=torch.float64)
            pos = s > 0
            if bool(pos.any()):
                # s-th smallest = vals[:, s-1]; exact z_i <= zhat_i + err for i in I_k
                rho[:, pos] = -(vals[:, s[pos] - 1] + err[:, None])
            orders.append(idx)
            radii.append(rho)
            active.append((z > 0).sum(dim=1))
        return cls(grid=grid, order=tuple(orders), radii=tuple(radii),
                   active_units=torch.stack(active, dim=1))

    @property
    def n_samples(self) -> int:
        return int(self.active_units.shape[0])

    def active_rows(self, k: int, t: int, samples: torch.Tensor | None = None) -> torch.Tensor:
        """``J_k`` for grid level t: ``(n, a)`` int64 indices of the active rows of layer k."""
        s = int(self.grid.sparsity(k)[t])
        o = self.order[k - 1] if samples is None else self.order[k - 1][samples]
        return o[:, s:]

    def inactive_rows(self, k: int, t: int, samples: torch.Tensor | None = None) -> torch.Tensor:
        """``I_k`` for grid level t: ``(n, s)`` int64 indices."""
        s = int(self.grid.sparsity(k)[t])
        o = self.order[k - 1] if samples is None else self.order[k - 1][samples]
        return o[:, :s]

    def active_mask(self, k: int, t: int) -> torch.Tensor:
        """``(N, d_k)`` bool mask of ``J_k`` at grid level t."""
        o = self.order[k - 1]
        s = int(self.grid.sparsity(k)[t])
        mask = torch.ones(o.shape, dtype=torch.bool)
        if s > 0:
            mask.scatter_(1, o[:, :s], False)
        return mask

    def greedy_levels(self, eps: Sequence[float] | float = 0.0) -> torch.Tensor:
        """Greedy sparse vector ``s*(x, eps)``: per layer the largest grid level with
        ``rho_k >= eps_k`` (``(N, K-1)`` int64 grid positions).

        Args:
            eps: radius profile, one value per hidden layer or a scalar.
        """
        K1 = len(self.radii)
        e = [float(eps)] * K1 if np.isscalar(eps) else [float(v) for v in eps]
        if len(e) != K1:
            raise ConfigError(f"need {K1} radius values (one per hidden layer), got {len(e)}")
        cols = []
        for k in range(K1):
            ok = self.radii[k] >= e[k]
            # largest position with ok (radii decrease with t, ok is a prefix)
            t = ok.to(torch.int64).cumprod(dim=1).sum(dim=1) - 1
            cols.append(t.clamp(min=0))
        return torch.stack(cols, dim=1)

    def activity_ratios(self, levels: torch.Tensor) -> torch.Tensor:
        """Effective activity ratios ``a_k / d_k`` ``(N, K-1)`` float64 for grid positions."""
        out = []
        for k in range(1, len(self.radii) + 1):
            a = torch.as_tensor(self.grid.active[k - 1], dtype=torch.float64)
            out.append(a[levels[:, k - 1]] / self.grid.widths[k])
        return torch.stack(out, dim=1)

    def summary(self, eps: Sequence[float] | float = 0.0) -> dict:
        """JSON summary per hidden layer: active fraction (raw and greedy on the
        grid at ``eps``) and radius quantiles."""
        lv = self.greedy_levels(eps)
        ratios = self.activity_ratios(lv)
        qs = [0.05, 0.25, 0.5, 0.75, 0.95]
        layers = []
        for k in range(1, len(self.radii) + 1):
            d = self.grid.widths[k]
            raw = self.active_units[:, k - 1].double() / d
            r = ratios[:, k - 1]
            finite = self.radii[k - 1][:, 1:]
            mid = finite[:, finite.shape[1] // 2] if finite.shape[1] else torch.zeros(0)
            layers.append(
                {
                    "layer": k,
                    "width": d,
                    "active_fraction_raw": _stats(raw, qs),
                    "effective_activity_ratio": _stats(r, qs),
                    "radius_at_mid_grid_level": _stats(mid, qs) if mid.numel() else None,
                }
            )
        return {"eps": eps if np.isscalar(eps) else list(eps), "layers": layers}


def _stats(x: torch.Tensor, qs: Sequence[float]) -> dict:
    x = x.double()
    return {
        "mean": float(x.mean()),
        "quantiles": {str(q): float(torch.quantile(x, q)) for q in qs},
    }
