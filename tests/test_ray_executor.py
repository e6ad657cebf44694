"""``reproduce --executor ray`` (sparsebound.study.ray_executor) on a real local Ray instance.

One Ray instance of 2 CPUs is shared by the tests of this module (starting Ray takes
seconds); the studies are tiny (two widths of a width-8/12 network on 100 mnist5k
points, two runs per width: four runs in two groups).  Faults are injected with the
test-only hook ``SPARSEBOUND_TEST_FAULTS`` (a task that raises, a worker process that
exits).  The parts that need no Ray (the missing-Ray error, the node-probe verdict, the
parallel budget rule) are checked without it.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from sparsebound import cli
from sparsebound.errors import ConfigError
from sparsebound.study import ray_executor
from sparsebound.study.config import resolve_config
from sparsebound.study.ray_executor import FAULTS_ENV, check_answers
from sparsebound.study.results import load_results


def _argv(out: Path, *extra: str) -> list[str]:
    return ["reproduce", "--quick", "--widths", "8", "12", "--n-train", "100", "--n-test", "50", "--max-epochs", "2",
            "--methods", "sparse", "sparse-mc", "test-set", "--mc-draws", "3", "--mc-seed", "5", "--threads", "1",
            "--quiet", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance with 2 CPUs, shared by the module (the executor uses a connection it finds)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False, object_store_memory=ray_executor.LOCAL_OBJECT_STORE_BYTES)
    yield ray
    ray.shutdown()


_TIMING_KEYS = {"timings", "timings_s", "seconds", "created"}


def _comparable(obj: Any, out: str) -> Any:
    """A results record without what may differ between two executions of the same study: timings,
    the creation time, the output folder (in paths) and the executor setting."""
    if isinstance(obj, dict):
        return {k: _comparable(v, out) for k, v in obj.items() if k not in _TIMING_KEYS and k != "executor"}
    if isinstance(obj, list):
        return [_comparable(v, out) for v in obj]
    if isinstance(obj, str):
        return obj.replace(out, "OUT")
    return obj


# --------------------------------------------------------------------------- with Ray


def test_ray_gives_the_local_results_even_after_a_worker_died(ray_instance, tmp_path: Path, monkeypatch,
                                                               capsys) -> None:
    """Same seeds (--mc-seed): results.json, results.csv and report.md of the Ray study equal the local ones,
    timings and paths aside, although one worker died in the middle of a run (the task was retried and the
    run resumed from its files); a local invocation then resumes the Ray study (the executor is not part of
    the study's identity)."""
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert cli.main(_argv(local)) == 0
    monkeypatch.setenv(FAULTS_ENV, "die-once:w12-s0/init")
    assert cli.main(_argv(remote, "--executor", "ray")) == 0
    monkeypatch.delenv(FAULTS_ENV)
    lines = capsys.readouterr().out.splitlines()
    assert sum(ln.startswith("w12-s0/init: train err") for ln in lines) == 2  # once per study
    assert (remote / "runs/w12-s0/init/.test-fault-retried").is_file()  # it died once, and was retried
    a = json.loads((local / "results.json").read_text())
    b = json.loads((remote / "results.json").read_text())
    assert b["config"]["executor"] == "ray" and a["config"]["executor"] == "local"
    assert [r["run"]["id"] for r in b["runs"]] == ["w8-s0/init", "w8-s0/ddp-standard", "w12-s0/init",
                                                   "w12-s0/ddp-standard"]  # plan order, not finishing order
    assert _comparable(a, str(local)) == _comparable(b, str(remote))
    assert all(r["results"]["sparse-mc"]["seed"] is not None for r in b["runs"])
    assert "failed_runs" not in b
    assert (local / "results.csv").read_text() == (remote / "results.csv").read_text()
    assert (local / "report.md").read_text().replace(str(local), "OUT") == \
        (remote / "report.md").read_text().replace(str(remote), "OUT")
    # resuming the Ray study here computes nothing
    assert cli.main(_argv(remote)) == 0
    assert capsys.readouterr().out.count("loaded from disk") == 4


def test_ray_failures_are_reported_per_run_and_retried_on_the_next_invocation(ray_instance, tmp_path: Path,
                                                                              monkeypatch, capsys) -> None:
    """A run that raises and a run whose worker dies on every attempt are reported (results.json, report,
    exit status 1, one error line); the other runs finish and are recorded; the next invocation computes
    the two failed runs only."""
    out = tmp_path / "out"
    monkeypatch.setattr(ray_executor, "MAX_RETRIES", 1)
    monkeypatch.setenv(FAULTS_ENV, "raise:w8-s0/ddp-standard,die:w12-s0/init")
    assert cli.main(_argv(out, "--executor", "ray")) == 1
    monkeypatch.delenv(FAULTS_ENV)
    cap = capsys.readouterr()
    err = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: 2 of 4 runs failed: w8-s0/ddp-standard: RuntimeError: "
                                               "injected failure of w8-s0/ddp-standard (and 1 more)")
    assert "w12-s0/init: FAILED (system): WorkerCrashedError" in cap.out and "2 attempts" in cap.out
    res = json.loads((out / "results.json").read_text())
    assert [r["run"]["id"] for r in res["runs"]] == ["w8-s0/init", "w12-s0/ddp-standard"]
    failed = {f["run"]: f for f in res["failed_runs"]}
    assert failed["w8-s0/ddp-standard"]["kind"] == "raised" and failed["w8-s0/ddp-standard"]["attempts"] is None
    assert failed["w12-s0/init"]["kind"] == "system" and failed["w12-s0/init"]["attempts"] == 2
    assert len(load_results(out / "results.json").failed_runs) == 2
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 3 and {(r["width"], r["run"]) for r in rows} == {("8", "init"), ("12", "ddp-standard")}
    report = (out / "report.md").read_text()
    assert "**Failed runs:** 2 runs of this study failed" in report
    assert "- `w12-s0/init` (system): WorkerCrashedError" in report
    # the next invocation retries exactly the failed runs
    assert cli.main(_argv(out, "--executor", "ray")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(ln.split(":")[0] for ln in lines if "loaded from disk" in ln) == ["w12-s0/ddp-standard",
                                                                                    "w8-s0/init"]
    res = json.loads((out / "results.json").read_text())
    assert [r["run"]["id"] for r in res["runs"]] == ["w8-s0/init", "w8-s0/ddp-standard", "w12-s0/init",
                                                     "w12-s0/ddp-standard"] and "failed_runs" not in res
    assert "Failed runs" not in (out / "report.md").read_text()


# --------------------------------------------------------------------------- without Ray


def test_missing_ray_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cli.main(_argv(tmp_path / "out", "--executor", "ray")) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ['error: --executor ray needs Ray, which is not installed; install it with '
                   'pip install "sparsebound[ray]"']
    assert not (tmp_path / "out").exists()


def test_executor_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--executor must be one of local, ray, got 'dask'"):
        resolve_config({"executor": "dask"})
    toml = tmp_path / "c.toml"
    toml.write_text('executor = "ray"\nray-address = "10.0.0.1:6379"\n')
    c = resolve_config({}, str(toml))
    assert (c.executor, c.ray_address) == ("ray", "10.0.0.1:6379")
    assert resolve_config({}).executor == "local" and resolve_config({}).ray_address is None
    assert c.identity() == resolve_config({}).identity()  # where the runs execute changes no result


def test_node_probe_verdicts(tmp_path: Path) -> None:
    ok = {"host": "a", "sees_out": True, "sparsebound": "1", "torch": "2"}
    want = {"sparsebound": "1", "torch": "2"}
    check_answers({"n1" * 10: ok}, tmp_path, want)
    with pytest.raises(ConfigError, match=r"Ray node b \(n2n2n2n2\) does not see the output folder .*shared"):
        check_answers({"n1" * 10: ok, "n2" * 10: {**ok, "host": "b", "sees_out": False}}, tmp_path, want)
    with pytest.raises(ConfigError, match="has sparsebound 1, torch 3, this client sparsebound 1, torch 2"):
        check_answers({"n1" * 10: {**ok, "torch": "3"}}, tmp_path, want)


def test_parallel_budget_rule(tmp_path: Path) -> None:
    """With P workers a block gets the largest scale whose remaining work, plus the rest of the blocks
    already running, fits in P times the wall-clock time left; with P = 1 the sequential rule."""
    import time

    from sparsebound.study.budget import COSTS, Budget
    from sparsebound.study.plan import plan_jobs

    class Splits:
        train = range(1000)
        test = range(200)

    config = resolve_config({"quick": True, "widths": ["8", "12"], "budget_minutes": "1", "max_epochs": "20"})
    jobs = plan_jobs(config)
    plans: dict[int, Any] = {}
    for slots, in_flight in ((1, 0.0), (2, 0.0), (2, 30.0)):
        b = Budget(config, Splits(), jobs, time.perf_counter(), lambda s: None)
        b.calibration_s = 0.0
        for k in COSTS:  # rates (s per sample): all 4 runs take 186 s at 20 epochs, 33 s at the minimum 3
            b.calibrated[k] = {8: 5e-4, 12: 5e-4}
        b.calibrated["epoch"] = {8: 1.2e-3, 12: 2.4e-3}
        bdir = tmp_path / f"p{slots}-{in_flight:g}"
        b.t_start = time.perf_counter()
        st, plan = b.plan_block(bdir, jobs, slots=slots, in_flight_s=in_flight)
        left_wall = 60.0 - plan["elapsed_s"] - (10.0 + 0.02 * 60.0)
        cap = left_wall if slots == 1 else slots * left_wall - in_flight
        assert plan["left_s"] == pytest.approx(cap, abs=0.05)
        assert plan["estimate_s"] <= plan["left_s"] < plan["estimate_full_s"]  # scaled, and it fits
        assert b.estimate(jobs, b._values(plan["scale"] + 1e-3)) > plan["left_s"] - 0.05  # the largest that fits
        plans[(slots, in_flight)] = (st, plan)
    assert "slots" not in plans[(1, 0.0)][1] and plans[(2, 0.0)][1]["slots"] == 2
    assert plans[(1, 0.0)][0].max_epochs < plans[(2, 0.0)][0].max_epochs  # two workers: more epochs fit
    assert plans[(2, 30.0)][0].max_epochs < plans[(2, 0.0)][0].max_epochs  # less when others still run


def test_unreachable_cluster_is_refused_at_once() -> None:
    """ray.init retries an address where nothing listens for minutes; the executor refuses it first."""
    from sparsebound.study.ray_executor import _check_reachable

    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at 'ray://127.0.0.1:1' .*ray start --head"):
        _check_reachable("ray://127.0.0.1:1")
    _check_reachable("auto")  # left to Ray
