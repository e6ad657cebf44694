"""Tests for sparsebound.analysis (``sparsebound sparsity``) and sparsebound.report.figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebound._io import to_jsonable
from sparsebound.analysis import analyse_sparsity, grid_position
from sparsebound.cli import main
from sparsebound.data import load_dataset
from sparsebound.errors import ConfigError
from sparsebound.experiments import DataSpec, train_checkpoint
from sparsebound.network import ReLUNetwork
from sparsebound.norms import brute_force_sparse_norm
from sparsebound.report import figures
from sparsebound.training import TrainConfig, init_network, train

SYN = {"dim": 12, "n_classes": 3, "n_train": 240, "n_test": 80, "hidden": 16, "seed": 3}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = Path(path).read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1024


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic", synthetic=SYN)


@pytest.fixture(scope="module")
def trained(splits):
    tr = splits.train
    net = init_network(tr.input_dim, [20, 16], tr.n_classes, seed=0)
    return train(net, tr, TrainConfig(max_epochs=4, lr=0.05), progress=False).network


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    spec = DataSpec(dataset="synthetic", synthetic=SYN)
    cfg = TrainConfig(max_epochs=3)
    a = train_checkpoint(root / "w20", data=spec, hidden=[20, 20], config=cfg, progress=False)
    b = train_checkpoint(root / "w32b", data=spec, hidden=[32, 32], bias=True, config=cfg, progress=False)
    return str(a.path), str(b.path)


# ----- analyse_sparsity against direct computations ------------------------------------
def _direct_levels(z: np.ndarray, err: np.ndarray, sizes: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute force per sample: radius at every grid level and the largest level with radius >= eps."""
    N, d = z.shape
    T = sizes.size
    rho = np.full((N, T), np.inf)
    best = np.zeros(N, dtype=np.int64)
    for n in range(N):
        srt = np.sort(z[n])
        for t in range(T):
            s = d - int(sizes[t])
            if s > 0:
                rho[n, t] = -(srt[s - 1] + err[n])
            if rho[n, t] >= eps:
                best[n] = max(best[n], t)
    return rho, best


def test_summary_matches_direct_computation(trained, splits):
    X = splits.train.X
    rep = analyse_sparsity(trained, X, eps=0.0)
    acts = trained.forward(X)
    assert rep.n_samples == X.shape[0]
    assert rep.active_fractions.shape == (X.shape[0], 2)
    for k in (1, 2):
        z = acts.pre_activations[k - 1].numpy()
        raw = (z > 0).mean(axis=1)
        np.testing.assert_allclose(rep.active_fractions[:, k - 1], raw, rtol=0, atol=1e-15)
        h = rep.hidden[k - 1]
        assert h["width"] == z.shape[1]
        assert h["active_fraction_raw"]["mean"] == pytest.approx(raw.mean(), abs=1e-12)
        assert h["active_fraction_raw"]["quantiles"]["0.5"] == pytest.approx(np.quantile(raw, 0.5), abs=1e-12)
        # effective ratios lie on the grid and are never below the raw active fraction at eps = 0
        grid_vals = set((rep.grid.active[k - 1] / z.shape[1]).tolist())
        assert set(np.unique(rep.activity_ratios[:, k - 1]).tolist()) <= grid_vals
        assert np.all(rep.activity_ratios[:, k - 1] >= raw - 1e-12)
        eff = rep.activity_ratios[:, k - 1]
        assert h["effective_activity_ratio"]["mean"] == pytest.approx(eff.mean(), abs=1e-12)
        # radius quantiles at the 50% level
        t = grid_position(rep.grid, k, 0.5)
        s = z.shape[1] - int(rep.grid.active[k - 1][t])
        rho = -(np.sort(z, axis=1)[:, s - 1] + acts.preact_error[:, k - 1].numpy())
        rec = h["radius"]["0.5"]
        assert rec["sparsity"] == s
        assert rec["quantiles"]["0.25"] == pytest.approx(np.quantile(rho, 0.25), abs=1e-12)
        assert rec["share_positive"] == pytest.approx((rho > 0).mean())
        np.testing.assert_allclose(rep.mid_radii[k - 1], rho, rtol=0, atol=1e-15)


@pytest.mark.parametrize("eps", [0.0, 0.05, [0.0, 0.2]])
def test_greedy_levels_brute_force(trained, splits, eps):
    X = splits.train.X[:120]
    rep = analyse_sparsity(trained, X, eps=eps)
    acts = trained.forward(X)
    e = [eps, eps] if np.isscalar(eps) else eps
    for k in (1, 2):
        z = acts.pre_activations[k - 1].numpy()
        sizes = rep.grid.active[k - 1]
        _, best = _direct_levels(z, acts.preact_error[:, k - 1].numpy(), sizes, e[k - 1])
        np.testing.assert_array_equal(rep.greedy_levels[:, k - 1], best)
        np.testing.assert_allclose(rep.activity_ratios[:, k - 1], sizes[best] / z.shape[1])
    assert rep.eps == tuple(float(v) for v in e)


def test_larger_eps_never_sparser(trained, splits):
    X = splits.train.X
    r0 = analyse_sparsity(trained, X, eps=0.0)
    r1 = analyse_sparsity(trained, X, eps=0.3)
    assert np.all(r1.activity_ratios >= r0.activity_ratios)


def test_uniform_bounds_between_brute_force_and_spectral():
    gen = torch.Generator().manual_seed(1)
    widths = (5, 6, 5, 3)
    ws = [torch.randn(widths[k + 1], widths[k], generator=gen, dtype=torch.float64) for k in range(3)]
    bs = [torch.randn(widths[k + 1], generator=gen, dtype=torch.float64) for k in range(3)]
    net = ReLUNetwork(ws, bs)
    X = torch.rand(40, 5, generator=gen, dtype=torch.float64)
    rep = analyse_sparsity(net, X, fractions=(1.0, 0.75, 0.5, 0.34), report_fractions=(0.75, 0.5, 0.34))
    for k in (1, 2, 3):
        W = net.augmented_weight(k)
        w = rep.weights[k - 1]
        assert w["bias_column"] and w["shape"] == [widths[k], widths[k - 1] + 1]
        exact = float(torch.linalg.matrix_norm(W, 2))
        assert exact <= w["spectral"] <= exact * (1 + 1e-5)
        for p in w["points"]:
            f = p["active_fraction"]
            a_exp = round(f * widths[k]) if k < 3 else widths[3]
            b_exp = (round(f * widths[k - 1]) if k > 1 else widths[0]) + 1
            assert (p["rows"], p["cols"]) == (a_exp, b_exp)
            brute = brute_force_sparse_norm(W, p["rows"], p["cols"])
            assert p["bound"] <= w["spectral"]
            assert p["bound"] >= brute
            assert p["babel_bound"] >= brute and p["frobenius_bound"] >= brute
            assert 0 < p["bound_over_spectral"] <= 1.0
            assert p["babel_function"] >= 0


def test_report_to_dict_is_json(trained, splits):
    rep = analyse_sparsity(trained, splits.test.X, eps=[0.0, 0.1])
    d = rep.to_dict()
    assert "per_sample" not in d and "norm_tables" not in d
    text = json.dumps(to_jsonable(d))
    back = json.loads(text)
    assert [h["layer"] for h in back["hidden_layers"]] == [1, 2]
    assert [w["layer"] for w in back["weight_layers"]] == [1, 2, 3]
    full = rep.to_dict(per_sample=True, tables=True)
    assert len(full["per_sample"]["activity_ratios"]) == splits.test.X.shape[0]
    assert len(full["norm_tables"]) == 3
    json.dumps(to_jsonable(full))


def test_bad_eps_raises(trained, splits):
    X = splits.train.X[:10]
    with pytest.raises(ConfigError, match="one per hidden layer"):
        analyse_sparsity(trained, X, eps=[0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match=">= 0"):
        analyse_sparsity(trained, X, eps=-1.0)
    with pytest.raises(ConfigError):
        analyse_sparsity(trained, X, eps=float("nan"))


# ----- figures ------------------------------------------------------------------------
def test_sparsity_figures_write_png(tmp_path):
    rng = np.random.default_rng(0)
    groups = {"width 50": rng.uniform(0.5, 0.85, (300, 2)), "width 100": rng.uniform(0.4, 0.8, (500, 3)),
              "one layer": rng.uniform(0.2, 0.9, 50)}
    groups["width 50"][0, 0] = np.nan
    p = figures.activity_histogram(groups, tmp_path / "h.png", layer_names=["L1", "L2", "L3"])
    assert p == tmp_path / "h.png" and _is_png(p)
    assert _is_png(figures.activity_histogram({}, tmp_path / "h0.png"))
    radii = {"a": [rng.normal(0.1, 0.2, 300), np.r_[rng.normal(0, 1, 50), np.inf]],
             "b": [np.full(4, np.inf), rng.normal(0, 1, 10)], "single": [np.array([0.3])]}
    assert _is_png(figures.radius_distributions(radii, tmp_path / "r.png"))
    assert _is_png(figures.radius_distributions({}, tmp_path / "r0.png"))


def test_certificate_figures_robust(tmp_path):
    rows = []
    for w in (50, 100, 500, 1000):
        for m, v in (("sparse", 0.3 + w / 4000), ("dense", 5.0 * w), ("neyshabur2018", math.inf),
                     ("bartlett2017", 1e9 * w)):
            rows.append({"width": w, "method": m, "unclipped": v, "test_error": 0.05 if w != 50 else 0.0,
                         "test_set_bound": 0.08})
    rows.append({"width": 100, "method": "broken", "unclipped": float("nan"), "test_error": None,
                 "test_set_bound": None})
    assert _is_png(figures.certificates_vs_width(rows, tmp_path / "c.png"))
    single = [{"width": 100, "method": "sparse", "unclipped": math.inf, "test_error": 0.1, "test_set_bound": 0.2}]
    assert _is_png(figures.certificates_vs_width(single, tmp_path / "c1.png"))
    assert _is_png(figures.certificates_vs_width([], tmp_path / "c0.png"))

    trade = [{"active_fraction": f, "bound": min(1.0, 0.2 / f), "unclipped": 0.2 / f ** 2,
              "augmented_loss": max(0.0, 0.5 - f), "complexity_term": math.inf if f < 0.2 else 0.1 / f}
             for f in (1.0, 0.8, 0.6, 0.4, 0.15)]
    assert _is_png(figures.tradeoff_curve(trade, tmp_path / "t.png"))
    assert _is_png(figures.tradeoff_curve(trade[:1], tmp_path / "t1.png"))
    assert _is_png(figures.tradeoff_curve([{"active_fraction": 0.5, "bound": None, "unclipped": None,
                                            "augmented_loss": None, "complexity_term": None}],
                                          tmp_path / "t2.png"))

    sig = np.logspace(-4, -1, 20)
    curves = {"width 100": {"sigma": sig.tolist(), "augmented_loss": np.linspace(0, 1, 20).tolist()},
              "bad": {"sigma": [0.0, -1.0, math.nan], "augmented_loss": [0.1, 0.2, 0.3]},
              "point": {"sigma": [1e-3], "augmented_loss": [0.4]}}
    assert _is_png(figures.certified_fraction_vs_sigma(curves, tmp_path / "s.png"))
    assert _is_png(figures.certified_fraction_vs_sigma({}, tmp_path / "s0.png"))


# ----- CLI ------------------------------------------------------------------------------
def test_cli_sparsity_writes_json_and_figures(ckpts, tmp_path, capsys):
    out = tmp_path / "sp"
    assert main(["sparsity", ckpts[0], "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "width 20" in printed and "eff.ratio" in printed
    rec = json.loads((out / "sparsity.json").read_text())
    assert rec["command"] == "sparsity" and rec["eps"] == [0.0]
    assert "versions" in rec and rec["versions"]["torch"]
    (ck,) = rec["checkpoints"]
    summ = ck["summary"]
    assert summ["n_samples"] == SYN["n_train"]
    for h in summ["hidden_layers"]:
        for key in ("layer", "width", "active_fraction_raw", "effective_activity_ratio", "radius", "mid_level"):
            assert key in h
    for w in summ["weight_layers"]:
        for key in ("layer", "spectral", "points"):
            assert key in w
        for p in w["points"]:
            for key in ("babel_bound", "babel_function", "frobenius_bound", "bound", "bound_over_spectral"):
                assert key in p
    for name in ("activity_histogram.png", "radius_distributions.png"):
        assert _is_png(out / name)


def test_cli_two_checkpoints_overlay(ckpts, tmp_path, capsys):
    out = tmp_path / "sp2"
    rc = main(["sparsity", *ckpts, "--split", "test", "--eps", "0.01", "0.02", "--out", str(out), "--quiet"])
    assert rc == 0
    rec = json.loads((out / "sparsity.json").read_text())
    labels = [c["label"] for c in rec["checkpoints"]]
    assert labels == ["width 20", "width 32"]
    assert rec["checkpoints"][1]["summary"]["bias"] is True
    assert all(c["summary"]["n_samples"] == SYN["n_test"] for c in rec["checkpoints"])
    assert rec["checkpoints"][0]["summary"]["eps"] == [0.01, 0.02]
    assert _is_png(out / "activity_histogram.png")
    capsys.readouterr()


def test_cli_dataset_override_honours_sizes(ckpts, capsys):
    assert main(["sparsity", ckpts[0], "--dataset", "synthetic", "--n-train", "50", "--quiet"]) == 0
    assert "50 samples" in capsys.readouterr().out


def test_cli_bad_eps_count(ckpts, tmp_path, capsys):
    rc = main(["sparsity", ckpts[0], "--eps", "0.1", "0.2", "0.3", "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--eps" in err[0]
    assert not (tmp_path / "x").exists()


def test_cli_out_under_regular_file(ckpts, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    rc = main(["sparsity", ckpts[0], "--out", str(f / "sub"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_cli_missing_checkpoint(tmp_path, capsys):
    assert main(["sparsity", str(tmp_path / "nope"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error:")
