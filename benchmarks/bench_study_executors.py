"""The same small study on the ``local`` and the ``ray`` executor (issue 15, item 4).

The study is ``reproduce --quick`` (mnist5k 1000/500, widths 20 and 40, 8 epochs, the
default methods): four runs in two (width, seed) groups, ``--threads 1`` per run.  It
is run three ways, each into a fresh folder:

* ``local``: one run after the other in this process;
* ``ray``: each run a Ray task of one CPU on a local Ray instance with every CPU of
  this machine (started before the clock starts; its start-up is printed apart), the
  two groups at the same time;
* ``ray, cold``: as ``sparsebound reproduce --executor ray`` does it, Ray start-up
  and shut-down included.

Printed: wall times and the ratio local / ray (the speed-up); the per-run overhead
of a Ray task (a finished run loaded from disk, one at a time, as a Ray task minus
here: submission, scheduling, the task and its record crossing process boundaries),
and the round trip of an empty task; whether the two executors' results are
identical (timings and paths aside).  On a 2-core
machine the speed-up is at most 2; a machine shared with other work shows less.

    python benchmarks/bench_study_executors.py            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sparsebound.study import resolve_config, run_study
from sparsebound.study.plan import Settings, plan_jobs
from sparsebound.study.ray_executor import RayExecutor, import_ray, run_task
from sparsebound.study.runner import RunEnvironment, RunTask, execute_run


def _config(out: Path, threads: int) -> Any:
    return resolve_config({"quick": True, "threads": str(threads), "quiet": True, "out": str(out)})


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, res


def _comparable(obj: Any, out: str) -> Any:
    if isinstance(obj, dict):
        return {k: _comparable(v, out) for k, v in obj.items()
                if k not in ("timings", "timings_s", "seconds", "created", "executor")}
    if isinstance(obj, list):
        return [_comparable(v, out) for v in obj]
    return obj.replace(out, "OUT") if isinstance(obj, str) else obj


def _noop() -> int:
    return 0


def _per_task(fn: Any, tasks: list[Any], reps: int) -> float:
    """Mean seconds of ``fn(task)``, one at a time, after one warm-up pass."""
    for t in tasks:
        fn(t)
    t0 = time.perf_counter()
    for _ in range(reps):
        for t in tasks:
            fn(t)
    return (time.perf_counter() - t0) / (reps * len(tasks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="CPUs (torch threads) per run (default 1)")
    ap.add_argument("--folder", default=None, help="where the studies go (default: a temporary folder)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the per-task overhead passes (default 5)")
    a = ap.parse_args()
    import_ray()
    root = Path(a.folder or tempfile.mkdtemp(prefix="bench-executors-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min); studies in {root}")

    # local
    loc = _config(root / "local", a.threads)
    t_local, study_local = _timed(lambda: run_study(loc))
    n = len(study_local.runs)
    t_local_resume, _ = _timed(lambda: run_study(loc))

    # ray, instance already up
    ray = import_ray()
    ex = RayExecutor(cpus_per_task=a.threads)
    t_start, _ = _timed(ex.connect)
    try:
        rc = replace(_config(root / "ray", a.threads), executor="ray")
        t_ray, _ = _timed(lambda: run_study(rc, executor=ex))
        t_ray_resume, _ = _timed(lambda: run_study(rc, executor=ex))
        # one task at a time: each finished run loaded from disk, here and as a Ray task
        tasks = [RunTask(rc, j, Settings.requested(rc), None) for j in plan_jobs(rc)]
        env = RunEnvironment(rc)
        remote = ray.remote(run_task).options(num_cpus=a.threads)
        cwd = os.getcwd()
        t_here = _per_task(lambda t: execute_run(t, env), tasks, a.reps)
        t_task = _per_task(lambda t: ray.get(remote.remote(t, cwd, a.threads)), tasks, a.reps)
        f = ray.remote(_noop).options(num_cpus=1)
        ray.get(f.remote())  # a warm worker
        t_rt = _per_task(lambda _: ray.get(f.remote()), list(range(10)), 5)
        slots = ex.slots
    finally:
        t_stop, _ = _timed(ex.close)

    # ray, cold (what the command line does: start, run, shut down)
    cold = replace(_config(root / "ray-cold", a.threads), executor="ray")
    t_cold, _ = _timed(lambda: run_study(cold))

    same_ray = _comparable(json.loads((root / "local/results.json").read_text()), str(root / "local")) == \
        _comparable(json.loads((root / "ray/results.json").read_text()), str(root / "ray"))
    same_cold = _comparable(json.loads((root / "local/results.json").read_text()), str(root / "local")) == \
        _comparable(json.loads((root / "ray-cold/results.json").read_text()), str(root / "ray-cold"))
    compute = sum(float(r.timings.get("total_s") or 0.0) for r in study_local.runs)

    print(f"study: reproduce --quick, {n} runs in 2 groups, --threads {a.threads}; Ray slots {slots}")
    print(f"  local                      {t_local:7.1f} s   (runs' own compute {compute:.1f} s)")
    print(f"  ray (instance up)          {t_ray:7.1f} s   speed-up local/ray {t_local / t_ray:5.2f}x")
    print(f"  ray (cold, as the CLI)     {t_cold:7.1f} s   speed-up local/ray {t_local / t_cold:5.2f}x")
    print(f"  Ray start-up {t_start:.1f} s, shut-down {t_stop:.1f} s")
    print(f"  resumed ({n} runs loaded from disk, figures and report redrawn): local {t_local_resume:.1f} s, "
          f"ray {t_ray_resume:.1f} s ({t_ray_resume / max(t_local_resume, 1e-9):.2f}x)")
    over = t_task - t_here
    print("per-run overhead of a Ray task (one at a time, warm worker; a finished run loaded from disk):")
    print(f"  here {t_here * 1000:.1f} ms, as a Ray task {t_task * 1000:.1f} ms -> overhead {over * 1000:.1f} ms "
          f"per run ({t_task / max(t_here, 1e-9):.2f}x; {over / max(t_local / n, 1e-9) * 100:.2f}% of a local "
          f"run's {t_local / n:.1f} s)")
    print(f"  empty task round trip: {t_rt * 1000:.1f} ms")
    print(f"results identical to local (timings and paths aside): ray {'yes' if same_ray else 'NO'}, "
          f"cold {'yes' if same_cold else 'NO'}")


if __name__ == "__main__":
    main()
