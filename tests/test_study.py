"""The study layer (sparsebound.study, sparsebound.report.markdown): settings, seeds, the union-bound
level, typed records, number formats, the output folder, the executor seam.

The end-to-end ``reproduce`` runs and the report's agreement with results.json are in
tests/test_reproduce.py; here every part is checked on its own, with small studies
(a width-8 network on 100 mnist5k points) where a whole run is needed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from sparsebound import cli
from sparsebound._io import LOCK_FILE, output_lock
from sparsebound.errors import ConfigError
from sparsebound.report.markdown import build_report, fixed, md_table, sig
from sparsebound.study import plan as plan_mod
from sparsebound.study.config import resolve_config
from sparsebound.study.plan import Job, derived_mc_seed, mc_seed_for, run_config, same_run_config
from sparsebound.study.results import RunRecord, StudyResult, load_results
from sparsebound.study.summary import union_level

# --------------------------------------------------------------------------- settings


def test_null_means_not_given_in_every_layer(tmp_path: Path) -> None:
    """One rule for null: the key falls back to the layer below (issue 11.16: out: null -> no folder 'None')."""
    yml = tmp_path / "c.yaml"
    yml.write_text("quick: true\nout: null\nwidths: ~\nn_train:\nmc_seed: null\nbudget_minutes: null\n")
    c = resolve_config({}, str(yml))
    assert c.out == "runs/reproduce" and c.widths == (20, 40) and c.n_train == 1000  # quick preset, then default
    assert c.mc_seed is None and c.budget_minutes is None
    assert resolve_config({"out": None, "widths": None}).out == "runs/reproduce"  # command line: None = not given


@pytest.mark.parametrize("key", ["out", "dataset", "device", "data_dir", "widths", "seeds", "delta", "mc_seed",
                                 "budget_minutes", "threads", "methods"])
def test_empty_strings_are_refused_for_every_key(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"--{key.replace('_', '-')} \(key '{key}'\) is empty on the command line"):
        resolve_config({key: ""})
    toml = tmp_path / "c.toml"
    toml.write_text(f'{key} = ""\n')
    with pytest.raises(ConfigError, match="is empty in config file"):
        resolve_config({}, str(toml))


def test_config_file_not_utf8_is_one_line(tmp_path: Path, capsys) -> None:
    """Issue 11.10: a Latin-1 file gave a UnicodeDecodeError traceback."""
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("widths: [10]\nout: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        resolve_config({}, str(bad))
    assert cli.main(["reproduce", "--config", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: config file") and "UTF-8" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value", [("seeds", ["-1"]), ("seeds", ["0", "2.5"]), ("split_seed", "-3"),
                                           ("mc_seed", "-1"), ("mc_seed", str(2**63)), ("split_seed", "x")])
def test_every_seed_follows_the_one_seed_rule(option: str, value: object) -> None:
    name = "--" + option.replace("_", "-")
    with pytest.raises(ConfigError, match=rf"{name} must be an integer in \[0, 2\^63 - 1\]"):
        resolve_config({option: value})
    c = resolve_config({"seeds": ["3", 4.0], "split_seed": "7", "mc_seed": str(2**63 - 1)})
    assert c.seeds == (3, 4) and c.split_seed == 7 and c.mc_seed == 2**63 - 1


def test_study_config_is_frozen_and_its_identity_ignores_where_it_runs() -> None:
    a = resolve_config({"quick": True, "out": "a", "threads": "1", "quiet": True})
    b = resolve_config({"quick": True, "out": "b", "device": "cpu"})
    with pytest.raises(AttributeError):
        a.widths = (1,)  # type: ignore[misc]
    assert a.identity() == b.identity()
    assert "mc_seed" not in a.identity()  # sparse-mc options matter only with sparse-mc
    c = resolve_config({"quick": True, "methods": ["sparse", "sparse-mc"]})
    assert c.identity()["mc_seed"] is None
    assert resolve_config({"quick": True, "max_epochs": "9"}).identity() != a.identity()
    assert type(a).from_dict(json.loads(json.dumps(a.to_dict()))) == a  # config.json round trip


# --------------------------------------------------------------------------- sparse-mc seeds


def test_derived_seeds_are_deterministic_distinct_and_in_range() -> None:
    ids = [f"w{w}-s{s}/{k}" for w in (10, 20) for s in (0, 1) for k in ("init", "ddp-standard")]
    seeds = [derived_mc_seed(7, i) for i in ids]
    assert seeds == [derived_mc_seed(7, i) for i in ids]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    assert derived_mc_seed(8, ids[0]) != seeds[0]


def test_seed_rule_fresh_by_default_and_recorded_before_drawing() -> None:
    c = resolve_config({"quick": True, "methods": ["sparse", "sparse-mc"]})
    job = Job(0, 20, "init")
    fresh = {mc_seed_for(c, job) for _ in range(8)}
    assert len(fresh) == 8 and all(0 <= s < 2**63 for s in fresh)  # fresh randomness every time
    assert mc_seed_for(c, job, recorded=123) == 123  # an interrupted attempt's recorded seed is kept
    st = plan_mod.Settings.requested(c)
    rc = run_config(c, job, st, 5)
    assert rc["mc"] == {"draws": 2000, "seed": 5, "seed_rule": "fresh", "delta_fraction": 0.5, "max_evals": 4}
    assert same_run_config(rc, run_config(c, job, st, 6))  # a finished run keeps whatever fresh seed it drew
    d = resolve_config({"quick": True, "methods": ["sparse", "sparse-mc"], "mc_seed": "7"})
    assert mc_seed_for(d, job, recorded=123) == derived_mc_seed(7, job.id)  # derived: never the recorded one
    rd = run_config(d, job, st, derived_mc_seed(7, job.id))
    assert rd["mc"]["seed_rule"] == "derived" and rd["mc"]["base_seed"] == 7
    assert not same_run_config(rd, run_config(d, job, st, 6))
    assert run_config(resolve_config({"quick": True}), job, st).get("mc") is None


# --------------------------------------------------------------------------- union-bound level


def _rec(kind: str, *, prior: str = "init", alpha: float | None = None, sha: str | None = None, m: int = 100,
         methods: tuple[str, ...] = ("sparse",), delta: float = 0.05, f: float = 0.5, eta1: float = 1e-4,
         width: int = 20, seed: int = 0) -> RunRecord:
    res = {}
    for name in methods:
        r = {"method": name, "certificate": 1.0, "unclipped": 2.0, "vacuous": True, "empirical_term": 0.1,
             "complexity_term": 1.0, "m": m, "delta": delta}
        if name == "sparse-mc":
            r.update(delta=(1 - f) * delta, delta_mc=f * delta, seed=1, n_draws=10)
        res[name] = r
    d = {"run": {"id": f"w{width}-s{seed}/{kind}", "kind": kind, "width": width, "depth": 3, "hidden": [width] * 2,
                 "seed": seed, "prior_kind": prior, "posterior": None if prior == "init" else "standard",
                 "prior_fraction": alpha, "proximal": None, "dataset": "mnist5k"},
         "m": m, "delta": delta, "eta1": eta1, "eta2": 1e-3, "results": res, "checkpoint": "x",
         "grids": {"sigma": {"sigma_ref": 0.01, "steps_per_octave": 8, "profiles": "all-ones",
                             "j_range_evaluated": [-3, 3], "weights": "pi"}}}
    if sha is not None:
        d["prior_checkpoint"] = {"path": "p", "tensor_sha256": sha, "trained_for_this_run": False}
    return RunRecord.from_dict(d)


def _posteriors(n: int, alpha: float, sha: str, methods: tuple[str, ...], **kw: object) -> list[RunRecord]:
    return [_rec(f"ddp-{alpha}-{i}", prior="data-dependent", alpha=alpha, sha=sha, m=50, methods=methods, **kw)
            for i in range(n)]


def test_union_one_prior_many_posteriors_is_one_event() -> None:
    """The PAC-Bayes-kl event of one prior holds for every posterior at once: level delta, not n delta."""
    u = union_level(_posteriors(5, 0.5, "aa", ("sparse",)))
    assert math.isclose(u.level, 0.05) and u.n_priors == 1 and u.n_mc == 0 and u.n_networks == 5


def test_union_several_priors_add() -> None:
    runs = [_rec("init"), *_posteriors(3, 0.3, "aa", ("sparse",)), *_posteriors(2, 0.6, "bb", ("sparse",))]
    u = union_level(runs)
    assert math.isclose(u.level, 3 * 0.05) and u.n_priors == 3
    # a retrained prior (another tensor hash) for the same alpha is another event
    assert union_level([*runs, *_posteriors(1, 0.6, "cc", ("sparse",))]).n_priors == 4
    # another loss family (eta1) with the same prior is another event too
    assert union_level([*runs, _rec("init2", eta1=1e-3)]).n_priors == 4


@pytest.mark.parametrize("f", [0.5, 0.2])
def test_union_with_sparse_mc(f: float) -> None:
    """P priors and n sparse-mc certificates: P delta + n f delta (sparse's event at delta implies sparse-mc's
    PAC-Bayes event at (1 - f) delta); only sparse-mc: P (1 - f) delta + n f delta."""
    both = ("sparse", "sparse-mc")
    runs = [_rec("init", methods=both, f=f), *_posteriors(4, 0.5, "aa", both, f=f)]
    u = union_level(runs)
    assert math.isclose(u.level, 2 * 0.05 + 5 * f * 0.05) and (u.n_priors, u.n_mc) == (2, 5)
    assert u.prior_levels == [{"level": 0.05, "count": 2}] and u.mc_levels == [{"level": f * 0.05, "count": 5}]
    only = [_rec("init", methods=("sparse-mc",), f=f), *_posteriors(4, 0.5, "aa", ("sparse-mc",), f=f)]
    assert math.isclose(union_level(only).level, 2 * (1 - f) * 0.05 + 5 * f * 0.05)
    mixed = [_rec("init", methods=("sparse",), f=f), *_posteriors(2, 0.5, "aa", ("sparse-mc",), f=f)]
    assert math.isclose(union_level(mixed).level, 0.05 + (1 - f) * 0.05 + 2 * f * 0.05)
    # the count P (2 - f) delta + n f delta is valid but larger whenever sparse is reported
    assert u.level < 2 * (2 - f) * 0.05 + 5 * f * 0.05


def test_nested_pac_bayes_events_fail_together_monte_carlo() -> None:
    """Monte-Carlo check of the step the union count rests on: for one prior and one loss, the kl event
    at level delta implies the one at (1 - f) delta, so 'sparse fails or sparse-mc's PAC-Bayes step fails'
    happens exactly as often as 'sparse fails', at most delta (not (2 - f) delta)."""
    from sparsebound.pacbayes import kl_inv_upper

    rng = np.random.default_rng(0)
    m, p, delta, f, trials = 20, 0.3, 0.4, 0.5, 4000
    q = rng.binomial(m, p, size=trials) / m

    def fails(level: float) -> np.ndarray:
        c = math.log(2 * math.sqrt(m) / level) / m
        return np.array([p > kl_inv_upper(float(qi), c) for qi in q])

    a, b = fails(delta), fails((1 - f) * delta)
    assert not np.any(b & ~a)  # the smaller level's failure implies the larger's
    assert np.array_equal(a | b, a)
    assert (a | b).mean() <= delta


def test_union_refuses_other_methods() -> None:
    with pytest.raises(ValueError, match="sparse and sparse-mc only"):
        union_level([_rec("init")], methods=("sparse", "dense"))


# --------------------------------------------------------------------------- numbers and tables


def test_number_formats_stay_short_for_any_magnitude() -> None:
    """Issue 11.8: a distance of 2.9e100 printed as a 100-digit number."""
    assert fixed(2.9e100) == "2.9000e+100" and sig(2.9e100) == "2.9e+100"
    assert fixed(0.07412) == "0.0741" and fixed(1234.5) == "1234.5000" and fixed(-3e7, 2) == "-3.00e+07"
    assert sig(float("inf")) == "inf" and fixed(None) == "n/a" and sig("inf") == "inf"
    for x in (1e-300, 3.3e-7, 0.5, 12.0, 9.99e9, 1.7e308, -2.5e150):
        assert len(fixed(x)) <= 12 and len(sig(x)) <= 10, x
    lines = md_table(["a", "b"], [["1", "2.9e+100"], ["long cell", "x"]])
    assert len({len(ln) for ln in lines}) == 1  # aligned source
    assert [c.strip() for c in lines[2].strip("|").split(" | ")] == ["1", "2.9e+100"]


def test_report_of_an_extreme_network_stays_aligned() -> None:
    run = _rec("init")
    d = run.to_dict()
    d["distance_to_prior_fro"] = 2.9e100
    d["train_error"], d["test_error"], d["test_error_lower_confidence"] = 0.0, 0.074, 0.061
    d["results"]["sparse"].update(unclipped=3.1e250, kl_over_m=1.2e199, sigma_star_summary={"median": 1e-9})
    config = resolve_config({"methods": ["sparse"], "widths": ["20"]})
    study = StudyResult.assemble(config, [RunRecord.from_dict(d)], data={"n_train": 100, "n_test": 50},
                                 versions={}, timings={}, budget=None, created="")
    text = build_report(study)
    assert "2.9e+100" in text and "3.1e+250" in text and "1.2e+199" in text
    assert max(len(t) for t in re.findall(r"\d[\d.]*(?:e[+-]\d+)?", text)) < 15
    table = text.split("### Networks", 1)[1].strip().splitlines()[:3]
    assert len({len(ln) for ln in table}) == 1


# --------------------------------------------------------------------------- results files


def _tiny_argv(out: Path, *extra: str) -> list[str]:
    return ["reproduce", "--quick", "--widths", "8", "--n-train", "100", "--n-test", "50", "--max-epochs", "2",
            "--methods", "sparse", "test-set", "--threads", "1", "--quiet", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A small study with sparse-mc (3 draws per run), fresh seeds."""
    out = tmp_path_factory.mktemp("tiny") / "out"
    assert cli.main(_tiny_mc_argv(out)) == 0
    return out


def _tiny_mc_argv(out: Path, *extra: str) -> list[str]:
    argv = " ".join(_tiny_argv(out)).replace("sparse test-set", "sparse sparse-mc test-set").split()
    return [*argv, "--mc-draws", "3", *extra]


def test_results_round_trip_and_report_from_typed_records(tiny: Path) -> None:
    raw = json.loads((tiny / "results.json").read_text())
    assert raw["format"] == "sparsebound-reproduce-2" and raw["schema_version"] == 2
    study = load_results(tiny / "results.json")
    assert json.loads(json.dumps(study.to_dict())) == raw  # typed records lose nothing
    assert build_report(study) == (tiny / "report.md").read_text()  # the report reads only the typed results
    assert study.csv_text() == (tiny / "results.csv").read_text()


def test_version_1_results_load_and_get_the_exact_union_level(tiny: Path, tmp_path: Path) -> None:
    raw = json.loads((tiny / "results.json").read_text())
    old = json.loads(json.dumps(raw))
    old["format"] = "sparsebound-reproduce-1"
    del old["schema_version"]
    for r in old["runs"]:
        r["run_config"]["mc"] = {k: v for k, v in r["run_config"]["mc"].items() if k != "seed_rule"}
    old["summary"]["mc"] = {k: v for k, v in old["summary"]["mc"].items() if k not in ("seed_rule", "seeds")}
    p = tmp_path / "results.json"
    p.write_text(json.dumps(old))
    study = load_results(p)
    assert study.summary.mc is not None and study.summary.mc.seed_rule == "fixed"
    def without_rc(r: dict) -> dict:
        return {k: v for k, v in r.items() if k != "run_config"}

    assert [without_rc(r.to_dict()) for r in study.runs] == [without_rc(r) for r in raw["runs"]]
    for version in ("3", "x"):
        old["format"] = f"sparsebound-reproduce-{version}"
        p.write_text(json.dumps(old))
        with pytest.raises(ConfigError, match=f"version {version}|format 'sparsebound-reproduce-{version}'"):
            load_results(p)
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a sparsebound reproduce results file"):
        load_results(p)


# --------------------------------------------------------------------------- sparse-mc seeds in a study


def test_fresh_seeds_recorded_and_never_redrawn(tiny: Path, capsys) -> None:
    res = json.loads((tiny / "results.json").read_text())
    seeds = {r["run"]["id"]: r["results"]["sparse-mc"]["seed"] for r in res["runs"]}
    assert len(set(seeds.values())) == len(seeds)
    for r in res["runs"]:
        assert json.loads((Path(r["checkpoint"]) / "run.json").read_text())["run_config"]["mc"]["seed"] == \
            seeds[r["run"]["id"]]
    # resuming: finished runs are loaded, their seeds and numbers unchanged
    capsys.readouterr()
    assert cli.main(_tiny_mc_argv(tiny)) == 0
    assert capsys.readouterr().out.count("loaded from disk") == len(seeds)
    again = json.loads((tiny / "results.json").read_text())
    assert again["runs"] == res["runs"]
    # an attempt interrupted after recording its seed resumes with the same seed, so the same draws
    victim = next(r for r in res["runs"] if r["run"]["kind"] == "ddp-standard")
    (Path(victim["checkpoint"]) / "certificate.json").unlink()
    assert cli.main(_tiny_mc_argv(tiny)) == 0
    rec = json.loads((Path(victim["checkpoint"]) / "certificate.json").read_text())
    assert rec["results"]["sparse-mc"]["seed"] == victim["results"]["sparse-mc"]["seed"]
    assert rec["results"]["sparse-mc"]["losses"] == victim["results"]["sparse-mc"]["losses"]


def test_mc_seed_reproduces_draws_exactly(tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert cli.main(_tiny_mc_argv(out, "--mc-seed", "11")) == 0
    a, b = (json.loads((o / "results.json").read_text()) for o in outs)
    for ra, rb in zip(a["runs"], b["runs"], strict=True):
        ma, mb = ra["results"]["sparse-mc"], rb["results"]["sparse-mc"]
        assert ma["seed"] == mb["seed"] == derived_mc_seed(11, ra["run"]["id"])
        assert ma["losses"] == mb["losses"] and ma["unclipped"] == mb["unclipped"]
        assert ra["run_config"]["mc"]["seed_rule"] == "derived" and ra["run_config"]["mc"]["base_seed"] == 11
    assert a["summary"]["mc"]["seed_rule"] == "derived" and a["summary"]["mc"]["seed"] == 11
    assert "draw seeds derived from --mc-seed 11" in (outs[0] / "report.md").read_text()


# --------------------------------------------------------------------------- the output folder


def _only_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_second_reproduce_into_a_locked_folder_fails(tmp_path: Path, capsys) -> None:
    """Issue 11.12: two reproduce runs into one --out both reported success."""
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out, "reproduce"):
        assert cli.main(_tiny_argv(out)) == 2
    assert "in use by another sparsebound run" in _only_error_line(capsys)
    assert sorted(os.listdir(out)) == [LOCK_FILE]


def test_changed_settings_refused_then_replaced_with_force(tmp_path: Path, capsys) -> None:
    """Issue 11.14: other options into the same --out silently retrained and left stale figures."""
    out = tmp_path / "out"
    assert cli.main(_tiny_argv(out, "--widths", "8", "12")) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    capsys.readouterr()
    assert cli.main(_tiny_argv(out, "--widths", "8", "--max-epochs", "1")) == 2
    line = _only_error_line(capsys)
    assert "holds a study with other settings" in line and "max-epochs" in line and "widths" in line
    assert "--force" in line
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE} == before
    # the same settings resume (nothing recomputed)
    assert cli.main(_tiny_argv(out, "--widths", "8", "12")) == 0
    assert capsys.readouterr().out.count("loaded from disk") == 4
    # --force: the new study replaces the old one; nothing the new report does not mention is left
    assert cli.main(_tiny_argv(out, "--widths", "8", "--max-epochs", "1", "--force")) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["widths"] == [8] and all(r["run_config"]["training"]["max_epochs"] == 1 for r in res["runs"])
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["w8-s0"]
    assert sorted(p.name for p in (out / "runs" / "w8-s0").iterdir()) == ["ddp-standard", "init", "prior-a0.5"]
    text = (out / "report.md").read_text()
    linked = sorted(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))
    assert linked == sorted(p.relative_to(out).as_posix() for p in (out / "figures").glob("*.png"))
    assert "w12" not in text and not (out / "figures" / "tradeoff_w12.png").exists()
    assert json.loads((out / "config.json").read_text())["max_epochs"] == 1


def test_damaged_config_json_needs_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{not json")
    assert cli.main(_tiny_argv(out)) == 2
    assert "cannot be read" in _only_error_line(capsys)
    assert (out / "config.json").read_text() == "{not json"


@pytest.mark.parametrize("pre_existing", [False, True])
def test_failure_before_any_run_leaves_nothing_new(pre_existing: bool, tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 11.15: a failing reproduce left config.json and checkpoints behind."""
    from sparsebound.study import runner

    out = tmp_path / "out"
    if pre_existing:
        out.mkdir()
        (out / "keep.txt").write_text("mine")

    def boom(*a: object, **k: object) -> None:
        raise ConfigError("certification failed (test)")

    monkeypatch.setattr(runner, "_certify", boom)
    assert cli.main(_tiny_argv(out)) == 2
    assert "certification failed (test)" in _only_error_line(capsys)
    if pre_existing:
        assert sorted(os.listdir(out)) == sorted([LOCK_FILE, "keep.txt"])
        assert (out / "keep.txt").read_text() == "mine"
    else:
        assert not out.exists()


def test_validation_happens_before_any_output(tmp_path: Path, capsys) -> None:
    """Sizes too small for the bound are refused before training (issue 11.15: --quick --n-train 10)."""
    out = tmp_path / "deep" / "out"
    assert cli.main(["reproduce", "--quick", "--n-train", "10", "--quiet", "--out", str(out)]) == 2
    line = _only_error_line(capsys)
    assert "S_bound has 5 points" in line and "at least 8" in line
    assert not (tmp_path / "deep").exists()
    assert cli.main(["reproduce", "--quick", "--n-train", "6", "--prior-fractions", "0.5", "--quiet",
                     "--out", str(out)]) == 2
    assert "training set has 6 points" in _only_error_line(capsys)


# --------------------------------------------------------------------------- the executor seam


class PicklingExecutor:
    """Runs each task as a remote worker would: the task and the outcome cross a pickle boundary,
    and every task starts from a fresh environment (data reloaded, priors read from OUT)."""

    slots = 1

    def __init__(self) -> None:
        self.groups: list[str] = []

    def run(self, groups):
        from sparsebound.study.runner import execute_run

        for tasks in groups:
            for task in tasks:
                self.groups.append(task.group)
                remote = pickle.loads(pickle.dumps(task))
                yield pickle.loads(pickle.dumps(execute_run(remote)))


def test_executor_seam_gives_the_same_study(tmp_path: Path) -> None:
    from sparsebound.study import run_study

    base = {"quick": True, "widths": ["8"], "n_train": "100", "n_test": "50", "max_epochs": "2",
            "methods": ["sparse", "test-set"], "quiet": True, "threads": "1"}
    local = run_study(resolve_config({**base, "out": str(tmp_path / "local")}))
    ex = PicklingExecutor()
    remote = run_study(resolve_config({**base, "out": str(tmp_path / "remote")}), executor=ex)
    assert ex.groups == ["w8-s0"] * 2
    for a, b in zip(local.runs, remote.runs, strict=True):
        assert a.run == b.run and a.train_error == b.train_error
        for m in ("sparse", "test-set"):
            assert a.results[m].unclipped == b.results[m].unclipped
    assert remote.timings["priors_trained"] == ["w8-s0/prior-a0.5"]


def test_report_shows_validity_warnings_first_and_skips_the_expected_posterior_equal_to_prior() -> None:
    """Breaker finding 11: Certificate.warnings reach results.json and the report, prominently; a data-dependent
    run whose posterior is its prior (proximal lambda = inf) is not flagged."""
    bad = _rec("init").to_dict()
    bad["warnings"] = [{"kind": "below-held-out-lower-bound", "methods": ["sparse"],
                        "message": "NOT A CERTIFICATE: sparse 0.01 lies below 0.05"}]
    same = _posteriors(1, 0.5, "abc", ("sparse",))[0].to_dict()
    same["warnings"] = [{"kind": "prior-equals-network", "methods": [], "message": "the prior equals the network"}]
    runs = [RunRecord.from_dict(bad), RunRecord.from_dict(same)]
    assert not runs[0].valid and runs[0].warnings[0]["kind"] == "below-held-out-lower-bound"
    assert runs[1].valid and runs[1].warnings == []
    assert runs[0].to_dict()["warnings"] == bad["warnings"]  # recorded as written (results.json)
    config = resolve_config({"methods": ["sparse"], "widths": ["20"]})
    study = StudyResult.assemble(config, runs, data={"n_train": 100, "n_test": 50}, versions={}, timings={},
                                 budget=None, created="")
    text = build_report(study)
    head = text.split("**Confidence:**", 1)[0]
    assert "**Validity warnings: 1 run**" in head and "**NOT A CERTIFICATE** `w20-s0/init`" in head
    assert "prior equals the network" not in text
