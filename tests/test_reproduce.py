"""Tests for ``sparsebound reproduce`` (sparsebound.reproduce).

One ``--quick`` run (module-scoped fixture) is checked for its files, the
schema of results.json / results.csv, the validity facts every certificate must
satisfy, the agreement of report.md with results.json, and resumability; bad
inputs must fail before any training with a one-line error and exit status 2.

A second small run sweeps the tightness levers (two prior fractions, a lambda
grid with ``inf``, sparse-mc, two sigma profiles) under a tiny ``--budget-minutes``:
run names, one prior per alpha shared by its posteriors, the lambda = inf
posterior equal to its prior, the sparse-mc record and its delta split, the
recorded budget scaling, the levers section of the report, and resuming it.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebound import cli
from sparsebound.errors import ConfigError
from sparsebound.reproduce import CSV_COLUMNS, METHODS, resolve_config

SPARSE = ("sparse", "uniform-sparse", "dense")
KINDS = ("init", "ddp-standard")
QUICK_WIDTHS = (20, 40)
DOCUMENTED_COLUMNS = [
    "dataset", "width", "depth", "seed", "prior", "posterior", "method", "certificate", "unclipped",
    "log10_unclipped", "vacuous", "empirical_term", "complexity_term", "sigma", "kl_over_m",
    "certified_fraction", "distance_to_prior", "train_error", "test_error", "test_error_lower_confidence",
    "m", "delta", "run", "prior_fraction", "proximal", "max_epochs", "q_hat", "n_draws", "mc_seed",
    "delta_pacbayes", "delta_mc",
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``reproduce --quick`` run; yields (out folder, exit status, seconds)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices on a shared machine: one thread is steadier
    out = tmp_path_factory.mktemp("reproduce") / "out"
    t0 = time.perf_counter()
    rc = cli.main(["reproduce", "--quick", "--out", str(out), "--quiet"])
    elapsed = time.perf_counter() - t0
    yield out, rc, elapsed
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def results(quick):
    out, rc, _ = quick
    assert rc == 0
    return json.loads((out / "results.json").read_text())


def _num(v):
    if v is None or isinstance(v, bool):
        return None
    return float(v)  # "inf" -> inf


# --------------------------------------------------------------------------- files


def test_exit_status_and_files(quick) -> None:
    out, rc, _ = quick
    assert rc == 0
    for name in ("results.json", "results.csv", "report.md", "config.json"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    figs = out / "figures"
    expected = ["certificates_vs_width_init.png", "certificates_vs_width_ddp-standard.png",
                "activity_ratios.png", "radii.png"]
    expected += [f"tradeoff_w{w}.png" for w in QUICK_WIDTHS]
    expected += [f"certified_fraction_w{w}.png" for w in QUICK_WIDTHS]
    for name in expected:
        p = figs / name
        assert p.is_file(), name
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert p.stat().st_size > 5000, name
    for w in QUICK_WIDTHS:
        for kind in KINDS:
            assert (out / "runs" / f"w{w}-s0" / kind / "certificate.json").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quick"] is True and cfg["widths"] == list(QUICK_WIDTHS) and cfg["depth"] == 3
    assert cfg["posteriors"] == ["standard"] and cfg["prior_fractions"] == [0.5] and cfg["delta"] == 0.05
    assert cfg["methods"] == list(METHODS) and cfg["sigma_profiles"] == [] and cfg["budget_minutes"] is None


def test_report_embeds_every_figure(quick, results) -> None:
    out, _, _ = quick
    text = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    pngs = sorted(p.relative_to(out).as_posix() for p in (out / "figures").glob("*.png"))
    assert sorted(linked) == pngs
    for p in linked:
        assert (out / p).is_file()


# --------------------------------------------------------------------------- results.json


def test_results_json_schema(results) -> None:
    for key in ("config", "seeds", "widths", "depth", "methods", "versions", "grids", "timings", "runs",
                "summary", "figures", "delta", "eta1", "eta2", "data"):
        assert key in results, key
    assert results["seeds"] == [0]
    assert results["widths"] == list(QUICK_WIDTHS)
    assert results["methods"] == list(METHODS)
    assert {"sparsebound", "torch", "numpy", "python"} <= set(results["versions"])
    assert "sigma" in results["grids"] and results["grids"]["active_fractions"]
    assert len(results["timings"]["per_run"]) == len(results["runs"])
    runs = results["runs"]
    assert len(runs) == len(QUICK_WIDTHS) * len(KINDS)
    assert {(r["run"]["width"], r["run"]["kind"]) for r in runs} == {(w, k) for w in QUICK_WIDTHS for k in KINDS}
    for r in runs:
        for key in ("run", "run_config", "m", "delta", "eta1", "eta2", "test_error", "m_test",
                    "test_error_lower_confidence", "results", "ratios", "tradeoff", "grids", "training",
                    "timings", "train_error", "distance_to_prior_fro", "bound_sample"):
            assert key in r, (r["run"]["id"], key)
        assert set(r["results"]) == set(METHODS)
        assert r["run"]["depth"] == 3 and r["run"]["hidden"] == [r["run"]["width"]] * 2
        assert {"training_s", "certify_s", "total_s", "certify"} <= set(r["timings"])
        if r["run"]["kind"] == "init":
            assert r["run"]["prior_kind"] == "init" and r["run"]["posterior"] is None
            assert r["m"] == results["data"]["n_train"]
            assert "sparsity" in r and "sparsity_s" in r["timings"]
            assert len(r["sparsity"]["hidden_layers"]) == 2
            assert r["tradeoff"], "init runs carry the trade-off curve"
        else:
            assert r["run"]["prior_kind"] == "data-dependent" and r["run"]["posterior"] == "standard"
            assert r["m"] < results["data"]["n_train"]  # S_bound only
            assert "prior" in r["training"]
        for name, mres in r["results"].items():
            for key in ("certificate", "unclipped", "vacuous", "empirical_term", "complexity_term", "m", "delta"):
                assert key in mres, (name, key)
            assert "sigma_star" not in mres and "levels" not in mres  # no per-sample arrays
            if name in SPARSE:
                for key in ("sigma", "kl", "kl_over_m", "certified_fraction", "distance_to_prior",
                            "sigma_star_summary", "curve"):
                    assert key in mres, (name, key)
                assert {"median", "quantiles"} <= set(mres["sigma_star_summary"])
                assert len(mres["curve"]["sigma"]) == len(mres["curve"]["augmented_loss"]) > 1


def test_results_csv(quick, results) -> None:
    out, _, _ = quick
    assert list(CSV_COLUMNS) == DOCUMENTED_COLUMNS
    with open(out / "results.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == DOCUMENTED_COLUMNS
        rows = list(reader)
    assert len(rows) == len(results["runs"]) * len(METHODS)
    by_key = {(int(r["width"]), int(r["seed"]), r["prior"], r["posterior"], r["method"]): r for r in rows}
    assert {r["run"] for r in rows} == set(KINDS)
    for r in rows:
        assert int(r["max_epochs"]) == 8 and r["q_hat"] == "" and r["n_draws"] == "" and r["delta_mc"] == ""
        assert (r["prior_fraction"] == "") == (r["prior"] == "init") and r["proximal"] == ""
    assert len(by_key) == len(rows)
    for run in results["runs"]:
        ru = run["run"]
        for m in METHODS:
            row = by_key[(ru["width"], ru["seed"], ru["prior_kind"], ru["posterior"] or "", m)]
            res = run["results"][m]
            assert row["dataset"] == "mnist5k" and int(row["depth"]) == 3
            assert math.isclose(float(row["certificate"]), res["certificate"], rel_tol=1e-12)
            assert math.isclose(float(row["unclipped"]), float(res["unclipped"]), rel_tol=1e-12)
            assert math.isclose(float(row["log10_unclipped"]), math.log10(float(res["unclipped"])), rel_tol=1e-9)
            assert row["vacuous"] == str(res["vacuous"])
            assert math.isclose(float(row["test_error"]), run["test_error"], rel_tol=1e-12)
            assert math.isclose(float(row["test_error_lower_confidence"]), run["test_error_lower_confidence"],
                                rel_tol=1e-12)
            assert float(row["delta"]) == 0.05
            if m in SPARSE:
                assert math.isclose(float(row["sigma"]), res["sigma"], rel_tol=1e-12)
                assert math.isclose(float(row["kl_over_m"]), res["kl_over_m"], rel_tol=1e-12)
                assert 0.0 <= float(row["certified_fraction"]) <= 1.0
                assert float(row["distance_to_prior"]) > 0
            else:
                assert row["sigma"] == "" and row["kl_over_m"] == ""


# --------------------------------------------------------------------------- validity facts


def test_every_certificate_above_test_error_lower_confidence(results) -> None:
    """THEORY.md 7.4: no certificate lies below the lower confidence bound of the test error."""
    for r in results["runs"]:
        lcb = r["test_error_lower_confidence"]
        assert 0.0 <= lcb <= r["test_error"]
        for m, res in r["results"].items():
            assert 0.0 <= res["certificate"] <= 1.0
            assert res["certificate"] >= lcb, (r["run"]["id"], m, res["certificate"], lcb)
            assert _num(res["unclipped"]) >= res["certificate"] - 1e-12
            assert res["vacuous"] == (_num(res["unclipped"]) >= 1.0)


def test_sparse_never_above_dense_or_uniform(results) -> None:
    for r in results["runs"]:
        s = _num(r["results"]["sparse"]["unclipped"])
        for other in ("dense", "uniform-sparse"):
            o = _num(r["results"][other]["unclipped"])
            assert s <= o * (1 + 1e-12), (r["run"]["id"], other, s, o)


# --------------------------------------------------------------------------- report.md


def _json_numbers(obj) -> list[float]:
    out: list[float] = []
    if isinstance(obj, dict):
        for v in obj.values():
            out += _json_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _json_numbers(v)
    elif isinstance(obj, bool):
        pass
    elif isinstance(obj, int | float) and math.isfinite(obj):
        out.append(abs(float(obj)))
    return out


def _tol(token: str) -> float:
    """Half a unit in the last printed digit of ``token``."""
    mant, _, exp = token.lower().partition("e")
    dec = len(mant.split(".")[1]) if "." in mant else 0
    return 0.5 * 10.0 ** (-dec) * 10.0 ** (int(exp) if exp else 0) * (1 + 1e-9) + 1e-15


def _close(token: str, value) -> bool:
    if token in ("inf", "n/a"):
        return token == "inf" and _num(value) == math.inf
    return abs(float(token) - float(value)) <= _tol(token)


NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


def _report_numbers_missing(out: Path, results) -> tuple[int, list[str]]:
    text = (out / "report.md").read_text()
    text = re.sub(r"\]\([^)]*\)", "]()", text)  # figure paths
    vals = np.sort(np.asarray(_json_numbers(results)))
    tokens = NUMBER.findall(text)
    missing = []
    for t in tokens:
        if t == "1":
            continue
        v, tol = float(t), _tol(t)
        i = np.searchsorted(vals, v - tol)
        if not (i < vals.size and vals[i] <= v + tol):
            missing.append(t)
    return len(tokens), missing


def test_every_number_in_report_is_in_results(quick, results) -> None:
    """Each numeric token of report.md equals (within its printed precision) a value of results.json;
    only the structural constant 1 (``1 - delta``, ``min(1, .)``) is exempt."""
    out, _, _ = quick
    n, missing = _report_numbers_missing(out, results)
    assert n > 100
    assert not missing, f"numbers in report.md not found in results.json: {missing[:20]}"


def _table(text: str, heading: str) -> list[list[str]]:
    lines = text.split(heading, 1)[1].strip().splitlines()
    rows = []
    for line in lines:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


LABEL = {"init": "init", "data-dep. (standard)": "ddp-standard", "data-dep. (proximal)": "ddp-proximal"}


def test_report_tables_match_results(quick, results) -> None:
    out, _, _ = quick
    text = (out / "report.md").read_text()
    runs = {(r["run"]["width"], r["run"]["kind"], r["run"]["seed"]): r for r in results["runs"]}
    # header facts
    assert re.search(r"delta = 0\.05\b", text)
    assert f"eta1 = {results['eta1']}" in text and f"eta2 = {results['eta2']}" in text
    for r in results["runs"]:
        assert f"m = {r['m']}" in text
    assert "vacuous" in text.lower() and "unclipped" in text
    # networks table
    net = _table(text, "### Networks")
    assert net[0][:4] == ["width", "prior", "seed", "m"]
    assert len(net) - 2 == len(runs)
    seen = set()
    for row in net[2:]:
        key = (int(row[0]), LABEL[row[1]], int(row[2]))
        seen.add(key)
        r = runs[key]
        sp = r["results"]["sparse"]
        assert int(row[3]) == r["m"]
        assert _close(row[4], r["train_error"])
        assert _close(row[5], r["test_error"])
        assert _close(row[6], r["test_error_lower_confidence"])
        assert _close(row[7], r["distance_to_prior_fro"])
        assert _close(row[8], sp["sigma_star_summary"]["median"])
        assert _close(row[9], sp["kl_over_m"])
    assert seen == set(runs)
    # certificates table
    cert = _table(text, "### Certificates")
    header = cert[0]
    assert header[3:3 + len(METHODS)] == list(METHODS)
    assert header[-2:] == ["sparse/neyshabur2018", "sparse/dense"]
    assert len(cert) - 2 == len(runs)
    for row in cert[2:]:
        r = runs[(int(row[0]), LABEL[row[1]], int(row[2]))]
        for m, cell in zip(METHODS, row[3:3 + len(METHODS)], strict=True):
            res = r["results"][m]
            mobj = re.fullmatch(r"(\S+) / (\S+)( †)?", cell)
            assert mobj, cell
            assert _close(mobj.group(1), res["certificate"]), (m, cell)
            assert _close(mobj.group(2), res["unclipped"]), (m, cell)
            assert bool(mobj.group(3)) == res["vacuous"], (m, cell)
        assert _close(row[-2], r["ratios"]["sparse/neyshabur2018"])
        assert _close(row[-1], r["ratios"]["sparse/dense"])


def test_report_readings_follow_the_numbers(quick, results) -> None:
    """The plain-language readings state directions that the stored numbers support."""
    out, _, _ = quick
    text = (out / "report.md").read_text()
    for kind, g in results["summary"]["groups"].items():
        cv = g["sparse_vs"]["neyshabur2018"]
        runs = [r for r in results["runs"] if r["run"]["kind"] == kind]
        ratios = [_num(r["results"]["neyshabur2018"]["unclipped"]) / _num(r["results"]["sparse"]["unclipped"])
                  for r in runs]
        assert math.isclose(cv["factor_min"], min(ratios), rel_tol=1e-12)
        assert math.isclose(cv["factor_max"], max(ratios), rel_tol=1e-12)
        if cv["sparse_below_all"]:
            assert all(x > 1 for x in ratios)
            assert "below neyshabur2018 at every width" in text
        if any(x < 1 for x in ratios):
            assert "below neyshabur2018 at every width" not in text
    for part in ("### Certificates vs width", "### Effective activity ratio", "### Sparse local radius",
                 "### Sparsity trade-off", "### Certified fraction vs sigma"):
        assert part in text


# --------------------------------------------------------------------------- config handling


def test_config_file_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('widths = [30, 10]\nprior-fraction = 0.25\nseeds = [1, 2]\nout = "x"\n')
    c = resolve_config({}, config_file=str(toml))
    assert c["widths"] == [10, 30] and c["prior_fractions"] == [0.25] and c["seeds"] == [1, 2] and c["out"] == "x"
    assert c["depth"] == 3 and c["dataset"] == "mnist5k" and c["posteriors"] == ["standard"]
    c = resolve_config({"widths": ["7"], "depth": "4"}, config_file=str(toml))  # the command line wins
    assert c["widths"] == [7] and c["depth"] == 4 and c["prior_fractions"] == [0.25]
    yml = tmp_path / "c.yaml"
    yml.write_text("quick: true\nmax_epochs: 3\nposteriors: [proximal, standard]\nproximal: 0.1\n")
    c = resolve_config({}, config_file=str(yml))
    assert c["quick"] and c["max_epochs"] == 3 and c["widths"] == [20, 40] and c["n_train"] == 1000
    assert c["posteriors"] == ["standard", "proximal"] and c["proximal"] == [0.1]
    c = resolve_config({})
    assert c["widths"] == [50, 100, 500, 1000] and c["depth"] == 3 and c["seeds"] == [0]
    assert c["prior_fractions"] == [0.5] and c["delta"] == 0.05 and c["out"] == "runs/reproduce"
    assert c["max_epochs"] == 60 and c["posteriors"] == ["standard"] and c["proximal"] == [0.01]
    # mc_seed None: a fresh seed per run (THEORY.md 4.5; issue 11.2), not one public seed for every run
    assert c["methods"] == list(METHODS) and c["mc_draws"] == 2000 and c["mc_batch"] == 256 and c["mc_seed"] is None
    assert c["mc_delta_fraction"] == 0.5 and c["sigma_profiles"] == [] and c["budget_minutes"] is None
    with pytest.raises(ConfigError, match="unknown key"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("widths: [10]\nwidht: 3\n")
        resolve_config({}, config_file=str(bad))


def test_config_lever_options(tmp_path: Path) -> None:
    """The lever options: lists, aliases, inf, profiles, methods (table order), precedence."""
    c = resolve_config({"prior_fractions": ["0.8", "0.2", "0.5", "0.2"], "proximal": ["inf", "1", "0.01"],
                        "posteriors": ["proximal", "standard"], "methods": ["test-set", "sparse-mc", "sparse"],
                        "sigma_profiles": ["1,1,1", "2,1,0.5"], "mc_draws": "10", "budget_minutes": "7.5"})
    assert c["prior_fractions"] == [0.2, 0.5, 0.8]
    assert c["proximal"] == [0.01, 1.0, math.inf]
    assert c["methods"] == ["sparse", "sparse-mc", "test-set"]
    assert c["sigma_profiles"] == [[1.0, 1.0, 1.0], [2.0, 1.0, 0.5]]
    assert c["mc_draws"] == 10 and c["budget_minutes"] == 7.5
    assert resolve_config({"prior_fraction": "0.3"})["prior_fractions"] == [0.3]  # the alias
    toml = tmp_path / "c.toml"
    toml.write_text('prior-fractions = [0.2, 0.8]\nsigma-profiles = [[1, 1, 1], [1, 2, 1]]\nproximal = ["inf"]\n')
    c = resolve_config({}, config_file=str(toml))
    assert c["prior_fractions"] == [0.2, 0.8] and c["sigma_profiles"] == [[1, 1, 1], [1, 2, 1]]
    assert c["proximal"] == [math.inf]
    assert resolve_config({"prior_fraction": "0.4"}, config_file=str(toml))["prior_fractions"] == [0.4]
    with pytest.raises(ConfigError, match="not both"):
        resolve_config({"prior_fraction": "0.4", "prior_fractions": ["0.5"]})
    with pytest.raises(ConfigError, match="depth"):
        resolve_config({"sigma_profiles": ["1,1"]})
    assert resolve_config({"sigma_profiles": ["1,1"], "depth": "2"})["sigma_profiles"] == [[1.0, 1.0]]


# --------------------------------------------------------------------------- bad inputs


def _bad_cases(tmp: Path) -> dict[str, list[str]]:
    f = tmp / "a-file"
    f.write_text("x")
    cfg = tmp / "unknown.toml"
    cfg.write_text("widths = [10]\nlearning_rate = 0.1\n")
    empty = tmp / "empty-mnist"
    empty.mkdir()
    out = str(tmp / "out")
    return {
        "depth 1": ["--depth", "1", "--out", out],
        "widths 0": ["--widths", "0", "--out", out],
        "widths empty": ["--widths", "--out", out],
        "widths non-integer": ["--widths", "10", "2.5", "--out", out],
        "prior fraction 1.2": ["--prior-fraction", "1.2", "--out", out],
        "delta 0": ["--delta", "0", "--out", out],
        "unwritable out": ["--out", str(f / "sub")],
        "unknown config key": ["--config", str(cfg), "--out", out],
        "mnist missing": ["--dataset", "mnist", "--data-dir", str(empty), "--out", out],
        "prior fractions 0": ["--prior-fractions", "0", "--out", out],
        "prior fractions 0.5 1": ["--prior-fractions", "0.5", "1", "--out", out],
        "proximal -1": ["--posteriors", "standard", "proximal", "--proximal", "0.1", "-1", "--out", out],
        "proximal 0": ["--proximal", "0", "--out", out],
        "profile of wrong length": ["--sigma-profiles", "1,1,1", "1,2", "--out", out],
        "profile not positive": ["--sigma-profiles", "1,0,1", "--out", out],
        "mc draws 0": ["--methods", "sparse", "sparse-mc", "--mc-draws", "0", "--out", out],
        "mc delta fraction 1": ["--mc-delta-fraction", "1", "--out", out],
        "unknown method": ["--methods", "sparse", "pac-magic", "--out", out],
        "budget 0": ["--budget-minutes", "0", "--out", out],
    }


BAD_CASES = ["depth 1", "widths 0", "widths empty", "widths non-integer", "prior fraction 1.2", "delta 0",
             "unwritable out", "unknown config key", "mnist missing", "prior fractions 0", "prior fractions 0.5 1",
             "proximal -1", "proximal 0", "profile of wrong length", "profile not positive", "mc draws 0",
             "mc delta fraction 1", "unknown method", "budget 0"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_one_line_exit_2(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    from sparsebound import data as data_mod

    monkeypatch.setattr(data_mod, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))  # never reach the network
    argv = ["reproduce", "--quick", "--quiet", *_bad_cases(tmp_path)[case]]
    t0 = time.perf_counter()
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (case, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, err)
    assert time.perf_counter() - t0 < 20, "must fail before any training"
    assert not (tmp_path / "out").exists()  # validated before anything is created (issue 11.15)
    if case == "unknown config key":
        assert "learning_rate" in lines[0] and "widths" in lines[0]
    if case == "mnist missing":
        assert "MNIST files missing" in lines[0]
    if case == "profile of wrong length":
        assert "'1,2'" in lines[0] and "K = 3" in lines[0]
    if case == "proximal -1":
        assert "--proximal" in lines[0] and "-1" in lines[0]


# --------------------------------------------------------------------------- resume (runs last)


def _cert_files(out: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_text())
            for p in sorted((out / "runs").rglob("certificate.json"))}


def test_resume_skips_finished_runs(quick, results, capsys) -> None:
    out, _, first = quick
    before = _cert_files(out)
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = cli.main(["reproduce", "--quick", "--out", str(out), "--quiet"])
    elapsed = time.perf_counter() - t0
    printed = capsys.readouterr().out
    assert rc == 0
    assert printed.count("loaded from disk") == len(results["runs"])
    assert _cert_files(out) == before  # nothing rewritten
    again = json.loads((out / "results.json").read_text())
    assert again["runs"] == results["runs"]
    assert again["summary"] == results["summary"]
    assert again["timings"]["runs_skipped"] == len(results["runs"])
    assert elapsed < max(first, 5.0)
    assert "report.md" in printed


def test_resume_reuses_checkpoints(quick, results, capsys) -> None:
    """A run without certificate.json is recomputed from its existing checkpoint (no retraining)."""
    out, _, _ = quick
    rdir = out / "runs" / f"w{QUICK_WIDTHS[0]}-s0" / "ddp-standard"
    (rdir / "certificate.json").unlink()
    shutil.rmtree(out / "figures")
    rc = cli.main(["reproduce", "--quick", "--out", str(out), "--quiet"])
    assert rc == 0
    assert capsys.readouterr().out.count("loaded from disk") == len(results["runs"]) - 1
    rec = json.loads((rdir / "certificate.json").read_text())
    assert rec["training"]["reused_checkpoint"] is True
    old = next(r for r in results["runs"] if r["run"]["id"] == rec["run"]["id"])
    for m in METHODS:
        assert math.isclose(_num(rec["results"][m]["unclipped"]), _num(old["results"][m]["unclipped"]),
                            rel_tol=1e-9), m
    assert (out / "figures" / "activity_ratios.png").is_file()


# --------------------------------------------------------------------------- tightness levers (second run)

LEVER_KINDS = ["init", "ddp-standard-a0.3", "ddp-proximal-a0.3-l0.1", "ddp-proximal-a0.3-linf",
               "ddp-standard-a0.6", "ddp-proximal-a0.6-l0.1", "ddp-proximal-a0.6-linf"]
LEVER_METHODS = ["sparse", "sparse-mc", "dense", "neyshabur2018", "test-set"]


def _lever_argv(out: Path) -> list[str]:
    return ["reproduce", "--quick", "--widths", "20", "--n-train", "400", "--n-test", "200",
            "--prior-fractions", "0.3", "0.6", "--posteriors", "standard", "proximal", "--proximal", "0.1", "inf",
            "--methods", *reversed(LEVER_METHODS), "--mc-draws", "25", "--sigma-profiles", "1,1,1", "2,1,0.5",
            "--budget-minutes", "0.05", "--threads", "1", "--quiet", "--out", str(out)]


@pytest.fixture(scope="module")
def levers(tmp_path_factory):
    """The lever sweep under a budget far too small: every run at the minimum epochs / draws.
    Yields (out folder, exit status, printed output, results)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("levers") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(_lever_argv(out))
    res = json.loads((out / "results.json").read_text()) if rc == 0 else None
    return out, rc, buf.getvalue(), res


def _runs_by_kind(res) -> dict[str, dict]:
    return {r["run"]["kind"]: r for r in res["runs"]}


def test_levers_run_names_and_folders(levers) -> None:
    out, rc, printed, res = levers
    assert rc == 0, printed
    assert res["kinds"] == LEVER_KINDS
    assert [r["run"]["kind"] for r in res["runs"]] == LEVER_KINDS  # run order: init, then per alpha
    assert res["methods"] == LEVER_METHODS  # table order, whatever the command-line order
    assert res["prior_fractions"] == [0.3, 0.6] and res["proximal"] == [0.1, "inf"]
    block = out / "runs" / "w20-s0"
    assert sorted(p.name for p in block.iterdir() if p.is_dir()) == sorted([*LEVER_KINDS, "prior-a0.3", "prior-a0.6"])
    for kind in LEVER_KINDS:
        assert (block / kind / "certificate.json").is_file()
        assert not (block / kind / "prior").exists()  # the prior lives once in prior-a{alpha}
    for r in res["runs"]:
        ru = r["run"]
        if ru["kind"] == "init":
            assert ru["prior_fraction"] is None and ru["proximal"] is None and ru["posterior"] is None
        else:
            assert ru["prior_fraction"] in (0.3, 0.6) and ru["prior_kind"] == "data-dependent"
            assert ru["posterior"] == ("standard" if "standard" in ru["kind"] else "proximal")
            assert r["run_config"]["prior_fraction"] == ru["prior_fraction"]
            assert r["m"] == 400 - round(ru["prior_fraction"] * 400)


def test_levers_prior_trained_once_per_alpha(levers) -> None:
    from sparsebound.checkpoint import load_checkpoint

    out, rc, _, res = levers
    assert rc == 0
    assert res["timings"]["priors_trained"] == ["w20-s0/prior-a0.3", "w20-s0/prior-a0.6"]
    block = out / "runs" / "w20-s0"
    for alpha in ("0.3", "0.6"):
        pdir = block / f"prior-a{alpha}"
        prior = load_checkpoint(pdir)
        meta = json.loads((pdir / "checkpoint.json").read_text())
        assert meta["bound_sample"]["prior_fraction"] == float(alpha)
        posts = [r for r in res["runs"] if r["run"]["kind"].endswith(f"-a{alpha}") or f"-a{alpha}-" in r["run"]["kind"]]
        assert len(posts) == 3
        assert [r["prior_checkpoint"]["trained_for_this_run"] for r in posts] == [True, False, False]
        for r in posts:
            assert r["prior_checkpoint"]["path"] == str(pdir)
            assert r["prior_checkpoint"]["tensor_sha256"] == meta["tensor_sha256"]
            post = load_checkpoint(Path(r["checkpoint"]))
            assert all(torch.equal(a, b) for a, b in zip(post.prior.weights, prior.network.weights, strict=True))
            assert post.meta["prior"]["shared"] is True
            # the prior was written before every posterior and never rewritten
            assert (pdir / "checkpoint.json").stat().st_mtime_ns <= \
                (Path(r["checkpoint"]) / "checkpoint.json").stat().st_mtime_ns


def test_levers_lambda_inf_is_the_prior(levers) -> None:
    _, rc, _, res = levers
    assert rc == 0
    for kind in ("ddp-proximal-a0.3-linf", "ddp-proximal-a0.6-linf"):
        r = _runs_by_kind(res)[kind]
        assert r["run"]["proximal"] == "inf" and r["run_config"]["proximal"] == "inf"
        assert r["distance_to_prior_fro"] == 0.0
        assert r["training"]["epochs"] == 0
        sp = r["results"]["sparse"]
        assert sp["kl"] == 0.0 and sp["kl_over_m"] == 0.0
        lcb = r["test_error_lower_confidence"]
        for m in LEVER_METHODS:
            res_m = r["results"][m]
            assert res_m["certificate"] >= lcb, (kind, m)
            assert res_m["vacuous"] == (_num(res_m["unclipped"]) >= 1.0)
    # on this data the alpha = 0.6 prior itself (KL = 0) gets a non-vacuous sparse certificate
    r = _runs_by_kind(res)["ddp-proximal-a0.6-linf"]
    assert not r["results"]["sparse"]["vacuous"], r["results"]["sparse"]["unclipped"]
    finite = _runs_by_kind(res)["ddp-proximal-a0.6-l0.1"]
    assert finite["distance_to_prior_fro"] > 0


def test_levers_sparse_mc_record_and_csv(levers) -> None:
    out, rc, _, res = levers
    assert rc == 0
    seeds = []
    for r in res["runs"]:
        mc = r["results"]["sparse-mc"]
        # a fresh seed per run (THEORY.md 4.5), recorded in the run's configuration (run.json before drawing)
        assert mc["n_draws"] == 20 and 0 <= mc["seed"] < 2**63 and len(mc["losses"]) == 20
        seeds.append(mc["seed"])
        assert math.isclose(mc["delta"] + mc["delta_mc"], r["delta"], rel_tol=1e-12)
        assert math.isclose(mc["delta_mc"], 0.5 * r["delta"], rel_tol=1e-12)
        assert 0.0 <= mc["q_hat"] <= 1.0 and mc["sigma"] > 0 and mc["kl_over_m"] >= 0
        assert mc["certificate"] >= r["test_error_lower_confidence"]
        assert r["run_config"]["mc"] == {"draws": 20, "seed": mc["seed"], "seed_rule": "fresh", "delta_fraction": 0.5,
                                         "max_evals": 4}
        recorded = json.loads((Path(r["checkpoint"]) / "run.json").read_text())
        assert recorded["run_config"] == r["run_config"]
    assert len(set(seeds)) == len(seeds)  # fresh: no two runs share their draws
    assert res["summary"]["mc"]["seed_rule"] == "fresh" and res["summary"]["mc"]["seeds"] == sorted(seeds)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(LEVER_KINDS) * len(LEVER_METHODS)
    by = {(r["run"], r["method"]): r for r in rows}
    assert len(by) == len(rows)
    for run in res["runs"]:
        row = by[(run["run"]["kind"], "sparse-mc")]
        mc = run["results"]["sparse-mc"]
        assert int(row["n_draws"]) == 20 and int(row["mc_seed"]) == mc["seed"]
        assert math.isclose(float(row["q_hat"]), mc["q_hat"], rel_tol=1e-12)
        assert math.isclose(float(row["sigma"]), mc["sigma"], rel_tol=1e-12)
        assert math.isclose(float(row["kl_over_m"]), mc["kl_over_m"], rel_tol=1e-12)
        assert math.isclose(float(row["delta_pacbayes"]) + float(row["delta_mc"]), float(row["delta"]), rel_tol=1e-12)
        assert int(row["max_epochs"]) == 3
        lam = run["run"]["proximal"]
        assert row["proximal"] == ("" if lam is None else str(lam))
        alpha = run["run"]["prior_fraction"]
        assert row["prior_fraction"] == ("" if alpha is None else str(alpha))
        other = by[(run["run"]["kind"], "sparse")]
        assert other["q_hat"] == "" and other["n_draws"] == "" and other["delta_mc"] == ""


def test_levers_budget_scaling_recorded(levers) -> None:
    out, rc, printed, res = levers
    assert rc == 0
    bud = res["budget"]
    assert bud["budget_minutes"] == 0.05 and bud["max_epochs_requested"] == 8 and bud["mc_draws_requested"] == 25
    assert bud["calibration_s"] > 0 and len(bud["blocks"]) == 1
    blk = bud["blocks"][0]
    assert blk["block"] == "w20-s0" and blk["max_epochs"] == 3 and blk["mc_draws"] == 20
    assert blk["fits"] is False  # three seconds cannot hold seven runs: the minimums, and it says so
    assert "budget: w20-s0: cannot fit even at the minimums; using 3 epochs, 20 draws" in printed
    plan = json.loads((out / "runs" / "w20-s0" / "budget.json").read_text())
    assert plan["max_epochs"] == 3 and plan["mc_draws"] == 20
    for r in res["runs"]:
        st = r["settings"]
        assert st["max_epochs"] == 3 and st["max_epochs_requested"] == 8
        assert st["mc_draws"] == 20 and st["mc_draws_requested"] == 25
        assert st["scaled_by_budget"] is True and st["budget_minutes"] == 0.05
        assert r["run_config"]["training"]["max_epochs"] == 3
        assert r["training"]["epochs"] <= 3
        assert r["training"]["config"]["max_epochs"] == 3
        if "prior" in r["training"]:
            assert r["training"]["prior"]["epochs"] <= 3


def test_levers_sigma_profiles_recorded(levers) -> None:
    _, rc, _, res = levers
    assert rc == 0
    profiles = [[1.0, 1.0, 1.0], [2.0, 1.0, 0.5]]
    assert res["sigma_profiles"] == profiles and res["config"]["sigma_profiles"] == profiles
    for r in res["runs"]:
        assert r["run_config"]["sigma_profiles"] == profiles
        assert r["grids"]["sigma"]["profiles"] == profiles
        assert r["results"]["sparse"]["profile"] in profiles
        assert r["results"]["sparse-mc"]["profile"] == r["results"]["sparse"]["profile"]


def test_levers_report(levers) -> None:
    out, rc, _, res = levers
    assert rc == 0
    text = (out / "report.md").read_text()
    n, missing = _report_numbers_missing(out, res)
    assert n > 100
    assert not missing, f"numbers in report.md not found in results.json: {missing[:20]}"
    assert "delta = 0.025 for its PAC-Bayes step and delta' = 0.025" in text and "N = 20" in text
    assert "(1, 1, 1); (2, 1, 0.5)" in text
    assert "**Time budget:** 0.05 minutes requested" in text
    rows = _table(text, "### Levers, width 20")
    assert rows[0][:6] == ["seed", "run", "prior", "posterior", "alpha", "lambda"]
    assert rows[0][-4:] == ["sparse", "sparse-mc", "dense", "neyshabur2018"]
    assert [r[1] for r in rows[2:]] == LEVER_KINDS
    by = _runs_by_kind(res)
    for row in rows[2:]:
        r = by[row[1]]
        assert _close(row[6], r["train_error"]) and _close(row[7], r["test_error"])
        assert _close(row[8], r["distance_to_prior_fro"])
        lam = r["run"]["proximal"]
        assert row[5] == "-" if lam is None else (row[5] == "inf" if lam == "inf" else _close(row[5], lam))
        for m, cell in zip(["sparse", "sparse-mc", "dense", "neyshabur2018"], row[-4:], strict=True):
            mobj = re.fullmatch(r"(\S+) / (\S+)( †)?", cell)
            assert mobj and _close(mobj.group(2), r["results"][m]["unclipped"]), (m, cell)
            assert bool(mobj.group(3)) == r["results"][m]["vacuous"]
    # the reading names the best setting by the stated rule
    (blk,) = res["summary"]["levers"]
    best = blk["best"]
    errs = {k: r["train_error"] for k, r in by.items()}
    pool = [k for k, e in errs.items() if e <= 0.02] or [k for k, e in errs.items() if e == min(errs.values())]
    score = {k: min(_num(by[k]["results"][m]["unclipped"]) for m in ("sparse", "sparse-mc")) for k in pool}
    assert best["kind"] == min(score, key=score.get) and best["rule"] == ("fitted" if min(errs.values()) <= 0.02
                                                                         else "lowest")
    assert f"({best['method']}, unclipped " in text
    # union bound over every sparse and sparse-mc certificate of the block (docs/theory.md section 9): one
    # PAC-Bayes event per prior (init, alpha 0.3, alpha 0.6) at delta = 0.05 (sparse-mc's step at 0.025 is
    # implied by it), plus the draws of each of the 7 sparse-mc certificates at delta' = 0.025
    assert blk["n_networks"] == 7 and math.isclose(blk["delta_union"], 3 * 0.05 + 7 * 0.025)
    assert blk["union"]["n_priors"] == 3 and blk["union"]["n_mc"] == 7
    assert "union bound at level 0.325 = 3 x 0.05 + 7 x 0.025" in text
    lam_eff = {e["alpha"]: e for e in blk["lambda_effect"]}
    assert set(lam_eff) == {0.3, 0.6}
    assert [v["lambda"] for v in lam_eff[0.6]["values"]] == [0.0, 0.1, "inf"]
    assert "Proximal lambda, at alpha 0.6" in text and "Prior fraction, with the standard posterior" in text
    iv = blk["init_vs_data_dependent"]  # compared at comparable fit
    assert iv["fit_limit"] == max(0.02, by["init"]["train_error"])
    comp = [k for k in LEVER_KINDS[1:] if by[k]["train_error"] <= iv["fit_limit"]] or LEVER_KINDS[1:]
    assert iv["best_run"] == min(comp, key=lambda k: _num(by[k]["results"]["sparse"]["unclipped"]))
    mv = blk["mc_vs_sparse"]
    ratios = [_num(r["results"]["sparse-mc"]["unclipped"]) / _num(r["results"]["sparse"]["unclipped"])
              for r in res["runs"]]
    assert mv["n_runs"] == 7 and mv["n_lower"] == sum(x < 1 for x in ratios)
    assert math.isclose(mv["ratio_min"], min(ratios), rel_tol=1e-12)


def test_levers_resume(levers, capsys) -> None:
    """Re-running the same budgeted sweep reuses the recorded plan and loads every run."""
    out, rc, _, res = levers
    assert rc == 0
    capsys.readouterr()
    assert cli.main(_lever_argv(out)) == 0
    printed = capsys.readouterr().out
    assert printed.count("loaded from disk") == len(LEVER_KINDS)
    assert "budget: w20-s0: reusing the recorded plan: at most 3 epochs, 20 sparse-mc draws" in printed
    again = json.loads((out / "results.json").read_text())
    assert again["runs"] == res["runs"] and again["timings"]["priors_trained"] == []


def _trade_row(f: float, unclipped: float | None, emp: float) -> dict:
    ok = unclipped is not None
    return {"active_fraction": f, "bound": min(1.0, unclipped) if ok else 1.0, "unclipped": unclipped,
            "augmented_loss": emp, "empirical_term": emp, "complexity_term": 0.1 if ok else None,
            "kl": 1.0 if ok else None, "sigma": 0.01 if ok else None, "median_sigma_star": 0.01,
            "informative_level": 0.2, "certifiable": ok}


def _tiny_run(kind: str, width: int, seed: int, results: dict, tradeoff: list | None = None, **run: object) -> dict:
    """A minimal run record (the fields the summary and the report read)."""
    info = {"id": f"w{width}-s{seed}/{kind}", "kind": kind, "width": width, "depth": 3, "hidden": [width, width],
            "seed": seed, "prior_kind": "init", "posterior": None, "prior_fraction": None, "proximal": None,
            "dataset": "mnist5k", **run}
    return {"run": info, "m": 100, "delta": 0.05, "eta1": 1e-4, "eta2": 1e-3, "train_error": 0.0, "test_error": 0.1,
            "results": {k: {"method": k, "empirical_term": None, "complexity_term": None, "m": 100, "delta": 0.05,
                            **v} for k, v in results.items()},
            "tradeoff": tradeoff or [], "checkpoint": "nowhere"}


def test_tradeoff_reading_with_uncertified_levels():
    """Trade-off rows at one common level (docs/theory.md section 9): the quoted best is the smallest
    certified bound; a level with no bound is named as such, never compared with itself."""
    from sparsebound.report.markdown import _reading_tradeoff
    from sparsebound.study.config import resolve_config as resolve
    from sparsebound.study.results import RunRecord, StudyResult
    from sparsebound.study.summary import _tradeoff_best_row

    rows = [_trade_row(0.25, 1.3, 0.15), _trade_row(0.5, 1.2, 0.1), _trade_row(1.0, None, 0.5)]
    assert _tradeoff_best_row(rows)["active_fraction"] == 0.5
    # round trip through the results file keeps the choice
    assert _tradeoff_best_row(json.loads(json.dumps(rows)))["unclipped"] == 1.2
    run = RunRecord.from_dict(_tiny_run("init", 50, 0, {"sparse": {"unclipped": 1.1, "vacuous": True,
                                                                   "certificate": 1.0}}, rows))
    config = resolve({"methods": ["sparse"], "widths": ["50"], "seeds": ["0"]})
    study = StudyResult.assemble(config, [run], data={}, versions={}, timings={}, budget=None, created="")
    trade = study.summary.groups["init"].tradeoff_best
    assert len(trade) == 1
    t = trade[0]
    assert t.best_unclipped == 1.2 and t.full_active_fraction == 1.0 and t.full_unclipped is None
    assert t.uncertified_active_fractions == [1.0]
    text = _reading_tradeoff(study)
    assert "no bound at active fraction 1" in text
    assert "1.2 at active fraction 0.5" in text and "against 1.2" not in text
    # old-format rows (one level per fraction, no `certifiable`): the augmented-loss window rule
    old = [{k: v for k, v in r.items() if k not in ("certifiable", "informative_level")}
           for r in (_trade_row(0.25, 1.05, 0.9), _trade_row(1.0, 1.5, 0.1))]
    assert _tradeoff_best_row(old)["active_fraction"] == 1.0


def test_figure_window_matches_certification():
    """The figures module repeats the informative window (to draw without torch): same value."""
    from sparsebound.certification import INFORMATIVE_WINDOW
    from sparsebound.report import figures

    assert figures.INFORMATIVE_WINDOW == INFORMATIVE_WINDOW
    # ties go to the densest level, in any row order
    rows = [{"active_fraction": f, "unclipped": 2.0, "augmented_loss": 0.1, "certifiable": True}
            for f in (0.5, 0.9, 0.7)]
    assert figures.tradeoff_best_index(rows) == 1
    assert figures.tradeoff_best_index([{"active_fraction": 1.0, "unclipped": None, "certifiable": False}]) is None
