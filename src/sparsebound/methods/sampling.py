"""``sparse-mc``: the Monte-Carlo training side for the network ``sparse`` certifies (THEORY.md 4.5).

It requires ``sparse`` (same rescaling and noise profile, fixed before any draw) and reads its
final tables; :func:`sparsebound.montecarlo.sparse_mc` does the draws.  The overall level delta
is split as ``delta' = mc_delta_fraction * delta`` for the draws and ``delta - delta'`` for the
PAC-Bayes step.

Source: THEORY.md 4.5; docs/theory.md section 10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from ..errors import ConfigError
from ..montecarlo import MCResult, sparse_mc
from ..network import ReLUNetwork
from ..noise import NoiseConstants
from ..pacbayes import SigmaGrid
from ..records import MethodCertificate
from ..rounding import scale_pow2, sqrt_up, sum_up
from ..search import Objective, pow2_rescaled
from ..sharding import Sharding
from ..sparsity import SparsityTable
from ..tables import NormTables
from .context import CertifyContext

__all__ = ["SPARSE_MC_TABLES", "certify_sparse_mc", "sparse_mc_for"]

#: the shared tables ``sparse-mc`` reads (those of ``sparse``)
SPARSE_MC_TABLES = ("parametrisation", "sparsity", "uniform_norms", "exact_omega", "exact_beta")


def certify_sparse_mc(ctx: CertifyContext) -> MCResult:
    """``sparse-mc`` of the network, rescaling and profile ``sparse`` certified."""
    opts = ctx.options
    run = ctx.state["sparse"]
    st = ctx.table("sparsity")
    return sparse_mc_for(ctx.certified.network, ctx.inputs.X, ctx.inputs.y, run.objective, ctx.results["sparse"],
                         run.evaluation.lambdas, ctx.certified.base, st.table, ctx.table("exact_beta").beta,
                         ctx.table("exact_omega"), ctx.table("uniform_norms"), st.constants, opts.sigma_grid,
                         len(opts.profiles), opts.delta, opts.mc_delta_fraction, opts.mc_draws, opts.mc_batch,
                         opts.mc_seed, opts.mc_max_evals, opts.device, opts.progress, opts.sharding)


def sparse_mc_for(net: ReLUNetwork, X: torch.Tensor, y: torch.Tensor, obj: Objective, sparse: MethodCertificate,
               lam: Sequence[float], base: Sequence[float], table: SparsityTable, beta_w: Sequence[torch.Tensor],
               omega_w: Sequence[torch.Tensor], norms: NormTables, consts: NoiseConstants, grid_s: SigmaGrid,
               n_profiles: int, delta: float, fraction: float, n_draws: int, batch: int, seed: int | None,
               max_evals: int, device: str | None, progress: bool, sharding: Sharding | None = None) -> MCResult:
    """``sparse-mc`` for the network certified by ``sparse`` (same rescaling ``lam`` of ``net``
    and profile c, fixed before the draws), at overall level delta split into delta'
    (draws) and delta - delta' (PAC-Bayes).

    The draws are evaluated on ``pi W`` with ``pi`` the powers of two nearest ``lam`` (an
    exact rescaling, so the same real network; its tables are W's times ``pi_k``, exactly)
    and the noise profile ``c pi / lam`` (docs/theory.md section 10, "Rescaled posterior
    means"): the recursions then run on a network whose layers have comparable scales."""
    if not (0.0 < fraction < 1.0):
        raise ConfigError(f"mc_delta_fraction must lie in (0, 1), got {fraction}")
    K = net.depth
    dist = obj.dist_sq(lam)
    exps = [0] * K
    if not net.has_bias:
        exps = [round(math.log2(v)) for v in lam[:-1]]
        exps.append(-sum(exps))
    net_p = pow2_rescaled(net, exps)
    if net_p is None:
        net_p, exps = net, [0] * K
    pi = [math.ldexp(1.0, e) for e in exps]

    def scaled(ts: Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
        return [scale_pow2(t, exps[k], "up") for k, t in enumerate(ts[:n])]

    res = sparse_mc(
        net_p, X, y, kl_dist_sq=dist, kl_profile=sparse.profile,
        noise_profile=tuple(c * p / v for c, p, v in zip(sparse.profile, pi, lam, strict=True)),
        distance_to_prior=sqrt_up(sum_up(dist)), table=table, beta_w=scaled(beta_w, K),
        omega_w=scaled(omega_w, K - 1), uniform_beta=scaled(norms.uniform_beta, K),
        uniform_omega=scaled(norms.uniform_omega, K - 1), consts=consts,
        start_j=sparse.grid_index, grid_s=grid_s, n_profiles=n_profiles, delta=delta * (1.0 - fraction),
        delta_mc=delta * fraction, n_draws=n_draws, batch=batch, seed=seed, max_evals=max_evals, device=device,
        progress=progress, sharding=sharding,
    )
    return replace(res, rescaling=tuple(v * b for v, b in zip(lam, base, strict=True)))
