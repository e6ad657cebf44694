"""Certify your own model (issue #13): models written the ways users write them, read from
files in every supported format, give the same certificate as the same network certified
through `sparsebound train`'s checkpoint path."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import json
import textwrap
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import sparsebound
from sparsebound.certificate import PriorValidityWarning
from sparsebound.checkpoint import load_checkpoint
from sparsebound.cli import main
from sparsebound.data import load_dataset
from sparsebound.errors import ConfigError, DataError, NetworkError
from sparsebound.models import load_model, network_from_module, network_from_state_dict
from sparsebound.network import ReLUNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = ["sparse", "dense", "neyshabur2018", "test-set"]


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- how users write models


class MLP(nn.Module):
    """The usual nn.Module subclass: layers made in __init__, called in forward."""

    def __init__(self, widths: tuple[int, ...], bias: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in itertools.pairwise(widths))
        self.dropout = nn.Dropout(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size(0), -1)
        for layer in self.layers[:-1]:
            x = self.dropout(F.relu(layer(x)))
        return self.layers[-1](x)


class Wrapper(nn.Module):
    """A thin module around an nn.Sequential."""

    def __init__(self, seq: nn.Sequential) -> None:
        super().__init__()
        self.body = seq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _copy_into(linears: list[nn.Linear], net: ReLUNetwork) -> None:
    with torch.no_grad():
        for k, lin in enumerate(linears):
            lin.weight.copy_(net.weights[k])
            if net.biases is not None:
                lin.bias.copy_(net.biases[k])


def user_model(style: str, net: ReLUNetwork) -> nn.Module:
    """``net`` written as a user would: ``subclass``, ``sequential`` or ``wrapper``."""
    if style == "subclass":
        m = MLP(net.widths, bias=net.has_bias)
        _copy_into(list(m.layers), net)
    else:
        layers: list[nn.Module] = [nn.Flatten()]
        for k in range(net.depth):
            layers.append(nn.Linear(net.widths[k], net.widths[k + 1], bias=net.has_bias))
            if k < net.depth - 1:
                layers += [nn.ReLU(), nn.Dropout(0.1)]
        seq = nn.Sequential(*layers)
        _copy_into([m for m in seq if isinstance(m, nn.Linear)], net)
        m = seq if style == "sequential" else Wrapper(seq)
    return m.train()  # left in training mode on purpose: dropout must be read as evaluation mode


ARCH_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn
    import torch.nn.functional as F  # noqa: N812

    class Net(nn.Module):
        def __init__(self, widths, bias=True):
            super().__init__()
            self.fcs = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(widths[:-1], widths[1:]))

        def forward(self, x):
            x = torch.flatten(x, 1)
            for fc in self.fcs[:-1]:
                x = F.relu(fc(x))
            return F.log_softmax(self.fcs[-1](x), dim=1)
''')


def _onnx_file(path: Path, net: ReLUNetwork) -> None:
    """An ONNX graph as exporters write it: Flatten, then Gemm (transB=1) with biases or MatMul without."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Flatten", ["x"], ["h0"], axis=1)]
    inits = []
    for k, w in enumerate(net.weights):
        wk = w.numpy().astype(np.float32)
        if net.biases is not None:
            inits += [numpy_helper.from_array(wk, f"W{k}"),
                      numpy_helper.from_array(net.biases[k].numpy().astype(np.float32), f"b{k}")]
            nodes.append(helper.make_node("Gemm", [f"h{k}", f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        else:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(wk.T), f"W{k}"))
            nodes.append(helper.make_node("MatMul", [f"h{k}", f"W{k}"], [f"z{k}"]))
        if k < net.depth - 1:
            nodes.append(helper.make_node("Relu", [f"z{k}"], [f"h{k + 1}"]))
    out = f"z{net.depth - 1}"
    graph = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", net.input_dim])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", net.output_dim])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def write_model(fmt: str, net: ReLUNetwork, folder: Path, tag: str) -> tuple[Path, list[str]]:
    """``net`` saved as a user would in format ``fmt``; returns the file and the extra CLI options."""
    m = user_model("subclass", net).eval()
    if fmt == "state_dict":
        p = folder / f"{tag}.pt"
        torch.save(m.state_dict(), p)
        return p, []
    if fmt == "state_dict+arch":
        src = folder / "arch.py"
        src.write_text(ARCH_SOURCE)
        seq = user_model("sequential", net).eval()
        sd = OrderedDict((f"fcs.{i}.{leaf}", t) for i, lin in enumerate(x for x in seq if isinstance(x, nn.Linear))
                         for leaf, t in lin.state_dict().items())
        p = folder / f"{tag}_arch.pt"
        torch.save(sd, p)
        return p, ["--arch", f"{src}:Net({list(net.widths)!r}, bias={net.has_bias})"]
    if fmt == "safetensors":
        from safetensors.torch import save_file

        p = folder / f"{tag}.safetensors"
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(p))
        return p, []
    if fmt == "torchscript-trace":
        p = folder / f"{tag}_trace.ts"
        torch.jit.save(torch.jit.trace(m, torch.rand(2, net.input_dim)), str(p))
        return p, []
    if fmt == "torchscript-script":
        p = folder / f"{tag}_script.ts"
        torch.jit.save(torch.jit.script(user_model("sequential", net).eval()), str(p))
        return p, []
    if fmt == "onnx":
        p = folder / f"{tag}.onnx"
        _onnx_file(p, net)
        return p, []
    raise AssertionError(fmt)


# --------------------------------------------------------------------------- fixtures


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints written by `sparsebound train` on digits: with biases (K=2), bias-free (K=3),
    and bias-free with a data-dependent prior (K=2)."""
    root = tmp_path_factory.mktemp("own")
    specs = {
        "bias": ["--widths", "12", "--bias"],
        "nobias": ["--widths", "12", "12"],
        "ddp": ["--widths", "12", "--prior-fraction", "0.5"],
    }
    out = {}
    for name, extra in specs.items():
        rc, _, err = _run(["train", "--dataset", "digits", *extra, "--max-epochs", "2", "--out", str(root / name),
                           "--quiet", "--threads", "1"])
        assert rc == 0, err
        out[name] = root / name
    return out


def _reference(ck: Path, tmp: Path, extra: list[str] | None = None) -> dict:
    js = tmp / ("ref-" + "_".join([ck.name, *(x.strip("-") for x in extra or [])]) + ".json")
    if not js.exists():
        rc, _, err = _run(["certify", str(ck), "--methods", *METHODS, *(extra or []), "--json", str(js), "--quiet",
                           "--threads", "1"])
        assert rc == 0, err
    return json.loads(js.read_text())


def _same_results(a: dict, b: dict) -> None:
    assert a["m"] == b["m"] and a["test_error"] == b["test_error"]
    assert set(a["results"]) == set(b["results"])
    for name in a["results"]:
        ra, rb = a["results"][name], b["results"][name]
        assert ra["certificate"] == rb["certificate"], name
        assert ra["unclipped"] == rb["unclipped"], name


# --------------------------------------------------------------------------- API: any nn.Module


@pytest.mark.parametrize("style", ["subclass", "sequential", "wrapper"])
@pytest.mark.parametrize("which", ["bias", "nobias"])
def test_api_certifies_user_modules_like_the_checkpoint(ckpts: dict[str, Path], style: str, which: str) -> None:
    ck = load_checkpoint(ckpts[which])
    tr = load_dataset("digits").train
    model, init = user_model(style, ck.network), user_model(style, ck.init)
    kw = {"methods": ["sparse", "dense"], "progress": False, "rescale": which == "bias"}  # search: tested below
    got = sparsebound.certify(model, tr.X, tr.y, prior=init, init=init, **kw)
    ref = sparsebound.certify(ck.network, tr.X, tr.y, prior=ck.init, init=ck.init, **kw)
    assert got.prior_kind == "init"  # derived: the prior equals init=
    for name in ("sparse", "dense"):
        assert got.results[name].certificate == ref.results[name].certificate
        assert got.results[name].unclipped == ref.results[name].unclipped
    assert model.training  # the user's module is left as it was


@pytest.mark.parametrize("style", ["subclass", "sequential", "wrapper"])
def test_relu_network_from_module_reads_exact_weights(ckpts: dict[str, Path], style: str) -> None:
    ck = load_checkpoint(ckpts["bias"])
    net = ReLUNetwork.from_module(user_model(style, ck.network))
    assert net.widths == ck.network.widths and net.has_bias
    for a, b in zip(net.weights + net.biases, ck.network.weights + ck.network.biases, strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- CLI: model files, explicit priors

FORMATS = ["state_dict", "state_dict+arch", "safetensors", "torchscript-trace", "torchscript-script", "onnx"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["bias", "nobias"])
def test_cli_model_file_with_init_gives_the_checkpoint_certificate(ckpts: dict[str, Path], tmp_path: Path,
                                                                   fmt: str, which: str) -> None:
    if fmt == "onnx" and not _onnx_available():
        pytest.skip("ONNX support not installed (pip install 'sparsebound[onnx]')")
    ck = load_checkpoint(ckpts[which])
    model, extra = write_model(fmt, ck.network, tmp_path, "model")
    init, _ = write_model(fmt, ck.init, tmp_path, "init")
    js = tmp_path / "own.json"
    fast = ["--no-rescale"] if which == "nobias" else []  # the rescaling search is compared in the prior-zero test
    rc, out, err = _run(["certify", "--model", str(model), *extra, "--init", str(init), "--data", "digits",
                         "--methods", *METHODS, *fast, "--json", str(js), "--quiet", "--threads", "1"])
    assert rc == 0, err
    assert "bound sample: the whole training split of digits: 1437 points" in out
    rec = json.loads(js.read_text())
    _same_results(rec, _reference(ckpts[which], tmp_path.parent, fast))
    assert rec["prior"] == "init"
    assert rec["bound_sample_record"]["kind"] == "train" and rec["bound_sample_record"]["m"] == 1437
    assert rec["bound_sample_record"]["data"]["dataset"] == "digits"
    assert rec["model_file"]["path"] == str(model)


def test_cli_train_prior_reproduces_the_data_dependent_checkpoint(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """--train-prior with the checkpoint's init, seed and trainer settings trains the same prior on the same
    S_prior (split seed recorded) and certifies on the same S_bound: identical certificates."""
    ck = load_checkpoint(ckpts["ddp"])
    model, _ = write_model("state_dict", ck.network, tmp_path, "post")
    init, _ = write_model("state_dict", ck.init, tmp_path, "init")
    js = tmp_path / "tp.json"
    rc, out, err = _run(["certify", "--model", str(model), "--init", str(init), "--train-prior", "0.5",
                         "--prior-seed", "0", "--max-epochs", "2", "--data", "digits", "--methods", *METHODS,
                         "--json", str(js), "--quiet", "--threads", "1"])
    assert rc == 0, err
    rec = json.loads(js.read_text())
    ref = _reference(ckpts["ddp"], tmp_path.parent)
    _same_results(rec, ref)
    assert rec["prior"] == ref["prior"] == "data-dependent"
    b = rec["bound_sample_record"]
    assert (b["kind"], b["prior_fraction"], b["seed"], b["n_prior"], b["n_bound"]) == ("bound-split", 0.5, 0, 718, 719)
    assert "S_bound: 719 training points of digits not used by the prior" in out
    assert rec["prior_training"]["epochs"] == 2


def test_cli_prior_zero_matches_checkpoint_prior_zero(ckpts: dict[str, Path], tmp_path: Path) -> None:
    ck = load_checkpoint(ckpts["nobias"])
    model, _ = write_model("safetensors", ck.network, tmp_path, "m")
    js = tmp_path / "z.json"
    rc, _, err = _run(["certify", "--model", str(model), "--prior", "zero", "--data", "digits", "--methods", *METHODS,
                       "--json", str(js), "--quiet", "--threads", "1"])
    assert rc == 0, err
    rec = json.loads(js.read_text())
    _same_results(rec, _reference(ckpts["nobias"], tmp_path.parent, ["--prior", "zero"]))
    assert rec["prior"] == "zero"


def test_cli_prior_or_init_equal_to_the_network_is_refused(ckpts: dict[str, Path], tmp_path: Path) -> None:
    ck = load_checkpoint(ckpts["bias"])
    model, _ = write_model("state_dict", ck.network, tmp_path, "m")
    x2 = ck.network.rescaled([2.0, 0.5])  # a power-of-two rescaled copy: the same function
    model_x2, _ = write_model("state_dict", x2, tmp_path, "m2")
    for opts in (["--prior", str(model)], ["--prior", str(model_x2)], ["--init", str(model_x2)],
                 ["--init", str(model), "--train-prior", "0.5", "--max-epochs", "1"]):
        rc, _, err = _run(["certify", "--model", str(model), *opts, "--data", "digits", "--methods", "dense",
                           "--quiet"])
        assert rc == 2, opts
        assert "computes the same function as --model" in err and "Traceback" not in err


def test_cli_prior_checkpoint_trained_on_the_same_dataset_is_refused(ckpts: dict[str, Path]) -> None:
    prior = ckpts["ddp"] / "prior"
    rc, _, err = _run(["certify", "--model", str(ckpts["ddp"]), "--prior", str(prior), "--data", "digits",
                       "--methods", "dense", "--quiet"])
    assert rc == 2
    assert "may have seen part of the bound sample" in err


def test_api_prior_equal_or_rescaled_is_not_a_certificate_unless_data_dependent() -> None:
    net, _, X, y = _overfit_case()
    for prior in (net, net.rescaled([2.0] + [1.0] * (net.depth - 2) + [0.5])):
        with pytest.warns(PriorValidityWarning, match="NOT A CERTIFICATE"):
            cert = sparsebound.certify(net, X, y, prior=prior, prior_kind="user-given", methods=["dense"],
                                       progress=False, tradeoff=False)
        assert not cert.to_dict()["valid"]
        assert [w["kind"] for w in cert.warnings] == ["prior-equals-network"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriorValidityWarning)  # the expected posterior == prior case: silent
        cert = sparsebound.certify(net, X, y, prior=net, prior_kind="data-dependent", methods=["dense"],
                                   progress=False, tradeoff=False)
    assert cert.warnings == [] and cert.to_dict()["valid"]


# --------------------------------------------------------------------------- API guards


def _overfit_case() -> tuple[ReLUNetwork, ReLUNetwork, torch.Tensor, torch.Tensor]:
    from sparsebound.training import TrainConfig, init_network, train

    sp = load_dataset("synthetic", synthetic={"n_train": 200, "n_test": 50, "dim": 6})
    init = init_network(6, [16], 3, seed=0)
    net = train(init, sp.train, TrainConfig(max_epochs=3), progress=False).network
    return net, init, sp.train.X, sp.train.y


def test_api_certificate_below_held_out_lower_bound_is_not_a_certificate() -> None:
    """Held-out data on which the network errs everywhere: every value below its lower confidence
    bound is flagged, recorded as not valid, and warned about."""
    net, _, X, y = _overfit_case()
    pred = net.predict(X)
    wrong = (pred + 1) % 3  # labels the network always gets wrong
    with pytest.warns(PriorValidityWarning, match="NOT A CERTIFICATE"):
        cert = sparsebound.certify(net, X, y, prior=net, methods=["dense", "test-set"], X_test=X, y_test=wrong,
                                   progress=False)
    lcb = cert.test_error_lower_confidence
    assert lcb is not None and lcb > 0.9
    assert cert.results["dense"].certificate < lcb
    kinds = {w["kind"]: w for w in cert.warnings}
    assert kinds["below-held-out-lower-bound"]["methods"] == ["dense"]
    assert "prior-equals-network" in kinds
    d = cert.to_dict()
    assert d["valid"] is False and len(d["warnings"]) == 2
    assert "WARNING: NOT A CERTIFICATE" in cert.table()


def test_api_valid_prior_gives_no_warning() -> None:
    net, init, X, y = _overfit_case()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriorValidityWarning)
        cert = sparsebound.certify(net, X, y, prior=init, init=init, methods=["dense"], progress=False)
    assert cert.warnings == [] and cert.to_dict()["valid"] is True


def test_prior_kind_is_derived() -> None:
    from sparsebound.models import zero_network_like

    net, init, X, y = _overfit_case()
    kw = {"methods": ["dense"], "progress": False, "rescale": False}
    assert sparsebound.certify(net, X, y, prior=init, **kw).prior_kind == "user-given"  # nothing says it is init
    assert sparsebound.certify(net, X, y, prior=init, init=init, **kw).prior_kind == "init"
    assert sparsebound.certify(net, X, y, prior=zero_network_like(net), **kw).prior_kind == "zero"
    other = ReLUNetwork([w * 0.5 for w in init.weights])
    assert sparsebound.certify(net, X, y, prior=other, init=init, prior_kind="data-dependent",
                               **kw).prior_kind == "data-dependent"
    with pytest.raises(ConfigError, match="differs from init"):
        sparsebound.certify(net, X, y, prior=other, init=init, prior_kind="init", **kw)
    with pytest.raises(ConfigError, match="prior_kind must be one of"):
        sparsebound.certify(net, X, y, prior=init, prior_kind="checkpoint x", **kw)


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("mc_seed", -1, "mc_seed"),
    ("mc_seed", 2.5, "mc_seed"),
    ("mc_draws", 0, "mc_draws"),
    ("mc_batch", -3, "mc_batch"),
    ("mc_delta_fraction", 1.0, "mc_delta_fraction"),
    ("exact_rounds", -1, "exact_rounds"),
    ("refine_window", 0.5, "refine_window"),
    ("exact_budget_s", -1.0, "exact_budget_s"),
    ("eta1", 0.0, "eta1"),
    ("eta2", 1.5, "eta2"),
    ("active_fractions", [0.0, 0.5], "active_fractions"),
    ("active_fractions", [], "active_fractions"),
    ("radius", -2.0, "radius"),
    ("device", "tpu", "tpu"),
    ("sigma_grid", 0.01, "sigma_grid"),
    ("mc_max_evals", 0, "mc_max_evals"),
])
def test_api_validates_every_option_before_any_work(option: str, value: object, needle: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    net, init, X, y = _overfit_case()

    def no_work(*a: object, **k: object) -> None:
        raise AssertionError("the forward pass ran before the options were checked")

    monkeypatch.setattr(ReLUNetwork, "forward", no_work)
    with pytest.raises(ConfigError) as exc:
        sparsebound.certify(net, X, y, prior=init, methods=["sparse", "sparse-mc"], progress=False,
                            **{option: value})
    assert needle in str(exc.value) and "\n" not in str(exc.value)


# --------------------------------------------------------------------------- what is refused, named


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        h = h + F.relu(self.fc2(h))
        return self.out(h)


class WithSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.out = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.sigmoid(self.fc1(x)))


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc1, self.out = nn.Linear(8, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.fc1(self.conv(x).flatten(1))))


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.norm, self.out = nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.norm(self.fc1(x))))


class ReluLast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.out = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.out(F.relu(self.fc1(x))))


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.out = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            x = -x
        return self.out(F.relu(self.fc1(x)))


@pytest.mark.parametrize(("model", "needles"), [
    (Residual(), ["residual", "fc2"]),
    (WithSigmoid(), ["sigmoid"]),
    (Conv(), ["conv", "Conv2d"]),
    (Normed(), ["norm", "LayerNorm"]),
    (ReluLast(), ["ends with a ReLU"]),
    (Branching(), ["torch.fx", "Branching"]),
])
def test_unsupported_models_are_named(model: nn.Module, needles: list[str]) -> None:
    with pytest.raises(NetworkError) as exc:
        network_from_module(model)
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    with pytest.raises(NetworkError):
        sparsebound.certify(model, torch.rand(10, 4), torch.zeros(10, dtype=torch.long), prior=model,
                            progress=False)


def test_unsupported_torchscript_layer_is_named_on_the_command_line(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "sig.ts"
    torch.jit.save(torch.jit.script(WithSigmoid().eval()), str(p))
    rc = main(["certify", "--model", str(p), "--prior", "zero", "--data", "digits", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "aten::sigmoid" in err and "not supported" in err


def test_final_log_softmax_is_dropped_and_checked() -> None:
    """A final (log-)softmax changes neither the predicted class nor the log-softmax margins; the converted
    network is checked against the model through the same map."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.LogSoftmax(dim=1))
    net = network_from_module(seq)
    x = torch.randn(20, 5, dtype=torch.float64)
    assert torch.allclose(torch.log_softmax(net.forward(x).outputs, 1), seq.double()(x), atol=1e-12)


def test_hooks_are_refused() -> None:
    seq = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    seq[2].register_forward_hook(lambda m, i, o: 2 * o)
    with pytest.raises(NetworkError, match="hooks"):
        network_from_module(seq)


def test_global_hook_is_refused() -> None:
    seq = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    h = nn.modules.module.register_module_forward_hook(lambda m, i, o: 1.5 * o if isinstance(m, nn.Linear) else o)
    try:
        with pytest.raises(NetworkError, match="global module hooks"):
            network_from_module(seq)
        net = ReLUNetwork([torch.randn(7, 5), torch.randn(3, 7)])
        with pytest.raises(NetworkError, match="computes another function"):  # the check alone sees it too
            net._check_same_function(net.to_sequential())
    finally:
        h.remove()


# --------------------------------------------------------------------------- dtypes (issue #11 item 7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_sequential_is_accepted(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                        nn.Linear(100, 10)).to(dtype)
    with torch.no_grad():
        for p in seq.parameters():
            p.mul_(4)
    net = ReLUNetwork.from_sequential(seq)
    assert net.widths == (784, 100, 100, 10)
    assert torch.equal(net.weights[0], seq[1].weight.double())  # exact copies of the low-precision weights


def test_low_precision_model_that_computes_something_else_names_the_cause() -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).to(torch.bfloat16)
    h = nn.modules.module.register_module_forward_hook(lambda m, i, o: 1.25 * o if isinstance(m, nn.Linear) else o)
    try:
        with pytest.raises(NetworkError) as exc:
            ReLUNetwork([w.detach().double() for w in (seq[0].weight, seq[2].weight)],
                        [b.detach().double() for b in (seq[0].bias, seq[2].bias)])._check_same_function(seq)
    finally:
        h.remove()
    assert "more than bfloat16 rounding explains" in str(exc.value)


# --------------------------------------------------------------------------- state_dicts and files


def test_state_dict_without_architecture_is_read_as_a_linear_stack() -> None:
    torch.manual_seed(0)
    m = MLP((6, 5, 4, 3))
    net, desc = network_from_state_dict(m.state_dict())
    assert net.widths == (6, 5, 4, 3)
    assert "layers.0, layers.1, layers.2" in desc and "assumption" in desc
    # keys in sorted (not registration) order: the natural order of the prefixes is used
    sd = OrderedDict(sorted({f"net.{i}.weight": torch.randn(4, 4 if i else 6) for i in (0, 2, 10)}.items()))
    sd["net.10.weight"] = torch.randn(3, 4)
    net2, _ = network_from_state_dict(sd)
    assert net2.widths == (6, 4, 4, 3)


@pytest.mark.parametrize(("sd", "needle"), [
    ({"conv.weight": torch.randn(2, 1, 3, 3), "fc.weight": torch.randn(3, 8)}, "conv"),
    ({"fc1.weight": torch.randn(5, 4), "bn.running_mean": torch.zeros(5), "fc2.weight": torch.randn(3, 5)},
     "bn.running_mean"),
    ({"fc1.weight": torch.randn(5, 4), "fc2.weight": torch.randn(3, 6)}, "do not chain"),
])
def test_state_dict_that_is_not_an_mlp_is_refused(sd: dict, needle: str) -> None:
    with pytest.raises(NetworkError, match=needle):
        network_from_state_dict(sd)


def test_state_dict_that_does_not_fit_the_architecture(tmp_path: Path) -> None:
    with pytest.raises(NetworkError, match="does not fit MLP"):
        network_from_state_dict({"fc.weight": torch.randn(3, 4)}, MLP((4, 5, 3)))


def test_pickled_model_object_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "whole.pt"
    torch.save(MLP((4, 5, 3)), p)
    with pytest.raises(NetworkError, match="does not unpickle"):
        load_model(p)


def test_onnx_without_the_extra_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a: object, **k: object):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'", name="onnx")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    p = tmp_path / "m.onnx"
    p.write_bytes(b"\x08\x07")
    with pytest.raises(ConfigError, match=r"sparsebound\[onnx\]"):
        load_model(p)


# --------------------------------------------------------------------------- command-line misuse


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def model_file(ckpts: dict[str, Path], tmp_path: Path) -> Path:
    return write_model("state_dict", load_checkpoint(ckpts["bias"]).network, tmp_path, "m")[0]


def test_model_needs_an_explicit_prior(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _err(capsys, ["certify", "--model", str(model_file), "--data", "digits"])
    assert "give the prior explicitly" in line and "--init" in line and "--train-prior" in line


@pytest.mark.parametrize(("extra", "needle"), [
    (["--prior", "recorded"], "applies to a checkpoint"),
    (["--prior", "zero", "--train-prior", "0.5"], "not both"),
    (["--train-prior", "1.0"], "--train-prior"),
    (["--train-prior", "0.5", "--prior-seed", "-2"], "--prior-seed"),
    (["--prior", "zero", "--mc-seed", "-1"], "--mc-seed"),
    (["--prior", "zero", "--split-seed", "x"], "--split-seed"),
    (["--prior", "zero", "--device", "tpu"], "tpu"),
    (["--prior", "zero", "--methods", "magic"], "magic"),
])
def test_model_mode_bad_options(model_file: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                needle: str) -> None:
    js = model_file.parent / "never.json"
    line = _err(capsys, ["certify", "--model", str(model_file), "--data", "digits", *extra, "--json", str(js)])
    assert needle in line
    assert not js.exists()


def test_model_mode_needs_data(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--data" in _err(capsys, ["certify", "--model", str(model_file), "--prior", "zero"])


def test_checkpoint_and_model_together_refused(ckpts: dict[str, Path], model_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert "not both" in _err(capsys, ["certify", str(ckpts["bias"]), "--model", str(model_file)])


def test_json_never_overwrites_the_model_or_prior(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = model_file.read_bytes()
    line = _err(capsys, ["certify", "--model", str(model_file), "--prior", str(model_file), "--data", "digits",
                         "--json", str(model_file), "--force"])
    assert "an input of this run" in line
    assert model_file.read_bytes() == before


def test_npz_data_with_and_without_test_split(ckpts: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ck = load_checkpoint(ckpts["bias"])
    sp = load_dataset("digits")
    model, _ = write_model("state_dict", ck.network, tmp_path, "m")
    init, _ = write_model("state_dict", ck.init, tmp_path, "i")
    full = tmp_path / "d.npz"
    np.savez(full, X=sp.train.X.numpy().reshape(-1, 8, 8), y=sp.train.y.numpy(), X_test=sp.test.X.numpy(),
             y_test=sp.test.y.numpy())
    js = tmp_path / "npz.json"
    assert main(["certify", "--model", str(model), "--init", str(init), "--data", f"npz:{full}", "--methods",
                 *METHODS, "--json", str(js), "--quiet"]) == 0
    capsys.readouterr()
    _same_results(json.loads(js.read_text()), _reference(ckpts["bias"], tmp_path.parent))
    train_only = tmp_path / "t.npz"
    np.savez(train_only, X=sp.train.X.numpy(), y=sp.train.y.numpy())
    assert main(["certify", "--model", str(model), "--init", str(init), "--data", f"npz:{train_only}",
                 "--methods", "dense", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "bound-sample error" not in out and "skipped: test-set (no test split)" not in out  # --methods given
    line = _err(capsys, ["certify", "--model", str(model), "--init", str(init), "--data", f"npz:{train_only}",
                         "--methods", "test-set"])
    assert "X_test" in line
    onehot = tmp_path / "oh.npz"
    np.savez(onehot, X=sp.train.X.numpy(), y=np.eye(10)[sp.train.y.numpy()])
    line = _err(capsys, ["certify", "--model", str(model), "--init", str(init), "--data", f"npz:{onehot}"])
    assert "y.argmax(1)" in line


def test_npz_outside_unit_cube_skips_radius_bounds(ckpts: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ck = load_checkpoint(ckpts["bias"])
    sp = load_dataset("digits")
    model, _ = write_model("state_dict", ck.network, tmp_path, "m")
    f = tmp_path / "s.npz"
    np.savez(f, X=3.0 * sp.train.X.numpy()[:200], y=sp.train.y.numpy()[:200], X_test=sp.test.X.numpy()[:50],
             y_test=sp.test.y.numpy()[:50])
    assert main(["certify", "--model", str(model), "--prior", "zero", "--data", f"npz:{f}", "--quiet",
                 "--no-rescale"]) == 0
    out = capsys.readouterr().out
    assert "skipped: neyshabur2018* (no --radius)" in out
    assert "neyshabur2018 " not in out.split("bound sample:")[1]


def test_idx_folder_data(tmp_path: Path) -> None:
    from sparsebound.data import write_idx

    rng = np.random.default_rng(0)
    for base, n in (("train-images-idx3-ubyte", 30), ("t10k-images-idx3-ubyte", 12)):
        write_idx(tmp_path / base, rng.integers(0, 256, (n, 4, 4), dtype=np.uint8))
        write_idx(tmp_path / base.replace("images-idx3", "labels-idx1"), (np.arange(n) % 10).astype(np.uint8))
    sp = load_dataset(f"idx:{tmp_path}")
    assert (len(sp.train), len(sp.test), sp.train.input_dim, sp.train.radius) == (30, 12, 16, 4.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="IDX files missing"):
        load_dataset(f"idx:{empty}")


def test_onnx_exported_by_torch(tmp_path: Path) -> None:
    """A file from torch.onnx.export (opset of the exporter's choice; shape arithmetic for x.view(x.size(0), -1),
    a final log_softmax) reads as the same network."""
    if not _onnx_available():
        pytest.skip("ONNX support not installed (pip install 'sparsebound[onnx]')")
    torch.manual_seed(0)
    m = MLP((16, 8, 8, 3)).eval()
    p = tmp_path / "exported.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (torch.rand(2, 1, 4, 4),), str(p), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}})
    except Exception as exc:  # the exporter itself needs extra packages in some torch versions
        pytest.skip(f"torch.onnx.export unavailable here ({type(exc).__name__})")
    net = load_model(p).network
    ref = network_from_module(m)
    assert net.widths == ref.widths
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases, strict=True):
        assert torch.equal(a, b)


def test_onnx_dynamo_export_and_gemm_scalars(tmp_path: Path) -> None:
    """torch.onnx.export's default (dynamo) exporter, with Dropout, reads as the same network; Gemm's alpha/beta
    and a Constant-node bias fold into the layer exactly (checked against ONNX's reference evaluator)."""
    if not _onnx_available() or importlib.util.find_spec("onnxscript") is None:
        pytest.skip("ONNX export not installed (pip install onnx onnxscript)")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    torch.manual_seed(1)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3)).eval()
    p = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.rand(2, 1, 4, 4),), str(p), dynamic_shapes=({0: torch.export.Dim("n")},))
    net, ref = load_model(p).network, network_from_module(m)
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases, strict=True):
        assert torch.equal(a, b)
    W1 = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    W2 = np.ones((2, 3), dtype=np.float32)
    nodes = [helper.make_node("Constant", [], ["c1"], value=numpy_helper.from_array(np.full(3, 0.5, np.float32))),
             helper.make_node("Gemm", ["x", "W1", "c1"], ["z1"], transB=1, alpha=2.0, beta=0.25),
             helper.make_node("Relu", ["z1"], ["h1"]),
             helper.make_node("MatMul", ["h1", "W2t"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["z2"])]
    inits = [numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(np.ascontiguousarray(W2.T), "W2t"),
             numpy_helper.from_array(np.array([1.0, -1.0], np.float32), "b2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("z2", TensorProto.FLOAT, ["n", 2])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "g.onnx"))
    got = load_model(tmp_path / "g.onnx").network
    assert torch.equal(got.weights[0], torch.from_numpy(W1).double() * 2)
    assert torch.equal(got.biases[0], torch.full((3,), 0.125, dtype=torch.float64))
    assert torch.equal(got.weights[1], torch.from_numpy(W2).double())
    assert torch.equal(got.biases[1], torch.tensor([1.0, -1.0], dtype=torch.float64))


@pytest.mark.parametrize("case, message", [
    ("residual", "several operations"),
    ("sigmoid", "Sigmoid"),
    ("scale", "Mul"),
])
def test_onnx_graphs_that_are_not_relu_mlps_are_refused(tmp_path: Path, case: str, message: str) -> None:
    if not _onnx_available():
        pytest.skip("ONNX support not installed (pip install 'sparsebound[onnx]')")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W = numpy_helper.from_array(np.eye(4, dtype=np.float32), "W")
    V = numpy_helper.from_array(np.ones((2, 4), dtype=np.float32), "V")
    two = numpy_helper.from_array(np.float32(2.0), "two")
    nodes = [helper.make_node("Gemm", ["x", "W"], ["z1"], transB=1)]
    if case == "residual":
        nodes += [helper.make_node("Relu", ["z1"], ["h1"]), helper.make_node("Add", ["h1", "x"], ["r"]),
                  helper.make_node("Gemm", ["r", "V"], ["out"], transB=1)]
    elif case == "sigmoid":
        nodes += [helper.make_node("Sigmoid", ["z1"], ["h1"]), helper.make_node("Gemm", ["h1", "V"], ["out"], transB=1)]
    else:
        nodes += [helper.make_node("Relu", ["z1"], ["h1"]), helper.make_node("Mul", ["h1", "two"], ["s"]),
                  helper.make_node("Gemm", ["s", "V"], ["out"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])], [W, V, two])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    with pytest.raises(NetworkError, match=message):
        load_model(tmp_path / "m.onnx")


# --------------------------------------------------------------------------- the README walk-through runs as written


def test_readme_certify_your_own_model_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    import shlex
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Certify your own model", 1)[1].split("\n## ", 1)[0]
    py = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    sh = [ln.strip() for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S) for ln in b.splitlines()
          if ln.strip().startswith("sparsebound ")]
    assert py[0].startswith("# my_mlp.py") and len(sh) >= 5
    for needle in ("--init", "--train-prior", "--prior prior.pt", "model.safetensors", "model.ts", "--arch",
                   "model.onnx"):
        assert any(needle in ln for ln in sh), needle
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_mlp", raising=False)
    (tmp_path / "my_mlp.py").write_text(py[0])
    ns: dict = {}
    import importlib.util

    onnx_ok = _onnx_available() and importlib.util.find_spec("onnxscript") is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.* in recent torch
        for block in py[1:]:
            if "onnx" in block and not onnx_ok:
                continue
            exec(compile(block, "README.md", "exec"), ns)
        outs = []
        for line in sh:
            if ".onnx" in line and not onnx_ok:
                continue
            rc, out, err = _run([*shlex.split(line)[1:], "--quiet", "--threads", "1"])
            assert rc == 0, f"{line}\n{err}"
            outs.append(out)
    rec = json.loads((tmp_path / "cert.json").read_text())
    assert rec["prior"] == "init" and rec["valid"] is True and rec["warnings"] == []
    assert rec["bound_sample_record"]["m"] == 1437
    assert any("S_bound: 719 training points of digits" in o for o in outs)  # --train-prior 0.5
    assert any("bound sample: the whole training split of npz:bound.npz: 719 points" in o
               for o in outs)  # --prior prior.pt on the half the prior never saw
    if onnx_ok:
        assert any("model: ONNX file model.onnx" in o for o in outs)
    cert = ns["cert"]
    assert cert.prior_kind == "init" and cert.warnings == []
    assert 0.0 <= cert.test_error_lower_confidence <= cert.results["sparse"].certificate <= 1.0


def test_checkpoint_folder_as_model_and_init(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """`--model CKPT --init CKPT` reads its trained network and its recorded initialisation."""
    js = tmp_path / "ck.json"
    rc, _, err = _run(["certify", "--model", str(ckpts["bias"]), "--init", str(ckpts["bias"]), "--data", "digits",
                       "--methods", *METHODS, "--json", str(js), "--quiet", "--threads", "1"])
    assert rc == 0, err
    _same_results(json.loads(js.read_text()), _reference(ckpts["bias"], tmp_path.parent))


class ExtraOffset(nn.Module):
    """A constant added after a Linear layer (part of its bias) and dropout written functionally."""

    def __init__(self, always_drop: bool = False) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(4, 5), nn.Linear(5, 3, bias=False)
        self.offset = nn.Parameter(torch.linspace(-1, 1, 5))
        self.always_drop = always_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(x) + self.offset)
        h = F.dropout(h, 0.3) if self.always_drop else F.dropout(h, 0.3, self.training)
        return self.out(h)


def test_constant_offset_folds_into_the_bias_and_functional_dropout() -> None:
    torch.manual_seed(0)
    m = ExtraOffset()
    net = network_from_module(m)
    assert net.biases is not None
    assert torch.equal(net.biases[0], m.fc.bias.double() + m.offset.double())
    assert torch.equal(net.biases[1], torch.zeros(3, dtype=torch.float64))
    with pytest.raises(NetworkError, match="stays active in evaluation mode"):
        network_from_module(ExtraOffset(always_drop=True))


def test_cli_model_file_is_compared_with_the_model_on_the_users_data(ckpts: dict[str, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """certify --model FILE checks the converted network against the file's model on the training rows (as the
    API does with X), not only on random inputs."""
    ck = load_checkpoint(ckpts["bias"])
    model, _ = write_model("torchscript-trace", ck.network, tmp_path, "m")
    seen: list[int] = []
    orig = ReLUNetwork._check_same_function

    def spy(self: ReLUNetwork, model: nn.Module, inputs: torch.Tensor | None = None, output_map=None):
        seen.append(0 if inputs is None else int(inputs.shape[0]))
        return orig(self, model, inputs=inputs, output_map=output_map)

    monkeypatch.setattr(ReLUNetwork, "_check_same_function", spy)
    rc, _, err = _run(["certify", "--model", str(model), "--prior", "zero", "--data", "digits", "--methods", "dense",
                       "--quiet", "--threads", "1"])
    assert rc == 0, err
    assert 1437 in seen  # the whole training split of digits
