"""Command-line interface: ``sparsebound {train,info,sparsity,certify,reproduce}``.

Argument parsing and printing only.  Every :class:`SparseboundError` becomes a
one-line ``error: ...`` on stderr and exit status 2 (no traceback); Ctrl-C
exits with 130 and leaves finished files intact (all writes are atomic).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import ConfigError, SparseboundError


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _float(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None


def _add_data_args(p: argparse.ArgumentParser, required: bool = False, default: str | None = "mnist5k") -> None:
    from .data import DATASETS

    p.add_argument("--dataset", default=None if required else default, required=required,
                   help=f"dataset: {', '.join(DATASETS)} (default: "
                        f"{default if default else 'the one recorded in the checkpoint'})")
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (mnist, fashion-mnist)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (default 0)")
    p.add_argument("--n-train", type=_positive_int, default=None, help="training-set size (subsample)")
    p.add_argument("--n-test", type=_positive_int, default=None, help="test-set size (subsample)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lr", type=_float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--momentum", type=_float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="mini-batch size (default 64)")
    p.add_argument("--max-epochs", type=int, default=100, help="maximum epochs (default 100)")
    p.add_argument("--target-error", type=_float, default=0.0,
                   help="stop at this training error (default 0: train until every point is fitted or max epochs)")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format (``error: ...``, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sparsebound",
        description="Sparsity-aware generalization certificates for deep ReLU networks "
                    "(Muthukumar & Sulam, COLT 2023).",
    )
    parser.add_argument("--version", action="version", version=f"sparsebound {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a ReLU MLP and save a checkpoint",
                       description="Train a bias-free (or --bias) ReLU MLP with SGD + momentum and save a "
                                   "checkpoint with its initialisation, seeds, data split and training curve.")
    _add_data_args(p)
    p.add_argument("--widths", type=_positive_int, nargs="+", required=True,
                   help="hidden widths, e.g. --widths 100 100 (depth K = number of widths + 1)")
    p.add_argument("--bias", action="store_true", help="give the layers biases")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batch order (default 0)")
    _add_train_args(p)
    p.add_argument("--prior-fraction", type=_float, default=None,
                   help="train a data-dependent prior on this fraction of the training set, then the "
                        "posterior from it on all of it (THEORY 4.4)")
    p.add_argument("--posterior", choices=["standard", "proximal"], default="standard",
                   help="posterior protocol with --prior-fraction (default standard)")
    p.add_argument("--proximal", type=_float, default=0.0,
                   help="lambda of the proximal penalty lambda*||W - W0||_F^2 (with --posterior proximal)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--force", action="store_true", help="overwrite a checkpoint already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("info", help="describe a checkpoint",
                       description="Print a checkpoint's architecture, data, training and errors.")
    p.add_argument("checkpoint", help="checkpoint folder")
    p.add_argument("--json", action="store_true", help="print the whole JSON record")

    p = sub.add_parser("sparsity", help="per-sample activation sparsity, radii and reduced norms",
                       description="Measure how sparse the hidden activations are on each sample and with "
                                   "what margin (sparse local radius), and bound the reduced norms (THEORY 2, 5).")
    p.add_argument("checkpoints", nargs="+", help="one or more checkpoint folders (overlaid in the figures)")
    _add_data_args(p, default=None)
    p.add_argument("--split", choices=["train", "test"], default="train", help="which split to analyse (default train)")
    p.add_argument("--eps", type=_float, nargs="+", default=[0.0],
                   help="radius profile for the greedy sparse vector (one value or one per hidden layer; "
                        "default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", default=None, help="folder for sparsity.json and the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("certify", help="risk certificates of a checkpoint (all methods)",
                       description="Compute the sparsity-aware risk certificate and the baselines for a "
                                   "checkpoint on its bound sample (THEORY 4, 6).")
    p.add_argument("checkpoint", help="checkpoint folder")
    p.add_argument("--data-dir", default=None,
                   help="folder with the IDX files, if they moved since training (the dataset and its split are "
                        "the ones recorded in the checkpoint)")
    p.add_argument("--prior", default="recorded",
                   help="'recorded' (the checkpoint's data-dependent prior if it has one, else its "
                        "initialisation), 'init', or a prior checkpoint folder written by `train --prior-fraction` "
                        "(OUT/prior; the bound sample is then the points it did not see)")
    p.add_argument("--delta", type=_float, default=0.05,
                   help="failure probability delta in (0,1): each bound holds with probability >= 1 - delta "
                        "(default 0.05)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="methods (default: sparse uniform-sparse dense neyshabur2018 neyshabur2018-init "
                        "bartlett2017 test-set; add sparse-mc for the Monte-Carlo training side)")
    p.add_argument("--mc-draws", type=_positive_int, default=2000,
                   help="posterior draws of sparse-mc (default 2000)")
    p.add_argument("--mc-batch", type=_positive_int, default=256,
                   help="bound samples evaluated per sparse-mc draw, a fresh random subset each time (default 256)")
    p.add_argument("--mc-seed", type=int, default=None,
                   help="seed of the sparse-mc draws (default: a fresh seed, printed and recorded)")
    p.add_argument("--eta1", type=_float, default=1e-4, help="test-side noise failure level (default 1e-4)")
    p.add_argument("--eta2", type=_float, default=1e-3, help="training-side noise failure level (default 1e-3)")
    p.add_argument("--no-rescale", action="store_true", help="skip the layer-rescaling search")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--json", default=None, help="write the full certificate to this JSON file")
    p.add_argument("--per-sample", action="store_true", help="include per-sample sigma* in the JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    from .reproduce import add_reproduce_parser

    add_reproduce_parser(sub)
    return parser


def _cmd_train(a: argparse.Namespace) -> int:
    from .experiments import DataSpec, train_checkpoint
    from .training import TrainConfig

    if a.prior_fraction is not None and not (0.0 < a.prior_fraction < 1.0):
        raise ConfigError(f"--prior-fraction must lie in (0, 1), got {a.prior_fraction}")
    cfg = TrainConfig(lr=a.lr, momentum=a.momentum, batch_size=a.batch_size, max_epochs=a.max_epochs,
                      target_error=a.target_error, seed=a.seed, device=a.device)
    spec = DataSpec(dataset=a.dataset, data_dir=a.data_dir, split_seed=a.split_seed, n_train=a.n_train,
                    n_test=a.n_test)
    from ._io import ensure_writable_dir
    from .checkpoint import META_FILE

    if (Path(a.out) / META_FILE).exists() and not a.force:
        raise ConfigError(f"{a.out} already holds a checkpoint; choose another --out or pass --force to overwrite it")
    ensure_writable_dir(a.out)
    ck = train_checkpoint(a.out, data=spec, hidden=a.widths, bias=a.bias, seed=a.seed, config=cfg,
                          prior_fraction=a.prior_fraction, posterior=a.posterior, proximal=a.proximal,
                          progress=not a.quiet)
    m = ck.meta
    tr = m["training"]
    print(f"trained {ck.network.describe()} on {spec.dataset} "
          f"({m['data_info'].get('n_train')} train / {m['data_info'].get('n_test')} test)")
    if ck.prior is not None:
        pr = m["prior"]
        print(f"  data-dependent prior (fraction {a.prior_fraction}): train error {pr['prior_train_error']:.4f}, "
              f"test error {pr['prior_test_error']:.4f}; posterior: {pr['posterior']}")
        print(f"  ||W - W0||_F = {ck.network.distance_to(ck.prior):.4f}")
    print(f"  epochs {tr['epochs']}  train error {m['train_error']:.4f}  test error {m['test_error']:.4f}"
          + ("" if tr["reached_target"] else f"  (target {a.target_error} not reached)"))
    print(f"  ||W - W_init||_F = {ck.network.distance_to(ck.init):.4f}")
    print(f"checkpoint written to {a.out}")
    return 0


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) else "n/a"


def _cmd_info(a: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint

    ck = load_checkpoint(a.checkpoint)
    if a.json:
        print(json.dumps(ck.meta, indent=2))
        return 0
    m = ck.meta
    print(f"checkpoint {ck.path}")
    print(f"  network     {ck.network.describe()}  ({ck.network.n_parameters} parameters)")
    d = m.get("data", {})
    info = m.get("data_info", {})
    print(f"  data        {d.get('dataset')}  train {info.get('n_train')}  test {info.get('n_test')}  "
          f"split seed {d.get('split_seed')}  radius {m.get('radius')}")
    pr = m.get("prior", {})
    print(f"  prior       {pr.get('kind')}" + (f" ({pr.get('posterior')} posterior)" if pr.get("posterior") else ""))
    bs = m.get("bound_sample", {})
    if bs.get("kind") == "bound-split":
        print(f"  bound set   {bs['n_bound']} points (prior fraction {bs['prior_fraction']}, seed {bs['seed']})")
    tr = m.get("training", {})
    cfg = tr.get("config", {})
    print(f"  training    {tr.get('epochs')} epochs, lr {cfg.get('lr')}, momentum {cfg.get('momentum')}, "
          f"batch {cfg.get('batch_size')}, seed {m.get('seed')}")
    print(f"  errors      train {_fmt(m.get('train_error'))}  test {_fmt(m.get('test_error'))}")
    print(f"  ||W - W_init||_F = {ck.network.distance_to(ck.init):.4f}"
          + (f"   ||W - W_prior||_F = {ck.network.distance_to(ck.prior):.4f}" if ck.prior is not None else ""))
    v = m.get("versions", {})
    print(f"  versions    sparsebound {v.get('sparsebound')}, torch {v.get('torch')}, python {v.get('python')}")
    return 0


def _cmd_sparsity(a: argparse.Namespace) -> int:
    from .analysis import run_sparsity

    run_sparsity(a)
    return 0


def _cmd_certify(a: argparse.Namespace) -> int:
    from ._io import dump_json
    from .certificate import ALL_METHODS, certify
    from .checkpoint import load_checkpoint
    from .experiments import bound_sample, data_spec_of
    from .network import resolve_device
    from .pacbayes import check_delta

    check_delta(a.delta)
    for name, v in (("--eta1", a.eta1), ("--eta2", a.eta2)):
        if not (0.0 < v < 1.0):
            raise ConfigError(f"{name} must lie in (0, 1), got {v}")
    if a.methods:
        bad = [mth for mth in a.methods if mth not in ALL_METHODS]
        if bad:
            raise ConfigError(f"unknown method(s) {bad}; choose from {', '.join(ALL_METHODS)}")
    resolve_device(a.device)
    ck = load_checkpoint(a.checkpoint)
    if a.json:
        from ._io import ensure_writable_dir

        jp = Path(a.json)
        if jp.is_dir():
            raise ConfigError(f"--json {a.json} is a folder; give a file name, e.g. {jp / 'certificate.json'}")
        if jp.parent != Path("") and not jp.parent.is_dir():
            raise ConfigError(f"--json {a.json}: folder {str(jp.parent)!r} does not exist; create it or give "
                              "another path")
        ensure_writable_dir(jp.parent if jp.parent != Path("") else ".", option="--json")
    spec = data_spec_of(ck, None, a.data_dir)
    splits = spec.load()
    source = ck
    if a.prior == "recorded":
        prior_net = ck.prior if ck.prior is not None else ck.init
        prior_kind = "data-dependent" if ck.prior is not None else "init"
        which = "recorded"
    elif a.prior == "init":
        prior_net, prior_kind, which = ck.init, "init", "init"
    else:
        if not Path(a.prior).exists():
            raise ConfigError(f"--prior {a.prior!r}: not 'recorded', 'init', or an existing prior checkpoint "
                              "folder (written by `train --prior-fraction`, as OUT/prior)")
        other = load_checkpoint(a.prior)
        rec = other.meta.get("bound_sample", {})
        if rec.get("kind") != "bound-split" or other.meta.get("prior", {}).get("kind") != "init" \
                or other.meta.get("data") != ck.meta.get("data"):
            raise ConfigError(
                f"{a.prior} is not a data-dependent prior of this checkpoint's data (it must be the prior folder "
                "written by `sparsebound train --prior-fraction`, trained on S_prior only); a network that saw "
                "the bound sample cannot be a prior"
            )
        ck.network.check_compatible(other.network, "prior")
        prior_net, prior_kind, which, source = other.network, f"checkpoint {a.prior}", "recorded", other
    bs, desc = bound_sample(source, splits, prior="init" if which == "init" else "recorded")
    methods = list(a.methods) if a.methods else [mth for mth in ALL_METHODS if mth != "sparse-mc"]
    print(f"certifying {ck.network.describe()} with prior '{prior_kind}' on {desc}")
    print(f"delta = {a.delta} (each method a separate statement at this level); eta1 = {a.eta1}, eta2 = {a.eta2}")
    cert = certify(ck.network, bs.X, bs.y, prior=prior_net, init=ck.init, delta=a.delta, methods=methods,
                   prior_kind=prior_kind, X_test=splits.test.X, y_test=splits.test.y, radius=bs.radius,
                   eta1=a.eta1, eta2=a.eta2, rescale=not a.no_rescale, device=a.device, progress=not a.quiet,
                   mc_draws=a.mc_draws, mc_batch=a.mc_batch, mc_seed=a.mc_seed)
    print(cert.table())
    if "sparse-mc" in cert.results:
        r = cert.results["sparse-mc"]
        print(f"sparse-mc: delta = {r.delta:g} (PAC-Bayes) + delta' = {r.delta_mc:g} (draws) = "
              f"{r.delta + r.delta_mc:g}; N = {r.n_draws} draws of {r.batch} samples each, seed {r.seed}; "
              f"q_hat = {r.q_hat:.4f}, eta1 = {r.eta1:g}")
    t = cert.timings
    print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
    if a.json:
        rec = cert.to_dict(per_sample=a.per_sample)
        rec["checkpoint"] = str(ck.path)
        rec["bound_sample"] = desc
        dump_json(a.json, rec)
        print(f"certificate written to {a.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"train": _cmd_train, "info": _cmd_info, "sparsity": _cmd_sparsity, "certify": _cmd_certify}
    try:
        if args.command == "reproduce":
            from .reproduce import run_reproduce_cli

            return run_reproduce_cli(args)
        return handlers[args.command](args)
    except SparseboundError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished results are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sparsebound info CKPT | head -1`
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0

