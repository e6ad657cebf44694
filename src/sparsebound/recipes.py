"""Training recipes of ``sparsebound train --objective`` and ``reproduce --objectives`` (issue 12).

A recipe turns a data-dependent prior trained by ``erm`` on ``S_prior`` (today's prior,
THEORY.md 4.4) into the prior and the posterior whose certificate is computed:

* ``erm``: today's protocol (the posterior continues ``erm`` training from the prior on all
  of ``S``); nothing here.
* ``certificate`` (the recipe measured in research, protocol P2 variant "C"):

  1. ``s0 = prior_split_sigma_star(prior_erm, S_prior)``, the median ``sigma*(x)`` of the erm
     prior over ``S_prior`` (full-noise profile, cheap tables of ``sparse``), and the target
     ``sigma_t = target_factor * s0`` (``target_factor`` an a-priori constant, default 6);
  2. the **robust prior**: the erm prior trained further on ``S_prior`` only with the
     ``certificate`` objective at ``sigma_t`` (no KL term; lr 0.01, the noise level ramped up
     over the first 60% of ``prior_epochs``).  It saw only ``S_prior``, so it is a valid prior
     (docs/theory.md 12.1) and it IS the prior of the certificate;
  3. ``certificate_noise="last"`` (default): the posterior keeps the robust prior's hidden
     layers bit for bit (``frozen_layers = 1..K-1``) and trains its output layer by ``erm``
     on all of ``S`` with the proximal penalty ``proximal * ||W - W0||^2``; the certificate
     uses the zero-noise profile ``(0, ..., 0, 1)`` (docs/theory.md 12.2: only the output
     layer carries noise, and only it moved).  ``"all"`` (variant "E"): the posterior is
     trained from the robust prior with the ``certificate`` objective at ``sigma_t`` and its
     KL term at ``kls = prior_split_sigma_star(robust prior, S_prior)`` with ``m = |S_bound|``;
     every layer moves and carries noise (full-noise profile).
* ``pbb``: the posterior is trained from the erm prior with the PAC-Bayes objective of the
  Gibbs predictor (``objective="pbb"``, prior standard deviation ``pbb_sigma``, fixed a
  priori, default 0.01; ``m = |S_bound|``); its learned per-parameter standard deviations are
  saved with the checkpoint and certified by the ``pbb`` method (a bound on the randomised
  predictor, not on the deployed network).

Every choice is computed from ``S_prior`` or fixed here before any data is seen, so it costs
nothing in the bound (docs/theory.md 12.1); the objectives never enter a bound (section 13).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "CERTIFICATE_NOISE",
    "OBJECTIVE_RECIPES",
    "RECIPE_LR",
    "ROBUST_PRIOR_LR",
    "ObjectiveOptions",
    "certificate_profile",
    "default_prior_epochs",
    "posterior_config",
    "robust_prior",
]

#: the objectives of ``train --objective`` / ``reproduce --objectives``.
OBJECTIVE_RECIPES: tuple[str, ...] = ("erm", "certificate", "pbb")
#: which layers the ``certificate`` recipe's posterior moves and its certificate puts noise on.
CERTIFICATE_NOISE: tuple[str, ...] = ("last", "all")
#: learning rate of the robust prior (research protocol P2, fixed a priori).
ROBUST_PRIOR_LR = 0.01
#: learning rate of posteriors trained with the certificate or pbb objective (protocol P2).
RECIPE_LR = 0.01
#: share of the robust prior's epochs over which its noise level is ramped up.
RAMP_SHARE = 0.6
#: the robust prior is kept only if its training error on S_prior is at most the erm prior's plus this
#: (otherwise the erm prior stays the prior: a rule on S_prior only, so it costs nothing in the bound;
#: the certificate objective can collapse a network that fits S_prior poorly, e.g. after few epochs).
ROBUST_ACCEPT_MARGIN = 0.05
#: the robust prior's epochs on mnist5k-sized S_prior (2500 points); scaled by data size.
REFERENCE_PRIOR_EPOCHS = 100
REFERENCE_PRIOR_POINTS = 2500


def default_prior_epochs(n_prior: int) -> int:
    """Epochs of the robust prior when ``--prior-epochs`` is not given: 100 on 2500 prior
    points (mnist5k at alpha 0.5), the same number of sample passes on other sizes, clamped to
    [10, 100] (e.g. 10 on full Fashion-MNIST's 30,000 prior points)."""
    n = max(1, int(n_prior))
    return int(min(REFERENCE_PRIOR_EPOCHS, max(10, round(REFERENCE_PRIOR_EPOCHS * REFERENCE_PRIOR_POINTS / n))))


@dataclass(frozen=True)
class ObjectiveOptions:
    """The settings of a training recipe (all recorded in the checkpoint).

    Attributes:
        objective: ``erm``, ``certificate`` or ``pbb``.
        target_factor: ``certificate``: ``sigma_t = target_factor * s0`` (a-priori constant).
        prior_epochs: ``certificate``: epochs of the robust prior (``None``:
            :func:`default_prior_epochs` of the prior split's size).
        certificate_noise: ``certificate``: ``last`` (only the output layer moves and carries
            noise) or ``all`` (every layer; variant "E").
        proximal: ``certificate``/``last``: lambda of the posterior's proximal penalty.
        pbb_sigma: ``pbb``: the prior standard deviation sigma_P of the objective (a priori).

    Raises:
        ConfigError: an unknown objective or noise mode, a non-positive factor, sigma or
            epoch count, a negative lambda.
    """

    objective: str = "erm"
    target_factor: float = 6.0
    prior_epochs: int | None = None
    certificate_noise: str = "last"
    proximal: float = 1.0
    pbb_sigma: float = 0.01

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVE_RECIPES:
            raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVE_RECIPES)}, got {self.objective!r}")
        if self.certificate_noise not in CERTIFICATE_NOISE:
            raise ConfigError(f"--certificate-noise must be one of {', '.join(CERTIFICATE_NOISE)}, got "
                              f"{self.certificate_noise!r}")
        for name in ("target_factor", "pbb_sigma"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (0 < v < math.inf):
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive number, got {v!r}")
        from .objectives import PBB_SIGMA_RANGE

        if not (PBB_SIGMA_RANGE[0] <= self.pbb_sigma <= PBB_SIGMA_RANGE[1]):
            raise ConfigError(f"--pbb-sigma must lie in [2^-60, 2^60] (about 8.7e-19 to 1.2e18; its square must be a "
                              f"normal float32 number in training), got {self.pbb_sigma!r}; e.g. 0.01")
        if self.prior_epochs is not None and (isinstance(self.prior_epochs, bool)
                                              or not isinstance(self.prior_epochs, numbers.Integral)
                                              or self.prior_epochs < 1):
            raise ConfigError(f"--prior-epochs must be a positive integer, got {self.prior_epochs!r}")
        if isinstance(self.proximal, bool) or not isinstance(self.proximal, numbers.Real) or not self.proximal >= 0:
            raise ConfigError(f"--proximal must be a number >= 0, got {self.proximal!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def certificate_profile(opts: ObjectiveOptions, depth: int) -> tuple[float, ...] | None:
    """The sigma profile the recipe's certificate uses: ``(0, ..., 0, 1)`` for the
    ``certificate`` recipe with ``last`` noise (docs/theory.md 12.2), else ``None`` (the
    default full-noise profile)."""
    if opts.objective == "certificate" and opts.certificate_noise == "last":
        return (0.0,) * (depth - 1) + (1.0,)
    return None


def robust_prior(prior_erm: Any, s_prior: Any, opts: ObjectiveOptions, *, seed: int, base: Any,
                 test: Any = None, progress: bool = False) -> tuple[Any, dict[str, Any], Any, Any]:
    """Steps 1-2 of the ``certificate`` recipe, on ``S_prior`` only.

    Args:
        prior_erm: the erm prior (a ``ReLUNetwork`` trained on ``S_prior``).
        s_prior: the prior split (``Dataset``).
        opts: the recipe's options.
        seed: batch-order seed.
        base: the run's ``TrainConfig`` (batch size, momentum, device are taken from it).

    Returns:
        ``(prior network, rules, TrainConfig used, TrainResult)``: the robust prior, or the erm
        prior when the robust one fits S_prior worse by more than :data:`ROBUST_ACCEPT_MARGIN`
        (``rules["robust_prior_accepted"]``), or, when ``s0 = 0``, the erm prior with ``None``
        for the configuration and the result (nothing trained); ``rules`` holds ``s0``, ``sigma_t``,
        ``target_factor``, ``prior_epochs`` and how each was computed.
    """
    from .objectives import prior_split_sigma_star
    from .training import TrainConfig, train

    s0 = prior_split_sigma_star(prior_erm, s_prior.X, s_prior.y)
    if not (s0 > 0 and math.isfinite(s0)):
        # no target can be set (half of S_prior or more is not certified at any sigma): the erm
        # prior stays the prior (a rule on S_prior only)
        return prior_erm, {"s0": s0, "s0_rule": "median sigma*(x) of the erm prior over S_prior",
                           "robust_prior_accepted": False,
                           "accept_rule": "s0 = 0 (the erm prior certifies at most half of S_prior): no robust prior "
                                          "is trained; the erm prior stays the prior (train it longer)"}, None, None
    sigma_t = float(opts.target_factor) * s0
    epochs = opts.prior_epochs if opts.prior_epochs is not None else default_prior_epochs(len(s_prior))
    cfg = TrainConfig(lr=ROBUST_PRIOR_LR, momentum=base.momentum, batch_size=base.batch_size, max_epochs=epochs,
                      seed=seed, device=base.device, objective="certificate", objective_sigma=sigma_t,
                      objective_ramp_epochs=int(RAMP_SHARE * epochs))
    res = train(prior_erm, s_prior, cfg, test=test, progress=progress, desc="robust prior")
    rules = {
        "s0": s0,
        "s0_rule": "median sigma*(x) of the erm prior over S_prior (objectives.prior_split_sigma_star: full-noise "
                   "profile, exact omega, uniform reduced-norm bounds, no rescaling)",
        "target_factor": float(opts.target_factor),
        "sigma_t": sigma_t,
        "sigma_t_rule": "target_factor * s0 (target_factor fixed a priori)",
        "prior_epochs": int(epochs),
        "prior_epochs_rule": ("--prior-epochs" if opts.prior_epochs is not None else
                              f"default_prior_epochs(|S_prior| = {len(s_prior)})"),
    }
    erm_err = prior_erm.error_rate(s_prior.X, s_prior.y)
    accepted = bool(res.train_error <= erm_err + ROBUST_ACCEPT_MARGIN)
    rules["robust_prior_accepted"] = accepted
    rules["accept_rule"] = (f"S_prior error of the robust prior ({res.train_error:.4f}) <= that of the erm prior "
                            f"({erm_err:.4f}) + {ROBUST_ACCEPT_MARGIN}; otherwise the erm prior stays the prior")
    return (res.network if accepted else prior_erm), rules, cfg, res


def posterior_config(opts: ObjectiveOptions, base: Any, *, depth: int, m_bound: int,
                     rules: dict[str, Any]) -> Any:
    """The ``TrainConfig`` of the recipe's posterior (trained on all of ``S``).

    ``base`` gives lr (``certificate``/``last`` only), momentum, batch size, epochs, seed,
    device; ``rules`` the recipe's ``sigma_t`` and ``kls`` where needed.
    """
    from .training import TrainConfig

    common = {"momentum": base.momentum, "batch_size": base.batch_size, "max_epochs": base.max_epochs,
              "seed": base.seed, "device": base.device}
    if opts.objective == "certificate" and opts.certificate_noise == "last":
        return TrainConfig(lr=base.lr, proximal=float(opts.proximal), frozen_layers=tuple(range(1, depth)),
                           target_error=base.target_error, **common)
    if opts.objective == "certificate":
        return TrainConfig(lr=RECIPE_LR, objective="certificate", objective_sigma=float(rules["sigma_t"]),
                           objective_kl_sigma=float(rules["kls"]), objective_m=int(m_bound), **common)
    if opts.objective == "pbb":
        return TrainConfig(lr=RECIPE_LR, objective="pbb", objective_sigma=float(opts.pbb_sigma),
                           objective_m=int(m_bound), **common)
    raise ConfigError(f"no recipe posterior for objective {opts.objective!r}")
