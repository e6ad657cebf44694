"""The conversion reads the function the model computes, or refuses (breaker findings 1a, 1b, 3):
every argument of an accepted operation is read or the operation is refused; hooks anywhere are
refused; the comparison with the model runs on private copies at several input scales; a state_dict
whose layer order is ambiguous is refused."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from sparsebound.errors import NetworkError
from sparsebound.models import network_from_module, network_from_state_dict
from sparsebound.network import ReLUNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Shifted(nn.Module):
    """x -> fc2(relu(fc1(x) + alpha * shift)), the shift written with torch.add's alpha."""

    def __init__(self, alpha: float, data_first: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(6, 4), nn.Linear(4, 3)
        self.shift = nn.Parameter(torch.randn(4))
        self.alpha, self.data_first = alpha, data_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = torch.add(h, self.shift, alpha=self.alpha) if self.data_first else torch.add(self.shift, h,
                                                                                             alpha=self.alpha)
        return self.fc2(F.relu(h))


@pytest.mark.parametrize("alpha", [-1.0, 2.5, 1])
def test_torch_add_alpha_is_read(alpha: float) -> None:
    model = _Shifted(alpha)
    net = network_from_module(model)
    x = torch.randn(50, 6)
    with torch.no_grad():
        want = model(x).double()
    assert torch.allclose(net.forward(x.double()).outputs, want, atol=1e-5)
    expected_bias = model.fc1.bias.double() + alpha * model.shift.double()
    assert torch.allclose(net.biases[0], expected_bias, atol=1e-12)


def test_torch_add_alpha_scaling_the_data_is_refused() -> None:
    with pytest.raises(NetworkError, match="alpha"):
        network_from_module(_Shifted(2.0, data_first=False))


class _Fn(nn.Module):
    def __init__(self, fn: object) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 3)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)  # type: ignore[operator]


@pytest.mark.parametrize("fn, what", [
    (lambda s, x: torch.softmax(s.fc2(F.relu(s.fc1(x))), 1, dtype=torch.float16), "dtype"),
    (lambda s, x: s.fc2(F.relu(s.fc1(x.view(-1, 3)))), "cannot be evaluated"),
    (lambda s, x: s.fc2(F.relu(s.fc1(x.view(torch.float32)))), "target shape"),
    (lambda s, x: s.fc2(F.relu(s.fc1(torch.reshape(x, (x.shape[0], 2, 3)).flatten(1)))), "target shape"),
    (lambda s, x: s.fc2(F.relu(s.fc1(x) + 1.0)), "Python number"),
    (lambda s, x: s.fc2(F.relu(s.fc1(x) + s.fc1(x))), "residual"),
    (lambda s, x: s.fc2(torch.add(F.relu(s.fc1(x)), s.fc1.bias, out=None)), "out"),
    (lambda s, x: s.fc2(s.fc1(x).relu()).log_softmax(dim=1, dtype=torch.bfloat16), "dtype"),
])
def test_arguments_the_conversion_would_ignore_are_refused(fn: object, what: str) -> None:
    with pytest.raises(NetworkError, match=what):
        network_from_module(_Fn(fn))


def test_accepted_spellings_still_convert() -> None:
    model = _Fn(lambda s, x: F.log_softmax(s.fc2(F.relu(s.fc1(x.view(x.size(0), -1)), inplace=False)), dim=1))
    net = network_from_module(model)
    x = torch.randn(40, 6)
    with torch.no_grad():
        want = model(x).double()
    assert torch.allclose(torch.log_softmax(net.forward(x.double()).outputs, 1), want, atol=1e-5)


def test_check_sees_a_threshold_shift_that_standard_normal_inputs_rarely_reach() -> None:
    """A unit x0 - 3.2 vs x0 - 5.2 (the misread alpha of the breaker's exploit): N(0, 1) inputs almost never
    activate it; the larger random scales do."""
    torch.manual_seed(0)
    w1 = torch.zeros(3, 6, dtype=torch.float64)
    w1[0, 1], w1[1, 1], w1[2, 0] = 1.0, -1.0, 1.0
    b1 = torch.tensor([0.0, 0.0, -3.2], dtype=torch.float64)
    w2 = torch.zeros(3, 3, dtype=torch.float64)
    w2[1, 0], w2[2, 1], w2[0, 2] = 1.0, 1.0, 100.0
    b2 = torch.zeros(3, dtype=torch.float64)
    model = ReLUNetwork([w1, w2], [b1, b2]).to_sequential()
    wrong = ReLUNetwork([w1, w2], [b1 - 2.0, b2])
    with pytest.raises(NetworkError, match="computes another function"):
        wrong._check_same_function(model)


def test_root_pre_hook_is_refused_and_the_callers_data_is_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model.register_forward_pre_hook(lambda mod, inp: inp[0].mul_(3.0))
    X = torch.randn(30, 6)
    X0 = X.clone()
    with pytest.raises(NetworkError, match="root module"):
        network_from_module(model, example_inputs=X)
    assert torch.equal(X, X0)


def test_hook_on_an_inner_container_is_refused() -> None:
    inner = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
    model = nn.Sequential(inner, nn.Linear(5, 3))
    inner.register_forward_hook(lambda m, i, o: 2 * o)
    with pytest.raises(NetworkError, match=r"layer 0 .*hooks"):
        network_from_module(model)


def test_model_that_modifies_its_input_is_refused_and_never_sees_the_callers_tensor() -> None:
    class Mutating(nn.Module):
        def __init__(self, seq: nn.Module) -> None:
            super().__init__()
            self.seq = seq

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.seq(x)
            x.zero_()
            return out

    torch.manual_seed(0)
    net = ReLUNetwork.from_sequential(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    model = Mutating(net.to_sequential())
    X = torch.randn(30, 6)
    X0 = X.clone()
    with pytest.raises(NetworkError, match="modifies its input"):
        net._check_same_function(model, inputs=X)
    assert torch.equal(X, X0)


def _sd(shapes: list[tuple[str, tuple[int, int]]]) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return OrderedDict((f"{p}.weight", torch.randn(*s, generator=g)) for p, s in shapes)


def test_state_dict_with_several_chaining_orders_is_refused() -> None:
    # the breaker's MLP3: inp 64->32, h2 32->32, h1 32->32, out 32->10 (h1 is applied before h2)
    sd = _sd([("inp", (32, 64)), ("h2", (32, 32)), ("h1", (32, 32)), ("out", (10, 32))])
    with pytest.raises(NetworkError, match="architecture"):
        network_from_state_dict(sd)


def test_state_dict_with_one_chaining_order_is_read_in_that_order() -> None:
    sd = _sd([("c", (4, 5)), ("a", (6, 8)), ("b", (5, 6)), ("d", (3, 4))])
    net, desc = network_from_state_dict(sd)
    assert net.widths == (8, 6, 5, 4, 3)
    assert "a, b, c, d" in desc


@pytest.mark.parametrize("bias", [True, False])
def test_same_function_as_sees_unit_rescalings_and_nothing_else(bias: bool) -> None:
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)]
    bs = [torch.randn(5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)]
    net = ReLUNetwork(ws, bs if bias else None)
    c = torch.rand(5, generator=g, dtype=torch.float64) * 10 + 0.1  # one positive factor per hidden unit
    w1, w2 = ws[0] * c[:, None], ws[1] / c[None, :]
    scaled = ReLUNetwork([w1, w2], [bs[0] * c, bs[1]] if bias else None)
    x = torch.randn(20, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(net.forward(x).outputs, scaled.forward(x).outputs)  # the same function indeed
    assert net.same_function_as(scaled) and net.same_function_as(net.rescaled([8.0, 0.125]))
    other = ReLUNetwork([w1, w2 * 1.001], [bs[0] * c, bs[1]] if bias else None)
    assert not net.same_function_as(other)


def test_low_precision_model_warns_the_measured_disagreement_rate() -> None:
    """Breaker finding 10: what is certified is the float64 network; a bfloat16 model's predictions may differ."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10)).to(torch.bfloat16)
    X = torch.randn(3000, 20)
    with pytest.warns(UserWarning, match=r"bfloat16 model's on \d+ of 3000 given inputs") as rec:
        net = network_from_module(seq, example_inputs=X)
    with torch.no_grad():
        own = seq(X.to(torch.bfloat16)).float().argmax(1)
    ref = net.forward(X.to(torch.bfloat16).double()).outputs.argmax(1)
    n = int((own != ref).sum())
    assert f"on {n} of 3000 given inputs" in str(rec[0].message)
