"""Tests for the norm-based baselines (THEORY.md section 6; docs/baselines.md).

The hand computations below re-derive every number from the papers' formulas in
plain Python / NumPy (closed-form 2x2 singular values, explicit loops over the
grids); they never call the module's internals.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from sparsebound.baselines import (
    GAMMA_L_RANGE,
    GRID_WEIGHT_TOTAL,
    NEYSHABUR_SIGMA_J_RANGE,
    BaselineResult,
    bartlett2017_bound,
    bartlett2017_formula,
    bias_free_matrices,
    dudley_rademacher_bound,
    grid_index_at_least,
    grid_log_weight,
    margin_loss,
    neyshabur2018_bound,
    neyshabur2018_formula,
    neyshabur_perturbation_bound,
    ramp_loss,
)
from sparsebound.errors import ConfigError, DataError, ShapeMismatchError
from sparsebound.network import ReLUNetwork

# ----------------------------------------------------------------------------------------
# helpers (independent re-implementations)
# ----------------------------------------------------------------------------------------


def _pi(j: int) -> float:
    return 3.0 / (math.pi**2 * (abs(j) + 1) ** 2)


def _svd2_max(a: list[list[float]]) -> float:
    """Largest singular value of a 2x2 matrix, closed form."""
    (p, q), (r, s) = a
    fro = p * p + q * q + r * r + s * s
    det = p * s - q * r
    return math.sqrt((fro + math.sqrt(max(fro * fro - 4 * det * det, 0.0))) / 2.0)


def _forward_2x2(w1, w2, x):
    h = [max(0.0, w1[i][0] * x[0] + w1[i][1] * x[1]) for i in range(2)]
    return [w2[i][0] * h[0] + w2[i][1] * h[1] for i in range(2)]


# Tiny 2-2-2 network, both layers of spectral norm 1.9 (already balanced, so the
# rebalanced parametrisation coincides with the original one).
W1 = [[1.15, -0.75], [-0.75, 1.15]]  # singular values 1.9, 0.4
W2 = [[1.3, 0.6], [0.6, 1.3]]  # singular values 1.9, 0.7
W1_INIT = [[0.9, -0.5], [-0.6, 1.0]]
W2_INIT = [[1.0, 0.4], [0.5, 1.1]]


def _tiny_data(m: int, radius: float, seed: int = 0, min_margin: float = 0.0):
    """Points in the disk of the given radius, labels = the tiny network's argmax
    (a few flipped when min_margin == 0), keeping those with |margin| >= min_margin."""
    rng = np.random.default_rng(seed)
    xs, ys, ms = [], [], []
    while len(xs) < m:
        ang = rng.uniform(0, 2 * math.pi)
        r = radius * math.sqrt(rng.uniform(0, 1))
        x = [r * math.cos(ang), r * math.sin(ang)]
        f = _forward_2x2(W1, W2, x)
        y = 0 if f[0] > f[1] else 1
        if min_margin == 0.0 and rng.uniform() < 0.1:
            y = 1 - y
        marg = f[y] - f[1 - y]
        if abs(marg) < max(min_margin, 1e-6):
            continue
        xs.append(x)
        ys.append(y)
        ms.append(marg)
    return xs, ys, ms


def _tiny_net(w1=W1, w2=W2) -> ReLUNetwork:
    return ReLUNetwork([torch.tensor(w1, dtype=torch.float64), torch.tensor(w2, dtype=torch.float64)])


def _hand_neyshabur(margins, norms, dist_sq, B, h, delta):
    m = len(margins)
    d = len(norms)
    c = math.sqrt(2 * h * math.log(4 * d * h))
    s = sum(math.prod(norms[:i] + norms[i + 1 :]) for i in range(d))
    ls = range(GAMMA_L_RANGE[0], GAMMA_L_RANGE[1] + 1)
    emps = [sum(1 for v in margins if v <= 2.0 ** (l / 4)) / m for l in ls]
    profile = [math.inf] * len(emps)
    for j in range(NEYSHABUR_SIGMA_J_RANGE[0], NEYSHABUR_SIGMA_J_RANGE[1] + 1):
        sigma = 1e-3 * 2.0 ** (j / 4)
        t = sigma * c
        if t > min(norms) / d:
            continue
        kl = dist_sq / (2 * sigma * sigma)
        change = math.e * B * t * s
        for i, l in enumerate(ls):
            gamma = 2.0 ** (l / 4)
            if not change < gamma / 4:
                continue
            val = emps[i] + 4 * math.sqrt((kl + math.log(6 * m / (delta * _pi(j) * _pi(l)))) / (m - 1))
            profile[i] = min(profile[i], val)
    return _reported(profile, emps), profile, emps


def _assert_profiles_equal(got, expected, emps):
    assert len(got) == len(expected)
    n_informative = 0
    for g, e, emp in zip(got, expected, emps, strict=True):
        if math.isinf(e):
            assert g == "inf" or math.isinf(g)
        else:
            assert g == pytest.approx(e, rel=1e-7)
            n_informative += 0.0 < emp < 1.0
    # the comparison covers margins where the empirical term is neither 0 nor 1
    assert n_informative >= 5


# ----------------------------------------------------------------------------------------
# Lemma 2 (Neyshabur et al. 2018) holds numerically
# ----------------------------------------------------------------------------------------


def _random_perturbations(mats, gen, d, aligned: bool):
    us = []
    for a in mats:
        wn = float(torch.linalg.svdvals(a)[0])
        frac = float(torch.rand(1, generator=gen, dtype=torch.float64))
        if aligned:
            uu, _, vh = torch.linalg.svd(a)
            sign = 1.0 if float(torch.rand(1, generator=gen)) < 0.5 else -1.0
            u = sign * torch.outer(uu[:, 0], vh[0])
        else:
            u = torch.randn(a.shape, generator=gen, dtype=torch.float64)
        u = u / float(torch.linalg.svdvals(u)[0]) * frac * wn / d
        us.append(u)
    return us


@pytest.mark.parametrize("with_bias", [False, True])
def test_lemma2_holds_on_random_perturbations(with_bias):
    gen = torch.Generator().manual_seed(1)
    widths = [5, 8, 7, 3]
    radius = 2.5
    worst = 0.0
    for trial in range(12):
        ws = [torch.randn(widths[k + 1], widths[k], generator=gen, dtype=torch.float64) for k in range(3)]
        bs = None
        if with_bias:
            bs = [0.5 * torch.randn(widths[k + 1], generator=gen, dtype=torch.float64) for k in range(3)]
        net = ReLUNetwork(ws, bs)
        mats = bias_free_matrices(net)
        d = len(mats)
        X = torch.randn(200, 5, generator=gen, dtype=torch.float64)
        X = X / X.norm(dim=1, keepdim=True) * radius * torch.rand(200, 1, generator=gen, dtype=torch.float64)
        X[0] = X[0] / X[0].norm() * radius  # one point on the sphere
        Xa = torch.cat([X, torch.ones(200, 1, dtype=torch.float64)], 1) if with_bias else X
        base = ReLUNetwork(mats).forward(Xa, keep_pre_activations=False).outputs
        # the bias-free form computes the same function as the network
        assert torch.allclose(base, net.forward(X, keep_pre_activations=False).outputs, atol=1e-12, rtol=1e-12)
        for rep in range(25):
            us = _random_perturbations(mats, gen, d, aligned=(rep % 2 == 1))
            pert = ReLUNetwork([a + u for a, u in zip(mats, us, strict=True)])
            out = pert.forward(Xa, keep_pre_activations=False).outputs
            change = float((out - base).norm(dim=1).max())
            bound = neyshabur_perturbation_bound(net, us, radius)
            assert change <= bound * (1 + 1e-12), (trial, rep, change, bound)
            worst = max(worst, change / bound)
    assert 0.0 < worst <= 1.0


def test_lemma2_rejects_too_large_perturbations_and_bad_shapes():
    net = _tiny_net()
    big = [torch.eye(2, dtype=torch.float64) * 1.9, torch.zeros(2, 2, dtype=torch.float64)]
    with pytest.raises(ConfigError):
        neyshabur_perturbation_bound(net, big, 1.0)
    with pytest.raises(ShapeMismatchError):
        neyshabur_perturbation_bound(net, [torch.zeros(3, 2, dtype=torch.float64)] * 2, 1.0)
    with pytest.raises(ShapeMismatchError):
        neyshabur_perturbation_bound(net, [torch.zeros(2, 2, dtype=torch.float64)], 1.0)
    zero = [torch.zeros(2, 2, dtype=torch.float64)] * 2
    assert neyshabur_perturbation_bound(net, zero, 1.0) == 0.0
    # hand value: e * B * prod ||W|| * sum ||U_i|| / ||W_i||
    u = [torch.eye(2, dtype=torch.float64) * 0.3, torch.eye(2, dtype=torch.float64) * 0.2]
    expected = math.e * 1.5 * 1.9 * 1.9 * (0.3 / 1.9 + 0.2 / 1.9)
    assert neyshabur_perturbation_bound(net, u, 1.5) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------------
# hand-computed values on a tiny network
# ----------------------------------------------------------------------------------------


def test_tiny_network_norms_are_as_designed():
    assert _svd2_max(W1) == pytest.approx(1.9, rel=1e-14)
    assert _svd2_max(W2) == pytest.approx(1.9, rel=1e-14)


@pytest.mark.parametrize("with_prior", [False, True])
def test_neyshabur_equals_hand_computed_minimum(with_prior):
    radius, delta = 2.0, 0.05
    xs, ys, margins = _tiny_data(300, radius * 0.9, seed=3)
    X = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys)
    net = _tiny_net()
    prior = _tiny_net(W1_INIT, W2_INIT) if with_prior else None
    res = neyshabur2018_bound(net, X, y, radius=radius, delta=delta, prior=prior)

    norms = [_svd2_max(W1), _svd2_max(W2)]
    if with_prior:
        dist_sq = sum(
            (a - b) ** 2
            for A, P in ((W1, W1_INIT), (W2, W2_INIT))
            for ra, rp in zip(A, P, strict=True)
            for a, b in zip(ra, rp, strict=True)
        )
    else:
        dist_sq = sum(v * v for A in (W1, W2) for row in A for v in row)
    expected, profile, emps = _hand_neyshabur(margins, norms, dist_sq, B=radius, h=2, delta=delta)
    assert math.isfinite(expected)
    assert res.unclipped == pytest.approx(expected, rel=1e-7)
    _assert_profiles_equal(res.hyperparameters["profile_over_gamma"]["values"], profile, emps)
    assert res.method == ("neyshabur2018-init" if with_prior else "neyshabur2018")
    hp = res.hyperparameters
    # the reported value is the formula at the reported grid point
    lw = math.log(_pi(hp["sigma_index_j"])) + math.log(_pi(hp["gamma_index_l"]))
    at_point = neyshabur2018_formula(res.empirical_term, hp["kl"], res.m, delta, lw)
    assert res.unclipped == pytest.approx(at_point, rel=1e-9)
    assert hp["sigma"] == pytest.approx(1e-3 * 2 ** (hp["sigma_index_j"] / 4), rel=1e-15)
    assert hp["gamma"] == pytest.approx(2 ** (hp["gamma_index_l"] / 4), rel=1e-15)
    assert hp["kl"] == pytest.approx(dist_sq / (2 * hp["sigma"] ** 2), rel=1e-8)
    # empirical term = fraction of margins <= gamma
    assert res.empirical_term == pytest.approx(sum(1 for v in margins if v <= hp["gamma"]) / len(margins), abs=1e-12)
    # the lemma conditions hold at the chosen point
    t = hp["sigma"] * math.sqrt(2 * 2 * math.log(16))
    assert t <= 1.9 / 2
    assert math.e * radius * t * (1.9 + 1.9) < hp["gamma"] / 4


def _reported(profile, emps):
    """The reporting rule of docs/theory.md section 9: the minimum, unless it is vacuous;
    then the minimum over margins whose empirical term is within 0.1 of the smallest."""
    best = min(profile)
    if best < 1.0:
        return best
    lo = min(emps)
    return min(v for v, e in zip(profile, emps, strict=True) if e <= lo + 0.1)


def _hand_bartlett(xs, margins, s_norms, b_norms, delta):
    m = len(margins)
    jS = [math.ceil(4 * math.log2(s)) for s in s_norms]
    jB = [math.ceil(4 * math.log2(b)) for b in b_norms]
    for j, v in zip(jS + jB, s_norms + b_norms, strict=True):
        assert 2 ** ((j - 1) / 4) < v <= 2 ** (j / 4)  # not at a grid boundary
        assert j >= 0
    s = [2 ** (j / 4) for j in jS]
    b = [2 ** (j / 4) for j in jB]
    r_a = math.prod(s) * sum((bi / si) ** (2 / 3) for bi, si in zip(b, s, strict=True)) ** 1.5
    x_frob = math.sqrt(sum(x[0] ** 2 + x[1] ** 2 for x in xs))
    W = 2
    marg = np.array(margins)
    log_pi_norms = sum(math.log(_pi(j)) for j in jS + jB)
    profile, emps, linear = [], [], []
    for l in range(GAMMA_L_RANGE[0], GAMMA_L_RANGE[1] + 1):
        gamma = 2 ** (l / 4)
        ramp = float(np.mean(np.where(marg <= 0, 1.0, np.where(marg >= gamma, 0.0, 1 - marg / gamma))))
        R = 2 * x_frob * math.sqrt(math.log(2 * W * W)) * r_a / gamma
        rad = (12 * R / m) * (1 + math.log(m / (3 * R))) if m >= 3 * R else 4.0
        rad = min(rad, 1.0)
        delta_g = delta * _pi(l) * math.exp(log_pi_norms)
        conc = 3 * math.sqrt(math.log(2 / delta_g) / (2 * m))
        profile.append(ramp + 2 * rad + conc)
        emps.append(ramp)
        # non-saturating form used for vacuous values: Dudley at alpha = 1/sqrt(m)
        linear.append(ramp + 2 * (4 / m + 12 * R / m * math.log(m)) + conc)
    best = _reported(profile, emps)
    if best >= 1.0:
        lo = min(emps)
        best = max(best, min(v for v, e in zip(linear, emps, strict=True) if e <= lo + 0.1))
    return best, jS, jB, profile, emps


def test_bartlett_equals_hand_computed_minimum():
    delta = 0.05
    xs, ys, margins = _tiny_data(20000, 1.0, seed=5, min_margin=0.25)
    X = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys)
    res = bartlett2017_bound(_tiny_net(), X, y, delta=delta)
    s_norms = [_svd2_max(W1), _svd2_max(W2)]
    b_norms = [sum(math.hypot(*row) for row in A) for A in (W1, W2)]
    expected, jS, jB, profile, emps = _hand_bartlett(xs, margins, s_norms, b_norms, delta)
    assert res.unclipped == pytest.approx(expected, rel=1e-7)
    _assert_profiles_equal(res.hyperparameters["profile_over_gamma"]["values"], profile, emps)
    hp = res.hyperparameters
    assert hp["spectral_norm_grid_indices"] == jS
    assert hp["norm21_grid_indices"] == jB
    # the saturated search's value is the formula at its grid point
    val, rad = bartlett2017_formula(ramp_loss(np.array(margins), hp["gamma"]), hp["covering_radius_R"], res.m, delta,
                                    hp["log_grid_weight"])
    assert res.vacuous and val >= 1.0
    assert hp["rademacher_bound"] == pytest.approx(rad, rel=1e-12)
    uf = hp["unclipped_form"]
    assert res.unclipped >= val  # the reported (non-saturating) value is larger, hence also valid
    assert res.empirical_term == pytest.approx(ramp_loss(np.array(margins), uf["gamma"]), abs=1e-12)
    # Dudley's optimal alpha = 3R/sqrt(m), capped at sqrt(m)
    assert hp["dudley_alpha"] == pytest.approx(min(3 * hp["covering_radius_R"] / math.sqrt(res.m), math.sqrt(res.m)))
    assert res.empirical_term <= min(emps) + 0.1  # the informative window (docs/theory.md 9)


def test_bartlett_with_reference_uses_distance_to_reference():
    xs, ys, _margins = _tiny_data(20000, 1.0, seed=5, min_margin=0.25)
    X = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys)
    res = bartlett2017_bound(_tiny_net(), X, y, reference=_tiny_net(W1_INIT, W2_INIT))
    b_exp = [
        sum(math.hypot(a0 - p0, a1 - p1) for (a0, a1), (p0, p1) in zip(A, P, strict=True))
        for A, P in ((W1, W1_INIT), (W2, W2_INIT))
    ]
    hp = res.hyperparameters
    if hp["parametrisation"] == "original":
        assert hp["norm21_distances_upper"] == pytest.approx(b_exp, rel=1e-8)
    for bv, bg in zip(hp["norm21_distances_upper"], hp["norm21_grid_values"], strict=True):
        assert bg >= bv
    assert hp["reference"] == "initialisation"


def test_dudley_closed_form_both_branches():
    m = 1000
    for R in [0.01, 1.0, 50.0, 333.0]:
        rad, alpha = dudley_rademacher_bound(R, m)
        # direct minimisation over a fine alpha grid of 4a/sqrt(m) + (12R/m) ln(sqrt(m)/a)
        a = np.linspace(1e-6, math.sqrt(m), 200001)
        direct = np.min(4 * a / math.sqrt(m) + (12 * R / m) * np.log(math.sqrt(m) / a))
        assert float(rad) == pytest.approx(min(direct, 1.0), rel=1e-6, abs=1e-9)
        assert float(alpha) == pytest.approx(3 * R / math.sqrt(m))
    rad, alpha = dudley_rademacher_bound(400.0, m)  # 3R > m: alpha clipped, trivial bound
    assert float(alpha) == pytest.approx(math.sqrt(m))
    assert float(rad) == 1.0
    assert float(dudley_rademacher_bound(0.0, m)[0]) == 0.0


# ----------------------------------------------------------------------------------------
# union-bound bookkeeping
# ----------------------------------------------------------------------------------------


def test_grid_weights_sum_below_one():
    j = np.arange(-200000, 200001)
    total = float(np.exp(grid_log_weight(j)).sum())
    assert total < 1.0
    assert pytest.approx(1 - 3 / math.pi**2, rel=1e-15) == GRID_WEIGHT_TOTAL
    # truncated sum approaches the analytic value from below (tail ~ 6/(pi^2 N))
    assert GRID_WEIGHT_TOTAL - 1e-5 < total <= GRID_WEIGHT_TOTAL
    # products over several grids (Bartlett: 2K+1 quantities) stay below 1
    assert GRID_WEIGHT_TOTAL**5 < 1.0
    for jj in (-3, 0, 7):
        assert math.exp(float(grid_log_weight(jj))) == pytest.approx(_pi(jj), rel=1e-14)


def test_grid_index_at_least():
    for v in [1e-7, 0.3, 1.0, 1.9, 2.0, 2.0000001, 123.4]:
        j = grid_index_at_least(v)
        assert 2 ** (j / 4) >= v
        assert 2 ** ((j - 1) / 4) < v
    assert grid_index_at_least(0.0) is None


def test_delta_at_grid_point_is_delta_times_recorded_weights():
    xs, ys, _ = _tiny_data(300, 1.8, seed=3)
    X = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys)
    delta = 0.07
    ney = neyshabur2018_bound(_tiny_net(), X, y, radius=2.0, delta=delta)
    w = ney.hyperparameters["grid_weights"]
    assert w["pi_sigma_j"] == pytest.approx(_pi(ney.hyperparameters["sigma_index_j"]))
    assert w["pi_gamma_l"] == pytest.approx(_pi(ney.hyperparameters["gamma_index_l"]))
    assert ney.hyperparameters["delta_at_grid_point"] == pytest.approx(
        delta * w["pi_sigma_j"] * w["pi_gamma_l"], rel=1e-12
    )
    bar = bartlett2017_bound(_tiny_net(), X, y, delta=delta)
    hp = bar.hyperparameters
    w = hp["grid_weights"]
    prod = w["pi_gamma_l"] * math.prod(w["pi_spectral"]) * math.prod(w["pi_norm21"])
    assert hp["delta_at_grid_point"] == pytest.approx(delta * prod, rel=1e-12)
    idx = hp["spectral_norm_grid_indices"] + hp["norm21_grid_indices"]
    assert prod == pytest.approx(_pi(hp["gamma_index_l"]) * math.prod(_pi(j) for j in idx))
    assert ney.delta == bar.delta == delta


# ----------------------------------------------------------------------------------------
# monotonicity, margin scale, result invariants
# ----------------------------------------------------------------------------------------


def _random_net(widths, seed, bias=False):
    g = torch.Generator().manual_seed(seed)
    ws = [
        torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) / math.sqrt(widths[k])
        for k in range(len(widths) - 1)
    ]
    bs = None
    if bias:
        bs = [0.1 * torch.randn(widths[k + 1], generator=g, dtype=torch.float64) for k in range(len(widths) - 1)]
    return ReLUNetwork(ws, bs)


def _data_for(net, n, radius, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, net.input_dim, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True) * radius * torch.rand(n, 1, generator=g, dtype=torch.float64)
    y = net.predict(X)
    flip = torch.rand(n, generator=g) < 0.05
    y[flip] = (y[flip] + 1) % net.output_dim
    return X, y


def _check_invariants(res: BaselineResult):
    assert 0.0 <= res.certificate <= 1.0
    assert res.certificate == min(1.0, res.unclipped)
    assert res.vacuous == (res.unclipped >= 1.0)
    assert 0.0 <= res.empirical_term <= 1.0
    if math.isfinite(res.unclipped):
        assert res.complexity_term == pytest.approx(res.unclipped - res.empirical_term)
        assert res.complexity_term > 0
    json.dumps(res.to_dict())


def test_monotone_in_delta():
    net = _random_net([6, 10, 3], seed=2)
    init = _random_net([6, 10, 3], seed=3)
    X, y = _data_for(net, 500, 3.0, seed=4)
    for fn in (
        lambda d: neyshabur2018_bound(net, X, y, radius=3.0, delta=d),
        lambda d: neyshabur2018_bound(net, X, y, radius=3.0, delta=d, prior=init),
        lambda d: bartlett2017_bound(net, X, y, delta=d),
        lambda d: bartlett2017_bound(net, X, y, delta=d, reference=init),
    ):
        vals = [fn(d) for d in (0.001, 0.01, 0.1, 0.5)]
        for r in vals:
            _check_invariants(r)
            assert math.isfinite(r.unclipped)
        u = [r.unclipped for r in vals]
        assert all(a > b for a, b in itertools.pairwise(u)), u


def test_margin_scale_and_empirical_terms():
    net = _random_net([6, 10, 3], seed=7)
    X, y = _data_for(net, 400, 3.0, seed=8)
    acts = net.forward(X, y)
    ml = acts.margins_lower.numpy()
    # loss functions: scale covariance and direction
    for g in (0.1, 0.7, 2.0):
        assert margin_loss(2 * ml, 2 * g) == margin_loss(ml, g)
        assert ramp_loss(2 * ml, 2 * g) == pytest.approx(ramp_loss(ml, g), abs=1e-15)
        assert margin_loss(ml, g) >= ramp_loss(ml, g) >= float((ml <= 0).mean())
    assert margin_loss(np.array([0.5, 1.0, 1.5]), 1.0) == pytest.approx(2 / 3)
    assert ramp_loss(np.array([-1.0, 0.0, 0.5, 2.0]), 1.0) == pytest.approx((1 + 1 + 0.5) / 4)

    ney = neyshabur2018_bound(net, X, y, radius=3.0)
    assert ney.empirical_term == pytest.approx(margin_loss(ml, ney.hyperparameters["gamma"]), abs=1e-12)
    bar = bartlett2017_bound(net, X, y)
    # a vacuous Bartlett bound reports its unclipped value in the non-saturating form,
    # at its own gamma (docs/baselines.md, "Unclipped values")
    g_rep = bar.hyperparameters.get("unclipped_form", bar.hyperparameters)["gamma"]
    assert bar.empirical_term == pytest.approx(ramp_loss(ml, g_rep), abs=1e-12)

    # scaling the last layer by 2 (exact in floating point) doubles every margin; the
    # Bartlett grid point shifted by +4 in (s_K, b_K, gamma) has the same ramp loss and
    # the same R, so the two bounds differ only through the grid weights.
    ws = list(net.weights)
    scaled = ReLUNetwork([*ws[:-1], 2.0 * ws[-1]])
    ml2 = scaled.forward(X, y).margins_lower.numpy()
    assert np.array_equal(ml2, 2 * ml)
    bar2 = bartlett2017_bound(scaled, X, y)
    hp, hp2 = bar.hyperparameters, bar2.hyperparameters
    assert hp["parametrisation"] == hp2["parametrisation"] == "original"
    assert all(j >= 0 for j in hp["spectral_norm_grid_indices"] + hp["norm21_grid_indices"])
    m = bar.m

    def conc(logw):
        return 3 * math.sqrt((math.log(2 / 0.05) - logw) / (2 * m))

    def shifted_logw(h):
        jS = list(h["spectral_norm_grid_indices"])
        jB = list(h["norm21_grid_indices"])
        jS[-1] += 4
        jB[-1] += 4
        return float(grid_log_weight(np.array(jS + jB)).sum() + grid_log_weight(h["gamma_index_l"] + 4))

    assert bar2.unclipped <= bar.unclipped - conc(hp["log_grid_weight"]) + conc(shifted_logw(hp)) + 1e-9
    _check_invariants(bar2)
    ney2 = neyshabur2018_bound(scaled, X, y, radius=3.0)
    _check_invariants(ney2)
    assert ney2.empirical_term == pytest.approx(margin_loss(ml2, ney2.hyperparameters["gamma"]), abs=1e-12)


def test_neyshabur_conditions_and_rebalancing():
    net = _random_net([6, 12, 8, 3], seed=11)
    init = _random_net([6, 12, 8, 3], seed=12)
    X, y = _data_for(net, 300, 2.0, seed=13)
    res0 = neyshabur2018_bound(net, X, y, radius=2.0)
    hp = res0.hyperparameters
    assert hp["rebalanced"] and hp["prior_mean"] == "zero"
    norms = hp["spectral_norms"]
    assert max(norms) == pytest.approx(min(norms), rel=1e-9)  # equal spectral norms
    d, h = hp["depth_d"], hp["h"]
    assert d == 3 and h == 12
    t = hp["sigma"] * math.sqrt(2 * h * math.log(4 * d * h))
    assert t <= min(norms) / d
    assert math.e * 2.0 * math.prod(norms) * sum(t / n for n in norms) < hp["gamma"] / 4
    res1 = neyshabur2018_bound(net, X, y, radius=2.0, prior=init)
    tried = res1.hyperparameters["parametrisations_tried"]
    assert set(tried) == {"original", "rebalanced"}
    assert res1.unclipped == pytest.approx(min(tried.values()))
    _check_invariants(res0)
    _check_invariants(res1)


def test_no_usable_grid_point_gives_infinite_vacuous_bound():
    net = ReLUNetwork([torch.zeros(3, 2, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)])
    X = torch.rand(10, 2, dtype=torch.float64)
    y = torch.zeros(10, dtype=torch.int64)
    res = neyshabur2018_bound(net, X, y, radius=2.0)
    assert res.unclipped == math.inf and res.vacuous and res.certificate == 1.0
    assert res.to_dict()["unclipped"] == "inf"
    json.dumps(res.to_dict())


# ----------------------------------------------------------------------------------------
# biases
# ----------------------------------------------------------------------------------------


def test_bias_free_matrices_layout():
    net = _random_net([4, 5, 3], seed=1, bias=True)
    mats = bias_free_matrices(net)
    assert [tuple(a.shape) for a in mats] == [(6, 5), (3, 6)]
    assert torch.equal(mats[0][:5, :4], net.weights[0])
    assert torch.equal(mats[0][:5, 4], net.biases[0])
    assert torch.equal(mats[0][5], torch.tensor([0, 0, 0, 0, 1.0], dtype=torch.float64))
    assert torch.equal(mats[1][:, 5], net.biases[1])


def test_bias_networks_give_finite_results():
    net = _random_net([6, 10, 8, 3], seed=21, bias=True)
    init = _random_net([6, 10, 8, 3], seed=22, bias=True)
    X, y = _data_for(net, 400, 2.0, seed=23)
    for res in (
        neyshabur2018_bound(net, X, y, radius=2.0),
        neyshabur2018_bound(net, X, y, radius=2.0, prior=init),
        bartlett2017_bound(net, X, y),
        bartlett2017_bound(net, X, y, reference=init),
    ):
        _check_invariants(res)
        assert math.isfinite(res.unclipped)
        assert res.hyperparameters["bias_augmented"] is True
    ney = neyshabur2018_bound(net, X, y, radius=2.0)
    assert ney.hyperparameters["h"] == 11  # max(6+1, 10+1, 8+1, 3)
    assert ney.hyperparameters["B"] == pytest.approx(math.sqrt(5.0), rel=1e-8)
    bar = bartlett2017_bound(net, X, y)
    assert bar.hyperparameters["W"] == 11
    Xa2 = float((X**2).sum()) + X.shape[0]
    assert bar.hyperparameters["x_frobenius"] == pytest.approx(math.sqrt(Xa2), rel=1e-8)


# ----------------------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------------------


def test_bad_inputs():
    net = _random_net([4, 6, 3], seed=0)
    X, y = _data_for(net, 20, 1.0, seed=1)
    for bad in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError):
            neyshabur2018_bound(net, X, y, radius=1.0, delta=bad)
        with pytest.raises(ConfigError):
            bartlett2017_bound(net, X, y, delta=bad)
    with pytest.raises(ShapeMismatchError):
        neyshabur2018_bound(net, X[:, :3], y, radius=1.0)
    with pytest.raises(ShapeMismatchError):
        bartlett2017_bound(net, X[:, :3], y)
    with pytest.raises(ShapeMismatchError):
        bartlett2017_bound(net, X, y[:10])
    other = _random_net([4, 7, 3], seed=2)
    with pytest.raises(ShapeMismatchError):
        neyshabur2018_bound(net, X, y, radius=1.0, prior=other)
    with pytest.raises(ShapeMismatchError):
        bartlett2017_bound(net, X, y, reference=other)
    with pytest.raises(ShapeMismatchError):
        neyshabur2018_bound(net, X, y, radius=1.0, prior=_random_net([4, 6, 3], seed=2, bias=True))
    empty_X = torch.zeros(0, 4, dtype=torch.float64)
    empty_y = torch.zeros(0, dtype=torch.int64)
    with pytest.raises(DataError):
        neyshabur2018_bound(net, empty_X, empty_y, radius=1.0)
    with pytest.raises(DataError):
        bartlett2017_bound(net, empty_X, empty_y)
    with pytest.raises(DataError):  # declared radius smaller than a sample
        neyshabur2018_bound(net, X, y, radius=0.5 * float(X.norm(dim=1).max()))
    for bad_r in (0.0, -1.0, float("inf")):
        with pytest.raises(ConfigError):
            neyshabur2018_bound(net, X, y, radius=bad_r)
    with pytest.raises(ConfigError):  # Lemma 1 needs m >= 2
        neyshabur2018_bound(net, X[:1], y[:1], radius=1.0)


def test_rescaled_parametrisation_is_the_same_function_and_its_norms_are_bounded():
    from fractions import Fraction

    net = _random_net([5, 9, 7, 3], seed=31, bias=True)
    init = _random_net([5, 9, 7, 3], seed=32, bias=True)
    X, y = _data_for(net, 200, 2.0, seed=33)
    res = neyshabur2018_bound(net, X, y, radius=2.0, prior=init)
    hp = res.hyperparameters
    reb = neyshabur2018_bound(net, X, y, radius=2.0)  # prior 0: always rebalanced
    lam = reb.hyperparameters["rescaling_factors"]
    assert reb.hyperparameters["parametrisation"] == "rebalanced"
    mats = bias_free_matrices(net)
    # the rescaled bias-free network computes the same outputs on (x, 1)
    scaled = ReLUNetwork([a * v for a, v in zip(mats, lam, strict=True)])
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, dtype=torch.float64)], 1)
    out_s = scaled.forward(Xa, keep_pre_activations=False).outputs
    out = net.forward(X, keep_pre_activations=False).outputs
    assert torch.allclose(out_s, out, rtol=1e-12, atol=1e-12)
    # recorded norms: lambda_i ||W_i||, all equal after rebalancing
    for a, v, n in zip(mats, lam, reb.hyperparameters["spectral_norms"], strict=True):
        assert n == pytest.approx(float(torch.linalg.matrix_norm(a * v, 2)), rel=1e-12)
    # recorded squared distances are upper bounds of the exact (rational) values,
    # with the last factor the exact real 1 / prod(others)
    zeros = [torch.zeros_like(a) for a in mats]
    cases = [(hp, bias_free_matrices(init)), (reb.hyperparameters, zeros)]
    assert {c[0]["parametrisation"] for c in cases} >= {"rebalanced"}
    for h, prior_mats in cases:
        lam_exact = [Fraction(v) for v in h["rescaling_factors"][:-1]]
        prod = Fraction(1)
        for v in lam_exact:
            prod *= v
        lam_exact.append(1 / prod)
        for a, p, lv, rec in zip(mats, prior_mats, lam_exact, h["frobenius_sq_distance_to_prior_mean"], strict=True):
            exact = sum(
                (lv * Fraction(float(w)) - Fraction(float(q))) ** 2
                for w, q in zip(a.flatten().tolist(), p.flatten().tolist(), strict=True)
            )
            assert Fraction(rec) >= exact
            assert float(exact) == pytest.approx(rec, rel=1e-6)
