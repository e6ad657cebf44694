"""kl, kl inversion, Gaussian KL, the sigma grid (THEORY.md 4.2-4.3, 7.5)."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsebound.errors import ConfigError
from sparsebound.pacbayes import (
    KL_INV_SLACK,
    SigmaGrid,
    check_delta,
    error_lower_confidence,
    gaussian_kl,
    kl_bernoulli,
    kl_inv_lower,
    kl_inv_upper,
    pac_bayes_kl_bound,
)
from sparsebound.pacbayes import test_set_bound as held_out_bound

mpmath.mp.dps = 60


def _kl_mp(q, p):
    q, p = mpmath.mpf(q), mpmath.mpf(p)
    out = mpmath.mpf(0)
    if q > 0:
        out += q * mpmath.log(q / p)
    if q < 1:
        out += (1 - q) * mpmath.log((1 - q) / (1 - p))
    return out


def _kl_inv_mp(q, c):
    """High-precision reference: sup{p in [q,1]: kl(q||p) <= c} by mpmath bisection."""
    q = mpmath.mpf(q)
    c = mpmath.mpf(c)
    if q >= 1:
        return mpmath.mpf(1)
    lo, hi = q, mpmath.mpf(1)
    if _kl_mp(q, hi - mpmath.mpf(10) ** -50) <= c:
        return mpmath.mpf(1)
    for _ in range(200):
        mid = (lo + hi) / 2
        if _kl_mp(q, mid) <= c:
            lo = mid
        else:
            hi = mid
    return lo


@pytest.mark.parametrize(
    "q,c",
    [(0.0, 0.01), (0.0, 1e-8), (0.05, 0.001), (0.1, 0.5), (0.3, 0.02), (0.5, 1e-6), (0.9, 0.1),
     (0.999, 1e-3), (1e-6, 1e-4), (0.02, 10.0), (0.0, 50.0), (1.0, 0.3), (0.25, 0.0)],
)
def test_kl_inv_upper_matches_high_precision_reference(q, c):
    ref = float(_kl_inv_mp(q, c))
    got = float(kl_inv_upper(q, c))
    # never below the exact value, and within the documented slack above it: the
    # bisection compares against c + 1e-14 (1 + c) (rounding of kl), then adds the slack
    assert got >= ref
    ref_tol = float(_kl_inv_mp(q, c + 1e-14 * (1 + c)))
    assert got <= min(1.0, ref_tol + KL_INV_SLACK + 1e-12)


@settings(max_examples=200, deadline=None)
@given(q=st.floats(0.0, 1.0), c=st.floats(0.0, 5.0))
def test_kl_inv_upper_is_an_upper_inverse(q, c):
    p = float(kl_inv_upper(q, c))
    assert q <= p <= 1.0
    if p < 1.0:
        # kl at the returned point exceeds c (or sits within rounding of it)
        assert float(_kl_mp(q, p)) >= c - 1e-12


@settings(max_examples=100, deadline=None)
@given(q1=st.floats(0.0, 1.0), q2=st.floats(0.0, 1.0), c1=st.floats(0.0, 3.0), c2=st.floats(0.0, 3.0))
def test_kl_inv_upper_monotone_in_both_arguments(q1, q2, c1, c2):
    qa, qb = sorted((q1, q2))
    ca, cb = sorted((c1, c2))
    assert float(kl_inv_upper(qa, ca)) <= float(kl_inv_upper(qb, ca)) + 1e-12
    assert float(kl_inv_upper(qa, ca)) <= float(kl_inv_upper(qa, cb)) + 1e-12


def test_kl_inv_vectorised_and_pinsker():
    q = np.linspace(0, 0.5, 11)
    c = np.full_like(q, 0.02)
    v = kl_inv_upper(q, c)
    assert v.shape == q.shape
    assert np.all(v <= q + np.sqrt(c / 2) + 1e-9)  # Pinsker
    assert np.all(np.diff(v) >= 0)


def test_kl_inv_lower_and_confidence_bounds():
    for q, c in [(0.1, 0.01), (0.5, 0.2), (0.02, 0.001)]:
        lo = float(kl_inv_lower(q, c))
        assert lo <= q
        assert float(_kl_mp(q, lo + 2 * KL_INV_SLACK)) <= c + 1e-9 or lo == 0.0
        assert float(_kl_mp(q, max(lo - 1e-6, 1e-300))) > c or lo < 1e-6
    assert float(kl_inv_lower(0.0, 0.3)) == 0.0
    lcb = error_lower_confidence(0.06, 1000, 0.05)
    ucb = held_out_bound(0.06, 1000, 0.05)
    assert lcb < 0.06 < ucb
    # binomial sanity: the kl-Chernoff bound is at least as wide as the exact Clopper-Pearson one
    from scipy.stats import beta

    assert ucb >= beta.ppf(1 - 0.05, 60 + 1, 1000 - 60) - 1e-9


def test_kl_bernoulli_values():
    assert float(kl_bernoulli(0.0, 0.5)) == pytest.approx(math.log(2))
    assert float(kl_bernoulli(0.3, 0.3)) == 0.0
    assert math.isinf(float(kl_bernoulli(0.5, 1.0)))
    assert float(kl_bernoulli(0.2, 0.4)) == pytest.approx(float(_kl_mp(0.2, 0.4)), rel=1e-13)


def test_gaussian_kl_and_pac_bayes_bound():
    assert gaussian_kl([2.0, 8.0], [1.0, 2.0]) == pytest.approx(1.0 + 1.0)
    val, comp = pac_bayes_kl_bound(0.1, 5.0, 1000, 0.05, math.log(0.5))
    assert comp == pytest.approx((5.0 + math.log(2 * math.sqrt(1000) / 0.05) - math.log(0.5)) / 1000)
    assert val == pytest.approx(float(kl_inv_upper(0.1, comp)))


def test_sigma_grid_weights_sum_below_one():
    g = SigmaGrid()
    j = np.arange(-200000, 200001)
    total = np.exp(g.log_weight(j)).sum()
    assert total < 1.0
    assert total == pytest.approx(1 - 3 / math.pi**2, abs=1e-4)
    g2 = SigmaGrid(profiles=((1.0, 1.0, 1.0), (0.5, 1.0, 2.0)))
    assert np.exp(g2.log_weight(0, 2)) == pytest.approx(3 / math.pi**2 / 2)
    assert g.sigma(8) == pytest.approx(2 * g.sigma_ref)
    with pytest.raises(ConfigError):
        SigmaGrid(sigma_ref=-1.0)
    with pytest.raises(ConfigError):
        g2.resolved_profiles(4)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), "x"])
def test_check_delta_rejects(bad):
    with pytest.raises(ConfigError, match="delta"):
        check_delta(bad)


# --------------------------------------------------------------------------- profile_kl (breaker finding 6)


def _kl_exact(d: list[float], s: float, c: list[float]) -> Fraction:
    terms = (Fraction(dk) / (2 * (Fraction(s) * Fraction(ck)) ** 2) for dk, ck in zip(d, c, strict=True) if dk)
    return sum(terms, Fraction(0))


@pytest.mark.parametrize("d, s, c", [
    ([3 * 2.0**-1074, 0.0], 1.6e-162, [1.0, 1.0]),     # sigma^2 subnormal (rounds UP to nearest by ~100%)
    ([1.0, 2.5], 1e-160, [1.0, 0.5]),                   # sigma^2 c^2 below the normal range
    ([1e300, 1e300], 1e-5, [1.0, 1.0]),                  # the exact value overflows: inf
    ([0.3, 0.7, 0.11], 0.01, [1.0, 0.5, 2.0]),           # the ordinary case (fast path)
    ([2.0**-1070, 1.0], 1.0, [1.0, 1.0]),                # a subnormal term
])
def test_profile_kl_is_an_upper_bound_at_any_scale(d: list[float], s: float, c: list[float]) -> None:
    from sparsebound.pacbayes import profile_kl

    got = profile_kl(d, s, c)
    exact = _kl_exact(d, s, c)
    if math.isinf(got):
        assert exact > Fraction(1.7976931348623157e308)
    else:
        assert Fraction(got) >= exact
        assert Fraction(got) <= exact * (1 + Fraction(2) ** -39) + Fraction(2) ** -1074


def test_profile_kl_zero_profile_entries_and_random_fast_path() -> None:
    from sparsebound.pacbayes import profile_kl, profile_kl_grid

    assert profile_kl([0.0, 1.0], 0.1, [0.0, 1.0]) == pytest.approx(50.0)
    assert profile_kl([0.0, 0.0], 0.1, [1.0, 1.0]) == 0.0  # a posterior equal to its prior: KL exactly 0
    assert profile_kl([0.0, 0.0], 1e-200, [1.0, 0.0]) == 0.0
    assert profile_kl([1e-3, 1.0], 0.1, [0.0, 1.0]) == math.inf
    rng = np.random.default_rng(0)
    d = list(rng.random(4))
    c = list(rng.random(4) + 0.1)
    sig = 10.0 ** rng.uniform(-8, 2, size=50)
    kl = profile_kl_grid(d, sig, c)
    for s, v in zip(sig, kl, strict=True):
        assert Fraction(float(v)) >= _kl_exact(d, float(s), c)


def test_bound_curve_kl_uses_the_safe_kl() -> None:
    """The breaker's case: sigma^2 subnormal, float64 d / (2 sigma^2) rounded down the KL."""
    import torch

    from sparsebound.certification import bound_curve

    grid = SigmaGrid(sigma_ref=1.6e-162, steps_per_octave=8, j_min=0, j_max=0)
    sig = float(grid.sigma(0))
    dsq = [2.0**-1074 * 3, 0.0]
    cur = bound_curve(torch.ones(1000, dtype=torch.float64), dsq, (1.0, 1.0), m=1000, delta=0.05, grid=grid,
                      n_profiles=1, eta1=1e-4, eta2=1e-3)
    assert Fraction(float(cur.kl[0])) >= _kl_exact(dsq, sig, [1.0, 1.0])


@pytest.mark.parametrize("kw", [dict(sigma_ref=5e-324, j_min=-16, j_max=0), dict(profiles=((1e300, 1e-300),))])
def test_sigma_grid_outside_the_float_range_is_refused(kw: dict) -> None:
    with pytest.raises(ConfigError, match="sigma grid reaches"):
        SigmaGrid(**kw)
