"""Tests for sparsebound.network: conversion, forward pass, rounding bounds, rescaling, checks."""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from sparsebound.errors import ConfigError, DataError, NetworkError, ShapeMismatchError
from sparsebound.network import ReLUNetwork, margins_from_outputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- helpers


def _random_net(widths: tuple[int, ...], bias: bool, seed: int, scale: float = 1.0) -> ReLUNetwork:
    g = torch.Generator().manual_seed(seed)
    ws = [scale * torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) / math.sqrt(widths[k])
          for k in range(len(widths) - 1)]
    bs = [0.3 * torch.randn(widths[k + 1], generator=g, dtype=torch.float64) for k in range(len(widths) - 1)]
    return ReLUNetwork(ws, bs if bias else None)


def _torch_preacts(model: nn.Sequential, X: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of every Linear of ``model`` (float64 reference forward)."""
    outs = []
    h = X
    with torch.no_grad():
        for m in model:
            h = m(h)
            if isinstance(m, nn.Linear):
                outs.append(h.clone())
    return outs


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _assert_matches_model(net: ReLUNetwork, model: nn.Module) -> None:
    lins = _linears(model)
    assert net.depth == len(lins)
    for k, lin in enumerate(lins):
        assert net.weights[k].dtype == torch.float64
        assert torch.equal(net.weights[k], lin.weight.detach().double())
        if net.biases is not None:
            expect = lin.bias.detach().double() if lin.bias is not None else torch.zeros(lin.out_features,
                                                                                         dtype=torch.float64)
            assert torch.equal(net.biases[k], expect)


# --------------------------------------------------------------------------- from_sequential: accepted


def test_from_sequential_flatten_linear_relu_linear() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    net = ReLUNetwork.from_sequential(model)
    assert net.widths == (12, 7, 3)
    assert net.depth == 2
    assert net.has_bias
    assert net.n_parameters == 12 * 7 + 7 + 7 * 3 + 3
    _assert_matches_model(net, model)
    X = torch.rand(9, 3, 4)  # flattened by Flatten / forward
    ref = model.double()(X.double()).detach()
    torch.testing.assert_close(net.forward(X).outputs, ref, rtol=1e-12, atol=1e-12)


def test_from_sequential_three_layers_no_bias() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False),
                          nn.ReLU(), nn.Linear(4, 2, bias=False))
    net = ReLUNetwork.from_sequential(model)
    assert net.widths == (6, 5, 4, 2)
    assert not net.has_bias
    assert net.biases is None
    assert net.n_parameters == 30 + 20 + 8
    _assert_matches_model(net, model)


def test_from_sequential_nested_with_identity_and_dropout() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.5)),
        nn.Sequential(nn.Sequential(nn.Linear(5, 4), nn.Identity(), nn.ReLU()), nn.Linear(4, 3)),
    )
    net = ReLUNetwork.from_sequential(model)
    assert net.widths == (6, 5, 4, 3)
    _assert_matches_model(net, model)
    model.eval()
    X = torch.rand(8, 6, dtype=torch.float64)
    torch.testing.assert_close(net.forward(X).outputs, model.double()(X).detach(), rtol=1e-12, atol=1e-12)


def test_from_sequential_without_flatten() -> None:
    net = ReLUNetwork.from_sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    assert net.widths == (3, 4, 2)


def test_from_sequential_mixed_bias_gives_zero_bias() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(),
                          nn.Linear(3, 2, bias=False))
    net = ReLUNetwork.from_sequential(model)
    assert net.has_bias
    assert net.biases is not None
    assert torch.equal(net.biases[0], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(net.biases[1], model[2].bias.detach().double())
    assert torch.equal(net.biases[2], torch.zeros(2, dtype=torch.float64))
    X = torch.rand(7, 5, dtype=torch.float64)
    torch.testing.assert_close(net.forward(X).outputs, model.double()(X).detach(), rtol=1e-12, atol=1e-12)


def test_from_sequential_copies_weights() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    net = ReLUNetwork.from_sequential(model)
    before = net.weights[0].clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert torch.equal(net.weights[0], before)


@pytest.mark.parametrize("bias", [False, True])
def test_to_sequential_round_trip(bias: bool) -> None:
    net = _random_net((5, 6, 4, 3), bias, seed=4)
    model = net.to_sequential(torch.float64)
    assert isinstance(model[0], nn.Flatten)
    assert [type(m) for m in model[1:]] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    back = ReLUNetwork.from_sequential(model)
    assert back.widths == net.widths
    assert back.has_bias == bias
    for a, b in zip(back.weights, net.weights, strict=True):
        assert torch.equal(a, b)
    if bias:
        for a, b in zip(back.biases, net.biases, strict=True):
            assert torch.equal(a, b)
    m32 = net.to_sequential()
    assert m32[1].weight.dtype == torch.float32


# --------------------------------------------------------------------------- from_sequential: rejected


def _named(*pairs: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(pairs))


@pytest.mark.parametrize(
    ("bad", "typename"),
    [
        (nn.Tanh(), "Tanh"),
        (nn.Sigmoid(), "Sigmoid"),
        (nn.BatchNorm1d(5), "BatchNorm1d"),
        (nn.LeakyReLU(), "LeakyReLU"),
    ],
)
def test_from_sequential_rejects_unsupported_activation(bad: nn.Module, typename: str) -> None:
    model = _named(("fc1", nn.Linear(4, 5)), ("weird", bad), ("fc2", nn.Linear(5, 3)))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    msg = str(exc.value)
    assert "weird" in msg
    assert typename in msg
    assert "\n" not in msg


def test_from_sequential_rejects_conv2d() -> None:
    model = _named(("conv", nn.Conv2d(1, 2, 3)), ("flat", nn.Flatten()), ("fc1", nn.Linear(8, 4)),
                   ("act", nn.ReLU()), ("fc2", nn.Linear(4, 2)))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    assert "conv" in str(exc.value)
    assert "Conv2d" in str(exc.value)


def test_from_sequential_rejection_names_nested_module() -> None:
    model = _named(("fc1", nn.Linear(4, 5)), ("block", _named(("act", nn.ReLU()), ("norm", nn.LayerNorm(5)))),
                   ("fc2", nn.Linear(5, 3)))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    assert "block.norm" in str(exc.value)
    assert "LayerNorm" in str(exc.value)


def test_from_sequential_rejects_custom_forward_module() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(5, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.lin(x)

    model = _named(("fc1", nn.Linear(4, 5)), ("act", nn.ReLU()), ("res", Residual()), ("fc2", nn.Linear(5, 3)))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    assert "res" in str(exc.value)
    assert "Residual" in str(exc.value)


def test_from_sequential_rejects_relu_after_last_linear() -> None:
    model = _named(("fc1", nn.Linear(4, 5)), ("act1", nn.ReLU()), ("fc2", nn.Linear(5, 3)), ("act2", nn.ReLU()))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    assert "ReLU" in str(exc.value)


def test_from_sequential_rejects_two_linears_without_relu() -> None:
    model = _named(("fc1", nn.Linear(4, 5)), ("fc2", nn.Linear(5, 5)), ("act", nn.ReLU()), ("fc3", nn.Linear(5, 3)))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    assert "fc2" in str(exc.value)
    assert "Linear" in str(exc.value)


def test_from_sequential_rejects_double_relu() -> None:
    model = _named(("fc1", nn.Linear(4, 5)), ("a1", nn.ReLU()), ("a2", nn.ReLU()), ("fc2", nn.Linear(5, 3)))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    assert "a2" in str(exc.value)


def test_from_sequential_rejects_flatten_after_linear() -> None:
    model = _named(("fc1", nn.Linear(4, 5)), ("act", nn.ReLU()), ("flat", nn.Flatten()), ("fc2", nn.Linear(5, 3)))
    with pytest.raises(NetworkError) as exc:
        ReLUNetwork.from_sequential(model)
    assert "flat" in str(exc.value)


@pytest.mark.parametrize(
    "model",
    [nn.Sequential(), nn.Sequential(nn.Flatten()), nn.Sequential(nn.Flatten(), nn.Identity())],
    ids=["empty", "flatten", "flatten-identity"],
)
def test_from_sequential_rejects_model_without_linear(model: nn.Module) -> None:
    with pytest.raises(NetworkError, match="no Linear"):
        ReLUNetwork.from_sequential(model)


def test_from_sequential_rejects_relu_without_linear() -> None:
    with pytest.raises(NetworkError, match="ReLU"):
        ReLUNetwork.from_sequential(nn.Sequential(nn.Flatten(), nn.ReLU()))


def test_from_sequential_rejects_single_linear() -> None:
    with pytest.raises(NetworkError, match="K >= 2"):
        ReLUNetwork.from_sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))


# --------------------------------------------------------------------------- constructor checks


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_rejected(bad: float) -> None:
    w1 = torch.ones(3, 2)
    w1[1, 0] = bad
    with pytest.raises(NetworkError, match="NaN/Inf"):
        ReLUNetwork([w1, torch.ones(2, 3)])
    w2 = torch.ones(2, 3)
    w2[0, 2] = bad
    with pytest.raises(NetworkError, match="layer 2"):
        ReLUNetwork([torch.ones(3, 2), w2])


def test_non_finite_bias_rejected() -> None:
    b = torch.zeros(3)
    b[0] = math.nan
    with pytest.raises(NetworkError, match="bias of layer 1"):
        ReLUNetwork([torch.ones(3, 2), torch.ones(2, 3)], [b, None])


def test_non_finite_weights_rejected_from_sequential() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight[0, 0] = math.inf
    with pytest.raises(NetworkError):
        ReLUNetwork.from_sequential(model)


def test_shapes_must_chain() -> None:
    with pytest.raises(NetworkError, match="layer 2 expects 6 inputs"):
        ReLUNetwork([torch.ones(5, 4), torch.ones(3, 6)])
    with pytest.raises(NetworkError, match="layer 3"):
        ReLUNetwork([torch.ones(5, 4), torch.ones(3, 5), torch.ones(2, 4)])


def test_other_constructor_errors() -> None:
    with pytest.raises(NetworkError, match="K >= 2"):
        ReLUNetwork([torch.ones(3, 2)])
    with pytest.raises(NetworkError, match="matrix"):
        ReLUNetwork([torch.ones(3, 2, 1), torch.ones(2, 3)])
    with pytest.raises(NetworkError, match="bias of layer 2 has 3 entries"):
        ReLUNetwork([torch.ones(3, 2), torch.ones(2, 3)], [None, torch.zeros(3)])
    with pytest.raises(NetworkError, match="biases"):
        ReLUNetwork([torch.ones(3, 2), torch.ones(2, 3)], [None])
    with pytest.raises(NetworkError, match=">= 2 classes"):
        ReLUNetwork([torch.ones(3, 2), torch.ones(1, 3)])
    with pytest.raises(NetworkError, match="dtype"):
        ReLUNetwork([torch.ones(3, 2, dtype=torch.complex64), torch.ones(2, 3)])


def test_constructor_accepts_numpy_and_copies() -> None:
    w1 = np.arange(6, dtype=np.float32).reshape(3, 2)
    net = ReLUNetwork([w1, np.ones((2, 3))], [None, np.array([1.0, 2.0])])
    assert net.weights[0].dtype == torch.float64
    w1[0, 0] = 100.0
    assert float(net.weights[0][0, 0]) == 0.0
    assert torch.equal(net.biases[0], torch.zeros(3, dtype=torch.float64))
    aug = net.augmented_weight(2)
    assert aug.shape == (2, 4)
    assert torch.equal(aug[:, -1], torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert net.describe() == "2-3-2 ReLU network, K=2, with biases"


# --------------------------------------------------------------------------- forward vs torch


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("widths", [(7, 5, 3), (10, 8, 6, 4), (6, 9, 7, 8, 5, 3)])
def test_forward_matches_torch_float64(widths: tuple[int, ...], bias: bool) -> None:
    seed = sum(widths) + int(bias)
    net = _random_net(widths, bias, seed)
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.rand(40, widths[0], generator=g)
    y = torch.randint(0, widths[-1], (40,), generator=g)
    acts = net.forward(X, y, batch_size=16)  # several batches
    model = net.to_sequential(torch.float64)
    ref = _torch_preacts(model, X.double())
    K = net.depth
    assert len(acts.pre_activations) == K - 1
    for k in range(K - 1):
        assert acts.pre_activations[k].dtype == torch.float64
        torch.testing.assert_close(acts.pre_activations[k], ref[k], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(acts.outputs, ref[-1], rtol=1e-12, atol=1e-12)
    assert acts.preact_error.shape == (40, K)
    assert acts.hidden_norms.shape == (40, K)
    assert bool((acts.preact_error >= 0).all())
    assert acts.n_samples == 40

    # margins against a plain loop
    out = acts.outputs
    for i in range(40):
        yi = int(y[i])
        others = [float(out[i, c]) for c in range(widths[-1]) if c != yi]
        assert float(acts.margins[i]) == float(out[i, yi]) - max(others)
    assert bool((acts.margins_lower <= acts.margins).all())
    assert torch.equal(acts.predictions, out.argmax(dim=1))
    # 0-1 error with THEORY's convention: a sample is wrong iff M <= 0 (ties count as errors)
    wrong = [float(out[i, int(y[i])]) <= max(float(out[i, c]) for c in range(widths[-1]) if c != int(y[i]))
             for i in range(40)]
    assert acts.error_rate(y) == pytest.approx(sum(wrong) / 40)
    assert acts.error_rate_lower(y) <= acts.error_rate(y) <= acts.error_rate_upper(y)

    # the same results in one batch
    one = net.forward(X, y, batch_size=4096)
    assert torch.equal(one.outputs, acts.outputs)
    assert torch.equal(one.preact_error, acts.preact_error)


def test_forward_without_labels_and_without_preacts() -> None:
    net = _random_net((4, 6, 3), False, 11)
    X = torch.rand(5, 4)
    acts = net.forward(X, keep_pre_activations=False)
    assert acts.pre_activations == ()
    assert acts.margins.numel() == 0
    assert acts.margins_lower.numel() == 0
    assert torch.equal(net.predict(X), acts.predictions)


def test_hidden_norms_are_upper_bounds() -> None:
    for bias in (False, True):
        net = _random_net((6, 8, 5, 3), bias, 21)
        X = torch.rand(30, 6, dtype=torch.float64)
        acts = net.forward(X)
        layers = [X] + [torch.relu(z) for z in acts.pre_activations]
        for k, x in enumerate(layers):
            n = x.norm(dim=1)
            if bias:
                n = torch.sqrt(n**2 + 1.0)
            assert bool((acts.hidden_norms[:, k] >= n).all())
            # and not absurdly loose
            assert bool((acts.hidden_norms[:, k] <= n * (1 + 1e-9) + 1e-9).all())


def test_margins_from_outputs_simple() -> None:
    out = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 0.25]], dtype=torch.float64)
    y = torch.tensor([1, 2])
    torch.testing.assert_close(margins_from_outputs(out, y), torch.tensor([1.0, -0.25], dtype=torch.float64))


# --------------------------------------------------------------------------- rounding bounds (exact reference)


def _exact_forward(net: ReLUNetwork, x: list[float]) -> tuple[list[list[Fraction]], list[Fraction]]:
    """Exact rational forward: pre-activations of every layer and the squared norms of x^0..x^{K-1}."""
    h = [Fraction(v) for v in x]
    zs, sq = [], []
    for k in range(net.depth):
        s = sum((v * v for v in h), Fraction(0))
        if net.has_bias:
            s += 1
        sq.append(s)
        W = net.weights[k].tolist()
        z = []
        for i, row in enumerate(W):
            acc = sum((Fraction(w) * v for w, v in zip(row, h, strict=True)), Fraction(0))
            if net.biases is not None:
                acc += Fraction(float(net.biases[k][i]))
            z.append(acc)
        zs.append(z)
        h = [max(v, Fraction(0)) for v in z]
    return zs, sq


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.float().double()


def _check_rounding(net: ReLUNetwork, X: torch.Tensor, y: torch.Tensor) -> None:
    acts = net.forward(X, y)
    K = net.depth
    for i in range(X.shape[0]):
        zs, sq = _exact_forward(net, X[i].tolist())
        computed = [acts.pre_activations[k][i] for k in range(K - 1)] + [acts.outputs[i]]
        for k in range(K):
            bound = Fraction(float(acts.preact_error[i, k]))
            for j, ze in enumerate(zs[k]):
                assert abs(ze - Fraction(float(computed[k][j]))) <= bound, (i, k, j)
            nb = Fraction(float(acts.hidden_norms[i, k]))
            assert nb * nb >= sq[k], (i, k)
        f = zs[-1]
        yi = int(y[i])
        exact_margin = f[yi] - max(f[c] for c in range(len(f)) if c != yi)
        assert Fraction(float(acts.margins_lower[i])) <= exact_margin, i


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_rounding_bounds_hold_exactly_random(bias: bool, seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    ws = [_f32(torch.randn(4, 3, generator=g, dtype=torch.float64)),
          _f32(torch.randn(3, 4, generator=g, dtype=torch.float64)),
          _f32(torch.randn(2, 3, generator=g, dtype=torch.float64))]
    bs = [_f32(torch.randn(d, generator=g, dtype=torch.float64)) for d in (4, 3, 2)] if bias else None
    net = ReLUNetwork(ws, bs)
    X = _f32(torch.randn(8, 3, generator=g, dtype=torch.float64) * 10)
    y = torch.randint(0, 2, (8,), generator=g)
    _check_rounding(net, X, y)


@pytest.mark.parametrize("bias", [False, True])
def test_rounding_bounds_hold_under_cancellation(bias: bool) -> None:
    # 2^30 + 2^-30 - 2^30 is not exact in float64: the forward pass really rounds here.
    big, tiny = 2.0**30, 2.0**-30
    W1 = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.5], [3.0, 1.0, 3.0], [0.1, 0.2, 0.3]], dtype=torch.float64)
    W2 = torch.tensor([[1.0, -1.0, 1.0, 1.0], [1.0, 1.0, -1.0, 1.0], [0.7, 0.3, 0.1, -0.2]], dtype=torch.float64)
    W3 = torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, -0.5]], dtype=torch.float64)
    ws = [_f32(W1), _f32(W2), _f32(W3)]
    bs = [_f32(torch.tensor(v, dtype=torch.float64)) for v in ([tiny, -1.0, 0.5, 0.0], [0.25, 0.0, 1.0], [0.0, 1e-3])]
    net = ReLUNetwork(ws, bs if bias else None)
    X = torch.tensor([[big, tiny, -big], [big, big, tiny], [-big, tiny, big], [1.0, 2.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    acts = net.forward(X, y)
    # the computed first pre-activation of sample 0 differs from the exact value tiny (+ bias)
    exact0 = Fraction(tiny) + (Fraction(tiny) if bias else 0)
    assert Fraction(float(acts.pre_activations[0][0, 0])) != exact0
    _check_rounding(net, X, y)


# --------------------------------------------------------------------------- rescaling


@pytest.mark.parametrize("bias", [False, True])
def test_rescaled_same_function(bias: bool) -> None:
    net = _random_net((6, 7, 5, 4), bias, 31)
    lam = [2.0, 0.125, 4.0]
    r = net.rescaled(lam)
    assert r.widths == net.widths
    assert r.has_bias == bias
    for k in range(3):
        torch.testing.assert_close(r.weights[k], net.weights[k] * lam[k], rtol=1e-15, atol=0)
    if bias:
        cum = [2.0, 0.25, 1.0]
        for k in range(3):
            torch.testing.assert_close(r.biases[k], net.biases[k] * cum[k], rtol=1e-15, atol=0)
    X = torch.rand(25, 6, dtype=torch.float64)
    a, b = net.forward(X), r.forward(X)
    torch.testing.assert_close(b.outputs, a.outputs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b.pre_activations[0], 2.0 * a.pre_activations[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b.pre_activations[1], 0.25 * a.pre_activations[1], rtol=1e-10, atol=1e-12)


def test_rescaled_non_dyadic_factors() -> None:
    net = _random_net((5, 6, 3), True, 32)
    lam = [3.0, 1.0 / 3.0]
    X = torch.rand(10, 5, dtype=torch.float64)
    out = net.rescaled(lam).forward(X).outputs
    ref = net.forward(X).outputs
    assert float(((out - ref).abs() / ref.abs().clamp_min(1e-300)).max()) < 1e-10


@pytest.mark.parametrize(
    "lam",
    [[1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, 1.0], [0.0, 2.0, 1.0], [2.0, 2.0, 1.0], [math.inf, 0.0, 1.0],
     [math.nan, 1.0, 1.0], [1.0, 1.0, 1.0 + 1e-6]],
)
def test_rescaled_rejects_bad_lambdas(lam: list[float]) -> None:
    net = _random_net((4, 5, 5, 3), False, 33)
    with pytest.raises(ConfigError):
        net.rescaled(lam)


# --------------------------------------------------------------------------- check_data


def test_check_data_errors() -> None:
    net = _random_net((4, 5, 3), False, 41)
    X = torch.rand(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    net.check_data(X, y)
    net.check_data(X.reshape(6, 2, 2), y)  # flattens to d_0
    with pytest.raises(ShapeMismatchError, match="dimension 4"):
        net.check_data(torch.rand(6, 5), y)
    with pytest.raises(ShapeMismatchError):
        net.forward(torch.rand(6, 3), y)
    with pytest.raises(DataError, match="labels"):
        net.check_data(X, torch.tensor([0, 1, 2, 0, 1, 3]))
    with pytest.raises(DataError, match="labels"):
        net.check_data(X, torch.tensor([0, 1, -1, 0, 1, 2]))
    with pytest.raises(DataError, match="empty"):
        net.check_data(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    Xn = X.clone()
    Xn[2, 1] = math.nan
    with pytest.raises(DataError, match="NaN"):
        net.check_data(Xn, y)
    Xi = X.clone()
    Xi[0, 0] = math.inf
    with pytest.raises(DataError):
        net.forward(Xi)
    with pytest.raises(ShapeMismatchError, match="labels"):
        net.check_data(X, y[:5])
    with pytest.raises(DataError):
        net.forward(X, torch.tensor([0, 1, 2, 0, 1, 5]))


def test_check_data_errors_are_distinct_types() -> None:
    net = _random_net((4, 5, 3), False, 42)
    with pytest.raises(DataError) as exc:
        net.check_data(torch.rand(3, 4), torch.tensor([0, 1, 7]))
    assert not isinstance(exc.value, NetworkError)


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("bias", [False, True])
def test_distances_against_direct_computation(bias: bool) -> None:
    a = _random_net((5, 6, 4, 3), bias, 51)
    b = _random_net((5, 6, 4, 3), bias, 52)
    per = []
    for k in range(3):
        d = ((a.weights[k] - b.weights[k]).numpy() ** 2).sum()
        if bias:
            d += ((a.biases[k] - b.biases[k]).numpy() ** 2).sum()
        per.append(d)
    got = a.frobenius_sq_distances(b)
    assert len(got) == 3
    np.testing.assert_allclose(got, per, rtol=1e-13)
    assert a.distance_to(b) == pytest.approx(math.sqrt(sum(per)), rel=1e-13)
    assert b.distance_to(a) == pytest.approx(a.distance_to(b), rel=1e-15)
    assert a.distance_to(a) == 0.0


def test_distance_simple_values() -> None:
    a = ReLUNetwork([torch.zeros(2, 2), torch.zeros(2, 2)], [torch.zeros(2), None])
    b = ReLUNetwork([torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2)], [torch.tensor([4.0, 0.0]), None])
    assert a.frobenius_sq_distances(b) == [25.0, 0.0]
    assert a.distance_to(b) == 5.0


def test_check_compatible() -> None:
    a = _random_net((5, 6, 3), False, 61)
    a.check_compatible(_random_net((5, 6, 3), False, 62))
    for other in (_random_net((5, 7, 3), False, 63), _random_net((5, 6, 6, 3), False, 64),
                  _random_net((5, 6, 3), True, 65)):
        with pytest.raises(ShapeMismatchError, match="prior"):
            a.check_compatible(other)
        with pytest.raises(ShapeMismatchError):
            a.distance_to(other)
        with pytest.raises(ShapeMismatchError):
            a.frobenius_sq_distances(other)
