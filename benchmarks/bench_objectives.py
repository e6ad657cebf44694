"""Certificate-aware training against plain training: the protocol behind docs/results.md (issue 12).

    python benchmarks/bench_objectives.py DATASET WIDTH SEED [--variants a,b,...] [--out DIR]
        [--data-dir DIR] [--threads N]

For one dataset, width and seed it trains, certifies and prints (and appends to
``DIR/objectives.jsonl``) the networks of the protocol below. Every a-priori choice is made
from the prior split S_prior (and the prior) alone, or is a constant written here, fixed
before any certificate of this seed's bound sample was computed (THEORY.md 4.6,
docs/theory.md section 12):

* ``prior_erm``: the data-dependent prior, cross-entropy on S_prior (60 epochs on mnist5k,
  30 on Fashion-MNIST).
* ``s0``: median sigma*(x) of ``prior_erm`` over S_prior (``objectives.prior_split_sigma_star``).
* ``prior_rob``: ``prior_erm`` trained further on S_prior with the certificate objective (no KL
  term) at sigma_t = 6 s0, noise ramp over 60% of the epochs, lr 0.01 (100 epochs on mnist5k,
  15 on Fashion-MNIST). It saw S_prior only, so it is a valid prior.
* ``kls``: median sigma*(x) of ``prior_rob`` over S_prior (the KL level of ``E``).

Networks certified (each a separate statement at delta = 0.05; ``sparse-mc`` and ``pbb`` split
it 0.025/0.025):

* ``prior_erm``, ``prior_rob``: the priors themselves (KL = 0: a held-out bound for them);
* ``A``: plain training, cross-entropy from ``prior_erm`` on all of S (the `erm` objective);
* ``C``: the output layer trained from ``prior_rob`` on all of S (cross-entropy, proximal
  lambda = 1 toward the prior), the hidden layers frozen at ``prior_rob``; certified with the
  zero-noise profile (0, ..., 0, 1): only the output layer carries noise;
* ``E``: the certificate objective from ``prior_rob`` on all of S at sigma_t, KL term at ``kls``
  with m = the bound-sample size; full-noise profile;
* ``F``: the PAC-Bayes objective (Perez-Ortiz et al. 2021, "quad") from ``prior_rob``, prior
  standard deviation 0.01, learned per-parameter variances; ``pbb`` with the learned posterior.

The bound sample is the half of the training set not in S_prior (split by SEED); the test set
is only used for the reported test errors and the ``test-set`` reference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sparsebound import certify
from sparsebound.certification import binding_summary
from sparsebound.data import load_dataset, split_prior_bound
from sparsebound.objectives import prior_split_sigma_star
from sparsebound.pacbayes import SigmaGrid
from sparsebound.training import TrainConfig, init_network, train

VARIANTS = ("prior_erm", "prior_rob", "A", "C", "E", "F")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("width", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="runs/bench-objectives")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    variants = a.variants.split(",")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "objectives.jsonl", "a") as log:
        _protocol(a, variants, log)


def _protocol(a: argparse.Namespace, variants: list[str], log) -> None:
    mn = a.dataset == "mnist5k"
    ep_erm, ep_rob, ep_post = (60, 100, 60) if mn else (30, 15, 15)
    t0 = time.time()
    data = load_dataset(a.dataset, data_dir=a.data_dir, split_seed=0)
    tr, te = data.train, data.test
    pidx, bidx = split_prior_bound(len(tr), 0.5, a.seed)
    s_prior, s_bound = tr.subset(pidx), tr.subset(bidx)
    m = len(s_bound)
    init = init_network(tr.input_dim, [a.width, a.width], tr.n_classes, seed=a.seed)
    prior_erm = train(init, s_prior, TrainConfig(lr=0.05, max_epochs=ep_erm, seed=a.seed), progress=False).network
    s0 = prior_split_sigma_star(prior_erm, s_prior.X, s_prior.y)
    sigma_t = 6.0 * s0
    rob = train(prior_erm, s_prior, TrainConfig(lr=0.01, max_epochs=ep_rob, seed=a.seed, objective="certificate",
                                                objective_sigma=sigma_t, objective_ramp_epochs=int(0.6 * ep_rob)),
                progress=False).network
    kls = prior_split_sigma_star(rob, s_prior.X, s_prior.y)
    rules = {"s0": s0, "sigma_t": sigma_t, "kls": kls}
    tag = f"{a.dataset}-w{a.width}-s{a.seed}"
    print(f"{tag}: rules {rules} ({time.time() - t0:.0f} s)", flush=True)
    mc = mn and a.width <= 100
    passes = 10 if (mn and a.width <= 100) else (4 if mn else 2)
    full = (1.0, 1.0, 1.0)
    last = (0.0, 0.0, 1.0)

    def run(name: str, prior, net, prof, posterior_std=None) -> None:
        t1 = time.time()
        methods = ["sparse", "pbb"] + (["sparse-mc"] if mc else []) + ["test-set"]
        c = certify(net, s_bound.X, s_bound.y, prior=prior, methods=methods, X_test=te.X, y_test=te.y,
                    sigma_grid=SigmaGrid(profiles=(prof,)), progress=False, tradeoff=False,
                    pbb_seed=1000 + a.seed, mc_seed=2000 + a.seed, posterior_std=posterior_std, mc_draws=1000,
                    pbb_passes=passes)
        r = c.results
        s = r["sparse"]
        ba = binding_analysis_for(net, s_bound, prof, s.rescaling)
        row = {"tag": tag, "variant": name, "profile": list(prof), "rules": rules,
               "prior_test_error": prior.error_rate(te.X, te.y), "train_error": net.error_rate(tr.X, tr.y),
               "bound_sample_error": c.bound_sample_error, "test_error": c.test_error,
               "distance_to_prior": float(net.distance_to(prior)), "m": m,
               "results": {k: v.to_dict() for k, v in r.items()}, "binding": ba, "seconds": time.time() - t1}
        log.write(json.dumps(row, default=str) + "\n")
        log.flush()
        msg = (f"{tag} {name}: prior test {row['prior_test_error']:.4f} train {row['train_error']:.4f} "
               f"test {row['test_error']:.4f} dist {row['distance_to_prior']:.3g} sparse {s.unclipped:.4g} "
               f"(median sigma* {float(np.median(s.sigma_star)):.3g})")
        if "sparse-mc" in r:
            msg += f" sparse-mc {r['sparse-mc'].unclipped:.4g}"
        msg += f" pbb {r['pbb'].unclipped:.4g} test-set {r['test-set'].unclipped:.4g} [{row['seconds']:.0f} s]"
        print(msg, flush=True)

    if "prior_erm" in variants:
        run("prior_erm", prior_erm, prior_erm, full)
    if "prior_rob" in variants:
        run("prior_rob", rob, rob, full)
    if "A" in variants:
        net = train(prior_erm, tr, TrainConfig(lr=0.05, max_epochs=ep_erm, seed=a.seed), progress=False).network
        run("A", prior_erm, net, full)
    if "C" in variants:
        net = train(rob, tr, TrainConfig(lr=0.05, max_epochs=ep_post, seed=a.seed, frozen_layers=(1, 2), proximal=1.0),
                    anchor=rob, progress=False).network
        run("C", rob, net, last)
    if "E" in variants:
        net = train(rob, tr, TrainConfig(lr=0.01, max_epochs=ep_post, seed=a.seed, objective="certificate",
                                         objective_sigma=sigma_t, objective_kl_sigma=kls, objective_m=m),
                    anchor=rob, progress=False).network
        run("E", rob, net, full)
    if "F" in variants:
        res = train(rob, tr, TrainConfig(lr=0.01, max_epochs=ep_post, seed=a.seed, objective="pbb",
                                         objective_sigma=0.01, objective_m=m), anchor=rob, progress=False)
        run("F", rob, res.network, full, posterior_std=res.posterior_std)
    print(f"{tag}: done in {time.time() - t0:.0f} s", flush=True)


def binding_analysis_for(net, data, profile, rescaling) -> dict:
    """Which condition sets sigma*(x) (docs/theory.md section 15), summarised with the cheap tables."""
    return binding_summary(net, data.X, data.y, profile, rescaling)


if __name__ == "__main__":
    main()
