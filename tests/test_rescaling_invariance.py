"""The certificate of a function does not depend on how its layers happen to be scaled
(issue 11, item 18; docs/theory.md section 8, Proposition 8.2).

A bias-free digits network given with layer scales (10, 0.1) got ``sparse`` 253.9 instead
of 124.8, and with (100, 0.01) 16,897, because the rescaling search stopped two octaves
from the given scaling.  Now every rescaled representative gets the same ``sparse``,
``uniform-sparse`` and ``dense`` certificates (relative to the fixed prior).
"""

from __future__ import annotations

import math

import pytest
import torch

from sparsebound import certify
from sparsebound.certificate import canonical_rescalings, pow2_rescaled
from sparsebound.data import load_dataset
from sparsebound.network import ReLUNetwork
from sparsebound.training import TrainConfig, init_network, train

METHODS = ["sparse", "uniform-sparse", "dense"]


@pytest.fixture(scope="module")
def digits():
    sp = load_dataset("digits")
    return sp.train, sp.test


_TRAINED: dict[tuple, tuple[ReLUNetwork, ReLUNetwork]] = {}


def _trained(tr, hidden, bias=False, seed=0):
    key = (tuple(hidden), bias, seed)
    if key not in _TRAINED:
        init = init_network(tr.input_dim, hidden, tr.n_classes, bias=bias, seed=seed)
        _TRAINED[key] = (init, train(init, tr, TrainConfig(max_epochs=10, seed=seed), progress=False).network)
    return _TRAINED[key]


def _scaled(net: ReLUNetwork, scales) -> ReLUNetwork:
    ws = [w * f for w, f in zip(net.weights, scales, strict=True)]
    bs = None
    if net.biases is not None:
        cum = 1.0
        bs = []
        for b, f in zip(net.biases, scales, strict=True):
            cum *= f
            bs.append(b * cum)
    return ReLUNetwork(ws, bs)


def _cert(net, init, tr, te):
    # 400 of the training points as the bound sample keep the test fast; the network was trained on all
    return certify(net, tr.X[:400], tr.y[:400], prior=init, X_test=te.X, y_test=te.y, methods=METHODS,
                   progress=False, tradeoff=False, exact_rounds=1)


@pytest.mark.parametrize("hidden, all_scales", [
    ([32], [(10.0, 0.1), (100.0, 0.01), (0.01, 100.0)]),
    ([32, 32], [(10.0, 0.1, 1.0), (0.01, 1.0, 100.0), (4.0, 3.0, 1.0 / 12.0)]),
])
def test_bias_free_certificates_do_not_depend_on_layer_scales(digits, hidden, all_scales) -> None:
    tr, te = digits
    init, net = _trained(tr, hidden)
    base = _cert(net, init, tr, te)
    lcb = base.test_error_lower_confidence
    r0 = base.results
    assert r0["sparse"].unclipped <= r0["uniform-sparse"].unclipped <= r0["dense"].unclipped * (1 + 1e-12)
    for scales in all_scales:
        c = _cert(_scaled(net, scales), init, tr, te)
        for name in METHODS:
            r = c.results[name]
            assert r.certificate >= lcb
            assert r.unclipped == pytest.approx(r0[name].unclipped, rel=1e-6), (scales, name)
            # the same real network is certified: its factors relative to the given one differ by 1/scales
            for a, b, f in zip(r.rescaling, r0[name].rescaling, scales, strict=True):
                assert a * f == pytest.approx(b, rel=1e-9), (scales, name)
            assert r.distance_to_prior == pytest.approx(r0[name].distance_to_prior, rel=1e-9)


def test_canonical_rescalings_are_class_invariants(digits) -> None:
    tr, _ = digits
    init, net = _trained(tr, [32, 32])  # (shared with the test above)
    a0, b0 = canonical_rescalings(net, init)
    assert math.prod(a0) == pytest.approx(1.0) and math.prod(b0) == pytest.approx(1.0)
    # balanced: equal Frobenius norms
    norms = [float((w * f).norm()) for w, f in zip(net.weights, b0, strict=True)]
    assert max(norms) == pytest.approx(min(norms), rel=1e-9)
    mu = (3.0, 0.5, 1.0 / 1.5)
    a1, b1 = canonical_rescalings(_scaled(net, mu), init)
    for x0, x1, m in zip(a0, a1, mu, strict=True):
        assert x1 * m == pytest.approx(x0, rel=1e-9)
    for x0, x1, m in zip(b0, b1, mu, strict=True):
        assert x1 * m == pytest.approx(x0, rel=1e-9)
    # a posterior equal to its prior, given with power-of-two layer scales: KL = 0 is kept exactly
    mu2 = (2.0**20, 2.0**-30, 2.0**10)
    a2, _ = canonical_rescalings(_scaled(init, mu2), init)
    assert a2 == tuple(1.0 / m for m in mu2)


def test_bias_networks_canonical_power_of_two_scaling(digits) -> None:
    """With biases the network is brought to its prior-aligned scaling by exact powers of two:
    invariant under power-of-two rescalings (docs/theory.md, Proposition 8.2, part 2)."""
    tr, te = digits
    init, net = _trained(tr, [32, 32], bias=True)
    base = _cert(net, init, tr, te)
    c = _cert(_scaled(net, (4.0, 0.5, 0.5)), init, tr, te)
    for name in METHODS:
        assert c.results[name].certificate >= base.test_error_lower_confidence
        assert c.results[name].unclipped == pytest.approx(base.results[name].unclipped, rel=1e-9), name
        for a, b, f in zip(c.results[name].rescaling, base.results[name].rescaling, (4.0, 0.5, 0.5), strict=True):
            assert a * f == b
    # the rescaled network computes exactly the same function
    r = pow2_rescaled(net, [3, -1, -2])
    assert r is not None
    X = te.X.double()[:50]
    assert torch.equal(r.forward(X).predictions, net.forward(X).predictions)
    assert torch.allclose(r.forward(X).outputs, net.forward(X).outputs, rtol=1e-12, atol=1e-12)
    assert pow2_rescaled(net, [2000, -1000, -1000]) is None  # would leave the float64 range
