"""Training objectives: plain ERM, a PAC-Bayes objective of the stochastic predictor (``pbb``),
and a differentiable surrogate of this project's deterministic certificate (``certificate``).

Nothing here enters any bound: every trained network is certified afterwards by the
unchanged certificates (THEORY.md 4.2, 4.5, 4.7), so training may use any surrogate, any
data and any lower estimate (docs/theory.md section 13).  What a certificate needs from
training is recorded in :class:`~sparsebound.training.TrainConfig` (the objective, the target
noise level, the profile, the frozen layers) and in the training record.

* ``erm``: cross-entropy (the library's default training).
* ``pbb``: the posterior ``Q = N(W, diag s^2)`` with a learned standard deviation ``s`` per
  parameter (``s = softplus(rho)``), trained by minimising the PAC-Bayes bound of the Gibbs
  predictor with the prior ``P = N(W0, (sigma_P c_k)^2 I)``: the "quadratic" objective
  ``(sqrt(L + C/2) + sqrt(C/2))^2`` or the "classic" ``L + sqrt(C/2)``, ``C = (KL(Q||P) +
  ln(2 sqrt(m)/delta)) / m``, ``L`` the bounded cross-entropy ``-ln(max(p_y, p_min)) / ln(1/p_min)``
  of one reparametrised draw per sample (local reparametrisation: the pre-activations of a
  Gaussian layer are Gaussian given its input).  Source: Perez-Ortiz, Rivasplata, Shawe-Taylor &
  Szepesvari, "Tighter risk certificates for neural networks", JMLR 22(227), 2021, eqs. (8)-(9)
  and section 5; Kingma, Salimans & Welling (2015) for the local reparametrisation.
* ``certificate``: the deterministic network W, trained by minimising the same quadratic form
  with ``C`` the KL of the certificate at a target noise level ``sigma_t``,
  ``sum_k ||W_k - W0_k||_F^2 / (2 sigma_t^2 c_k^2)``, and ``L`` the bounded cross-entropy of the
  *noise-robust logits* ``f(x) + kappa(x) (1 - e_y)``: every competing class is raised by
  ``kappa = sqrt(2) (D_K + E_K)``, the recursions of THEORY.md 4.1 at the dense level (s = 0)
  with the full spectral norms (one power-iteration step per mini-batch, persistent vectors)
  in place of the reduced norms.  A sample's robust logits classify it correctly iff
  ``M > sqrt(2) (D_K + E_K)``, the output condition of the certificate at ``sigma_t`` (with
  these upper bounds of the reduced norms when the power iteration has converged).  With
  ``objective_m = 0`` there is no KL term (for a prior, which has no prior of its own) and the
  loss is the plain cross-entropy of the robust logits; ``objective_ramp_epochs`` ramps the
  noise level of the robust logits up over the first epochs (as in interval-bound training,
  Gowal et al. 2018).

Layers listed in ``frozen_layers`` never move (they stay bit-identical to the start network);
a profile entry ``c_k = 0`` requires layer k frozen (its KL is 0 only then; docs/theory.md
section 12).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as nnf

from .errors import ConfigError

OBJECTIVES: tuple[str, ...] = ("erm", "pbb", "certificate")
#: prior standard deviations the ``pbb`` objective accepts (sigma^2 a normal float32, softplus invertible)
PBB_SIGMA_RANGE: tuple[float, float] = (2.0**-60, 2.0**60)
BOUND_FORMS: tuple[str, ...] = ("quad", "classic")


def _tuple(v: Any) -> tuple:
    return tuple(v) if v is not None else ()


def check_objective(config: Any, widths: Sequence[int]) -> None:
    """Validate the objective fields of a :class:`~sparsebound.training.TrainConfig` for a
    network of ``widths`` ``(d_0, ..., d_K)`` before any work.

    Raises:
        ConfigError: unknown objective or bound form, a non-positive target sigma for
            ``pbb``/``certificate``, a profile of the wrong length or with negative entries,
            a zero profile entry on a layer that is not frozen, frozen layers out of range or
            all layers frozen, ``objective_m < 0``, delta or p_min outside (0, 1).
    """
    K = len(widths) - 1
    obj = config.objective
    if obj not in OBJECTIVES:
        raise ConfigError(f"unknown training objective {obj!r}; choose from {', '.join(OBJECTIVES)}")
    frozen = _tuple(config.frozen_layers)
    for k in frozen:
        if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= K):
            raise ConfigError(f"frozen layers must be layer numbers in 1..{K}, got {list(frozen)}")
    if len(set(frozen)) >= K:
        raise ConfigError("every layer is frozen: nothing to train; unfreeze at least one layer")
    if obj == "erm":
        return
    sig = config.objective_sigma
    if not (isinstance(sig, (int, float)) and sig > 0 and math.isfinite(sig)):
        raise ConfigError(f"objective {obj!r} needs a positive target noise level objective_sigma, got {sig!r}; "
                          "e.g. 0.02")
    prof = _tuple(config.objective_profile)
    if obj == "pbb":
        lo, hi = PBB_SIGMA_RANGE
        bad = [s for s in (float(sig) * float(c) for c in (prof or (1.0,))) if s != 0 and not (lo <= s <= hi)]
        if bad:
            raise ConfigError(f"objective 'pbb' needs prior standard deviations in [2^-60, 2^60] (their squares must "
                              f"be normal float32 numbers in training), got {bad[0]!r}; e.g. --pbb-sigma 0.01")
    if prof:
        if len(prof) != K:
            raise ConfigError(f"objective profile {list(prof)} has {len(prof)} entries but the network has {K} layers")
        if any(not (isinstance(c, (int, float)) and c >= 0 and math.isfinite(c)) for c in prof):
            raise ConfigError(f"objective profile {list(prof)} must have finite entries >= 0")
        zero_moving = [k + 1 for k, c in enumerate(prof) if c == 0 and (k + 1) not in frozen]
        if zero_moving:
            raise ConfigError(f"layer(s) {zero_moving} have profile 0 (no noise) but are not frozen; their KL would "
                              "be infinite: add them to frozen_layers")
        if all(c == 0 for c in prof):
            raise ConfigError("the objective profile is all zeros; give at least one layer noise")
    if not (isinstance(config.objective_m, int) and config.objective_m >= 0):
        raise ConfigError(f"objective_m (bound-sample size of the objective) must be an integer >= 0, "
                          f"got {config.objective_m!r}")
    if not (0.0 < config.objective_delta < 1.0):
        raise ConfigError(f"objective_delta must lie in (0, 1), got {config.objective_delta}")
    if config.objective_bound not in BOUND_FORMS:
        raise ConfigError(f"objective_bound must be one of {', '.join(BOUND_FORMS)}, got {config.objective_bound!r}")
    if not (0.0 < config.objective_pmin < 1.0):
        raise ConfigError(f"objective_pmin must lie in (0, 1), got {config.objective_pmin}")
    kls = getattr(config, "objective_kl_sigma", 0.0)
    if not (isinstance(kls, (int, float)) and kls >= 0 and math.isfinite(kls)):
        raise ConfigError(f"objective_kl_sigma must be a number >= 0 (0: objective_sigma), got {kls!r}")
    ramp = getattr(config, "objective_ramp_epochs", 0)
    if isinstance(ramp, bool) or not isinstance(ramp, int) or ramp < 0:
        raise ConfigError(f"objective_ramp_epochs must be an integer >= 0, got {ramp!r}")


def resolved_profile(config: Any, depth: int) -> tuple[float, ...]:
    """The per-layer noise multipliers of the objective (all ones when none are given)."""
    prof = _tuple(config.objective_profile)
    return tuple(float(c) for c in prof) if prof else (1.0,) * depth


def bounded_cross_entropy(logits: torch.Tensor, y: torch.Tensor, pmin: float) -> torch.Tensor:
    """``-ln(max(p_y, p_min)) / ln(1/p_min)`` per sample, in [0, 1] (Perez-Ortiz et al. 2021, sec. 5).

    Args:
        logits: ``(B, C)``; y: ``(B,)`` int64; pmin: in (0, 1).
    """
    lp = torch.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    lo = math.log(pmin)
    return -torch.clamp(lp, min=lo) / (-lo)


def pac_bayes_objective(emp: torch.Tensor, kl: torch.Tensor, m: int, delta: float, form: str) -> torch.Tensor:
    """Differentiable PAC-Bayes objective: ``quad`` ``(sqrt(L + C/2) + sqrt(C/2))^2`` or ``classic``
    ``L + sqrt(C/2)`` with ``C = (KL + ln(2 sqrt(m)/delta)) / m`` (Perez-Ortiz et al. 2021, eqs. 8-9)."""
    c = (kl + math.log(2.0 * math.sqrt(m) / delta)) / m
    if form == "quad":
        return (torch.sqrt(emp + c / 2.0) + torch.sqrt(c / 2.0)) ** 2
    return emp + torch.sqrt(c / 2.0)


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [mod for mod in model.modules() if isinstance(mod, nn.Linear)]


class Objective:
    """One training objective bound to a model (see the module docstring).

    ``parameters()`` are the trainable tensors, ``loss(x, y)`` the mini-batch objective,
    ``after_step()`` runs after each optimiser step, ``record()`` describes the final state,
    ``posterior_std()`` the learned standard deviations (``pbb``; else None).
    """

    def __init__(self, model: nn.Module, anchor: nn.Module, config: Any, n_data: int) -> None:
        self.model = model
        self.config = config
        self.lins = _linears(model)
        self.K = len(self.lins)
        self.frozen = {int(k) for k in _tuple(config.frozen_layers)}
        for k, lin in enumerate(self.lins, start=1):
            if k in self.frozen:
                for p in lin.parameters():
                    p.requires_grad_(False)
        self.anchor = [[p.detach().clone() for p in lin.parameters()] for lin in _linears(anchor)]
        self.kind = config.objective
        self.profile = resolved_profile(config, self.K)
        self.m = int(config.objective_m) if config.objective_m else 0
        self.n_data = n_data
        self.last: dict[str, float] = {}

    def parameters(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def mean_parameters(self) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """Triples (layer index k, trainable mean parameter, its anchor value)."""
        out = []
        for k, (lin, anc) in enumerate(zip(self.lins, self.anchor, strict=True), start=1):
            for p, a in zip(lin.parameters(), anc, strict=True):
                if p.requires_grad:
                    out.append((k, p, a))
        return out

    def prox_terms(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """``(parameter, anchor, lambda)``: the training loop applies the exact proximal step of
        ``lambda ||p - anchor||^2`` after each optimiser step (``lambda = config.proximal``)."""
        lam = float(self.config.proximal)
        return [(p, a, lam) for _, p, a in self.mean_parameters()] if lam > 0 else []

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nnf.cross_entropy(self.model(x), y)

    def after_step(self) -> None:
        return None

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch (0-based)."""
        del epoch

    def record(self) -> dict[str, Any]:
        return {"objective": self.kind, "frozen_layers": sorted(self.frozen), **self.last}

    def posterior_std(self) -> list[torch.Tensor] | None:
        return None

    def _dist_sq(self) -> list[torch.Tensor]:
        """``||[W_k|b_k] - [W0_k|b0_k]||_F^2`` per layer (differentiable)."""
        out = []
        for lin, anc in zip(self.lins, self.anchor, strict=True):
            out.append(sum(((p - a) ** 2).sum() for p, a in zip(lin.parameters(), anc, strict=True)))
        return out


class CertificateObjective(Objective):
    """The ``certificate`` objective (module docstring)."""

    def __init__(self, model: nn.Module, anchor: nn.Module, config: Any, n_data: int) -> None:
        super().__init__(model, anchor, config, n_data)
        from .noise import NoiseConstants

        widths = [self.lins[0].in_features] + [lin.out_features for lin in self.lins]
        has_bias = self.lins[0].bias is not None
        nc = NoiseConstants.build(widths, None, has_bias=has_bias)  # dense level s = 0
        self.g = [float(lc.g[0]) for lc in nc.layers]
        self.gp = [float(lc.gp[0]) for lc in nc.layers]
        self.mu = [float(lc.mu[0, 0]) for lc in nc.layers]
        self.sigma = [float(config.objective_sigma) * c for c in self.profile]
        self.ramp = int(getattr(config, "objective_ramp_epochs", 0) or 0)
        self.kl_multiplier = 0.0
        kls = float(getattr(config, "objective_kl_sigma", 0.0) or 0.0) or float(config.objective_sigma)
        self.kl_sigma = [kls * c for c in self.profile]
        self.scale = 1.0
        gen = torch.Generator().manual_seed(int(config.seed) + 7919)
        dev, dt = self.lins[0].weight.device, self.lins[0].weight.dtype
        self.u = [torch.randn(lin.out_features, generator=gen).to(dev, dt) for lin in self.lins]
        self.v = [torch.randn(lin.in_features + (1 if has_bias else 0), generator=gen).to(dev, dt)
                  for lin in self.lins]
        for _ in range(30):
            self._power_step()

    def _aug(self, lin: nn.Linear) -> torch.Tensor:
        return torch.cat([lin.weight, lin.bias[:, None]], dim=1) if lin.bias is not None else lin.weight

    @torch.no_grad()
    def _power_step(self) -> None:
        for k, lin in enumerate(self.lins):
            W = self._aug(lin)
            v = W.T @ self.u[k]
            self.v[k] = v / v.norm().clamp_min(1e-30)
            u = W @ self.v[k]
            self.u[k] = u / u.norm().clamp_min(1e-30)

    def after_step(self) -> None:
        self._power_step()

    def start_epoch(self, epoch: int) -> None:
        self.scale = min(1.0, (epoch + 1) / self.ramp) if self.ramp > 0 else 1.0

    def robust_logits(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, kappa)``: the network's outputs and ``sqrt(2) (D_K + E_K)`` at ``sigma_t``
        (dense level, spectral norms by power iteration; differentiable)."""
        h = x
        B = x.shape[0]
        D = torch.zeros(B, dtype=x.dtype, device=x.device)
        E = torch.zeros_like(D)
        for k, lin in enumerate(self.lins):
            W = self._aug(lin)
            beta = self.u[k] @ W @ self.v[k]
            n2 = (h * h).sum(1) + (1.0 if lin.bias is not None else 0.0)
            n = torch.sqrt(n2 + 1e-12)
            s = self.sigma[k] * self.scale
            D, E = beta * D + s * self.g[k] * (n + D), (beta + s * self.mu[k]) * E + s * self.gp[k] * (n + D + E)
            z = lin(h)
            h = torch.relu(z) if k < self.K - 1 else z
        return h, math.sqrt(2.0) * (D + E)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out, kappa = self.robust_logits(x, y)
        robust = out + kappa[:, None] * (1.0 - nnf.one_hot(y, out.shape[1]).to(out.dtype))
        if not self.m:
            # no KL term (e.g. a prior): the plain cross-entropy of the robust logits (the bounded
            # form only serves the [0, 1] loss of the PAC-Bayes objective, and its clamp stops
            # the gradient of hopeless samples)
            ce = nnf.cross_entropy(robust, y)
            self.last = {"surrogate": float(ce.detach())}
            return ce
        emp = bounded_cross_entropy(robust, y, self.config.objective_pmin).mean()
        # The KL term sum ||W_k - W0_k||^2 / (2 sigma_k^2) is stiff (curvature 1/(sigma^2 m)): plain
        # gradient steps on it diverge for small sigma.  Proximal gradient instead: the gradient
        # step sees the data term only, and the KL enters through the exact proximal step of its
        # linearisation, weight mu = d objective / d KL at the current point (prox_terms).
        with torch.no_grad():
            kl_val = sum(float(d) / (2.0 * s * s) for d, s in zip(self._dist_sq(), self.kl_sigma, strict=True)
                         if s > 0)
        kl_t = torch.tensor(float(kl_val), dtype=emp.dtype, device=emp.device, requires_grad=True)
        f = pac_bayes_objective(emp.detach(), kl_t, self.m, self.config.objective_delta, self.config.objective_bound)
        (mu,) = torch.autograd.grad(f, kl_t)
        self.kl_multiplier = float(mu)
        obj = pac_bayes_objective(emp, kl_t.detach(), self.m, self.config.objective_delta, self.config.objective_bound)
        self.last = {"surrogate": float(emp.detach()), "kl": float(kl_val), "objective_value": float(obj.detach())}
        return obj

    def prox_terms(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        if not self.m:
            return super().prox_terms()
        out = []
        for k, p, a in self.mean_parameters():
            s = self.kl_sigma[k - 1]
            lam = float(self.config.proximal) + (self.kl_multiplier / (2.0 * s * s) if s > 0 else 0.0)
            out.append((p, a, lam))
        return out


class PBBObjective(Objective):
    """The ``pbb`` objective (module docstring): learned per-parameter standard deviations."""

    def __init__(self, model: nn.Module, anchor: nn.Module, config: Any, n_data: int) -> None:
        super().__init__(model, anchor, config, n_data)
        if not self.m:
            self.m = n_data
        self.prior_std = [float(config.objective_sigma) * c for c in self.profile]
        self.rho: list[list[torch.Tensor] | None] = []
        for k, lin in enumerate(self.lins, start=1):
            s = self.prior_std[k - 1]
            if k in self.frozen or s == 0:
                self.rho.append(None)
                continue
            # softplus^-1 (the second form for large s, where expm1 overflows)
            r0 = math.log(math.expm1(s)) if s <= 20.0 else s + math.log(-math.expm1(-s))
            self.rho.append([torch.full_like(p, r0).requires_grad_(True) for p in lin.parameters()])
        self.gen = torch.Generator(device=self.lins[0].weight.device).manual_seed(int(config.seed) + 104729)

    def parameters(self) -> list[torch.Tensor]:
        out = super().parameters()
        for r in self.rho:
            if r is not None:
                out.extend(r)
        return out

    def _stds(self, k: int) -> list[torch.Tensor]:
        r = self.rho[k]
        assert r is not None
        return [nnf.softplus(t) for t in r]

    def kl(self) -> torch.Tensor:
        """``KL(Q || P)`` with ``P = N(W0, (sigma_P c_k)^2 I)`` (trace, log-determinant, mean terms)."""
        tot = torch.zeros((), dtype=self.lins[0].weight.dtype, device=self.lins[0].weight.device)
        for k, lin in enumerate(self.lins):
            if self.rho[k] is None:
                continue
            sp2 = self.prior_std[k] ** 2
            for p, a, s in zip(lin.parameters(), self.anchor[k], self._stds(k), strict=True):
                s2 = s * s
                tot = tot + 0.5 * ((s2 + (p - a) ** 2) / sp2 - 1.0 + math.log(sp2) - torch.log(s2)).sum()
        return tot

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for k, lin in enumerate(self.lins):
            z = lin(h)
            if self.rho[k] is not None:
                stds = self._stds(k)
                var = (h * h) @ (stds[0] ** 2).T
                if lin.bias is not None:
                    var = var + (stds[1] ** 2)[None, :]
                eps = torch.randn(z.shape, generator=self.gen, device=z.device, dtype=z.dtype)
                z = z + torch.sqrt(var + 1e-30) * eps
            h = torch.relu(z) if k < self.K - 1 else z
        emp = bounded_cross_entropy(h, y, self.config.objective_pmin).mean()
        kl = self.kl()
        obj = pac_bayes_objective(emp, kl, self.m, self.config.objective_delta, self.config.objective_bound)
        self.last = {"surrogate": float(emp.detach()), "kl": float(kl.detach()), "objective_value": float(obj.detach())}
        return obj

    def posterior_std(self) -> list[torch.Tensor] | None:
        """Per layer the learned standard deviations in the augmented shape ``(d_k, d_{k-1} (+1))``
        (float64, CPU); zeros for frozen layers."""
        out = []
        for k, lin in enumerate(self.lins):
            shape = (lin.out_features, lin.in_features + (1 if lin.bias is not None else 0))
            if self.rho[k] is None:
                out.append(torch.zeros(shape, dtype=torch.float64))
                continue
            with torch.no_grad():
                s = self._stds(k)
                t = torch.cat([s[0], s[1][:, None]], dim=1) if lin.bias is not None else s[0]
            out.append(t.detach().to("cpu", torch.float64))
        return out


def prior_split_sigma_star(
    net: Any,
    X: torch.Tensor,
    y: torch.Tensor,
    profile: Sequence[float] | None = None,
    *,
    quantile: float = 0.5,
) -> float:
    """A quantile of ``sigma*(x)`` of ``net`` over ``(X, y)`` (THEORY.md 4.1, profile ``c``),
    with the cheap tables of ``sparse`` (exact omega, uniform reduced-norm bounds, no rescaling).

    Meant for the prior split: computed from S_prior (and the prior) only, the value may set
    any a-priori choice of the bound sample's certificate or of training (target sigma,
    THEORY.md 4.6; docs/theory.md section 12) at no cost in the bound.

    Raises:
        ConfigError: quantile outside [0, 1]; data that does not fit (see ``certify``).
    """
    from .certification import cheap_inputs, max_certifiable_sigma

    if not (0.0 <= quantile <= 1.0):
        raise ConfigError(f"quantile must lie in [0, 1], got {quantile}")
    X = torch.as_tensor(X)
    X = X.reshape(X.shape[0], -1) if X.ndim > 2 else X
    inp = cheap_inputs(net, X, y)
    prof = tuple(float(c) for c in profile) if profile is not None else (1.0,) * net.depth
    star = max_certifiable_sigma(inp, prof)
    return float(torch.quantile(star.sigma_star, quantile))


def build_objective(model: nn.Module, anchor: nn.Module, config: Any, n_data: int) -> Objective:
    """The :class:`Objective` of ``config.objective`` for ``model`` (trained in place) and the
    KL anchor ``anchor`` (the prior mean; ignored by ``erm``)."""
    if config.objective == "certificate":
        return CertificateObjective(model, anchor, config, n_data)
    if config.objective == "pbb":
        return PBBObjective(model, anchor, config, n_data)
    return Objective(model, anchor, config, n_data)


__all__ = [
    "BOUND_FORMS",
    "OBJECTIVES",
    "CertificateObjective",
    "Objective",
    "PBBObjective",
    "bounded_cross_entropy",
    "build_objective",
    "check_objective",
    "pac_bayes_objective",
    "prior_split_sigma_star",
    "resolved_profile",
]
