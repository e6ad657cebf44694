"""PAC-Bayes machinery: Bernoulli kl, its inverses, Gaussian KL, the a-priori sigma grid.

Everything here is a pure function of numbers (float64 NumPy); no data, no
network.  THEORY.md sections 4.2 and 4.3; Maurer (2004), Seeger (2002) for the
PAC-Bayes-kl inequality; Langford & Caruana (2001) for the kl inversion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import rel_entr

from .errors import ConfigError

# Absolute slack added to (subtracted from) the end of every kl inversion: covers
# the rounding of the kl evaluations inside the bisection (docs/theory.md, Rounding).
KL_INV_SLACK = 1e-9


def check_delta(delta: float, name: str = "delta") -> float:
    """Validate a failure probability delta (bounds hold with probability >= 1 - delta).

    Raises:
        ConfigError: ``delta`` is not a number in (0, 1).
    """
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1), got {delta!r}") from None
    if not (0.0 < d < 1.0) or math.isnan(d):
        raise ConfigError(f"{name} must lie strictly between 0 and 1, got {delta!r}; e.g. {name}=0.05")
    return d


def _kl_tolerance(c: np.ndarray) -> np.ndarray:
    """Bound on the absolute rounding error of a computed kl near the level ``c``.

    Near the inverse the two terms of kl are each at most about ``c + sqrt(c)`` in
    size, so their float64 evaluation errs by far less than ``1e-14 (1 + c)``.  The
    bisections compare against ``c + tolerance``: a point rejected there has true
    kl above c, so the returned end of the bracket is on the safe side.
    """
    return 1e-14 * (1.0 + c)


def kl_bernoulli(q: np.ndarray | float, p: np.ndarray | float) -> np.ndarray:
    """Bernoulli relative entropy ``kl(q || p) = q ln(q/p) + (1-q) ln((1-q)/(1-p))``.

    Args:
        q, p: arrays (broadcastable) of probabilities in [0, 1], float64.

    Returns:
        float64 array, ``+inf`` where ``p`` excludes mass that ``q`` has.
    """
    q = np.asarray(q, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return rel_entr(q, p) + rel_entr(1.0 - q, 1.0 - p)


def _kl_bisect(q: np.ndarray | float, c: np.ndarray | float, upper: bool, iters: int) -> tuple[np.ndarray, ...]:
    """Bisection on the side of q where ``p -> kl(q || p)`` is monotone.

    ``upper``: bracket on ``[q, 1]``, else on ``[0, q]``; a point is accepted iff its
    computed kl is at most ``c + tolerance`` (see :func:`_kl_tolerance`), so the
    returned outer end (hi for upper, lo for lower) lies beyond the exact inverse.
    """
    name = "kl_inv_upper" if upper else "kl_inv_lower"
    q = np.asarray(q, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    q, c = np.broadcast_arrays(q, c)
    if np.any((q < 0) | (q > 1) | np.isnan(q)):
        raise ValueError(f"{name}: q must lie in [0, 1]")
    if np.any((c < 0) | np.isnan(c)):
        raise ValueError(f"{name}: c must be >= 0")
    inner = q.copy()  # accepted end (kl = 0 at p = q)
    outer = np.ones_like(q) if upper else np.zeros_like(q)
    c_eff = c + _kl_tolerance(c)
    for _ in range(iters):
        mid = 0.5 * (inner + outer)
        ok = kl_bernoulli(q, mid) <= c_eff
        inner = np.where(ok, mid, inner)
        outer = np.where(ok, outer, mid)
        if np.all(np.abs(outer - inner) <= 1e-15):
            break
    return inner, outer


def kl_inv_upper(q: np.ndarray | float, c: np.ndarray | float, iters: int = 200) -> np.ndarray:
    """Upper kl inverse ``sup{p in [q, 1] : kl(q || p) <= c}`` (THEORY.md 4.2).

    Vectorised bisection in float64; returns the *upper* end of the final
    bracket plus :data:`KL_INV_SLACK` (clipped to 1), hence never below the
    exact value.

    Args:
        q: empirical risk(s) in [0, 1].
        c: complexity value(s) >= 0 (``+inf`` allowed: returns 1).

    Raises:
        ValueError: ``q`` outside [0, 1] or ``c`` negative / NaN (internal misuse).
    """
    _, hi = _kl_bisect(q, c, True, iters)
    return np.minimum(1.0, hi + KL_INV_SLACK)


def kl_inv_lower(q: np.ndarray | float, c: np.ndarray | float, iters: int = 200) -> np.ndarray:
    """Lower kl inverse ``inf{p in [0, q] : kl(q || p) <= c}``.

    Used for lower confidence bounds of an error rate (THEORY.md 7.4): with
    probability >= 1 - delta, the true risk is >= ``kl_inv_lower(err, ln(1/delta)/n)``.
    Returns the lower end of the bracket minus :data:`KL_INV_SLACK` (clipped to 0).
    """
    _, lo = _kl_bisect(q, c, False, iters)
    return np.maximum(0.0, lo - KL_INV_SLACK)


def test_set_bound(test_error: float, m_test: int, delta: float) -> float:
    """Held-out (test-set) bound ``kl_inv(err, ln(1/delta) / m_test)`` (THEORY.md 6).

    Binomial tail via the kl-Chernoff inequality (Langford 2005): with probability
    >= 1 - delta over the m_test held-out samples, the true error is at most this.

    Raises:
        ConfigError: ``delta`` outside (0, 1) or ``m_test < 1``.
    """
    check_delta(delta)
    if m_test < 1:
        raise ConfigError("the test-set bound needs at least one held-out sample")
    return float(kl_inv_upper(test_error, math.log(1.0 / delta) / m_test))


test_set_bound.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def error_lower_confidence(error: float, m: int, delta: float) -> float:
    """Lower confidence bound ``kl_inv_lower(err, ln(1/delta)/m)`` of a true error rate.

    Every valid certificate (at level delta) must be at or above this value except
    with probability about delta (THEORY.md 7.4).
    """
    check_delta(delta)
    return float(kl_inv_lower(error, math.log(1.0 / delta) / max(m, 1)))


def gaussian_kl(dist_sq: Sequence[float], sigmas: Sequence[float]) -> float:
    """``KL(N(W, diag sigma^2) || N(W0, diag sigma^2)) = sum_k ||W_k - W0_k||_F^2 / (2 sigma_k^2)``.

    Args:
        dist_sq: per layer ``||[W_k|b_k] - [W0_k|b0_k]||_F^2`` (bias columns included).
        sigmas: per layer posterior/prior standard deviation sigma_k > 0.

    Rounded upward: each term is ``d / (2 sigma^2)`` with the denominator rounded down and
    the quotient and the sum rounded up (``dist_sq`` should itself be an upper bound, e.g.
    ``ReLUNetwork.frobenius_sq_distances``; docs/theory.md section 7.6).

    Source: THEORY.md 4.2, proof step 1.
    """
    from .rounding import down, sum_up, up

    terms = []
    for d, s in zip(dist_sq, sigmas, strict=True):
        if float(d) == 0.0:
            terms.append(0.0)
            continue
        den = 2.0 * down(float(s) * float(s))  # (doubling is exact)
        terms.append(up(float(d) / den) if den > 0 else math.inf)
    return sum_up(terms)


def profile_kl(dist_sq: Sequence[float], sigma: np.ndarray | float, profile: Sequence[float]) -> np.ndarray:
    """KL of ``N(W, diag (sigma c)^2)`` from ``N(W0, diag (sigma c)^2)`` per scalar sigma, zero-noise layers allowed.

    ``sum_k dist_sq_k / (2 sigma^2 c_k^2)``; a layer with ``c_k = 0`` is a point mass in both the
    prior and the posterior: it adds 0 when ``dist_sq_k == 0`` (the layer did not move) and
    ``+inf`` otherwise (the posterior is not absolutely continuous with respect to the prior).

    Args:
        dist_sq: per layer ``||[W_k|b_k] - [W0_k|b0_k]||_F^2`` (float64, >= 0).
        sigma: scalar noise level(s) ``> 0`` (array: the result has its shape).
        profile: per layer ``c_k >= 0``.

    Returns:
        float64 array of KL values (``+inf`` where a zero-noise layer moved); never NaN: where
        ``2 sigma^2 c^2`` leaves the normal float64 range the quotient is formed from mantissas and
        exponents apart (``+inf`` where it exceeds the range).

    Source: THEORY.md 4.2 proof step 1; docs/theory.md section 12 (zero-noise layers).
    """
    sig = np.asarray(sigma, dtype=np.float64)
    out = np.zeros(sig.shape, dtype=np.float64)
    for d, c in zip(dist_sq, profile, strict=True):
        d, c = float(d), float(c)
        if c == 0.0:
            if d != 0.0:
                out = out + np.inf
            continue
        if d == 0.0:
            continue  # an unmoved layer adds 0 at any sigma (0 / 0 where (sigma c)^2 underflows)
        with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
            t2 = 2.0 * sig * sig
            t3 = t2 * c
            den = t3 * c  # 2 sigma^2 c^2, evaluated as before (results unchanged in the normal range)
            tiny = np.finfo(np.float64).tiny
            normal = (t2 >= tiny) & (t3 >= tiny) & (den >= tiny) & np.isfinite(den)
            # where a product left the normal range: mantissas and exponents apart (frexp/ldexp are
            # exact), d / (2 sigma^2 c^2) = (md / (ms mc)^2 / 2) 2^(ed - 2 (es + ec)), a few ulps
            ms, es = np.frexp(sig)
            mc, ec = math.frexp(c)
            md, ed = math.frexp(d)
            alt = np.ldexp(md / (ms * mc) ** 2 / 2.0, ed - 2 * (es + ec))
            out = out + np.where(normal, d / den, alt)
    return out


def pac_bayes_kl_bound(
    empirical: float, kl: float, m: int, delta: float, log_prior_weight: float
) -> tuple[float, float]:
    """Maurer's PAC-Bayes-kl bound at one grid point.

    Returns ``(kl_inv(empirical, C), C)`` with
    ``C = (kl + ln(2 sqrt(m) / (pi delta))) / m`` where ``ln pi = log_prior_weight``.

    Source: Maurer (2004), Thm 5; THEORY.md 4.2 (union bound over the sigma grid).
    """
    comp = (kl + math.log(2.0 * math.sqrt(m) / delta) - log_prior_weight) / m
    return float(kl_inv_upper(min(max(empirical, 0.0), 1.0), comp)), comp


@dataclass(frozen=True)
class SigmaGrid:
    """A-priori geometric grid ``sigma_j = sigma_ref * 2^(j/steps_per_octave)``, j in Z,
    times per-layer profiles ``c`` (THEORY.md 4.3).

    Weights: ``pi(j, c) = 3 / (pi^2 (|j|+1)^2) / n_profiles``, which sum to
    ``(1 - 3/pi^2) < 1`` over the whole grid.

    Attributes:
        sigma_ref: reference value, fixed before seeing data (default 1e-2).
        steps_per_octave: grid points per factor 2 (default 8).
        profiles: tuple of per-layer multipliers (each a tuple of K positive floats);
            empty tuple means the single all-ones profile.
        j_min, j_max: range of j the search evaluates (any range is valid: the
            weights cover all of Z).
    """

    sigma_ref: float = 1e-2
    steps_per_octave: int = 8
    profiles: tuple[tuple[float, ...], ...] = field(default_factory=tuple)
    j_min: int = -160
    j_max: int = 40

    def __post_init__(self) -> None:
        if not (self.sigma_ref > 0 and math.isfinite(self.sigma_ref)):
            raise ConfigError("sigma_ref must be a positive number, e.g. 1e-2")
        if self.steps_per_octave < 1:
            raise ConfigError("steps_per_octave must be >= 1")
        if self.j_min > self.j_max:
            raise ConfigError(f"the sigma grid range is empty (j_min {self.j_min} > j_max {self.j_max})")
        for p in self.profiles:
            if any(not (v >= 0 and math.isfinite(v)) for v in p) or not any(v > 0 for v in p):
                raise ConfigError(f"sigma profile {p} must have finite entries >= 0, at least one of them positive "
                                  "(0 = a layer without noise, docs/theory.md section 12)")

    def js(self) -> np.ndarray:
        return np.arange(self.j_min, self.j_max + 1)

    def sigma(self, j: np.ndarray | int) -> np.ndarray:
        """Scalar sigma_j (before the profile)."""
        return self.sigma_ref * np.power(2.0, np.asarray(j, dtype=np.float64) / self.steps_per_octave)

    def resolved_profiles(self, depth: int) -> tuple[tuple[float, ...], ...]:
        if not self.profiles:
            return ((1.0,) * depth,)
        for p in self.profiles:
            if len(p) != depth:
                raise ConfigError(
                    f"sigma profile {p} has {len(p)} entries but the network has {depth} layers"
                )
        return self.profiles

    def log_weight(self, j: np.ndarray | int, n_profiles: int = 1) -> np.ndarray:
        """``ln pi(j, c)`` for each j."""
        ja = np.abs(np.asarray(j, dtype=np.float64))
        return np.log(3.0 / (math.pi**2 * (ja + 1.0) ** 2)) - math.log(n_profiles)

    def to_dict(self) -> dict:
        return {
            "sigma_ref": self.sigma_ref,
            "steps_per_octave": self.steps_per_octave,
            "profiles": [list(p) for p in self.profiles] or "all-ones",
            "j_range_evaluated": [self.j_min, self.j_max],
            "weights": "pi(j, c) = 3 / (pi^2 (|j|+1)^2) / n_profiles",
        }
