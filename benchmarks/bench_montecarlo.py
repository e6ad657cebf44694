"""Speed target of ``sparse-mc`` (THEORY.md 4.5): 784-500-500-10 on 30,000 bound samples
within 20 minutes on this 2-core machine, with the time split.

Uses full-size Fashion-MNIST (Debian package ``dataset-fashion-mnist``, or ``--data-dir``);
the network is trained first and cached under ``--cache`` (the timing depends on the
trained weights only through the sparsity pattern, so a short training is enough).

    python benchmarks/bench_montecarlo.py                      # N = 2000 draws of 256 samples, 4 sigmas
    python benchmarks/bench_montecarlo.py --draws 200 --m 5000 # quick look
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from sparsebound.certificate import certify
from sparsebound.checkpoint import load_checkpoint
from sparsebound.data import load_dataset
from sparsebound.experiments import DataSpec, train_checkpoint
from sparsebound.training import TrainConfig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256, help="bound samples per draw")
    ap.add_argument("--evals", type=int, default=4, help="grid sigma values evaluated")
    ap.add_argument("--m", type=int, default=30000, help="bound samples")
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache", default="runs/bench")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    out = Path(a.cache) / f"fashion-w{a.width}"
    if not (out / "checkpoint.json").exists():
        t0 = time.perf_counter()
        train_checkpoint(out, data=DataSpec("fashion-mnist", data_dir=a.data_dir), hidden=[a.width, a.width],
                         seed=0, config=TrainConfig(max_epochs=5), progress=False)
        print(f"(trained 784-{a.width}-{a.width}-10 on fashion-mnist in {time.perf_counter() - t0:.0f} s)")
    ck = load_checkpoint(out)
    tr = load_dataset("fashion-mnist", data_dir=a.data_dir).train
    X, y = tr.X[: a.m], tr.y[: a.m]
    t0 = time.perf_counter()
    cert = certify(ck.network, X, y, prior=ck.init, methods=["sparse", "sparse-mc"], mc_draws=a.draws,
                   mc_batch=a.batch, mc_max_evals=a.evals, mc_seed=1, device=a.device, progress=False, tradeoff=False)
    total = time.perf_counter() - t0
    mc = cert.results["sparse-mc"]
    t = cert.timings
    n_eval = len(mc.evaluated)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}")
    print(f"sparse-mc on {ck.network.describe()}, m = {a.m}, N = {a.draws} draws of {mc.batch} samples, "
          f"{n_eval} sigma values")
    analytic = total - t["sparse_mc"]
    print(f"    analytic part (forward, tables, sparse search) {analytic:8.1f} s  ({analytic / total:5.1%})")
    per = mc.timings["total"] / max(1, n_eval * a.draws)
    print(f"    per draw and sigma (draw, float64 forward, L_mid) {per:8.4f} s")
    smc = t["sparse_mc"]
    print(f"    sparse-mc total                                {smc:8.1f} s  ({smc / total:5.1%})")
    ok = total <= 1200.0
    print(f"    total {total:8.1f} s   target 1200 s   ratio {total / 1200:.3f}   {'PASS' if ok else 'FAIL'}")
    print(f"    peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"    sparse {cert.results['sparse'].unclipped:.4g}, sparse-mc {mc.unclipped:.4g} (q_hat {mc.q_hat:.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
