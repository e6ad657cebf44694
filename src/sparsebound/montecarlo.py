"""Monte-Carlo training side: the ``sparse-mc`` certificate (THEORY.md 4.5).

The analytic training side (reverse recursions and eta2) bounds how far the
posterior's networks may move, conservatively.  ``sparse-mc`` instead estimates
``E_Q[empirical L_mid]`` directly by drawing N perturbed networks ``V = W + U``
and evaluating the step-2 loss ``L_mid`` of each on the bound sample, while the
deterministic network W is still certified through the test side (Lemma 4.1).

For every evaluated grid sigma, with probability >= 1 - delta' pi(sigma) over the
draws, ``E_Q[hat L_mid] <= kl_inv(q_hat, ln(1/(delta' pi(sigma)))/N)`` (kl-Chernoff,
Hoeffding 1963 Thm 1, for the mean of N i.i.d. [0,1] variables), and then with
probability >= 1 - delta - delta':

    L_0(f_W) <= kl_inv( kl_inv(q_hat, ln(1/(delta' pi))/N),
                        [KL + ln(2 sqrt(m)/(pi delta))] / m ) + eta1.

Per draw ``l_j`` is an upper bound of the empirical ``L_mid(W + U_j)``: a sample
counts 0 only if some grid sparsity vector and sets pass V's test-side forward
lines with upper bounds of beta^V, omega^V, n^V and lower bounds of rho^V and M_V:

* two choices of sets are tried: W's own witness (``||V[J,J']|| <= beta_bar_W + ||U_k||``,
  ``omega^V <= omega_bar_W + max_i ||U_k[i, :]||``) and V's own witness (the
  uniform bounds of W for the same sizes plus the same noise terms); the greedy
  level choice (docs/theory.md Prop. 5.2) applies to each;
* V's forward pass runs in float32 with a rigorous rounding bound (Cauchy-Schwarz
  form of Higham's bound, plus the float32 rounding of V's weights), so radii and
  margins are lower bounds and norms upper bounds of V's exact values.

W (with its rescaling), N, the seed and the profile are fixed before any draw;
draws are standard Gaussians in float64 from a seed recorded beforehand, scaled
by sigma and shared across the evaluated sigma values (allowed: the union bound
over the grid needs no independence across sigma).  Which sigma values are
evaluated may depend on the data and on earlier evaluations: the weights pi(sigma)
cover the whole grid.

Source: THEORY.md 4.5; docs/theory.md section 10.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .certification import INFORMATIVE_WINDOW, PerSampleInputs, greedy_certify
from .errors import ConfigError
from .network import ReLUNetwork, full_precision, margins_from_outputs, resolve_device, torch_threads
from .noise import LayerConstants, NoiseConstants
from .pacbayes import SigmaGrid, check_delta, kl_inv_upper
from .sparsity import SparsityTable

U32 = 2.0**-24  # float32 unit roundoff


def mid_loss_constants(consts: NoiseConstants) -> NoiseConstants:
    """Constants that make :func:`greedy_certify` run V's test-side forward lines only.

    ``g := g'``, ``h := h'`` and every reverse-side constant 0, so that ``E = R = 0``,
    ``D_k = beta D + sigma g' (n + D)``, ``L_k = omega D + sigma h' (n + D)``:
    exactly the ``L_mid`` test of THEORY.md 4.2 step 2.
    """
    layers = []
    for lc in consts.layers:
        layers.append(LayerConstants(
            k=lc.k, sparsity=lc.sparsity, active=lc.active, col_active=lc.col_active,
            g=lc.gp.copy(), h=np.full(lc.h.shape, lc.hp), mu=np.zeros_like(lc.mu), muinf=np.zeros_like(lc.muinf),
            gp=np.zeros_like(lc.gp), hp=0.0,
        ))
    return replace(consts, layers=tuple(layers))


@dataclass(frozen=True)
class MCResult:
    """The ``sparse-mc`` certificate (THEORY.md 4.5) and everything needed to audit it.

    ``certificate``/``unclipped``/``vacuous`` as for the other methods;
    ``empirical_term`` is the Monte-Carlo upper bound ``kl_inv(q_hat, ...)`` of
    ``E_Q[hat L_mid]``; ``losses`` are the per-draw ``l_j`` at the chosen sigma.
    """

    method: str
    certificate: float
    unclipped: float
    vacuous: bool
    q_hat: float
    empirical_term: float
    kl: float
    complexity_term: float
    sigma: float
    grid_index: int
    profile: tuple[float, ...]
    rescaling: tuple[float, ...]
    distance_to_prior: float
    n_draws: int
    seed: int
    delta: float
    delta_mc: float
    eta1: float
    m: int
    losses: list[float]
    evaluated: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        del per_sample
        return {
            "method": self.method,
            "certificate": self.certificate,
            "unclipped": self.unclipped,
            "log10_unclipped": math.log10(self.unclipped) if self.unclipped > 0 else None,
            "vacuous": self.vacuous,
            "q_hat": self.q_hat,
            "empirical_term": self.empirical_term,
            "kl": self.kl,
            "kl_over_m": self.kl / self.m,
            "complexity_term": self.complexity_term,
            "sigma": self.sigma,
            "grid_index": self.grid_index,
            "profile": list(self.profile),
            "rescaling": list(self.rescaling),
            "distance_to_prior": self.distance_to_prior,
            "n_draws": self.n_draws,
            "seed": self.seed,
            "delta": self.delta,
            "delta_mc": self.delta_mc,
            "delta_total": self.delta + self.delta_mc,
            "eta1": self.eta1,
            "m": self.m,
            "losses": self.losses,
            "evaluated": self.evaluated,
            "timings_s": self.timings,
        }


def _forward_f32(ws: list[torch.Tensor], bs: list[torch.Tensor] | None, X: torch.Tensor, y: torch.Tensor,
                 batch: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 forward of V with rigorous error bounds (Cauchy-Schwarz form).

    ``ws`` are float64 weights of V.  Returns hidden pre-activations (float32, on
    the device), per-layer max error bounds ``(N, K)``, norms upper bounds
    ``(N, K)`` (float64, CPU) and lower bounds of the margins ``(N,)``.

    Error analysis: with ``V32 = fl32(V)`` (``|V32 - V| <= u|V|``), the computed
    ``zhat_i = fl32(V32_i . xhat)`` satisfies ``|zhat_i - V_i . x| <= (gamma_n + u (1 + gamma_n))
    ||V_i|| ||xhat|| + ||V_i|| ||xhat - x||`` by Higham's bound and Cauchy-Schwarz; relu is
    1-Lipschitz, so ``||xhat^k - x^k|| <= ||e^k||``.  A factor 2 covers the float64
    evaluation of the bound itself.
    """
    dev = ws[0].device
    K = len(ws)
    w32 = [w.to(torch.float32) for w in ws]
    b32 = [b.to(torch.float32) for b in bs] if bs is not None else None
    rown = []
    for k in range(K):
        rn = ws[k].pow(2).sum(1)
        if bs is not None:
            rn = rn + bs[k].pow(2)
        rown.append(rn.sqrt())
    n_terms = [w.shape[1] + (1 if bs is not None else 0) for w in ws]
    # gamma_n for the dot product plus 2u for the rounding of V's weights (float64 sum, then float32)
    gam = [(n * U32) / (1 - n * U32) + 2 * U32 * (1 + n * U32 / (1 - n * U32)) for n in n_terms]
    pre: list[list[torch.Tensor]] = [[] for _ in range(K - 1)]
    errs, norms, margins = [], [], []
    for i in range(0, X.shape[0], batch):
        xin = X[i : i + batch].to(dev)
        x = xin.to(torch.float32)
        yb = y[i : i + batch].to(dev)
        # ||xhat - x|| bound (inputs given in float64 are rounded to float32 here)
        E = (xin.double() - x.double()).norm(dim=1) * (1 + 1e-6)
        e_cols, n_cols = [], []
        for k in range(K):
            nx = x.double().norm(dim=1)
            if bs is not None:
                nx = torch.sqrt(nx * nx + 1.0)
            n_cols.append((nx + E) * (1 + 1e-6))
            z = x @ w32[k].T
            if b32 is not None:
                z = z + b32[k]
            # per-unit bound: 2 (gam ||V_i|| ||xhat_aug|| + ||V_i|| E)
            e = 2.0 * rown[k][None, :] * (gam[k] * nx + E)[:, None]
            e_cols.append(e.max(dim=1).values)
            if k < K - 1:
                pre[k].append(z)
                x = torch.relu(z)
                E = e.norm(dim=1)
            else:
                out = z.double()
                m = margins_from_outputs(out, yb) - 2.0 * e.max(dim=1).values
                margins.append(m)
        errs.append(torch.stack(e_cols, 1))
        norms.append(torch.stack(n_cols, 1))
    return ([torch.cat(p) for p in pre], torch.cat(errs).cpu(), torch.cat(norms).cpu(),
            torch.cat(margins).cpu())


def _radii_at_sets(z: torch.Tensor, order: torch.Tensor | None, s: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """Lower bounds of ``rho^V = -max_{i in I} z^V_i`` for every grid level.

    ``order`` is W's witness order (``I = order[:, :s]``), or None for V's own witness.
    """
    if order is None:
        vals = torch.sort(z, dim=1).values
        top = vals  # s-th smallest
    else:
        top = torch.cummax(z.gather(1, order.to(z.device)), dim=1).values
    N = z.shape[0]
    rho = torch.full((N, s.numel()), math.inf, dtype=torch.float64)
    pos = s > 0
    if bool(pos.any()):
        rho[:, pos] = -(top[:, s[pos] - 1].double().cpu() + err[:, None])
    return rho


def mc_losses(
    net: ReLUNetwork,
    X: torch.Tensor,
    y: torch.Tensor,
    draws: list[list[torch.Tensor]],
    sigma: float,
    profile: Sequence[float],
    *,
    table: SparsityTable,
    beta_w: Sequence[torch.Tensor],
    omega_w: Sequence[torch.Tensor],
    uniform_beta: Sequence[torch.Tensor],
    uniform_omega: Sequence[torch.Tensor],
    noise_norms: list[list[float]],
    noise_rows: list[list[float]],
    consts: NoiseConstants,
    device: str | None = None,
    batch: int = 8192,
) -> list[float]:
    """Per-draw upper bounds ``l_j`` of the empirical ``L_mid(W + sigma c Z_j)``.

    Args:
        net: W (already rescaled; fixed before the draws).
        X, y: the bound sample.
        draws: per draw, K standard-normal float64 tensors of W's augmented shapes.
        sigma, profile: layer k uses ``sigma * profile[k-1]``.
        table: W's witnesses on the sparsity grid.
        beta_w, omega_w: per-sample upper bounds at W's witness, ``(N or 1, T, T')``.
        uniform_beta, uniform_omega: bounds valid for every set of the grid sizes.
        noise_norms, noise_rows: per draw and layer, upper bounds of ``||Z_k||`` and of
            ``max_i ||Z_k[i, :]||`` (multiplied by ``sigma c_k`` here).
        consts: noise constants (only the test-side ones are used).
    """
    dev = resolve_device(device)
    tc = mid_loss_constants(consts)
    K = net.depth
    grid = table.grid
    lev_s = [torch.as_tensor(grid.sparsity(k), dtype=torch.int64) for k in range(1, K)]
    out = []
    for j, Z in enumerate(draws):
        ws, bs = [], [] if net.has_bias else None
        for k in range(K):
            U = Z[k] * (sigma * float(profile[k]))
            Wa = net.augmented_weight(k + 1)
            V = (Wa + U).to(dev)
            if net.has_bias:
                ws.append(V[:, :-1])
                bs.append(V[:, -1])
            else:
                ws.append(V)
        with full_precision():
            pre, err, norms, margins = _forward_f32(ws, bs, X, y, batch)
        add_b = [sigma * float(profile[k]) * noise_norms[j][k] * (1 + 1e-6) for k in range(K)]
        add_o = [sigma * float(profile[k]) * noise_rows[j][k] * (1 + 1e-6) for k in range(K)]
        passed = torch.zeros(X.shape[0], dtype=torch.bool)
        for own in (False, True):
            radii = tuple(
                _radii_at_sets(pre[k], None if own else table.order[k], lev_s[k], err[:, k]) for k in range(K - 1)
            )
            bsrc = uniform_beta if own else beta_w
            osrc = uniform_omega if own else omega_w
            beta = tuple(b + add_b[k] for k, b in enumerate(bsrc))
            omega = []
            for k, o in enumerate(osrc):
                oo = o + add_o[k]
                oo[:, 0] = 0.0  # s = 0: no inactive rows
                omega.append(oo)
            inp = PerSampleInputs(margins_lower=margins, norms=norms, radii=radii, omega=tuple(omega), beta=beta,
                                  constants=tc)
            with torch_threads(1):
                ok, _, _ = greedy_certify(inp, torch.full((X.shape[0],), sigma, dtype=torch.float64), profile)
            passed |= ok
        out.append(float(1.0 - passed.double().mean()))
    return out


def draw_standard(net: ReLUNetwork, n_draws: int, seed: int) -> tuple[list[list[torch.Tensor]], list[list[float]],
                                                                        list[list[float]]]:
    """N standard-normal draws (float64) of every augmented weight matrix, from ``seed``,
    with upper bounds of their spectral norms and largest row norms."""
    gen = torch.Generator().manual_seed(int(seed))
    draws, nn_, nr = [], [], []
    for _ in range(n_draws):
        Z = [torch.randn(*net.augmented_weight(k).shape, generator=gen, dtype=torch.float64)
             for k in range(1, net.depth + 1)]
        with torch_threads(1):
            sn = [float(torch.linalg.svdvals(z)[0]) * (1 + 1e-6) for z in Z]
        rn = [float(z.pow(2).sum(1).sqrt().max()) * (1 + 1e-9) for z in Z]
        draws.append(Z)
        nn_.append(sn)
        nr.append(rn)
    return draws, nn_, nr


def sparse_mc(
    net: ReLUNetwork,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    kl_dist_sq: Sequence[float],
    kl_profile: Sequence[float],
    noise_profile: Sequence[float],
    distance_to_prior: float,
    table: SparsityTable,
    beta_w: Sequence[torch.Tensor],
    omega_w: Sequence[torch.Tensor],
    uniform_beta: Sequence[torch.Tensor],
    uniform_omega: Sequence[torch.Tensor],
    consts: NoiseConstants,
    start_j: int,
    grid_s: SigmaGrid,
    n_profiles: int,
    delta: float,
    delta_mc: float,
    n_draws: int = 100,
    seed: int | None = None,
    max_evals: int = 4,
    device: str | None = None,
    progress: bool = True,
) -> MCResult:
    """The ``sparse-mc`` certificate (THEORY.md 4.5) of the posterior mean ``lambda W``.

    The posterior is ``N(lambda W, diag (sigma c)^2)``.  Bias-free networks are
    positively homogeneous, so ``L_mid(lambda W + U; sigma c)`` equals
    ``L_mid(W + U / lambda; sigma c / lambda)`` exactly (docs/theory.md Lemma 8.1):
    the draws are evaluated on ``W + (sigma c_k / lambda_k) Z_k`` with the tables of
    W itself (``noise_profile = c / lambda``), so W is never rescaled numerically;
    the KL uses ``kl_dist_sq`` (``||lambda_k W_k - W0_k||_F^2``) and ``kl_profile`` (c).

    Evaluates a few grid sigma values, starting at ``start_j`` and climbing while the
    bound improves (at most ``max_evals`` values), all with the same ``n_draws``
    standard draws from ``seed`` (``None``: a fresh seed from the operating system,
    recorded in the result, so that draws are never reused across networks chosen
    after seeing earlier draws); returns the best.

    Raises:
        ConfigError: delta or delta_mc outside (0, 1), fewer than one draw.
    """
    from tqdm.auto import tqdm

    check_delta(delta)
    check_delta(delta_mc, "delta_mc")
    if n_draws < 1:
        raise ConfigError("sparse-mc needs at least one draw (--mc-draws)")
    if seed is None:
        import secrets

        seed = secrets.randbits(31)
    t0 = time.perf_counter()
    draws, znorm, zrow = draw_standard(net, n_draws, seed)
    t_draw = time.perf_counter() - t0
    m = int(X.shape[0])
    dist = [float(d) for d in kl_dist_sq]
    c2 = [float(c) ** 2 for c in kl_profile]
    evaluated: dict[int, dict[str, Any]] = {}

    def evaluate(j: int) -> dict[str, Any]:
        if j in evaluated:
            return evaluated[j]
        sig = float(grid_s.sigma(j))
        logw = float(grid_s.log_weight(j, n_profiles))
        losses = mc_losses(net, X, y, draws, sig, noise_profile, table=table, beta_w=beta_w, omega_w=omega_w,
                           uniform_beta=uniform_beta, uniform_omega=uniform_omega, noise_norms=znorm,
                           noise_rows=zrow, consts=consts, device=device)
        q = float(np.mean(losses))
        mc_up = float(kl_inv_upper(q, (math.log(1.0 / delta_mc) - logw) / n_draws))
        kl = sum(d / (2.0 * sig * sig * cc) for d, cc in zip(dist, c2, strict=True))
        comp = (kl + math.log(2.0 * math.sqrt(m) / delta) - logw) / m
        klb = float(kl_inv_upper(mc_up, comp)) + consts.eta1
        pins = mc_up + math.sqrt(comp / 2.0) + consts.eta1
        unc = klb if klb < 1.0 else pins
        rec = {"grid_index": j, "sigma": sig, "q_hat": q, "mc_upper": mc_up, "kl": kl, "complexity": comp,
               "unclipped": unc, "losses": losses}
        evaluated[j] = rec
        bar.update(1)
        return rec

    with tqdm(total=max_evals, desc="sparse-mc sigmas", disable=None if progress else True, leave=False) as bar:
        best = evaluate(start_j)
        step = 2
        j = start_j
        while len(evaluated) < max_evals:
            cand = evaluate(j + step)
            lo = min(r["mc_upper"] for r in evaluated.values())
            in_window = cand["unclipped"] < 1.0 or cand["mc_upper"] <= lo + INFORMATIVE_WINDOW
            if in_window and cand["unclipped"] < best["unclipped"]:
                best, j = cand, j + step
                continue
            if step == 2 and (j + 1) not in evaluated:
                step = 1
                continue
            if (j - 1) not in evaluated and j == start_j:
                cand = evaluate(j - 1)
                if cand["unclipped"] < best["unclipped"]:
                    best = cand
            break
    if best["unclipped"] >= 1.0:
        # all vacuous: same reporting rule as the other methods (docs/theory.md 9)
        lo = min(r["mc_upper"] for r in evaluated.values())
        window = [r for r in evaluated.values() if r["mc_upper"] <= lo + INFORMATIVE_WINDOW]
        best = min(window, key=lambda r: r["unclipped"])
    unc = float(best["unclipped"])
    return MCResult(
        method="sparse-mc", certificate=min(1.0, unc), unclipped=unc, vacuous=unc >= 1.0, q_hat=best["q_hat"],
        empirical_term=best["mc_upper"], kl=best["kl"], complexity_term=best["complexity"], sigma=best["sigma"],
        grid_index=best["grid_index"], profile=tuple(float(c) for c in kl_profile),
        rescaling=tuple(float(c) / float(e) for c, e in zip(kl_profile, noise_profile, strict=True)),
        distance_to_prior=float(distance_to_prior), n_draws=n_draws, seed=int(seed), delta=delta, delta_mc=delta_mc,
        eta1=consts.eta1, m=m, losses=list(best["losses"]),
        evaluated=[{k: v for k, v in r.items() if k != "losses"} for r in evaluated.values()],
        timings={"draws": t_draw, "total": time.perf_counter() - t0},
    )

