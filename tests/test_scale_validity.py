"""Every norm and rounding bound stays on the safe side at any finite scale (issue 11, item 1).

Exact references: rational arithmetic (``fractions.Fraction``) on small cases.  End to end:
the audit's example (a bias-free 784-100-100-10 network with a data-dependent prior, bound
sample and test set multiplied by 2^-560) must give the same certificate as the unscaled
data and never one below the lower confidence bound of the held-out error; subnormal
inputs, tiny and huge weights likewise (or a clear error on overflow).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from sparsebound import certify
from sparsebound.baselines import _distance_upper, _domain_radius, _input_frobenius, _input_norms
from sparsebound.certificate import exact_omega_tables
from sparsebound.data import load_dataset, split_prior_bound
from sparsebound.errors import NetworkError
from sparsebound.network import ReLUNetwork
from sparsebound.norms import exact_reduced_norms, exact_row_norms_restricted, spectral_norm, uniform_sparse_norms
from sparsebound.rounding import (
    TINY64,
    float_up,
    frobenius_sq_distance_upper,
    norm_upper,
    prod_up,
    scale_pow2,
    sqrt_up,
    sum_sq_upper,
)
from sparsebound.sparsity import SparsityGrid, SparsityTable
from sparsebound.training import TrainConfig, init_network, train

SCALES = [1.0, 2.0**-560, 2.0**-1000, 2.0**-1060, 2.0**500, 2.0**900]


def _fr(x: float) -> Fraction:
    return Fraction(float(x))


def _sq(v) -> Fraction:
    return sum((_fr(x) ** 2 for x in np.asarray(v, dtype=np.float64).ravel()), Fraction(0))


def _ge_sqrt(bound: float, sq: Fraction) -> bool:
    """bound >= sqrt(sq), exactly."""
    return math.isinf(bound) or (bound >= 0 and _fr(bound) ** 2 >= sq)


# --------------------------------------------------------------------------- rounding helpers


@pytest.mark.parametrize("scale", SCALES)
def test_norm_upper_is_an_upper_bound_at_every_scale(scale: float) -> None:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(6, 9, generator=g, dtype=torch.float64) * scale
    v[1, 3:] = 0.0
    v[2] *= 2.0**-40  # a row far below the others
    v[3] = 0.0
    r = norm_upper(v, 1)
    for i in range(v.shape[0]):
        ex = _sq(v[i])
        assert _ge_sqrt(float(r[i]), ex), (scale, i)
        if ex == 0:
            assert float(r[i]) == 0.0
        elif float(r[i]) > 2.0**-1000 and math.isfinite(float(r[i])):
            # tight where nothing is subnormal
            assert _fr(r[i]) ** 2 <= ex * Fraction(1 + 1e-12)
    # column-wise too
    rc = norm_upper(v, 0)
    for j in range(v.shape[1]):
        assert _ge_sqrt(float(rc[j]), _sq(v[:, j]))


def test_norm_upper_subnormal_and_overflow() -> None:
    v = torch.tensor([[TINY64, 0.0, 3 * TINY64], [1e308, 1e308, 0.0], [math.inf, 1.0, 0.0]], dtype=torch.float64)
    r = norm_upper(v, 1)
    assert _ge_sqrt(float(r[0]), _sq([TINY64, 0.0, 3 * TINY64])) and float(r[0]) > 0
    assert float(r[1]) >= 1.4e308  # sqrt(2) 1e308: finite, no overflow
    assert math.isinf(float(r[2]))


@pytest.mark.parametrize("scale", SCALES)
def test_frobenius_distance_upper_vs_exact(scale: float) -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 7, generator=g, dtype=torch.float64) * scale
    b = torch.randn(5, 7, generator=g, dtype=torch.float64) * scale
    for lam in (1.0, 0.3, 7.25, 1.0 / 3.0):
        got = frobenius_sq_distance_upper(a, b, lam)
        ex = sum((Fraction(lam) * _fr(x) - _fr(y)) ** 2 for x, y in zip(a.flatten().tolist(), b.flatten().tolist(),
                                                                         strict=True))
        assert math.isinf(got) or _fr(got) >= ex, (scale, lam)
        if ex > Fraction(2) ** -900 and math.isfinite(got):
            assert _fr(got) <= ex * Fraction(1 + 1e-12)


def test_frobenius_distance_exact_cases_and_no_underflow_to_zero() -> None:
    a = torch.tensor([[3.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert frobenius_sq_distance_upper(a, torch.zeros(2, 2, dtype=torch.float64)) == 9.0
    assert frobenius_sq_distance_upper(a, a) == 0.0
    tiny = torch.full((3, 3), 2.0**-600, dtype=torch.float64)
    d = frobenius_sq_distance_upper(tiny, torch.zeros(3, 3, dtype=torch.float64))
    assert d > 0.0  # the exact value 9 * 2^-1200 is below the float range: rounded UP, never to 0
    huge = torch.full((3, 3), 2.0**600, dtype=torch.float64)
    assert math.isinf(frobenius_sq_distance_upper(huge, torch.zeros(3, 3, dtype=torch.float64)))
    # a sum of squares that is not exact is rounded up
    v = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    assert _fr(sum_sq_upper(v, exact=True)) >= _sq(v)


def test_scalar_helpers() -> None:
    assert sqrt_up(25.0) == 5.0 and _fr(sqrt_up(2.0)) ** 2 >= 2
    assert float_up(Fraction(1, 3)) >= Fraction(1, 3)
    vals = [2.0**-600, 2.0**-600, 3.0]
    p = prod_up(vals)
    assert p > 0 and _fr(p) >= Fraction(3) * Fraction(2) ** -1200
    assert math.isinf(prod_up([2.0**600, 2.0**600]))
    assert prod_up([2.0**600, 2.0**-600, 5.0]) == 5.0
    t = torch.tensor([1.5, -3.0, 0.0, math.inf], dtype=torch.float64)
    up_ = scale_pow2(t, -1070, "up")
    dn = scale_pow2(t, -1070, "down")
    for x, u, d in zip(t.tolist()[:3], up_.tolist(), dn.tolist(), strict=False):
        ex = _fr(x) * Fraction(2) ** -1070
        assert _fr(u) >= ex >= _fr(d)
    assert scale_pow2(torch.tensor([1.0], dtype=torch.float64), 2000, "down").item() == 1.7976931348623157e308


# --------------------------------------------------------------------------- forward pass, exact reference


def _exact_forward(net: ReLUNetwork, x: list[float]) -> tuple[list[list[Fraction]], list[Fraction]]:
    h = [Fraction(v) for v in x]
    zs, sq = [], []
    for k in range(net.depth):
        s = sum((v * v for v in h), Fraction(0)) + (1 if net.has_bias else 0)
        sq.append(s)
        z = []
        for i, row in enumerate(net.weights[k].tolist()):
            acc = sum((Fraction(w) * v for w, v in zip(row, h, strict=True)), Fraction(0))
            if net.biases is not None:
                acc += Fraction(float(net.biases[k][i]))
            z.append(acc)
        zs.append(z)
        h = [max(v, Fraction(0)) for v in z]
    return zs, sq


def _check_forward(net: ReLUNetwork, X: torch.Tensor, y: torch.Tensor) -> None:
    acts = net.forward(X, y)
    K = net.depth
    for i in range(X.shape[0]):
        zs, sq = _exact_forward(net, X[i].tolist())
        computed = [acts.pre_activations[k][i] for k in range(K - 1)] + [acts.outputs[i]]
        for k in range(K):
            err = float(acts.preact_error[i, k])
            for j, ze in enumerate(zs[k]):
                zh = float(computed[k][j])
                assert abs(ze - _fr(zh)) <= _fr(err), (i, k, j)
                # room for one float64 operation: the computed zhat + err is an upper bound
                assert _fr(zh + err) >= ze and _fr(zh - err) <= ze, (i, k, j)
            assert _ge_sqrt(float(acts.hidden_norms[i, k]), sq[k]), (i, k)
        f = zs[-1]
        yi = int(y[i])
        margin = f[yi] - max(f[c] for c in range(len(f)) if c != yi)
        assert _fr(acts.margins_lower[i]) <= margin <= _fr(acts.margins_upper[i]), i


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("x_scale", [1.0, 2.0**-560, 2.0**-1000, 2.0**-1065, 2.0**400])
def test_forward_bounds_hold_for_scaled_inputs(bias: bool, x_scale: float) -> None:
    g = torch.Generator().manual_seed(5)
    ws = [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64),
          torch.randn(3, 4, generator=g, dtype=torch.float64)]
    bs = [0.1 * torch.randn(d, generator=g, dtype=torch.float64) for d in (5, 4, 3)] if bias else None
    net = ReLUNetwork(ws, bs)
    X = torch.randn(6, 4, generator=g, dtype=torch.float64) * x_scale  # subnormal at 2^-1065: rounded data
    y = torch.randint(0, 3, (6,), generator=g)
    _check_forward(net, X, y)


@pytest.mark.parametrize("w_scales", [(2.0**-560, 2.0**560, 1.0), (2.0**-300, 2.0**-300, 2.0**-300),
                                      (2.0**200, 2.0**200, 2.0**100), (2.0**-700, 1.0, 2.0**700)])
def test_forward_bounds_hold_for_scaled_weights(w_scales: tuple[float, ...]) -> None:
    g = torch.Generator().manual_seed(6)
    ws = [torch.randn(5, 4, generator=g, dtype=torch.float64) * w_scales[0],
          torch.randn(4, 5, generator=g, dtype=torch.float64) * w_scales[1],
          torch.randn(3, 4, generator=g, dtype=torch.float64) * w_scales[2]]
    net = ReLUNetwork(ws)
    X = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    _check_forward(net, X, y)


def test_forward_overflow_is_a_clear_error() -> None:
    net = ReLUNetwork([torch.full((3, 4), 2.0**600, dtype=torch.float64),
                       torch.full((2, 3), 2.0**600, dtype=torch.float64)])
    with pytest.raises(NetworkError, match="overflowed"):
        net.forward(torch.ones(2, 4, dtype=torch.float64))


# --------------------------------------------------------------------------- matrix norms at any scale


@pytest.mark.parametrize("scale", [2.0**-560, 2.0**-1040, 2.0**600])
def test_matrix_norm_bounds_at_extreme_scales(scale: float) -> None:
    g = torch.Generator().manual_seed(7)
    W = torch.randn(5, 6, generator=g, dtype=torch.float64)
    W[0, :3] *= 2.0**-300  # entries whose squares underflow even after scaling
    Ws = W * scale
    # full row norms (omega at layer 1) and restricted row norms against exact sums
    mask = torch.tensor([[True, True, True, False, False, False], [False, True, False, True, True, True]])
    rr = exact_row_norms_restricted(Ws, mask)
    for n in range(2):
        for i in range(5):
            cols = mask[n].nonzero().flatten().tolist()
            assert _ge_sqrt(float(rr[n, i]), _sq(Ws[i, cols])), (n, i)
    # spectral, reduced and uniform bounds against the (rescaled) float64 SVD of the unscaled matrix
    ref = float(np.linalg.svd(W.numpy(), compute_uv=False)[0]) * scale
    assert spectral_norm(Ws) >= ref * (1 - 1e-12)
    red = exact_reduced_norms(Ws, torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 2, 3]]))
    ref_red = float(np.linalg.svd(W[:3, :4].numpy(), compute_uv=False)[0]) * scale
    assert float(red[0]) >= ref_red * (1 - 1e-12) and float(red[0]) > 0
    tab = uniform_sparse_norms(Ws, [1, 3, 5], [2, 6], prune=True)
    assert float(tab.bound[-1, -1]) >= ref * (1 - 1e-12)
    assert float(tab.row_bound[-1]) >= float(np.linalg.norm(W.numpy(), axis=1).max()) * scale * (1 - 1e-12)


def test_exact_omega_layer1_uses_scaled_row_norms() -> None:
    g = torch.Generator().manual_seed(8)
    net = ReLUNetwork([torch.randn(6, 4, generator=g, dtype=torch.float64) * 2.0**-560,
                       torch.randn(3, 6, generator=g, dtype=torch.float64) * 2.0**560])
    X = torch.randn(10, 4, generator=g, dtype=torch.float64)
    acts = net.forward(X)
    grid = SparsityGrid.from_fractions(net.widths, (1.0, 0.5))
    table = SparsityTable.build(acts, grid)
    om = exact_omega_tables(net, table)[0]  # (N, T_1, 1)
    W = net.weights[0]
    for n in range(X.shape[0]):
        for t, s in enumerate(grid.sparsity(1)):
            if s == 0:
                continue
            inactive = table.order[0][n, :s].tolist()
            ex = max(_sq(W[i]) for i in inactive)
            assert _ge_sqrt(float(om[n, t, 0]), ex)
            assert float(om[n, t, 0]) > 0


def test_baseline_data_norms_at_tiny_scale() -> None:
    net = ReLUNetwork([torch.ones(3, 4, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)])
    X = torch.full((5, 4), 2.0**-560, dtype=torch.float64)
    n = _input_norms(net, X)
    assert all(_ge_sqrt(float(v), _sq(X[0])) for v in n) and float(n.min()) > 0
    fro = _input_frobenius(net, X)
    assert _ge_sqrt(fro, _sq(X))
    # the radius check sees the true (tiny) norms: a radius below them is refused
    with pytest.raises(Exception, match="radius"):
        _domain_radius(net, X, 2.0**-562)
    assert _domain_radius(net, X, 2.0**-558) == 2.0**-558
    # distances never round to 0
    a = [torch.full((2, 2), 2.0**-600, dtype=torch.float64)]
    d = _distance_upper(a, [torch.zeros(2, 2, dtype=torch.float64)], [1.0], "fro")
    assert _ge_sqrt(d[0], _sq(a[0]))
    d21 = _distance_upper(a, [torch.zeros(2, 2, dtype=torch.float64)], [3.0], "21")
    assert d21[0] >= 2 * math.sqrt(2) * 3 * 2.0**-600


# --------------------------------------------------------------------------- end to end: the audit's example


@pytest.fixture(scope="module")
def mnist_ddp():
    """784-100-100-10, bias-free, data-dependent prior trained on half of mnist5k's training set."""
    torch.manual_seed(0)
    sp = load_dataset("mnist5k")
    tr, te = sp.train, sp.test
    prior_idx, bound_idx = split_prior_bound(len(tr), 0.5, 0)
    init = init_network(tr.input_dim, [100, 100], tr.n_classes, seed=0)
    prior = train(init, tr.subset(prior_idx), TrainConfig(max_epochs=6, seed=0), progress=False).network
    bs = tr.subset(bound_idx)
    X = bs.X.double()[:600]
    y = bs.y[:600]
    Xt = te.X.double()[:1000]
    yt = te.y[:1000]
    return prior, X, y, Xt, yt


def _cert(net, prior, X, y, Xt, yt, **kw):
    return certify(net, X, y, prior=prior, prior_kind="data-dependent", X_test=Xt, y_test=yt,
                   methods=["sparse", "uniform-sparse", "dense", "test-set"], progress=False, tradeoff=False,
                   exact_rounds=1, **kw)


def test_audit_example_scaled_inputs_keep_the_certificate(mnist_ddp) -> None:
    """Posterior = the data-dependent prior (KL = 0).  Before the fix, the inputs times 2^-560
    made every norm 0 and every sample 'certified': the certificate fell to ~0.005, far below
    the lower confidence bound of the test error."""
    prior, X, y, Xt, yt = mnist_ddp
    base = _cert(prior, prior, X, y, Xt, yt)
    lcb = base.test_error_lower_confidence
    assert 0.02 < base.test_error < 0.5
    for r in base.results.values():
        assert r.certificate >= lcb
    s = 2.0**-560
    scaled = _cert(prior, prior, X * s, y, Xt * s, yt)
    assert scaled.test_error == base.test_error
    assert scaled.test_error_lower_confidence == pytest.approx(lcb)
    for name, r in scaled.results.items():
        assert r.certificate >= scaled.test_error_lower_confidence, name
        # bias-free: the data's scale is a unit of the recursions; the certificate is the same
        assert r.unclipped == pytest.approx(base.results[name].unclipped, rel=1e-9), name
    assert scaled.results["sparse"].unclipped <= scaled.results["dense"].unclipped * (1 + 1e-12)


@pytest.mark.parametrize("scale", [2.0**-1060, 2.0**-1074 * 255])
def test_audit_example_subnormal_inputs_stay_valid(mnist_ddp, scale: float) -> None:
    prior, X, y, Xt, yt = mnist_ddp
    c = _cert(prior, prior, X * scale, y, Xt * scale, yt)  # the data itself is rounded: a new data set
    lcb = c.test_error_lower_confidence
    for name, r in c.results.items():
        assert r.certificate >= lcb, name
        assert 0.0 <= r.certificate <= 1.0


def test_audit_example_wider_sigma_grid_and_scaled_weights(mnist_ddp) -> None:
    """A wider a-priori sigma grid, and the same function with layer scales (2^-560, 2^560, 1):
    still never below the lower confidence bound; the bias-free rescaling search finds the
    same certificate as for the unscaled network."""
    from sparsebound.pacbayes import SigmaGrid

    prior, X, y, Xt, yt = mnist_ddp
    grid = SigmaGrid(j_min=-400)
    base = _cert(prior, prior, X, y, Xt, yt, sigma_grid=grid)
    for r in base.results.values():
        assert r.certificate >= base.test_error_lower_confidence
    w = prior.weights
    scaled_net = ReLUNetwork([w[0] * 2.0**-560, w[1] * 2.0**560, w[2]])
    c = _cert(scaled_net, prior, X, y, Xt, yt, sigma_grid=grid)
    for name, r in c.results.items():
        assert r.certificate >= c.test_error_lower_confidence, name
        assert r.unclipped == pytest.approx(base.results[name].unclipped, rel=1e-6), name
    # inputs times 2^-560 as well: the first layer's exact activations (~2^-1120) lie below
    # the float64 range, so the computed network is not the real one any more; the bounds
    # must say so (nothing wrongly certified), not certify what float64 cannot see
    c2 = _cert(scaled_net, prior, X * 2.0**-560, y, Xt * 2.0**-560, yt, sigma_grid=grid)
    for name, r in c2.results.items():
        assert r.certificate >= c2.test_error_lower_confidence, name


def test_huge_and_tiny_weights_are_valid_or_refused() -> None:
    splits = load_dataset("synthetic", n_train=300, n_test=300,
                          synthetic={"kind": "teacher", "dim": 8, "n_classes": 3, "hidden": 8, "seed": 2})
    tr, te = splits.train, splits.test
    init = init_network(tr.input_dim, [16, 16], tr.n_classes, seed=0)
    net = train(init, tr, TrainConfig(max_epochs=15, seed=0), progress=False).network
    for f in (2.0**-330, 2.0**300):  # every layer scaled: another function, outputs near the float range
        scaled = ReLUNetwork([w * f for w in net.weights])
        c = certify(scaled, tr.X.double(), tr.y, prior=init, X_test=te.X.double(), y_test=te.y, progress=False,
                    tradeoff=False, methods=["sparse", "dense", "test-set"])
        for name, r in c.results.items():
            assert r.certificate >= c.test_error_lower_confidence, (f, name)
    huge = ReLUNetwork([w * 2.0**400 for w in net.weights])
    with pytest.raises(NetworkError, match="too large"):
        certify(huge, tr.X.double(), tr.y, prior=init, progress=False, methods=["dense"])
