"""Speed-up of ``certify``'s per-sample work sharded on Ray (issue 15, item 2).

A 784-1000-1000-10 network trained for 5 epochs on mnist5k (cached under ``--cache``),
certified on 2,500 bound samples against its initialisation:

* ``sparse`` (``tradeoff=False``): the exact reduced norms of the cascade are the sharded part
  (``exact_norms`` below); the uniform tables, the forward pass and the search are not;
* ``sparse-mc`` with ``--draws`` posterior draws (``exact_rounds=0``, so that the draws dominate):
  the draw batches are the sharded part (``sparse_mc`` below).

Each case runs locally with 1 and with 2 torch threads, and on a local Ray instance of 2 CPUs
with tasks of 1 thread (two at a time).  Printed: absolute times of the whole certificate and
of the sharded part, the ratios local / ray, and Ray's start-up (a local instance, measured
separately: it is paid once per ``certify(..., executor="ray")`` call that starts Ray).  The Ray
certificate is compared bit for bit with the local 1-thread one (the same thread count per
chunk; the 2-thread local result is compared too, for information).

    python benchmarks/bench_certify_sharded.py             # both cases (~15 minutes on 2 idle cores)
    python benchmarks/bench_certify_sharded.py --quick     # 1,000 bound samples, 100 draws

The machine is what limits the ratio: with 2 cores, two 1-thread tasks can at best halve the
sharded part's time, and only against a 1-thread local run (a 2-thread local run already uses
both cores in the matrix products).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from sparsebound.certificate import certify
from sparsebound.checkpoint import load_checkpoint
from sparsebound.data import load_dataset
from sparsebound.experiments import DataSpec, train_checkpoint
from sparsebound.network import torch_threads
from sparsebound.sharding import RaySharding
from sparsebound.training import TrainConfig


def _network(cache: Path):
    out = cache / "sharded-w1000"
    if not (out / "checkpoint.json").exists():
        t0 = time.perf_counter()
        train_checkpoint(out, data=DataSpec("mnist5k"), hidden=[1000, 1000], seed=0,
                         config=TrainConfig(max_epochs=5), progress=False)
        print(f"  (trained 784-1000-1000-10 in {time.perf_counter() - t0:.1f} s)")
    return load_checkpoint(out)


def _record(cert: Any) -> str:
    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in ("timings_s", "environment")}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d

    return json.dumps(strip(cert.to_dict(per_sample=True)))


def _run(ck: Any, X: torch.Tensor, y: torch.Tensor, opts: dict[str, Any], part: str, threads: int,
         executor: Any = "local") -> tuple[float, float, str, Any]:
    with torch_threads(threads):
        t0 = time.perf_counter()
        cert = certify(ck.network, X, y, prior=ck.init, progress=False, executor=executor, **opts)
        total = time.perf_counter() - t0
    return total, float(cert.timings.get(part, 0.0)), _record(cert), cert


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 bound samples, 100 draws")
    ap.add_argument("--m", type=int, default=None, help="bound samples (default 2500, --quick 1000)")
    ap.add_argument("--draws", type=int, default=None, help="sparse-mc draws (default 300, --quick 100)")
    ap.add_argument("--cache", default="runs/bench", help="folder for the trained network")
    a = ap.parse_args()
    m = a.m or (1000 if a.quick else 2500)
    draws = a.draws or (100 if a.quick else 300)
    import ray

    print(f"torch {torch.__version__}, ray {ray.__version__}; 784-1000-1000-10 on mnist5k, {m} bound samples")
    ck = _network(Path(a.cache))
    tr = load_dataset("mnist5k").train
    X, y = tr.X[:m], tr.y[:m]
    cases = [
        ("sparse", {"methods": ["sparse"], "tradeoff": False}, "exact_norms"),
        (f"sparse-mc ({draws} draws)", {"methods": ["sparse-mc"], "mc_draws": draws, "mc_seed": 5,
                                        "exact_rounds": 0, "tradeoff": False}, "sparse_mc"),
    ]
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             object_store_memory=512 * 1024 * 1024)
    sh = RaySharding(threads=1).connect()
    warm = sh.map(_noop, sh.put(0), [0, 1])  # the first tasks start the worker processes
    startup = time.perf_counter() - t0
    assert warm == [0, 1]
    print(f"Ray start-up (local instance, 2 CPUs, two workers started): {startup:.1f} s")
    try:
        for name, opts, part in cases:
            l1 = _run(ck, X, y, opts, part, 1)
            l2 = _run(ck, X, y, opts, part, 2)
            n0 = sh.n_tasks
            r = _run(ck, X, y, opts, part, 1, executor=sh)
            tasks = sh.n_tasks - n0
            cert = l1[3]
            vals = ", ".join(f"{k} {v.unclipped:.4g}" for k, v in cert.results.items())
            extra = (f"; exact norms computed {cert.grids['exact_norms']['norms_computed']}"
                     if "exact_norms" in cert.grids else "")
            print(f"\n{name}: {vals}{extra}; {tasks} Ray tasks")
            print(f"    {'':<26}{'total':>10}{part:>14}")
            for label, res in (("local, 1 thread", l1), ("local, 2 threads", l2), ("ray, 2 tasks x 1 thread", r)):
                print(f"    {label:<26}{res[0]:>9.1f}s{res[1]:>13.1f}s")
            print(f"    speed-up of {part}: {l1[1] / r[1]:.2f}x vs local 1 thread, {l2[1] / r[1]:.2f}x vs local "
                  f"2 threads")
            print(f"    speed-up of the certificate: {l1[0] / r[0]:.2f}x vs local 1 thread, {l2[0] / r[0]:.2f}x vs "
                  f"local 2 threads; with Ray's start-up included {l2[0] / (r[0] + startup):.2f}x vs local 2 threads")
            print(f"    identical to local 1 thread: ray {'yes' if r[2] == l1[2] else 'NO'}, local 2 threads "
                  f"{'yes' if l2[2] == l1[2] else 'no'}")
    finally:
        sh.close()
        ray.shutdown()
    return 0


def _noop(shared: int, chunk: int) -> int:
    return chunk + shared


if __name__ == "__main__":
    raise SystemExit(main())
