"""Speed targets of the sparsity analysis and of the certificate (issues: sparsity, certificate).

Prints absolute times and ratios to the targets:

* full sparsity pass (float64 forward with rounding bounds, radii for a 20-level
  grid, witnesses) on the 5,000 mnist5k images through 784-1000-1000-10: <= 30 s;
* ``certify`` (sparse, uniform-sparse, dense) of 784-1000-1000-10 on 2,500 mnist5k
  bound samples: <= 300 s, with the split forward / norms / search; and the same
  for width 100: <= 30 s;
* wide single-hidden-layer networks 1024-W-10 (W = 1024 and 4096, synthetic teacher task,
  2,000 bound samples): ``certify`` with ``dense`` alone and with the default methods,
  printed as absolute times, their split, and the growth ratio per doubling of W
  (issue 11, item 17: ``dense`` must not pay for sparse-norm tables it does not use,
  and the tables must not grow much faster than the matrix products);
* with ``--deep``: two wide hidden layers, 784-W-W-10 on mnist5k (W = 1024 and 2048,
  5 epochs), where the W x W layer's reduced babel tables are the expensive part.

Networks are trained on mnist5k first (cached under ``--cache``), since the
certificate's work depends on the trained weights' sparsity.

    python benchmarks/bench_certify.py            # everything (~10 minutes on 2 cores)
    python benchmarks/bench_certify.py --quick    # width 100 only, 1,000 samples
    python benchmarks/bench_certify.py --wide     # the wide case only (1024 and 4096)
    python benchmarks/bench_certify.py --deep     # 784-W-W-10, W = 1024 and 2048
"""

from __future__ import annotations

import argparse
import itertools
import math
import resource
import time
from pathlib import Path

import torch

from sparsebound.certificate import certify
from sparsebound.checkpoint import load_checkpoint
from sparsebound.data import load_dataset
from sparsebound.experiments import DataSpec, train_checkpoint
from sparsebound.sparsity import SparsityGrid, SparsityTable
from sparsebound.training import TrainConfig


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _network(width: int, cache: Path):
    out = cache / f"w{width}"
    if not (out / "checkpoint.json").exists():
        t0 = time.perf_counter()
        train_checkpoint(out, data=DataSpec("mnist5k"), hidden=[width, width], seed=0,
                         config=TrainConfig(max_epochs=60), progress=False)
        print(f"  (trained 784-{width}-{width}-10 in {time.perf_counter() - t0:.1f} s)")
    return load_checkpoint(out)


def bench_sparsity(width: int, cache: Path) -> bool:
    ck = _network(width, cache)
    splits = load_dataset("mnist5k")
    X = torch.cat([splits.train.X, splits.test.X])
    net = ck.network
    t0 = time.perf_counter()
    acts = net.forward(X)
    t1 = time.perf_counter()
    grid = SparsityGrid.from_fractions(net.widths)
    table = SparsityTable.build(acts, grid)
    t2 = time.perf_counter()
    total = t2 - t0
    ok = total <= 30.0
    print(f"sparsity pass, {X.shape[0]} samples, {net.describe()}, 20-level grid")
    print(f"    forward (float64 + rounding bounds) {t1 - t0:7.2f} s")
    print(f"    sort, radii, witnesses              {t2 - t1:7.2f} s")
    print(f"    total {total:7.2f} s   target 30 s   ratio {total / 30.0:.3f}   {'PASS' if ok else 'FAIL'}")
    act = [round(float(v), 3) for v in table.active_units.double().mean(0) / width]
    print(f"    mean active fraction per layer: {act}")
    return ok


def bench_certify(width: int, m: int, target: float, cache: Path) -> bool:
    ck = _network(width, cache)
    splits = load_dataset("mnist5k")
    tr = splits.train
    X, y = tr.X[:m], tr.y[:m]
    t0 = time.perf_counter()
    cert = certify(ck.network, X, y, prior=ck.init, methods=["sparse", "uniform-sparse", "dense"], progress=False)
    total = time.perf_counter() - t0
    ok = total <= target
    t = cert.timings
    print(f"certify {ck.network.describe()} on {m} mnist5k bound samples (sparse, uniform-sparse, dense)")
    for k in ("forward", "sparsity", "uniform_norms", "exact_omega", "exact_norms", "search"):
        if k in t:
            print(f"    {k:<14} {t[k]:8.2f} s   ({t[k] / total:5.1%})")
    print(f"    total {total:8.2f} s   target {target:.0f} s   ratio {total / target:.3f}   {'PASS' if ok else 'FAIL'}")
    r = cert.results
    print(f"    unclipped: sparse {r['sparse'].unclipped:.4g}, uniform-sparse {r['uniform-sparse'].unclipped:.4g}, "
          f"dense {r['dense'].unclipped:.4g}; exact norms computed: {cert.grids['exact_norms']['norms_computed']}")
    print(f"    peak RSS {_peak_mib():.0f} MiB")
    return ok


WIDE_TASK = {"kind": "teacher", "dim": 1024, "n_classes": 10, "hidden": 64, "seed": 0}


def _wide_network(width: int, cache: Path):
    out = cache / f"wide{width}"
    if not (out / "checkpoint.json").exists():
        t0 = time.perf_counter()
        train_checkpoint(out, data=DataSpec("synthetic", n_train=2000, n_test=1000, synthetic=WIDE_TASK),
                         hidden=[width], seed=0, config=TrainConfig(max_epochs=8), progress=False)
        print(f"  (trained 1024-{width}-10 in {time.perf_counter() - t0:.1f} s)")
    return load_checkpoint(out)


def bench_wide(widths: tuple[int, ...], cache: Path, m: int = 2000) -> dict[tuple[int, str], float]:
    """``certify`` of 1024-W-10 with ``dense`` alone and with the default methods."""
    splits = load_dataset("synthetic", n_train=2000, n_test=1000, synthetic=WIDE_TASK)
    X, y = splits.train.X[:m], splits.train.y[:m]
    times: dict[tuple[int, str], float] = {}
    for width in widths:
        ck = _wide_network(width, cache)
        for label, methods in (("dense", ["dense"]), ("default", ["sparse", "uniform-sparse", "dense"])):
            t0 = time.perf_counter()
            cert = certify(ck.network, X, y, prior=ck.init, methods=methods, progress=False)
            total = time.perf_counter() - t0
            times[(width, label)] = total
            split = ", ".join(f"{k} {v:.2f} s" for k, v in cert.timings.items() if v >= 0.005)
            vals = ", ".join(f"{k} {r.unclipped:.4g}" for k, r in cert.results.items())
            print(f"certify {ck.network.describe()} on {m} bound samples, methods {label}: {total:8.2f} s")
            print(f"    split: {split}")
            print(f"    unclipped: {vals}")
    for label in ("dense", "default"):
        ws = [w for w in widths if (w, label) in times]
        for a, b in itertools.pairwise(ws):
            r = times[(b, label)] / times[(a, label)]
            per = r ** (1.0 / max(1e-9, math.log2(b / a)))
            print(f"    {label}: width {a} -> {b}: time ratio {r:.2f} ({per:.2f}x per doubling of the width)")
    print(f"    peak RSS {_peak_mib():.0f} MiB")
    return times


def _deep_network(width: int, cache: Path):
    out = cache / f"deep{width}"
    if not (out / "checkpoint.json").exists():
        t0 = time.perf_counter()
        train_checkpoint(out, data=DataSpec("mnist5k"), hidden=[width, width], seed=0,
                         config=TrainConfig(max_epochs=5), progress=False)
        print(f"  (trained 784-{width}-{width}-10 in {time.perf_counter() - t0:.1f} s)")
    return load_checkpoint(out)


def bench_deep(widths: tuple[int, ...], cache: Path, m: int = 2000) -> dict[tuple[int, str], float]:
    """``certify`` of 784-W-W-10 (mnist5k) with ``dense`` alone and with the default methods."""
    splits = load_dataset("mnist5k")
    X, y = splits.train.X[:m], splits.train.y[:m]
    times: dict[tuple[int, str], float] = {}
    for width in widths:
        ck = _deep_network(width, cache)
        for label, methods in (("dense", ["dense"]), ("default", ["sparse", "uniform-sparse", "dense"])):
            t0 = time.perf_counter()
            cert = certify(ck.network, X, y, prior=ck.init, methods=methods, progress=False)
            total = time.perf_counter() - t0
            times[(width, label)] = total
            split = ", ".join(f"{k} {v:.2f} s" for k, v in cert.timings.items() if v >= 0.005)
            vals = ", ".join(f"{k} {r.unclipped:.4g}" for k, r in cert.results.items())
            print(f"certify {ck.network.describe()} on {m} bound samples, methods {label}: {total:8.2f} s")
            print(f"    split: {split}")
            print(f"    unclipped: {vals}")
    for label in ("dense", "default"):
        ws = [w for w in widths if (w, label) in times]
        for a, b in itertools.pairwise(ws):
            r = times[(b, label)] / times[(a, label)]
            per = r ** (1.0 / max(1e-9, math.log2(b / a)))
            print(f"    {label}: width {a} -> {b}: time ratio {r:.2f} ({per:.2f}x per doubling of the width)")
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="width 100 only, 1,000 bound samples")
    ap.add_argument("--wide", action="store_true", help="the wide 1024-W-10 case only (W = 1024, 4096)")
    ap.add_argument("--wide-widths", default="1024,4096", help="widths of the wide case (comma-separated)")
    ap.add_argument("--deep", action="store_true", help="784-W-W-10 only (W = --deep-widths)")
    ap.add_argument("--deep-widths", default="1024,2048", help="widths of the two-hidden-layer case")
    ap.add_argument("--cache", default="runs/bench", help="folder for the trained networks")
    a = ap.parse_args()
    cache = Path(a.cache)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    results = []
    wide = tuple(int(v) for v in a.wide_widths.split(","))
    if a.wide:
        bench_wide(wide, cache)
        return 0
    if a.deep:
        bench_deep(tuple(int(v) for v in a.deep_widths.split(",")), cache)
        return 0
    if a.quick:
        results.append(bench_certify(100, 1000, 30.0, cache))
    else:
        results.append(bench_sparsity(1000, cache))
        results.append(bench_certify(100, 2500, 30.0, cache))
        results.append(bench_certify(1000, 2500, 300.0, cache))
        bench_wide(wide, cache)
    print("all targets met" if all(results) else "SOME TARGETS MISSED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
