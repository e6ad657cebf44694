"""Tests for sparsebound.training, sparsebound.checkpoint and sparsebound.experiments."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from sparsebound.checkpoint import META_FILE, TENSOR_FILE, load_checkpoint, save_checkpoint
from sparsebound.data import load_dataset, split_prior_bound
from sparsebound.errors import CheckpointError, ConfigError, ShapeMismatchError
from sparsebound.experiments import DataSpec, bound_sample, train_checkpoint
from sparsebound.network import ReLUNetwork
from sparsebound.training import TrainConfig, init_network, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SYN = {"kind": "mixture", "dim": 8, "n_classes": 3, "n_train": 120, "n_test": 40, "seed": 0}


@pytest.fixture(scope="module")
def syn_splits():
    return load_dataset("synthetic", synthetic=SYN)


def _same(a: ReLUNetwork, b: ReLUNetwork) -> bool:
    if a.widths != b.widths or a.has_bias != b.has_bias:
        return False
    if not all(torch.equal(x, y) for x, y in zip(a.weights, b.weights, strict=True)):
        return False
    if a.biases is not None:
        return all(torch.equal(x, y) for x, y in zip(a.biases, b.biases, strict=True))
    return True


# --------------------------------------------------------------------------- init_network


@pytest.mark.parametrize("bias", [False, True])
def test_init_network_deterministic_and_seeded(bias: bool) -> None:
    a = init_network(20, (30, 10), 4, bias=bias, seed=7)
    b = init_network(20, (30, 10), 4, bias=bias, seed=7)
    c = init_network(20, (30, 10), 4, bias=bias, seed=8)
    assert a.widths == (20, 30, 10, 4)
    assert a.has_bias == bias
    assert _same(a, b)
    assert not _same(a, c)
    for wa, wc in zip(a.weights, c.weights, strict=True):
        assert not torch.equal(wa, wc)


def test_init_network_pytorch_default_scale() -> None:
    net = init_network(400, (300, 200), 10, bias=True, seed=0)
    fan_ins = (400, 300, 200)
    for k, fan_in in enumerate(fan_ins):
        bound = 1.0 / math.sqrt(fan_in)
        w, b = net.weights[k], net.biases[k]
        assert float(w.abs().max()) <= bound
        assert float(b.abs().max()) <= bound
        # uniform on (-bound, bound): reaches close to the edges, mean ~0, variance bound^2/3
        assert float(w.abs().max()) > 0.99 * bound
        assert abs(float(w.mean())) < 0.02 * bound
        assert float(w.var()) == pytest.approx(bound**2 / 3, rel=0.05)
        # float32 weights held exactly in float64
        assert torch.equal(w.float().double(), w)
    # same scale as torch.nn.Linear's default init
    lin = torch.nn.Linear(400, 300)
    assert float(lin.weight.detach().abs().max()) <= 1 / math.sqrt(400)
    assert float(net.weights[0].std()) == pytest.approx(float(lin.weight.detach().std()), rel=0.05)


def test_init_network_rejects_bad_widths() -> None:
    with pytest.raises(ConfigError):
        init_network(5, (), 3)
    with pytest.raises(ConfigError):
        init_network(5, (4, 0), 3)


def test_train_config_validation() -> None:
    for kwargs in ({"lr": 0.0}, {"lr": math.nan}, {"momentum": 1.0}, {"momentum": -0.1}, {"batch_size": 0},
                   {"max_epochs": -1}, {"target_error": 1.5}, {"proximal": -1.0}, {"proximal": math.nan}):
        with pytest.raises(ConfigError):
            TrainConfig(**kwargs)
    assert TrainConfig(proximal=math.inf).to_dict()["proximal"] == "inf"


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("hidden", [(64,), (100,)])
def test_train_digits_reaches_low_error(hidden: tuple[int, ...]) -> None:
    splits = load_dataset("digits")
    t0 = time.perf_counter()
    net = init_network(splits.train.input_dim, hidden, splits.train.n_classes, seed=0)
    res = train(net, splits.train, TrainConfig(max_epochs=60, target_error=0.01, seed=0), test=splits.test,
                progress=False)
    elapsed = time.perf_counter() - t0
    assert res.train_error < 0.03
    assert elapsed < 60.0
    assert 1 <= res.epochs <= 60
    assert len(res.curve) == res.epochs
    assert res.test_error is not None and res.test_error < 0.15
    assert res.network.widths == (64, *hidden, 10)
    # the reported error is the certified float64 error of the returned network
    assert res.train_error == res.network.error_rate(splits.train.X, splits.train.y)


def test_train_does_not_modify_start_and_is_reproducible(syn_splits) -> None:
    start = init_network(8, (16,), 3, seed=1)
    w0 = [w.clone() for w in start.weights]
    cfg = TrainConfig(max_epochs=3, seed=5)
    r1 = train(start, syn_splits.train, cfg, progress=False)
    r2 = train(start, syn_splits.train, cfg, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(start.weights, w0, strict=True))
    assert _same(r1.network, r2.network)
    assert r1.network.distance_to(start) > 0
    assert r1.epochs == 3


def test_train_max_epochs_zero_returns_start(syn_splits) -> None:
    start = init_network(8, (16,), 3, seed=1)
    res = train(start, syn_splits.train, TrainConfig(max_epochs=0), progress=False)
    assert res.epochs == 0
    assert _same(res.network, start)


def test_proximal_inf_returns_anchor(syn_splits) -> None:
    start = init_network(8, (16,), 3, seed=1)
    anchor = init_network(8, (16,), 3, seed=2)
    res = train(start, syn_splits.train, TrainConfig(max_epochs=5, proximal=math.inf), anchor=anchor, progress=False)
    assert res.epochs == 0
    assert _same(res.network, anchor)
    assert res.train_error == anchor.error_rate(syn_splits.train.X, syn_splits.train.y)


def test_proximal_penalty_keeps_weights_close(syn_splits) -> None:
    start = init_network(8, (16,), 3, seed=3)
    base = TrainConfig(max_epochs=5, lr=0.05, seed=0)
    free = train(start, syn_splits.train, base, progress=False).network
    cfg = TrainConfig(**{**base.to_dict(), "proximal": 5.0})
    prox = train(start, syn_splits.train, cfg, progress=False).network
    d_free, d_prox = free.distance_to(start), prox.distance_to(start)
    assert d_free > 0.1
    assert d_prox < 0.2 * d_free


def test_train_rejects_mismatched_anchor_and_data(syn_splits) -> None:
    start = init_network(8, (16,), 3, seed=1)
    with pytest.raises(ShapeMismatchError):
        train(start, syn_splits.train, TrainConfig(max_epochs=1), anchor=init_network(8, (17,), 3), progress=False)
    with pytest.raises(ShapeMismatchError):
        train(init_network(9, (16,), 3), syn_splits.train, TrainConfig(max_epochs=1), progress=False)


# --------------------------------------------------------------------------- checkpoints


def _f64_net(widths: tuple[int, ...], bias: bool, seed: int) -> ReLUNetwork:
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) for k in range(len(widths) - 1)]
    bs = [torch.randn(widths[k + 1], generator=g, dtype=torch.float64) for k in range(len(widths) - 1)]
    return ReLUNetwork(ws, bs if bias else None)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("with_prior", [False, True])
def test_checkpoint_round_trip_bit_exact(tmp_path: Path, bias: bool, with_prior: bool) -> None:
    net, init, prior = (_f64_net((5, 7, 6, 3), bias, s) for s in (1, 2, 3))
    meta = {"seed": 4, "note": "hello", "curve": [{"epoch": 1, "loss": 0.5}]}
    folder = save_checkpoint(tmp_path / "ck", net, init, meta, prior=prior if with_prior else None)
    assert (folder / META_FILE).is_file()
    assert (folder / TENSOR_FILE).is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted([META_FILE, TENSOR_FILE])
    for where in (folder, folder / META_FILE, folder / TENSOR_FILE, str(folder)):
        ck = load_checkpoint(where)
        assert ck.path == folder
        assert _same(ck.network, net)
        assert _same(ck.init, init)
        if with_prior:
            assert ck.prior is not None
            assert _same(ck.prior, prior)
        else:
            assert ck.prior is None
        assert ck.meta["seed"] == 4
        assert ck.meta["note"] == "hello"
        assert ck.meta["curve"] == meta["curve"]
        assert ck.meta["architecture"]["widths"] == [5, 7, 6, 3]
        assert ck.meta["architecture"]["bias"] == bias
        assert ck.meta["has_prior"] == with_prior


def test_save_rejects_incompatible_init(tmp_path: Path) -> None:
    net, other = _f64_net((5, 7, 3), False, 1), _f64_net((5, 8, 3), False, 2)
    with pytest.raises(ShapeMismatchError):
        save_checkpoint(tmp_path / "ck", net, other, {})
    with pytest.raises(ShapeMismatchError):
        save_checkpoint(tmp_path / "ck", net, net, {}, prior=other)
    assert not (tmp_path / "ck" / META_FILE).exists()
    assert not (tmp_path / "ck" / TENSOR_FILE).exists()


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    net, init = _f64_net((4, 5, 3), True, 1), _f64_net((4, 5, 3), True, 2)
    return save_checkpoint(tmp_path / "ck", net, init, {"seed": 0})


def test_tensor_file_tampering_detected(saved: Path) -> None:
    tp = saved / TENSOR_FILE
    raw = bytearray(tp.read_bytes())
    raw[-3] ^= 0x01  # flip one bit of a weight
    tp.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="hash"):
        load_checkpoint(saved)


def test_truncated_tensor_file_without_hash_detected(saved: Path) -> None:
    mp = saved / META_FILE
    meta = json.loads(mp.read_text())
    del meta["tensor_sha256"]
    mp.write_text(json.dumps(meta))
    tp = saved / TENSOR_FILE
    tp.write_bytes(tp.read_bytes()[:40])
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)


def test_non_finite_weights_in_checkpoint_detected(saved: Path) -> None:
    from safetensors.torch import load_file, save_file

    import sparsebound.checkpoint as cp

    tp = saved / TENSOR_FILE
    tensors = load_file(str(tp))
    tensors["network.weight.1"][0, 0] = math.nan
    save_file(tensors, str(tp))
    mp = saved / META_FILE
    meta = json.loads(mp.read_text())
    meta["tensor_sha256"] = cp._sha256(tp)
    mp.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(saved)


def test_missing_tensor_detected(saved: Path) -> None:
    mp = saved / META_FILE
    meta = json.loads(mp.read_text())
    meta["has_prior"] = True  # the tensor file holds no prior
    mp.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"prior\.weight\.1"):
        load_checkpoint(saved)


@pytest.mark.parametrize("victim", [META_FILE, TENSOR_FILE])
def test_missing_files_detected(saved: Path, victim: str) -> None:
    (saved / victim).unlink()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(saved)


def test_missing_folder_and_bad_json(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nowhere")
    mp = saved / META_FILE
    good = mp.read_text()
    mp.write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(saved)
    meta = json.loads(good)
    meta["format"] = "something-else/9"
    mp.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a sparsebound checkpoint"):
        load_checkpoint(saved)


def test_failed_save_leaves_nothing_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def boom(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")  # a half-written file, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    net, init = _f64_net((4, 5, 3), False, 1), _f64_net((4, 5, 3), False, 2)
    folder = tmp_path / "ck"
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder, net, init, {})
    left = [p.name for p in folder.iterdir()] if folder.exists() else []
    assert left == []
    assert not (folder / META_FILE).exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_failed_save_keeps_previous_checkpoint(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    before = load_checkpoint(saved)

    def boom(tensors, filename, metadata=None):
        raise RuntimeError("crash")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(RuntimeError):
        save_checkpoint(saved, _f64_net((4, 5, 3), True, 9), _f64_net((4, 5, 3), True, 10), {})
    assert sorted(p.name for p in saved.iterdir()) == sorted([META_FILE, TENSOR_FILE])
    after = load_checkpoint(saved)
    assert _same(after.network, before.network)


# --------------------------------------------------------------------------- experiments


def test_train_checkpoint_with_prior_fraction(tmp_path: Path, syn_splits) -> None:
    spec = DataSpec(dataset="synthetic", synthetic=SYN)
    out = tmp_path / "run"
    ck = train_checkpoint(out, data=spec, hidden=(8,), seed=3, config=TrainConfig(max_epochs=2),
                          prior_fraction=0.25, progress=False)
    assert (out / "prior" / META_FILE).is_file()
    assert (out / "prior" / TENSOR_FILE).is_file()
    prior_ck = load_checkpoint(out / "prior")
    post = load_checkpoint(out)
    assert post.prior is not None
    assert _same(post.prior, prior_ck.network)
    assert _same(post.network, ck.network)
    assert _same(post.init, prior_ck.init)
    assert post.meta["prior"]["kind"] == "data-dependent"
    assert post.meta["has_prior"] is True
    rec = post.meta["bound_sample"]
    n = len(syn_splits.train)
    assert rec["n_prior"] + rec["n_bound"] == n
    assert rec["n_prior"] == round(0.25 * n)

    bs, desc = bound_sample(post, syn_splits)
    assert len(bs) == rec["n_bound"]
    assert "S_bound" in desc
    prior_idx, _ = split_prior_bound(n, 0.25, 3)
    prior_rows = {tuple(r) for r in syn_splits.train.X[prior_idx].numpy().tolist()}
    bound_rows = {tuple(r) for r in bs.X.numpy().tolist()}
    all_rows = {tuple(r) for r in syn_splits.train.X.numpy().tolist()}
    assert len(bound_rows) == len(bs)
    assert prior_rows.isdisjoint(bound_rows)
    assert prior_rows | bound_rows == all_rows

    whole, _ = bound_sample(post, syn_splits, prior="init")
    assert len(whole) == n
    assert torch.equal(whole.X, syn_splits.train.X)
    assert torch.equal(whole.y, syn_splits.train.y)


def test_train_checkpoint_without_prior(tmp_path: Path, syn_splits) -> None:
    spec = DataSpec(dataset="synthetic", synthetic=SYN)
    out = tmp_path / "run"
    train_checkpoint(out, data=spec, hidden=(8,), bias=True, seed=1, config=TrainConfig(max_epochs=1),
                     progress=False)
    assert not (out / "prior").exists()
    ck = load_checkpoint(out)
    assert ck.prior is None
    assert ck.network.has_bias
    assert _same(ck.init, init_network(8, (8,), 3, bias=True, seed=1))
    assert ck.meta["prior"]["kind"] == "init"
    assert DataSpec.from_dict(ck.meta["data"]) == spec
    bs, _ = bound_sample(ck, syn_splits)
    assert torch.equal(bs.X, syn_splits.train.X)


def test_train_checkpoint_rejects_bad_protocols(tmp_path: Path, syn_splits) -> None:
    spec = DataSpec(dataset="synthetic", synthetic=SYN)
    with pytest.raises(ConfigError):
        train_checkpoint(tmp_path / "a", data=spec, hidden=(8,), posterior="weird", splits=syn_splits)
    with pytest.raises(ConfigError):
        train_checkpoint(tmp_path / "b", data=spec, hidden=(8,), posterior="proximal", proximal=1.0,
                         splits=syn_splits)
    with pytest.raises(ConfigError):
        train_checkpoint(tmp_path / "c", data=spec, hidden=(8,), prior_fraction=0.5, posterior="proximal",
                         proximal=0.0, splits=syn_splits)
    with pytest.raises(ConfigError):
        train_checkpoint(tmp_path / "d", data=spec, hidden=(8,), prior_fraction=1.5, splits=syn_splits,
                         config=TrainConfig(max_epochs=1), progress=False)




# --------------------------------------------------------------------------- regressions (bugs found by these tests)



def test_save_checkpoint_network_is_init(tmp_path: Path) -> None:
    net = _f64_net((4, 5, 3), False, 1)
    save_checkpoint(tmp_path / "ck", net, net, {})
    ck = load_checkpoint(tmp_path / "ck")
    assert _same(ck.network, net)
    assert _same(ck.init, net)


def test_train_checkpoint_proximal_inf(tmp_path: Path, syn_splits) -> None:
    out = tmp_path / "run"
    ck = train_checkpoint(out, data=DataSpec(dataset="synthetic", synthetic=SYN), hidden=(8,), seed=0,
                          config=TrainConfig(max_epochs=1), prior_fraction=0.5, posterior="proximal",
                          proximal=math.inf, splits=syn_splits, progress=False)
    loaded = load_checkpoint(out)
    assert _same(loaded.network, loaded.prior)
    assert _same(ck.network, ck.prior)


@pytest.mark.parametrize("variant", ["list", "null", "architecture-null", "depth-not-int"])
def test_load_checkpoint_wrong_json_shape(saved: Path, variant: str) -> None:
    mp = saved / META_FILE
    meta = json.loads(mp.read_text())
    if variant == "list":
        text = "[]"
    elif variant == "null":
        text = "null"
    elif variant == "architecture-null":
        meta["architecture"] = None
        text = json.dumps(meta)
    else:
        meta["architecture"]["depth"] = "two"
        text = json.dumps(meta)
    mp.write_text(text)
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)
