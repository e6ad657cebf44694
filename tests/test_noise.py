"""Monte-Carlo checks of every noise event of THEORY.md section 3 (obligation 7.2).

Each event is drawn 10^5 times on small layers with large failure budgets (so
frequencies are measurable) and its frequency must not exceed the budget by more
than four binomial standard deviations.  Both the exact quantiles (default) and
THEORY.md's closed forms are checked.  The chi-quantile events are exact, so a
wrong degree of freedom or level would show as an excess frequency.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparsebound.errors import ConfigError
from sparsebound.noise import NoiseConstants, active_size_grid, chi_tail_bound, log_binomial, normal_abs_tail_bound

N_DRAWS = 100_000
WIDTHS = (6, 9, 7, 3)  # K = 3
ETA1, ETA2 = 0.6, 0.6


def _slack(p: float, n: int = N_DRAWS) -> float:
    return 4.0 * math.sqrt(max(p * (1 - p), 1e-12) / n)


def _grids():
    return [active_size_grid(WIDTHS[1], [1.0, 0.8, 0.6, 0.4, 0.2]), active_size_grid(WIDTHS[2], [1.0, 0.7, 0.4])]


@pytest.fixture(params=[True, False], ids=["tight", "closed-form"])
def consts(request):
    return NoiseConstants.build(WIDTHS, _grids(), has_bias=True, eta1=ETA1, eta2=ETA2, tight=request.param)


def test_tight_constants_never_exceed_closed_forms():
    tight = NoiseConstants.build(WIDTHS, _grids(), has_bias=False, eta1=1e-4, eta2=1e-3, tight=True)
    closed = NoiseConstants.build(WIDTHS, _grids(), has_bias=False, eta1=1e-4, eta2=1e-3, tight=False)
    for lt, lc in zip(tight.layers, closed.layers, strict=True):
        for name in ("g", "h", "mu", "muinf", "gp"):
            assert np.all(getattr(lt, name) <= getattr(lc, name) + 1e-12), name
        assert lt.hp <= lc.hp + 1e-12
    # closed forms are THEORY.md's formulas verbatim
    K = 3
    lc = closed.layers[0]
    tau = math.sqrt(2 * math.log(4 * K / 1e-3))
    assert np.allclose(lc.g, np.sqrt(lc.active) + tau)
    s = lc.sparsity
    pos = s > 0
    assert np.allclose(lc.h[pos], np.sqrt(2 * np.log(8 * K * s[pos] / 1e-3)))
    assert np.allclose(lc.mu, np.sqrt(lc.active)[:, None] + math.sqrt(WIDTHS[0]) + tau)
    assert np.allclose(lc.muinf[pos, 0], math.sqrt(WIDTHS[0]) + np.sqrt(2 * np.log(4 * K * s[pos] / 1e-3)))
    d = WIDTHS[1]
    dense = math.sqrt(d) + math.sqrt(2 * math.log(4 * K / 1e-4))
    n_sets = len(lc.active) * np.exp(log_binomial(d, lc.active))
    sparse = np.sqrt(lc.active) + np.sqrt(2 * np.log(4 * K * n_sets / 1e-4))
    raw = np.minimum(dense, sparse)
    assert np.allclose(lc.gp, np.minimum.accumulate(raw))
    assert lc.hp == pytest.approx(math.sqrt(2 * math.log(4 * K * d / 1e-4)))
    out = closed.layers[-1]
    assert out.gp[0] == pytest.approx(math.sqrt(3) + math.sqrt(2 * math.log(4 * K / 1e-4)))
    assert out.hp == 0.0


def test_monotone_tables():
    c = NoiseConstants.build((20, 50, 40, 10), [active_size_grid(50, np.linspace(0.05, 1, 20)),
                                                 active_size_grid(40, np.linspace(0.05, 1, 20))])
    for lc in c.layers[:-1]:
        assert np.all(np.diff(lc.g) <= 0) and np.all(np.diff(lc.gp) <= 1e-12)
        assert np.all(np.diff(lc.h) >= 0)
        assert np.all(np.diff(lc.mu, axis=0) <= 0) and np.all(np.diff(lc.mu, axis=1) <= 0)
        assert np.all(np.diff(lc.muinf, axis=0) >= 0) and np.all(np.diff(lc.muinf, axis=1) <= 1e-12)
        assert lc.h[0] == 0 and np.all(lc.muinf[0] == 0)


def test_budgets_sum_below_eta():
    c = NoiseConstants.build(WIDTHS, _grids(), eta1=1e-4, eta2=1e-3)
    rows = c.budget_table()
    tr = sum(r["prob"] for r in rows if r["side"] == "train")
    te = sum(r["prob"] for r in rows if r["side"] == "test")
    assert tr <= 1e-3 * (1 + 1e-12)
    assert te < 1e-4


def test_quantile_helpers_against_scipy():
    from scipy.stats import chi, norm

    for q in (1, 5, 50, 500):
        for p in (0.3, 1e-3, 1e-9):
            t = float(chi_tail_bound(q, math.log(p)))
            assert chi.sf(t, q) <= p * (1 + 1e-6)
            assert t <= math.sqrt(q) + math.sqrt(2 * math.log(1 / p)) + 1e-12
    t = float(normal_abs_tail_bound(math.log(1e-3)))
    assert 2 * norm.sf(t) <= 1e-3 * (1 + 1e-6)
    # underflowing probabilities fall back to the closed form
    assert float(chi_tail_bound(10, -5000.0)) == pytest.approx(math.sqrt(10) + math.sqrt(10000.0))
    assert float(chi_tail_bound(0, -3.0)) == 0.0


def test_bad_budgets_and_grids():
    with pytest.raises(ConfigError):
        NoiseConstants.build(WIDTHS, _grids(), eta1=0.0)
    with pytest.raises(ConfigError):
        NoiseConstants.build(WIDTHS, _grids(), eta2=1.0)
    with pytest.raises(ConfigError):
        NoiseConstants.build(WIDTHS, [np.array([3]), np.array([7])])  # grid of layer 1 lacks d_1
    with pytest.raises(ConfigError):
        active_size_grid(10, [0.0, 0.5])


def _gauss(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_training_side_events_monte_carlo(consts, k):
    """g, h, mu, muinf at fixed sets J_k, I_k and a fixed vector v."""
    K = 3
    lc = consts.layers[k - 1]
    d_out = WIDTHS[k]
    n_col_total = WIDTHS[k - 1] + 1  # with bias column
    budget = ETA2 / (4 * K)
    rng = np.random.default_rng(k)
    t = len(lc.active) // 2 if k < K else 0
    tp = len(lc.col_active) - 1 if k > 1 else 0
    a, s = int(lc.active[t]), int(lc.sparsity[t])
    b = int(lc.col_active[tp])
    perm = rng.permutation(d_out)
    J, I = perm[:a], perm[a:]
    Jc = np.sort(np.concatenate([rng.permutation(n_col_total - 1)[: b - 1], [n_col_total - 1]]))
    v = torch.as_tensor(rng.normal(size=n_col_total))
    U = _gauss((N_DRAWS, d_out, n_col_total), seed=100 + k)
    Uv = U @ v
    nv = float(v.norm())
    freq_g = float(((Uv[:, J].norm(dim=1) >= nv * lc.g[t])).double().mean())
    assert freq_g <= budget + _slack(budget)
    mu_val = torch.linalg.matrix_norm(U[:, J][:, :, Jc], ord=2)
    freq_mu = float((mu_val >= lc.mu[t, tp]).double().mean())
    assert freq_mu <= budget + _slack(budget)
    if s > 0:
        freq_h = float((Uv[:, I].abs().max(dim=1).values >= nv * lc.h[t]).double().mean())
        assert freq_h <= budget + _slack(budget)
        rown = U[:, I][:, :, Jc].norm(dim=2).max(dim=1).values
        freq_mi = float((rown >= lc.muinf[t, tp]).double().mean())
        assert freq_mi <= budget + _slack(budget)
    if consts.tight:
        # the chi event is exact: its frequency is close to the budget, not far below
        assert freq_g >= budget - _slack(budget)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_test_side_events_monte_carlo(consts, k):
    """g'(a) for EVERY row set of every grid size (union), h' over all rows."""
    K = 3
    lc = consts.layers[k - 1]
    d_out = WIDTHS[k]
    rng = np.random.default_rng(10 + k)
    v = torch.as_tensor(rng.normal(size=WIDTHS[k - 1] + 1))
    U = _gauss((N_DRAWS, d_out, WIDTHS[k - 1] + 1), seed=200 + k)
    Uv = U @ v
    nv = float(v.norm())
    sq = torch.sort(Uv**2, dim=1, descending=True).values.cumsum(dim=1)  # top-a sums
    fail = torch.zeros(N_DRAWS, dtype=torch.bool)
    for t, a in enumerate(lc.active):
        fail |= sq[:, int(a) - 1].sqrt() > nv * lc.gp[t]
    budget_g = ETA1 / (2 * K) if k < K else ETA1 / (4 * K)
    freq = float(fail.double().mean())
    assert freq <= budget_g + _slack(budget_g)
    if k < K:
        freq_h = float((Uv.abs().max(dim=1).values >= nv * lc.hp).double().mean())
        assert freq_h <= ETA1 / (2 * K) + _slack(ETA1 / (2 * K))
