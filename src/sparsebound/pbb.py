"""The stochastic reference ``pbb``: a PAC-Bayes risk certificate of the *Gibbs* (randomised)
predictor (THEORY.md 4.7; docs/theory.md section 14).

The Gibbs predictor draws fresh weights ``V ~ Q = N(W, Sigma_Q)`` for every input and predicts
with ``f_V``.  Its risk ``E_{V~Q} L_0(f_V)`` is bounded, with probability at least
``1 - delta - delta'`` over the bound sample and the Monte-Carlo draws, by

    kl_inv( kl_inv(S_hat, ln(2/(delta' pi_mc)) / N),  [KL(Q || P) + ln(2 sqrt(m) / (pi delta))] / m )

with ``P = N(W0, (sigma_j c)^2 I)`` from the a-priori grid of :class:`~sparsebound.pacbayes.SigmaGrid`
(weight ``pi = pi(j, c)``), ``KL`` the Gaussian KL with its trace, log-determinant and mean terms
(rounded outward), and ``S_hat`` the share of ``N = passes * m`` (draw, sample) pairs that the
drawn network misclassifies (ties count as errors, and so does every margin within the
rounding bound of zero).  Each pass draws an independent network for every bound sample
(local reparametrisation: given its input, a Gaussian layer's pre-activations are Gaussian, so
the drawn pre-activations have exactly the law of ``V``'s), which gives ``passes * m``
independent indicators whose mean of means is ``E_Q[empirical L_0]`` (Hoeffding 1963, Thm 1,
holds for independent, not necessarily identically distributed, [0, 1] variables).

Two posterior families:

* ``tied`` (a network trained without learned variances, e.g. ``erm`` or ``certificate``):
  ``Sigma_Q = Sigma_P = (sigma_j c)^2 I``, the same posterior family as ``sparse``; a few grid
  sigma values are evaluated with shared standard-normal draws, the Monte-Carlo step at level
  ``delta' pi(j, c)`` (union bound over the grid), the PAC-Bayes step at ``delta pi(j, c)``.
  ``sparse`` against ``pbb`` for the same posterior mean shows what derandomisation costs.
* ``learned`` (``posterior_std`` given, e.g. from the ``pbb`` training objective): one
  Monte-Carlo estimate at level ``delta'``; the prior variance is chosen on the grid by the
  smallest bound (union bound paid in ``delta``).

This bounds the randomised predictor, **not** the deployed network ``f_W``: every result carries
:data:`STOCHASTIC_LABEL`.

Source: Perez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvari, "Tighter risk certificates for
neural networks", JMLR 22(227), 2021 (sections 3-4); Langford & Caruana, "(Not) bounding the
true error", NIPS 2001 (sample convergence bound); Maurer (2004) for the PAC-Bayes-kl step.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, check_seed
from .network import ReLUNetwork, as_labels, margins_from_outputs, torch_threads
from .pacbayes import SigmaGrid, check_delta, gaussian_kl, kl_inv_upper
from .rounding import frobenius_sq_distance_upper

STOCHASTIC_LABEL = ("bound on the randomised (Gibbs) predictor E_{V~Q} L_0(f_V), which draws new weights for "
                    "every input; NOT a bound on the deployed network f_W")

U64 = 2.0**-53
#: relative safety of the KL evaluation (covers float64 sums of up to ~4e6 non-negative terms)
KL_SAFETY = 1e-9
MIN_BOUND_SAMPLES = 8


@dataclass(frozen=True)
class PBBResult:
    """The ``pbb`` certificate (THEORY.md 4.7) and what is needed to audit it.

    ``certificate``/``unclipped``/``vacuous`` as for the other methods (``unclipped`` is the kl
    bound where below 1, else the Pinsker form ``empirical + sqrt(C/2)``);
    ``gibbs_error`` is ``S_hat``; ``empirical_term`` its Monte-Carlo upper bound
    ``kl_inv(S_hat, ln(2/(delta' pi_mc))/N)``; ``sigma`` the prior's grid value (per layer
    ``sigma * c_k``; for ``tied`` also the posterior's).  ``eta1`` is 0: no derandomisation step.
    """

    method: str
    certificate: float
    unclipped: float
    vacuous: bool
    gibbs_error: float
    empirical_term: float
    kl: float
    complexity_term: float
    sigma: float
    sigma_per_layer: tuple[float, ...]
    grid_index: int
    profile: tuple[float, ...]
    rescaling: tuple[float, ...]
    posterior: str
    distance_to_prior: float
    n_draws: int
    passes: int
    seed: int
    delta: float
    delta_mc: float
    m: int
    eta1: float = 0.0
    gibbs_test_error: float | None = None
    n_test_draws: int | None = None
    posterior_std_summary: list[dict[str, float]] = field(default_factory=list)
    evaluated: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    label: str = STOCHASTIC_LABEL
    stochastic: bool = True

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        del per_sample
        return {
            "method": self.method,
            "label": self.label,
            "certificate": self.certificate,
            "unclipped": self.unclipped,
            "log10_unclipped": math.log10(self.unclipped) if self.unclipped > 0 else None,
            "vacuous": self.vacuous,
            "gibbs_error": self.gibbs_error,
            "empirical_term": self.empirical_term,
            "kl": self.kl,
            "kl_over_m": self.kl / self.m,
            "complexity_term": self.complexity_term,
            "sigma": self.sigma,
            "sigma_per_layer": list(self.sigma_per_layer),
            "grid_index": self.grid_index,
            "profile": list(self.profile),
            "rescaling": list(self.rescaling),
            "posterior": self.posterior,
            "posterior_std_summary": self.posterior_std_summary,
            "distance_to_prior": self.distance_to_prior,
            "n_draws": self.n_draws,
            "passes": self.passes,
            "seed": self.seed,
            "delta": self.delta,
            "delta_mc": self.delta_mc,
            "delta_total": self.delta + self.delta_mc,
            "eta1": self.eta1,
            "m": self.m,
            "gibbs_test_error": self.gibbs_test_error,
            "n_test_draws": self.n_test_draws,
            "evaluated": self.evaluated,
            "timings_s": self.timings,
        }


# --------------------------------------------------------------------------------------
# Gaussian KL with outward rounding
# --------------------------------------------------------------------------------------


def gaussian_kl_diag(
    mean_q: Sequence[torch.Tensor],
    std_q: Sequence[torch.Tensor | float],
    mean_p: Sequence[torch.Tensor],
    std_p: Sequence[torch.Tensor | float],
) -> float:
    """``KL(N(mean_q, diag std_q^2) || N(mean_p, diag std_p^2))``, an upper bound of the exact value.

    Per coordinate ``(1/2) [ r^2 - 1 - ln r^2 + (mu_q - mu_p)^2 / s_p^2 ]`` with ``r = s_q / s_p``
    (the trace, log-determinant and mean terms of the Gaussian KL).  With ``e = r^2 - 1``
    computed as ``(s_q - s_p)(s_q + s_p) / s_p^2``, ``r^2 - 1 - ln r^2`` is evaluated as
    ``e - log1p(e)`` where ``|e| <= 1/2`` (no cancellation) and as ``e - 2 (ln s_q - ln s_p)``
    elsewhere; the sum is inflated by :data:`KL_SAFETY` (``2 n u`` above 9e6 parameters) and an absolute
    ``8 u sum (1 + |e| + |ln r^2| + |ln s_q| + |ln s_p|)`` (docs/theory.md section 14, Lemma 14.3).
    A coordinate with ``s_p = 0`` (a zero-noise layer) must
    have ``s_q = 0``: it adds 0 if ``mu_q = mu_p`` exactly and ``+inf`` otherwise.

    Args:
        mean_q, mean_p: per layer float tensors of equal shapes.
        std_q, std_p: per layer a tensor of the same shape or a scalar (>= 0).

    Returns:
        float (``+inf`` possible).

    Raises:
        ConfigError: shapes that differ, negative or non-finite standard deviations, or
            ``s_q > 0`` where ``s_p = 0``.
    """
    total = 0.0
    absolute = 0.0
    n_total = 0
    for k, (mq, sq, mp, sp) in enumerate(zip(mean_q, std_q, mean_p, std_p, strict=True), start=1):
        mq = torch.as_tensor(mq, dtype=torch.float64)
        mp = torch.as_tensor(mp, dtype=torch.float64)
        if mq.shape != mp.shape:
            raise ConfigError(f"layer {k}: posterior mean {tuple(mq.shape)} and prior mean {tuple(mp.shape)} differ")
        sq_t = torch.as_tensor(sq, dtype=torch.float64).expand(mq.shape)
        sp_t = torch.as_tensor(sp, dtype=torch.float64).expand(mq.shape)
        for name, t in (("posterior", sq_t), ("prior", sp_t)):
            if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
                raise ConfigError(f"layer {k}: the {name} standard deviations must be finite and >= 0")
        zero_p = sp_t == 0
        if bool(zero_p.any()):
            if bool((sq_t[zero_p] > 0).any()):
                raise ConfigError(f"layer {k}: the posterior has noise where the prior has none (KL infinite); "
                                  "give the prior noise on that layer or none to the posterior")
            if bool((mq[zero_p] != mp[zero_p]).any()):
                return math.inf
        pos = ~zero_p
        if not bool(pos.any()):
            continue
        if bool((sq_t[pos] == 0).any()):
            return math.inf  # a point mass against a Gaussian
        sqp, spp = sq_t[pos], sp_t[pos]
        n_total += int(sqp.numel())
        # no square of a standard deviation is formed (it may underflow or overflow: prior and
        # posterior standard deviations of any scale); d = r - 1, e = r^2 - 1 = d (d + 2)
        dr = (sqp - spp) / spp
        e = dr * (dr + 2.0)  # r^2 - 1, accurate to a few u relative to |e| (+inf only where r^2 overflows)
        log_r2 = 2.0 * (torch.log(sqp) - torch.log(spp))
        near = e.abs() <= 0.5
        g = torch.where(near, e - torch.log1p(e.clamp(min=-0.5)), e - log_r2)  # r^2 - 1 - ln r^2 >= 0
        mean_term = ((mq[pos] - mp[pos]) / spp) ** 2
        total += 0.5 * float(g.clamp(min=0).sum() + mean_term.sum())
        absolute += 8 * U64 * float((1.0 + e.abs() + log_r2.abs() + torch.log(sqp).abs() + torch.log(spp).abs()).sum())
    # a float sum of n non-negative terms errs by at most (n - 1) u relative: KL_SAFETY covers
    # n <= 9e6; larger networks get 2 n u
    return total * (1.0 + max(KL_SAFETY, 2.0 * n_total * U64)) + absolute


# --------------------------------------------------------------------------------------
# Monte-Carlo Gibbs error (local reparametrisation, float64, rounding-safe error counts)
# --------------------------------------------------------------------------------------


#: the CPU generator of torch keys its Mersenne twister with the low 32 bits of the seed only
#: (``manual_seed(s)`` and ``manual_seed(s + 2**32)`` give the same draws)
_TORCH_SEED_BITS = 0xFFFFFFFF


def _chunk_seeds(seed: int, stream: int, passes: int, n_chunks: int) -> list[list[int]]:
    """Torch seeds of the ``(pass, chunk)`` streams, pairwise distinct in the bits torch uses.

    The seed of ``(p, c)`` is ``SeedSequence([seed, stream, p, c])``'s first 64-bit word shifted
    right by one; a seed whose low 32 bits repeat an earlier one (pass-major order) is
    re-derived with an extra salt, so no two chunks share their normal draws (Lemma 14.2 needs
    independent draws).  The table for ``passes`` is a prefix of that for more passes, so the same
    ``(seed, stream)`` gives the same draws for any noise level.
    """
    seen: set[int] = set()
    out: list[list[int]] = []
    for p in range(passes):
        row = []
        for c in range(n_chunks):
            salt = 0
            while True:
                keys = [int(seed), int(stream), p, c] + ([salt] if salt else [])
                st = int(np.random.SeedSequence(keys).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))
                if st & _TORCH_SEED_BITS not in seen:
                    break
                salt += 1
            seen.add(st & _TORCH_SEED_BITS)
            row.append(st)
        out.append(row)
    return out


def gibbs_errors(
    net: ReLUNetwork,
    X: torch.Tensor,
    y: torch.Tensor,
    stds: Sequence[torch.Tensor | float],
    *,
    passes: int,
    seed: int,
    stream: int = 0,
    batch: int = 2048,
) -> list[int]:
    """Per pass, how many of the samples a freshly drawn ``V ~ N(W, diag stds^2)`` may misclassify.

    For every pass and sample an independent network is drawn, layer by layer (local
    reparametrisation): given the layer input ``h`` (with the constant 1 when the network has
    biases), ``z = W_k h + sqrt(sum_j s_kj^2 h_j^2) * xi``, ``xi ~ N(0, I)``, which has exactly the
    law of ``V_k h`` for ``V_k`` with independent ``N(W_k, s_k^2)`` entries.  Standard normals come
    from the stream ``(seed, stream, pass, chunk)``: the same ``seed`` and ``stream`` give the
    same ``xi`` for any ``stds`` (shared draws across noise levels); no two ``(pass, chunk)`` streams
    share a torch seed (:func:`_chunk_seeds`).

    A sample counts as an error when its computed margin is at most twice a rigorous bound of
    the float64 rounding error of the outputs (Higham's dot-product bound carried through the
    layers), so the count is never below that of the exact computation with the same ``xi``;
    a margin that is not a number (outputs beyond the float64 range) counts as an error.  The noise
    scale is computed with power-of-two scalings, so inputs, weights and standard deviations of any
    finite size are handled (docs/theory.md 14.2, "Any scale").

    Args:
        net: the posterior mean W (float64).
        X: ``(m, d_0)`` inputs; y: ``(m,)`` int64 labels.
        stds: per layer a scalar or a tensor of the augmented weight shape ``(d_k, d_{k-1} (+1))``.
        passes: number of passes (independent draws per sample).
        seed, stream: the random stream.
        batch: samples per chunk.

    Returns:
        ``passes`` integers, the error counts of each pass.
    """
    K = net.depth
    m = int(X.shape[0])
    Xd = X.reshape(m, -1).to(torch.float64)
    yd = as_labels(y)
    mats = [net.augmented_weight(k) for k in range(1, K + 1)]
    bias = net.has_bias
    # standard deviations as (mantissa part, power-of-two exponent): s = sn * 2^es with max sn in
    # [1/2, 1), so that no square below underflows or overflows for any scale of weights or inputs
    var_n: list[torch.Tensor | float] = []
    s_exp: list[int] = []
    s_max: list[float] = []
    for k in range(K):
        s = stds[k]
        st = s.to(torch.float64) if isinstance(s, torch.Tensor) else torch.tensor(float(s), dtype=torch.float64)
        top = float(st.max()) if st.numel() else 0.0
        es = int(torch.frexp(torch.tensor(top, dtype=torch.float64)).exponent) if top > 0 else 0
        sn = torch.ldexp(st, torch.tensor(-es))
        var_n.append((sn**2).T.contiguous() if st.ndim > 0 else float(sn) ** 2)  # (cols, rows) or scalar
        s_exp.append(es)
        s_max.append(top)
    abs_w = [w.abs().T.contiguous() for w in mats]
    wT = [w.T.contiguous() for w in mats]
    gam = [((w.shape[1] + 3) * U64) / (1 - (w.shape[1] + 3) * U64) for w in mats]
    counts = []
    seeds = _chunk_seeds(seed, stream, passes, len(range(0, m, batch)))
    with torch_threads(1):
        for p in range(passes):
            wrong = 0
            for ci, i in enumerate(range(0, m, batch)):
                g = torch.Generator().manual_seed(seeds[p][ci])
                h = Xd[i : i + batch]
                e = torch.zeros_like(h)
                for k in range(K):
                    ha = torch.cat([h, torch.ones(h.shape[0], 1, dtype=h.dtype)], dim=1) if bias else h
                    ea = torch.cat([e, torch.zeros(e.shape[0], 1, dtype=e.dtype)], dim=1) if bias else e
                    z = ha @ wT[k]
                    vw = var_n[k]
                    # row scale 2^eh with max |ha| in [1/2, 1): the squares neither underflow nor overflow
                    amax = ha.abs().amax(dim=1, keepdim=True)
                    eh = torch.where(amax > 0, torch.frexp(amax).exponent, torch.zeros_like(amax, dtype=torch.int32))
                    hn = torch.ldexp(ha, -eh)
                    if isinstance(vw, torch.Tensor):
                        var = (hn * hn) @ vw
                    else:
                        var = (hn * hn).sum(1, keepdim=True) * vw
                    xi = torch.randn(z.shape, generator=g, dtype=torch.float64)
                    ex = eh + s_exp[k]
                    noise = torch.ldexp(torch.sqrt(var) * xi, ex)
                    z = z + noise
                    # |zhat - z| <= gamma (|W| |hhat| + |noise|) + |W| e (+ the std's own error, in gamma);
                    # squares below the normal range flushed in var cost at most n 2^-1074 there, i.e.
                    # sqrt(n 2^-1074) 2^ex |xi| in the noise
                    err = (gam[k] * (ha.abs() @ abs_w[k] + noise.abs()) + ea @ abs_w[k]) * (1 + 1e-6) + 1e-300
                    if s_max[k] > 0:
                        n_cols = ha.shape[1]
                        err = err + torch.ldexp(math.sqrt(n_cols * 2.0**-1070) * xi.abs(), ex)
                        # the noise scale depends on |hhat| too: sqrt(sum s^2 h^2) is 1-Lipschitz in h per
                        # unit of max s; bound its change by the input error (||e||_2 <= ||e||_1)
                        err = err + s_max[k] * ea.sum(dim=1, keepdim=True) * xi.abs() * (1 + 1e-6)
                    if k < K - 1:
                        h = torch.relu(z)
                        e = err
                    else:
                        marg = margins_from_outputs(z, yd[i : i + batch])
                        room = 2.0 * err.amax(dim=1) + 4 * U64 * z.abs().amax(dim=1)
                        # a margin that is not a number (overflow) counts as an error
                        wrong += int((~(marg > room)).sum())
            counts.append(wrong)
    return counts


# --------------------------------------------------------------------------------------
# the certificate
# --------------------------------------------------------------------------------------


def _bound(mc_upper: float, comp: float) -> tuple[float, float]:
    klb = float(kl_inv_upper(mc_upper, comp))
    pins = mc_upper + math.sqrt(comp / 2.0)
    return (min(klb, pins) if klb < 1.0 else pins), klb


def _check_std(net: ReLUNetwork, std: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if not isinstance(std, (list, tuple)):
        raise ConfigError(f"posterior_std must be a list of per-layer tensors, got {type(std).__name__}")
    if len(std) != net.depth:
        raise ConfigError(f"posterior_std has {len(std)} layers but the network has {net.depth}")
    out = []
    for k in range(1, net.depth + 1):
        v = std[k - 1]
        try:
            raw = v.detach() if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"posterior_std of layer {k} is not an array of real numbers "
                              f"({type(v).__name__})") from None
        if raw.dtype == torch.bool or raw.is_complex() or not (raw.dtype.is_floating_point or raw.dtype in (
                torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
            raise ConfigError(f"posterior_std of layer {k} must hold real numbers, got dtype {raw.dtype}")
        s = raw.to(torch.float64)
        shape = tuple(net.augmented_weight(k).shape)
        if tuple(s.shape) != shape:
            raise ConfigError(f"posterior_std of layer {k} has shape {tuple(s.shape)}, the layer's (augmented) weight "
                              f"{shape}")
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ConfigError(f"posterior_std of layer {k} must be finite and >= 0")
        out.append(s)
    return out


def pbb_certificate(
    network: ReLUNetwork,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    prior: ReLUNetwork,
    posterior_std: Sequence[torch.Tensor] | None = None,
    delta: float = 0.025,
    delta_mc: float = 0.025,
    sigma_grid: SigmaGrid | None = None,
    passes: int = 10,
    seed: int | None = None,
    rescaling: Sequence[float] | None = None,
    start_j: int | None = None,
    profile_index: int = 0,
    max_evals: int = 8,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
) -> PBBResult:
    """The ``pbb`` certificate of the Gibbs predictor (THEORY.md 4.7; module docstring).

    Args:
        network: the posterior mean W.
        X, y: the bound sample (``(m, d_0)``, ``(m,)`` int64), never seen by the prior.
        prior: the prior mean W0 (fixed before the bound sample).
        posterior_std: ``None`` for the ``tied`` family ``Sigma_Q = Sigma_P = (sigma_j c)^2 I``,
            or per layer the learned standard deviations (augmented weight shapes).
        delta: failure probability of the PAC-Bayes step; delta_mc: of the Monte-Carlo step
            (the statement holds with probability >= 1 - delta - delta_mc).
        sigma_grid: the a-priori grid of prior standard deviations ``sigma_j c`` with weights
            (default :class:`SigmaGrid`); its profiles share the weight.
        passes: independent draws per bound sample (``N = passes * m``), fixed before drawing.
        seed: the draws' seed; ``None`` draws a fresh one from the operating system (recorded).
        rescaling: ``tied`` only, bias-free networks: certify the posterior mean ``lambda W`` (the
            same function), e.g. the parametrisation ``sparse`` certified; the draws are evaluated
            as ``W + U / lambda`` (docs/theory.md section 10) and the KL uses ``||lambda W - W0||``.
        start_j: ``tied``: first grid index evaluated (e.g. ``sparse``'s); default: where KL/m is
            about 0.05.  profile_index: which profile of the grid the ``tied`` search evaluates.
        max_evals: ``tied``: number of grid sigma values evaluated (a climb from ``start_j``).
        X_test, y_test: optional held-out data: the Gibbs predictor's test error is estimated with
            the same number of passes (an estimate, not part of the bound).

    Returns:
        :class:`PBBResult`.

    Raises:
        ConfigError: delta or delta_mc outside (0, 1), fewer than 8 bound samples, passes < 1,
            a bad seed, posterior_std not a list of real arrays of the layers' (augmented)
            shapes or with negative or non-finite entries, a posterior noise where
            the prior profile has none, rescaling of a network with biases or of the wrong
            length; ShapeMismatchError / DataError for data that does not fit.
    """
    t0 = time.perf_counter()
    delta = check_delta(delta)
    delta_mc = check_delta(delta_mc, "delta_mc")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ConfigError(f"pbb needs at least one pass of draws over the bound sample, got passes={passes!r}")
    if isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1:
        raise ConfigError(f"max_evals must be an integer >= 1, got {max_evals!r}")
    seed = secrets.randbits(62) if seed is None else check_seed(seed, "pbb seed")
    network.check_compatible(prior, "prior")
    X = torch.as_tensor(X)
    X = X.reshape(X.shape[0], -1) if X.ndim > 2 else X
    y = as_labels(y)
    network.check_data(X, y)
    m = int(X.shape[0])
    if m < MIN_BOUND_SAMPLES:
        raise ConfigError(f"the bound sample has {m} points; the PAC-Bayes-kl bound needs m >= {MIN_BOUND_SAMPLES}")
    grid = sigma_grid or SigmaGrid()
    K = network.depth
    profiles = grid.resolved_profiles(K)
    if not (0 <= profile_index < len(profiles)):
        raise ConfigError(f"profile_index {profile_index} outside the grid's {len(profiles)} profiles")
    n_prof = len(profiles)
    lam = tuple(float(v) for v in rescaling) if rescaling is not None else (1.0,) * K
    if len(lam) != K or any(not (v > 0 and math.isfinite(v)) for v in lam):
        raise ConfigError(f"rescaling must have {K} positive entries, got {list(lam)}")
    if network.has_bias and any(v != 1.0 for v in lam):
        raise ConfigError("rescaling applies to bias-free networks only")
    mean_q = [network.augmented_weight(k) * lam[k - 1] for k in range(1, K + 1)]
    mean_p = [prior.augmented_weight(k) for k in range(1, K + 1)]
    # upper bounds of ||lambda W_k - W0_k||_F^2 for the exact real product lambda W (rounding of the
    # product and the difference covered; 0 only where provably exact): the tied KL
    dist_sq = [frobenius_sq_distance_upper(network.augmented_weight(k), prior.augmented_weight(k), lam[k - 1])
               for k in range(1, K + 1)]
    dist = math.sqrt(sum(dist_sq))
    N = passes * m
    js = grid.js()
    evaluated: list[dict[str, Any]] = []
    test_err = None
    n_test = None

    if posterior_std is not None:
        if any(v != 1.0 for v in lam):
            raise ConfigError("rescaling is for the tied posterior only; a learned posterior is certified as given")
        std = _check_std(network, posterior_std)
        counts = gibbs_errors(network, X, y, std, passes=passes, seed=seed, stream=0)
        q = sum(counts) / N
        mc_up = float(kl_inv_upper(q, math.log(2.0 / delta_mc) / N))
        # search the prior grid (closed-form KL per layer; any choice is valid: union bound)
        best = None
        for pi, prof in enumerate(profiles):
            for j in js:
                sig = float(grid.sigma(j))
                kl = _kl_closed(mean_q, std, mean_p, [sig * c for c in prof])
                comp = (kl + math.log(2.0 * math.sqrt(m) / delta) - float(grid.log_weight(j, n_prof))) / m
                if best is None or comp < best[0]:
                    best = (comp, j, pi)
        assert best is not None
        _, j, pi = best
        prof = profiles[pi]
        sig = float(grid.sigma(j))
        kl = gaussian_kl_diag(mean_q, std, mean_p, [sig * c for c in prof])
        comp = (kl + math.log(2.0 * math.sqrt(m) / delta) - float(grid.log_weight(j, n_prof))) / m
        unc, _ = _bound(mc_up, comp)
        evaluated.append({"grid_index": int(j), "sigma": sig, "gibbs_error": q, "mc_upper": mc_up, "kl": kl,
                          "complexity": comp, "unclipped": unc})
        rec = evaluated[-1]
        summary = [{"min": float(s.min()), "median": float(s.median()), "max": float(s.max())} for s in std]
        if X_test is not None and y_test is not None:
            Xt = torch.as_tensor(X_test)
            Xt = Xt.reshape(Xt.shape[0], -1) if Xt.ndim > 2 else Xt
            tc = gibbs_errors(network, Xt, as_labels(y_test), std, passes=passes, seed=seed, stream=1)
            n_test = passes * int(Xt.shape[0])
            test_err = sum(tc) / n_test
        kind = "learned"
    else:
        prof = profiles[profile_index]
        noise_prof = [c / v for c, v in zip(prof, lam, strict=True)]
        # ln sum_k ||lambda W_k - W0_k||^2 / c_k^2, in logarithms (tiny or huge profile entries)
        logs = [math.log(d) - 2.0 * math.log(c) for d, c in zip(dist_sq, prof, strict=True) if c > 0 and d > 0]
        log_c2 = (max(logs) + math.log(sum(math.exp(v - max(logs)) for v in logs))) if logs else -math.inf
        if any(c == 0 and d != 0 for c, d in zip(prof, dist_sq, strict=True)):
            raise ConfigError("a layer without noise in the profile moved from the prior: the KL is infinite")
        if start_j is None:
            if math.isfinite(log_c2):
                log2_s0 = 0.5 * (log_c2 - math.log(2.0 * 0.05 * m)) / math.log(2.0)
                start_j = round(max(min(grid.steps_per_octave * (log2_s0 - math.log2(grid.sigma_ref)), 1e9), -1e9))
            else:
                start_j = -grid.steps_per_octave * 4
        start_j = int(min(max(start_j, grid.j_min), grid.j_max))
        cache: dict[int, dict[str, Any]] = {}

        def evaluate(j: int) -> dict[str, Any]:
            if j in cache:
                return cache[j]
            sig = float(grid.sigma(j))
            logw = float(grid.log_weight(j, n_prof))
            std_l = [sig * c for c in noise_prof]
            counts = gibbs_errors(network, X, y, std_l, passes=passes, seed=seed, stream=0)
            q = sum(counts) / N
            mc_up = float(kl_inv_upper(q, (math.log(2.0 / delta_mc) - logw) / N))
            # KL(N(lambda W, s^2) || N(W0, s^2)) = sum_k ||lambda W_k - W0_k||^2 / (2 s_k^2), rounded up;
            # layers without noise are unmoved (checked above) and add 0
            kl = gaussian_kl([d for d, c in zip(dist_sq, prof, strict=True) if c > 0],
                             [sig * c for c in prof if c > 0])
            comp = (kl + math.log(2.0 * math.sqrt(m) / delta) - logw) / m
            unc, _ = _bound(mc_up, comp)
            r = {"grid_index": int(j), "sigma": sig, "gibbs_error": q, "mc_upper": mc_up, "kl": kl,
                 "complexity": comp, "unclipped": unc}
            cache[j] = r
            return r

        best_r = evaluate(start_j)
        j, step = start_j, 8
        while len(cache) < max_evals:
            moved = False
            for cand_j in (j + step, j - step):
                if len(cache) >= max_evals or not (grid.j_min <= cand_j <= grid.j_max) or cand_j in cache:
                    continue
                r = evaluate(cand_j)
                if r["unclipped"] < best_r["unclipped"]:
                    best_r, j, moved = r, cand_j, True
                    break
            if not moved:
                if step == 1:
                    break
                step //= 2
        rec = best_r
        j = rec["grid_index"]
        sig = rec["sigma"]
        evaluated = sorted(cache.values(), key=lambda r: r["grid_index"])
        summary = [{"min": sig * c, "median": sig * c, "max": sig * c} for c in noise_prof]
        if X_test is not None and y_test is not None:
            Xt = torch.as_tensor(X_test)
            Xt = Xt.reshape(Xt.shape[0], -1) if Xt.ndim > 2 else Xt
            tc = gibbs_errors(network, Xt, as_labels(y_test), [sig * c for c in noise_prof], passes=passes,
                              seed=seed, stream=1)
            n_test = passes * int(Xt.shape[0])
            test_err = sum(tc) / n_test
        kind = "tied"
    unc = float(rec["unclipped"])
    return PBBResult(
        method="pbb", certificate=min(1.0, unc), unclipped=unc, vacuous=bool(unc >= 1.0),
        gibbs_error=float(rec["gibbs_error"]), empirical_term=float(rec["mc_upper"]), kl=float(rec["kl"]),
        complexity_term=float(rec["complexity"]), sigma=float(sig), sigma_per_layer=tuple(sig * c for c in prof),
        grid_index=int(j), profile=tuple(float(c) for c in prof), rescaling=lam, posterior=kind,
        distance_to_prior=dist, n_draws=N, passes=passes, seed=int(seed), delta=delta, delta_mc=delta_mc, m=m,
        gibbs_test_error=test_err, n_test_draws=n_test, posterior_std_summary=summary, evaluated=evaluated,
        timings={"total": time.perf_counter() - t0},
    )


def _kl_closed(mean_q: Sequence[torch.Tensor], std_q: Sequence[torch.Tensor], mean_p: Sequence[torch.Tensor],
               std_p: Sequence[float]) -> float:
    """Closed-form Gaussian KL with a scalar prior std per layer (for the grid search only; the
    reported value is recomputed by :func:`gaussian_kl_diag`)."""
    tot = 0.0
    for mq, sq, mp, sp in zip(mean_q, std_q, mean_p, std_p, strict=True):
        if sp == 0:
            if bool((sq > 0).any()) or bool((mq != mp).any()):
                return math.inf
            continue
        if bool((sq == 0).any()):
            return math.inf
        n = sq.numel()
        # sums of squares in logarithms (any scale of the standard deviations, never NaN)
        log_sp = math.log(sp)
        terms = []
        for v in (sq, mq - mp):
            top = float(v.abs().max())
            if top > 0:
                ex = int(torch.frexp(torch.tensor(top, dtype=torch.float64)).exponent)
                ssq = float((torch.ldexp(v, torch.tensor(-ex)) ** 2).sum())
                terms.append(math.exp(min(math.log(ssq) + 2 * ex * math.log(2.0) - 2 * log_sp, 709.0)))
        lg = 2.0 * float(torch.log(sq).sum())
        tot += 0.5 * (sum(terms) - n + 2 * n * log_sp - lg)
    return tot


__all__ = ["STOCHASTIC_LABEL", "PBBResult", "gaussian_kl_diag", "gibbs_errors", "pbb_certificate"]
