"""Command-line interface: ``sparsebound {train,info,sparsity,certify,reproduce}``.

Argument parsing and printing only.  Every :class:`SparseboundError` becomes a
one-line ``error: ...`` on stderr and exit status 2 (no traceback); Ctrl-C
exits with 130 and leaves finished files intact (all writes are atomic).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, SparseboundError, check_seed


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
                   help=f"dataset: {', '.join(DATASETS)}, idx:DIR or npz:FILE (default: "
                        f"{default if default else 'the one recorded in the checkpoint'})")
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (mnist, fashion-mnist)")
    p.add_argument("--split-seed", default=None, help="seed of the train/test split (default 0)")
    p.add_argument("--n-train", type=_positive_int, default=None, help="training-set size (subsample)")
    p.add_argument("--n-test", type=_positive_int, default=None, help="test-set size (subsample)")


def _add_train_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--lr", type=_float, default=0.05, help=f"{prefix}SGD learning rate (default 0.05)")
    p.add_argument("--momentum", type=_float, default=0.9, help=f"{prefix}SGD momentum (default 0.9)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help=f"{prefix}mini-batch size (default 64)")
    p.add_argument("--max-epochs", type=int, default=100, help=f"{prefix}maximum epochs (default 100)")
    p.add_argument("--target-error", type=_float, default=0.0,
                   help=f"{prefix}stop at this training error (default 0: train until every point is fitted or "
                        "max epochs)")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default: torch's choice); 1 is often much faster on a shared machine")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format (``error: ...``, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


CERTIFY_EPILOG = """\
Two ways in:
  sparsebound certify CKPT                    a checkpoint written by `sparsebound train` (its recorded
                                              data, split and prior)
  sparsebound certify --model FILE --data D   your own model: a TorchScript, ONNX, safetensors or
                                              torch.save(state_dict) file (give --arch FILE.py:Class(...)
                                              when the state_dict is not a plain Linear stack) and
                                              exactly one prior:
      --init FILE         the initialisation you saved BEFORE training (prior = init; bound sample =
                          the whole training split of --data)
      --prior FILE        a network trained on data disjoint from the bound sample (the training split
                          of --data); --prior zero: the zero network
      --train-prior F     train a prior of the same architecture on a fraction F of the training split
                          (sparsebound's trainer, split seed --prior-seed) and certify on the rest
A valid prior is fixed before the bound sample is seen. A prior that saw it gives a number that is not a
certificate; sparsebound warns when it can tell (a value below the held-out error's lower confidence bound,
or a prior equal to the network).
"""


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
    p.add_argument("--seed", default="0", help="seed of the initialisation and batch order (default 0)")
    _add_train_args(p)
    p.add_argument("--prior-fraction", type=_float, default=None,
                   help="train a data-dependent prior on this fraction of the training set, then the "
                        "posterior from it on all of it (THEORY 4.4)")
    p.add_argument("--posterior", choices=["standard", "proximal"], default="standard",
                   help="posterior protocol with --prior-fraction (default standard)")
    p.add_argument("--proximal", type=_float, default=None,
                   help="lambda of the proximal penalty lambda*||W - W0||_F^2 (with --posterior proximal; with "
                        "--objective certificate the output layer's penalty, default 1)")
    o = p.add_argument_group("training objective (needs --prior-fraction unless erm)")
    o.add_argument("--objective", choices=("erm", "certificate", "pbb"), default="erm",
                   help="erm (default: cross-entropy, the training above); certificate (a robust prior trained on "
                        "S_prior with the certificate objective, then only the output layer trained on all of S; "
                        "certified with noise on the output layer only); pbb (posterior trained with the PAC-Bayes "
                        "objective of the Gibbs predictor, learned variances; certified by pbb as well)")
    o.add_argument("--target-factor", type=_float, default=6.0,
                   help="certificate: target noise sigma_t = FACTOR * s0, s0 the median sigma*(x) of the erm prior "
                        "over S_prior (default 6, fixed a priori)")
    o.add_argument("--prior-epochs", type=_positive_int, default=None,
                   help="certificate: epochs of the robust prior on S_prior (default 100 on 2500 prior points, "
                        "scaled to the same number of sample passes, within [10, 100])")
    o.add_argument("--certificate-noise", choices=("last", "all"), default="last",
                   help="certificate: last (default: hidden layers frozen at the robust prior, noise on the output "
                        "layer only, profile (0,...,0,1)) or all (every layer trained with the certificate "
                        "objective and noisy)")
    o.add_argument("--pbb-sigma", type=_float, default=0.01,
                   help="pbb: prior standard deviation sigma_P of the objective (default 0.01, fixed a priori)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    _add_threads(p)
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--force", action="store_true", help="overwrite a checkpoint already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("info", help="describe a checkpoint",
                       description="Print a checkpoint's architecture, data, training and errors.")
    p.add_argument("checkpoint", help="checkpoint folder")
    p.add_argument("--json", action="store_true", help="print the whole JSON record")
    _add_threads(p)

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
    _add_threads(p)
    p.add_argument("--out", default=None, help="folder for sparsity.json and the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("certify", help="risk certificates of a checkpoint or of your own model (all methods)",
                       description="Compute the sparsity-aware risk certificate and the baselines for a\n"
                                   "checkpoint, or for your own model with an explicit prior, on a bound sample\n"
                                   "(THEORY 4, 6).",
                       epilog=CERTIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", default=None, help="checkpoint folder written by `sparsebound train`")
    g = p.add_argument_group("your own model (instead of CKPT)")
    g.add_argument("--model", default=None,
                   help="model file: TorchScript, ONNX (needs sparsebound[onnx]), safetensors or a torch.save'd "
                        "state_dict (or a checkpoint folder)")
    g.add_argument("--arch", default=None,
                   help="architecture of state_dict/safetensors files: FILE.py:Class(args) or module:Class(args) "
                        "(default: a plain Linear stack with ReLU in between, read from the keys)")
    g.add_argument("--init", default=None,
                   help="the initialisation saved before training (same formats); the prior when no --prior or "
                        "--train-prior is given, and the baselines' reference matrices")
    g.add_argument("--train-prior", type=_float, default=None, metavar="FRACTION",
                   help="train a prior of the model's architecture on this fraction of the training split and "
                        "certify on the rest (THEORY 4.4)")
    g.add_argument("--prior-seed", default="0",
                   help="seed of the prior/bound split of --train-prior (default 0; fixed before the data is seen)")
    g.add_argument("--seed", default="0",
                   help="seed of the prior's initialisation (without --init) and batch order, --train-prior "
                        "(default 0)")
    g.add_argument("--lr", type=_float, default=0.05, help="--train-prior: SGD learning rate (default 0.05)")
    g.add_argument("--momentum", type=_float, default=0.9, help="--train-prior: SGD momentum (default 0.9)")
    g.add_argument("--batch-size", type=_positive_int, default=64, help="--train-prior: mini-batch size (default 64)")
    g.add_argument("--max-epochs", type=int, default=100, help="--train-prior: maximum epochs (default 100)")
    g.add_argument("--target-error", type=_float, default=0.0,
                   help="--train-prior: stop at this training error (default 0)")
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None,
                   help="mnist5k, digits, mnist, fashion-mnist, synthetic, idx:DIR (four MNIST-format IDX files) "
                        "or npz:FILE (X, y, optionally X_test, y_test); with CKPT only when it records none")
    d.add_argument("--data-dir", default=None,
                   help="folder with the IDX files (mnist, fashion-mnist), e.g. if they moved since training")
    d.add_argument("--split-seed", default=None, help="--model: seed of the train/test split (default 0)")
    d.add_argument("--n-train", type=_positive_int, default=None, help="--model: training-split size (subsample)")
    d.add_argument("--n-test", type=_positive_int, default=None, help="--model: test-split size (subsample)")
    d.add_argument("--radius", type=_float, default=None,
                   help="npz:FILE: radius B of the input domain, ||x|| <= B (default: sqrt(d) when the inputs lie "
                        "in [0, 1], else unknown and the bounds that need it are skipped)")
    p.add_argument("--prior", default=None,
                   help="CKPT: 'recorded' (default: its data-dependent prior if it has one, else its "
                        "initialisation), 'init', 'zero', or a prior checkpoint folder written by "
                        "`train --prior-fraction` (OUT/prior; the bound sample is then the points it did not see). "
                        "--model: a prior network FILE trained on data disjoint from the bound sample, or 'zero'")
    p.add_argument("--delta", type=_float, default=0.05,
                   help="failure probability delta in (0,1): each bound holds with probability >= 1 - delta "
                        "(default 0.05)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="methods (default: sparse uniform-sparse dense neyshabur2018 neyshabur2018-init "
                        "bartlett2017 test-set, plus pbb on a `train --objective pbb` checkpoint; add sparse-mc "
                        "for the Monte-Carlo training side, pbb for the stochastic reference: a bound on the "
                        "randomised Gibbs predictor, not on the network)")
    p.add_argument("--mc-draws", type=_positive_int, default=2000,
                   help="posterior draws of sparse-mc (default 2000)")
    p.add_argument("--mc-batch", type=_positive_int, default=256,
                   help="bound samples evaluated per sparse-mc draw, a fresh random subset each time (default 256)")
    p.add_argument("--mc-seed", default=None,
                   help="seed of the sparse-mc draws (default: a fresh seed, printed and recorded); give one only "
                        "to reproduce a recorded run: a seed picked after seeing results voids the guarantee")
    p.add_argument("--sigma-profiles", nargs="+", default=None, metavar="C1,..,CK",
                   help="per-layer noise profiles of the sigma grid, each K comma-separated numbers >= 0 (0: a "
                        "layer without noise, which must equal its prior bit for bit); default: the profile "
                        "recorded by `train --objective certificate` (0,...,0,1), else all ones")
    p.add_argument("--pbb-passes", type=_positive_int, default=10,
                   help="pbb: passes over the bound sample, one fresh network per (pass, sample) (default 10)")
    p.add_argument("--pbb-seed", default=None,
                   help="pbb: seed of the draws (default: a fresh seed, printed and recorded); give one only to "
                        "reproduce a recorded run: a seed picked after seeing results voids the guarantee")
    p.add_argument("--eta1", type=_float, default=1e-4, help="test-side noise failure level (default 1e-4)")
    p.add_argument("--eta2", type=_float, default=1e-3, help="training-side noise failure level (default 1e-3)")
    p.add_argument("--no-rescale", action="store_true", help="skip the layer-rescaling search")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    _add_threads(p)
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the per-sample work runs (exact reduced norms of sparse, sparse-mc's draws): local "
                        "(default) or ray (Ray tasks of --threads CPUs each, on a local instance or --ray-address; "
                        "the same numbers; needs sparsebound[ray])")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: the Ray cluster to use (default: RAY_ADDRESS, else a local instance)")
    p.add_argument("--json", default=None, help="write the full certificate to this JSON file (a new file; "
                                                "--force to overwrite one)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--per-sample", action="store_true", help="include per-sample sigma* in the JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    from .reproduce import add_reproduce_parser

    add_reproduce_parser(sub)
    return parser


# --------------------------------------------------------------------------------------
# output folders: validate first, create after, leave nothing new behind on failure
# --------------------------------------------------------------------------------------


def _entries(folder: Path) -> set[Path]:
    return {q for q in folder.rglob("*")} if folder.is_dir() else set()


def _remove_new(top: Path | None, before: set[Path], folder: Path) -> None:
    import shutil

    if top is not None:
        shutil.rmtree(top, ignore_errors=True)
        return
    for q in sorted(_entries(folder) - before, key=lambda x: len(x.parts), reverse=True):
        try:
            if q.is_dir() and not q.is_symlink():
                shutil.rmtree(q, ignore_errors=True)
            else:
                q.unlink()
        except OSError:
            pass


@contextlib.contextmanager
def _output_folder(path: str, command: str, option: str = "--out") -> Iterator[Path]:
    """Create (if needed) and lock the output folder; if the body fails, remove what this run
    added: the folder itself when this run created it, else the entries that were not there."""
    from ._io import ensure_writable_dir, output_lock

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {path}: a file of that name exists; give a folder")
    top: Path | None = None
    q = folder.absolute()
    while not q.exists():
        top, q = q, q.parent
    before = _entries(folder) if top is None else set()
    ensure_writable_dir(folder, option)
    with contextlib.ExitStack() as stack:
        stack.enter_context(output_lock(folder, command))  # fails at once if another run holds it
        try:
            yield folder
        except BaseException:
            stack.close()
            _remove_new(top, before, folder)
            raise


# --------------------------------------------------------------------------------------
# train / info / sparsity
# --------------------------------------------------------------------------------------


def _cmd_train(a: argparse.Namespace) -> int:
    from .checkpoint import META_FILE
    from .data import split_prior_bound
    from .experiments import DataSpec, check_train_options, train_checkpoint
    from .network import resolve_device

    # every option first; then the data (unknown dataset, sizes); only then the output folder
    from .recipes import ObjectiveOptions
    from .training import TrainConfig, init_network

    seed = check_seed(a.seed, "--seed")
    split_seed = check_seed(a.split_seed if a.split_seed is not None else 0, "--split-seed")
    if a.objective != "erm":
        if a.prior_fraction is None:
            raise ConfigError(f"--objective {a.objective} needs a data-dependent prior: add --prior-fraction (e.g. "
                              "0.5); the objective's choices are made on S_prior")
        if a.posterior != "standard":
            raise ConfigError(f"--posterior applies to --objective erm; --objective {a.objective} sets its own "
                              "posterior (see --help)")
        if a.proximal is not None and (a.objective == "pbb" or a.certificate_noise == "all"):
            raise ConfigError("--proximal applies to --objective erm (with --posterior proximal) and to --objective "
                              "certificate with --certificate-noise last (the output layer's penalty); the "
                              f"{'pbb objective' if a.objective == 'pbb' else 'all-layer certificate objective'} "
                              "has its own KL term")
        objective = ObjectiveOptions(objective=a.objective, target_factor=a.target_factor,
                                     prior_epochs=a.prior_epochs, certificate_noise=a.certificate_noise,
                                     proximal=1.0 if a.proximal is None else a.proximal, pbb_sigma=a.pbb_sigma)
        proximal = 0.0
    else:
        for opt, given in (("--prior-epochs", a.prior_epochs is not None), ("--target-factor", a.target_factor != 6.0),
                           ("--certificate-noise", a.certificate_noise != "last"),
                           ("--pbb-sigma", a.pbb_sigma != 0.01)):
            if given:
                raise ConfigError(f"{opt} applies with --objective certificate or pbb")
        objective = None
        proximal = 0.0 if a.proximal is None else a.proximal
    check_train_options(posterior=a.posterior, proximal=proximal, prior_fraction=a.prior_fraction)
    resolve_device(a.device)
    cfg = TrainConfig(lr=a.lr, momentum=a.momentum, batch_size=a.batch_size, max_epochs=a.max_epochs,
                      target_error=a.target_error, seed=seed, device=a.device)
    spec = DataSpec(dataset=a.dataset, data_dir=a.data_dir, split_seed=split_seed, n_train=a.n_train,
                    n_test=a.n_test)
    out = Path(a.out)
    if (out / META_FILE).exists() and not a.force:
        raise ConfigError(f"{a.out} already holds a checkpoint; choose another --out or pass --force to overwrite it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {a.out}: a file of that name exists; give a folder")
    splits = spec.load()
    tr = splits.train
    init_network(tr.input_dim, a.widths, tr.n_classes, bias=a.bias, seed=seed)  # widths check, cheap
    if a.prior_fraction is not None:
        split_prior_bound(len(tr), a.prior_fraction, seed)  # both parts non-empty
    with _output_folder(a.out, "train") as folder:
        ck = train_checkpoint(folder, data=spec, hidden=a.widths, bias=a.bias, seed=seed, config=cfg,
                              prior_fraction=a.prior_fraction, posterior=a.posterior, proximal=proximal,
                              splits=splits, progress=not a.quiet, objective=objective)
    m = ck.meta
    trec = m["training"]
    print(f"trained {ck.network.describe()} on {spec.dataset} "
          f"({m['data_info'].get('n_train')} train / {m['data_info'].get('n_test')} test)")
    if ck.prior is not None:
        pr = m["prior"]
        print(f"  data-dependent prior (fraction {a.prior_fraction}): train error {_fmt(pr['prior_train_error'])}, "
              f"test error {_fmt(pr['prior_test_error'])}; posterior: {pr['posterior']}")
        print(f"  ||W - W0||_F = {ck.network.distance_to(ck.prior):.4f}")
    if m.get("objective"):
        _print_objective(m)
    print(f"  epochs {trec['epochs']}  train error {_fmt(m['train_error'])}  test error {_fmt(m['test_error'])}"
          + ("" if trec["reached_target"] else f"  (target {a.target_error} not reached)"))
    print(f"  ||W - W_init||_F = {ck.network.distance_to(ck.init):.4f}")
    print(f"checkpoint written to {a.out}")
    return 0


def _print_objective(m: dict[str, Any]) -> None:
    """The recipe of a checkpoint trained with --objective (train and info)."""
    ob = m["objective"]
    rules = ob.get("rules") or {}
    print(f"  objective   {ob.get('objective')}" + (f" (noise {ob['options'].get('certificate_noise')})"
                                                    if ob.get("objective") == "certificate" else ""))
    ep = ob.get("erm_prior") or {}
    print(f"    erm prior (S_prior): train error {_fmt(ep.get('train_error'))}, "
          f"test error {_fmt(ep.get('test_error'))}")
    if "sigma_t" in rules:
        print(f"    s0 = {rules['s0']:.4g} (median sigma*(x) of the erm prior over S_prior); sigma_t = "
              f"{rules['target_factor']:g} * s0 = {rules['sigma_t']:.4g}; robust prior {rules['prior_epochs']} epochs")
    elif "s0" in rules:
        print(f"    s0 = {rules['s0']:.4g}: {rules.get('accept_rule')}")
    rp = ob.get("robust_prior")
    if rp:
        print(f"    robust prior (S_prior only): train error {_fmt(rp.get('train_error'))}, test error "
              f"{_fmt(rp.get('test_error'))}; "
              + ("THE prior of the certificate" if rp.get("accepted", True) else
                 "REJECTED (fits S_prior worse than the erm prior by more than the a-priori margin): the erm "
                 "prior is the prior"))
    if "kls" in rules:
        print(f"    kls = {rules['kls']:.4g} (median sigma*(x) of the robust prior over S_prior): KL level")
    if ob.get("objective") == "pbb":
        print(f"    pbb objective: prior std sigma_P = {ob['options'].get('pbb_sigma')}, learned posterior std saved; "
              "`certify` adds pbb (a bound on the randomised Gibbs predictor, not the deployed network)")
    prof = ob.get("certificate_profile")
    print(f"    frozen layers {ob.get('frozen_layers') or 'none'}; certificate noise profile "
          f"{tuple(prof) if prof else 'all ones (every layer noisy)'}; layers with noise {ob.get('noise_layers')}")
    print(f"    certifies: {ob.get('certifies')}")


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) and not isinstance(v, bool) else "n/a"


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
    if m.get("objective"):
        _print_objective(m)
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
    from .network import resolve_device

    a.split_seed = check_seed(a.split_seed if a.split_seed is not None else 0, "--split-seed")
    resolve_device(a.device)
    run_sparsity(a)
    return 0


# --------------------------------------------------------------------------------------
# certify
# --------------------------------------------------------------------------------------


def _protected_files(*paths: str | Path | None) -> list[Path]:
    """Files an output must never replace: checkpoint records and tensors, model files, data files."""
    from ._io import LOCK_FILE
    from .checkpoint import META_FILE, TENSOR_FILE

    out: list[Path] = []
    for p in paths:
        if p is None:
            continue
        q = Path(p)
        if q.is_dir():
            # the checkpoint and every checkpoint nested in it (prior, robust-prior, ...)
            subs = [q, *sorted(d for d in q.iterdir() if d.is_dir() and (d / META_FILE).is_file())]
            for sub in subs:
                out += [sub / META_FILE, sub / TENSOR_FILE, sub / LOCK_FILE]
        else:
            out.append(q)
    return out


def _check_json_target(path: str, force: bool, protected: Sequence[Path]) -> None:
    from ._io import ensure_writable_dir

    jp = Path(path)
    if jp.is_dir():
        raise ConfigError(f"--json {path} is a folder; give a file name, e.g. {jp / 'certificate.json'}")
    if jp.parent != Path("") and not jp.parent.is_dir():
        raise ConfigError(f"--json {path}: folder {str(jp.parent)!r} does not exist; create it or give another path")
    target = jp.resolve()
    for q in protected:
        if q.exists() and q.resolve() == target:
            raise ConfigError(f"--json {path} would overwrite {q}, an input of this run; write the certificate "
                              "elsewhere, e.g. certificate.json")
    if jp.exists() and not force:
        raise ConfigError(f"--json {path} already exists; pass --force to overwrite it or give another path")
    ensure_writable_dir(jp.parent if jp.parent != Path("") else ".", option="--json")


def _validate_certify(a: argparse.Namespace) -> dict[str, Any]:
    """Every certify option, before any file is read (one-line errors)."""
    from .certificate import CERTIFY_METHODS
    from .network import resolve_device
    from .pacbayes import check_delta
    from .training import TrainConfig

    v: dict[str, Any] = {}
    check_delta(a.delta, "--delta")
    for name, x in (("--eta1", a.eta1), ("--eta2", a.eta2)):
        if not (0.0 < x < 1.0):
            raise ConfigError(f"{name} must lie in (0, 1), got {x}")
    if a.methods:
        bad = [mth for mth in a.methods if mth not in CERTIFY_METHODS]
        if bad:
            raise ConfigError(f"unknown method(s) {bad}; choose from {', '.join(CERTIFY_METHODS)}")
    v["mc_seed"] = check_seed(a.mc_seed, "--mc-seed") if a.mc_seed is not None else None
    v["pbb_seed"] = check_seed(a.pbb_seed, "--pbb-seed") if a.pbb_seed is not None else None
    v["sigma_profiles"] = None
    if a.sigma_profiles:
        profs = []
        for item in a.sigma_profiles:
            try:
                profs.append(tuple(float(x) for x in item.replace(",", " ").split()))
            except ValueError:
                raise ConfigError(f"--sigma-profiles {item!r}: give comma-separated numbers, e.g. 0,0,1") from None
        v["sigma_profiles"] = tuple(profs)
    resolve_device(a.device)
    if a.ray_address is not None and a.executor != "ray":
        raise ConfigError("--ray-address applies with --executor ray")
    if a.executor == "ray":
        from .study.ray_executor import import_ray

        import_ray()  # a missing Ray: one line naming the extra, before any file is read
    if a.radius is not None and not (0.0 < a.radius < float("inf")):
        raise ConfigError(f"--radius must be a positive number, got {a.radius}")
    if (a.checkpoint is None) == (a.model is None):
        raise ConfigError("give a checkpoint folder (sparsebound certify CKPT) or your own model (--model FILE "
                          "--data DATA and a prior), not both" if a.model else
                          "give a checkpoint folder (sparsebound certify CKPT) or your own model with --model FILE "
                          "--data DATA and a prior (--init FILE, --prior FILE|zero or --train-prior FRACTION)")
    if a.checkpoint is not None:
        for opt, val in (("--arch", a.arch), ("--init", a.init), ("--train-prior", a.train_prior),
                         ("--split-seed", a.split_seed), ("--n-train", a.n_train), ("--n-test", a.n_test),
                         ("--radius", a.radius)):
            if val is not None:
                raise ConfigError(f"{opt} applies with --model; a checkpoint certifies on its recorded data, split "
                                  "and initialisation (see --prior)")
        v["prior"] = a.prior or "recorded"
        return v
    if a.data is None:
        raise ConfigError("--model needs its data: --data mnist5k|digits|mnist|fashion-mnist|idx:DIR|npz:FILE")
    if a.prior in ("recorded", "init"):
        raise ConfigError(f"--prior {a.prior} applies to a checkpoint; with --model give the saved initialisation "
                          "as --init FILE")
    if a.prior is not None and a.train_prior is not None:
        raise ConfigError("give one prior: --prior or --train-prior, not both")
    if a.prior is None and a.train_prior is None and a.init is None:
        raise ConfigError("give the prior explicitly: --init FILE (the initialisation saved before training), "
                          "--prior FILE (trained on data disjoint from the bound sample), --prior zero, or "
                          "--train-prior FRACTION")
    v["split_seed"] = check_seed(a.split_seed if a.split_seed is not None else 0, "--split-seed")
    if a.train_prior is not None:
        if not (0.0 < a.train_prior < 1.0):
            raise ConfigError(f"--train-prior must be a fraction in (0, 1), got {a.train_prior}")
        v["prior_seed"] = check_seed(a.prior_seed, "--prior-seed")
        v["seed"] = check_seed(a.seed, "--seed")
        v["config"] = TrainConfig(lr=a.lr, momentum=a.momentum, batch_size=a.batch_size, max_epochs=a.max_epochs,
                                  target_error=a.target_error, seed=v["seed"], device=a.device)
    return v


def _certify_checkpoint_inputs(a: argparse.Namespace, v: dict[str, Any]) -> dict[str, Any]:
    """Network, prior, bound sample and test data of a checkpoint (its recorded protocol)."""
    from .checkpoint import load_checkpoint
    from .experiments import bound_sample, data_spec_of
    from .models import zero_network_like

    ck = load_checkpoint(a.checkpoint)
    if a.data is not None and isinstance(ck.meta.get("data"), dict) and a.data != ck.meta["data"].get("dataset"):
        raise ConfigError(f"the checkpoint was trained on {ck.meta['data'].get('dataset')!r}, not {a.data!r}; it is "
                          "certified on its recorded data (drop --data), or certify it as --model CKPT --data "
                          f"{a.data} with an explicit prior")
    protected = _protected_files(a.checkpoint, a.prior if a.prior not in ("recorded", "init", "zero") else None)
    if a.json:
        _check_json_target(a.json, a.force, protected)
    spec = data_spec_of(ck, a.data, a.data_dir)
    splits = spec.load()
    source = ck
    which = "recorded"
    if v["prior"] == "recorded":
        prior_net = ck.prior if ck.prior is not None else ck.init
        prior_kind = "data-dependent" if ck.prior is not None else "init"
        prior_desc = "the recorded data-dependent prior" if ck.prior is not None else "the recorded initialisation"
    elif v["prior"] == "init":
        prior_net, prior_kind, which, prior_desc = ck.init, "init", "init", "the recorded initialisation"
    elif v["prior"] == "zero":
        prior_net, prior_kind, which, prior_desc = zero_network_like(ck.network), "zero", "init", "the zero network"
    else:
        if not Path(a.prior).exists():
            raise ConfigError(f"--prior {a.prior!r}: not 'recorded', 'init', 'zero', or an existing prior checkpoint "
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
        prior_net, prior_kind, source = other.network, "data-dependent", other
        prior_desc = f"the prior checkpoint {a.prior}"
    bs, desc = bound_sample(source, splits, prior="init" if which == "init" else "recorded")
    brec = dict(ck.meta.get("bound_sample") or {"kind": "train"}) if which != "init" else {"kind": "train"}
    if source is not ck:
        brec = dict(source.meta.get("bound_sample") or {})
    brec.update({"description": desc, "m": len(bs), "data": spec.to_dict()})
    return {"network": ck.network, "prior": prior_net, "init": ck.init, "prior_kind": prior_kind,
            "prior_desc": prior_desc, "bound": bs, "desc": desc, "bound_record": brec, "test": splits.test,
            "radius": None if splits.info.get("radius_basis") == "sample" else bs.radius,
            "record": {"checkpoint": str(ck.path)},
            "profile": ((ck.meta.get("objective") or {}).get("certificate_profile")
                        if v["prior"] == "recorded" else None),
            "posterior_std": ck.posterior_std if v["prior"] == "recorded" else None,
            # the checkpoint's own record says which prior was fixed before the bound sample: a network equal to it
            # (e.g. trained for 0 epochs) is not the misuse the prior-equals-network warning is about
            "recorded_prior": which == "recorded" or v["prior"] == "init"}


#: datasets whose training images may be the same pictures (mnist5k is a subset of MNIST's training set)
_RELATED_DATASETS: tuple[frozenset[str], ...] = (frozenset({"mnist", "mnist5k"}),)


def _may_overlap(trained_on: str, data: str) -> bool:
    """Whether data recorded as ``trained_on`` may share points with ``data`` (conservative: the same name,
    related datasets, or a folder/file given by path, which may hold any of them)."""
    a, b = trained_on.strip().lower(), data.strip().lower()
    if not a or not b:
        return False
    if a == b or any(a in g and b in g for g in _RELATED_DATASETS):
        return True
    by_path = ("idx:", "npz:")
    return a.startswith(by_path) or b.startswith(by_path)


def _refuse_overlapping_prior_checkpoint(prior: str, dataset: str) -> None:
    """A sparsebound checkpoint given as ``--prior`` with ``--model``: its recorded training data must not
    be the dataset whose whole training split is the bound sample, a related one (mnist5k within MNIST), or
    data given by path (``idx:``/``npz:``, which may be the same files): :func:`_may_overlap`.

    Raises:
        ConfigError: the checkpoint (a trained network or a ``train --prior-fraction`` prior, trained on
            S_prior of that split) was trained on data of the same dataset, which overlaps the bound sample.
    """
    from .checkpoint import META_FILE

    p = Path(prior)
    if not (p.is_dir() and (p / META_FILE).is_file()):
        return
    from .checkpoint import load_checkpoint

    meta = load_checkpoint(p).meta
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    if _may_overlap(str(data.get("dataset", "")), str(dataset)):
        brec = meta.get("bound_sample") or {}
        src = str(data.get("dataset"))
        what = (f"S_prior (fraction {brec.get('prior_fraction')}, split seed {brec.get('seed')}) of {src}'s "
                "training split" if brec.get("kind") == "bound-split" else f"{src}'s training data")
        raise ConfigError(
            f"--prior {prior} was trained on {what}, and with --model the bound sample is the whole training split "
            f"of {dataset}, which may contain the same points: the prior may have seen part of the bound sample, so "
            "no certificate would be valid. Certify "
            "the checkpoint itself (sparsebound certify CKPT uses the recorded split: S_bound only), or use "
            "--train-prior FRACTION, --init FILE or --prior zero"
        )


def _certify_model_inputs(a: argparse.Namespace, v: dict[str, Any]) -> dict[str, Any]:
    """Network, prior, bound sample and test data of a user's model file (prior given explicitly)."""
    from .data import split_prior_bound
    from .experiments import DataSpec
    from .models import load_architecture, load_model, zero_network_like
    from .training import init_network, train

    arch_file = a.arch.rpartition(":")[0] if a.arch and a.arch.rpartition(":")[0].endswith(".py") else None
    data_file = a.data[4:] if a.data[:4].lower() == "npz:" else None
    prior_file = a.prior if a.prior not in (None, "zero") else None
    if a.json:
        _check_json_target(a.json, a.force, _protected_files(a.model, a.init, prior_file, arch_file, data_file))
    spec = DataSpec(dataset=a.data, data_dir=a.data_dir, split_seed=v["split_seed"], n_train=a.n_train,
                    n_test=a.n_test, radius=a.radius)
    arch = load_architecture(a.arch) if a.arch else None
    lm = load_model(a.model, architecture=arch, option="--model")
    net = lm.network
    print(f"model: {lm.description}")
    record: dict[str, Any] = {"model_file": lm.to_dict()}
    init_net = None
    if a.init is not None:
        li = load_model(a.init, architecture=load_architecture(a.arch) if a.arch else None, option="--init")
        net.check_compatible(li.network, "initialisation (--init)")
        if net.same_function_as(li.network):
            raise ConfigError(
                f"--init {a.init} computes the same function as --model {a.model} (equal or a rescaled copy): it is "
                "the trained network, not the initialisation saved before training; a prior built from it (or "
                "trained from it with --train-prior) has seen the bound sample. Give the initialisation saved "
                "before training"
            )
        init_net = li.network
        record["init_file"] = li.to_dict()
    splits = spec.load()  # unknown dataset, missing files, one-hot labels ... before any training
    tr = splits.train
    net.check_data(tr.X, tr.y)
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # the low-precision disagreement, in the CLI's words
        warnings.simplefilter("always", UserWarning)
        lm.check_on_data(tr.X)  # the converted network against the user's model on the user's data
    for w in caught:
        print(f"WARNING: {w.message}", file=sys.stderr)
    radius = None if splits.info.get("radius_basis") == "sample" else tr.radius
    if a.train_prior is not None:
        pidx, bidx = split_prior_bound(len(tr), a.train_prior, v["prior_seed"])
        start = init_net if init_net is not None else init_network(
            tr.input_dim, list(net.widths[1:-1]), tr.n_classes, bias=net.has_bias, seed=v["seed"])
        if start.output_dim != net.output_dim:
            raise ConfigError(f"the data has {tr.n_classes} classes but the model {net.output_dim} outputs")
        origin = "--init" if init_net is not None else f"a fresh initialisation (seed {v['seed']})"
        print(f"training the prior on S_prior: {pidx.size} of the {len(tr)} training points (fraction "
              f"{a.train_prior}, split seed {v['prior_seed']}); starting from {origin}")
        res = train(start, tr.subset(pidx), v["config"], test=splits.test, progress=not a.quiet, desc="prior")
        prior_net = res.network
        init_ref = start
        bound = tr.subset(bidx)
        desc = (f"S_bound: {bidx.size} training points of {spec.dataset} not used by the prior (prior fraction "
                f"{a.train_prior}, split seed {v['prior_seed']})")
        brec = {"kind": "bound-split", "prior_fraction": float(a.train_prior), "seed": v["prior_seed"],
                "n_prior": int(pidx.size), "n_bound": int(bidx.size)}
        prior_kind, prior_desc = "data-dependent", f"trained on S_prior ({res.epochs} epochs)"
        record["prior_training"] = {"config": v["config"].to_dict(), **res.to_dict(),
                                    "start": "--init" if init_net is not None else f"init_network(seed={v['seed']})"}
    else:
        bound = tr
        desc = (f"the whole training split of {spec.dataset}: {len(tr)} points (the prior must not have seen "
                "them)")
        brec = {"kind": "train", "n": len(tr)}
        init_ref = init_net
        if a.prior == "zero":
            prior_net, prior_kind, prior_desc = zero_network_like(net), "zero", "the zero network"
        elif a.prior is not None:
            lp = load_model(a.prior, architecture=load_architecture(a.arch) if a.arch else None, option="--prior")
            net.check_compatible(lp.network, "prior (--prior)")
            if net.same_function_as(lp.network):
                raise ConfigError(
                    f"--prior {a.prior} computes the same function as --model {a.model} (equal or a rescaled "
                    "copy): the trained network cannot be its own prior (it has seen the bound sample). Give a prior "
                    "fixed before the bound sample was seen: --init FILE, --prior zero, --train-prior FRACTION, or a "
                    "network trained on data disjoint from --data's training split"
                )
            _refuse_overlapping_prior_checkpoint(a.prior, spec.dataset)
            prior_net, prior_kind = lp.network, "user-given"
            prior_desc = f"{lp.description} (assumed trained on data disjoint from the bound sample)"
            record["prior_file"] = lp.to_dict()
        else:
            assert init_net is not None
            prior_net, prior_kind, prior_desc = init_net, "init", f"the saved initialisation {a.init}"
    brec.update({"description": desc, "m": len(bound), "data": spec.to_dict(), "data_info": splits.to_dict()})
    return {"network": net, "prior": prior_net, "init": init_ref, "prior_kind": prior_kind, "prior_desc": prior_desc,
            "bound": bound, "desc": desc, "bound_record": brec, "test": splits.test, "radius": radius,
            "record": record}


def _cmd_certify(a: argparse.Namespace) -> int:
    import warnings

    from ._io import dump_json, dump_json_new
    from .certificate import ALL_METHODS, PriorValidityWarning, certify
    from .pacbayes import SigmaGrid

    v = _validate_certify(a)
    inp = _certify_checkpoint_inputs(a, v) if a.checkpoint is not None else _certify_model_inputs(a, v)
    net, bs, test = inp["network"], inp["bound"], inp["test"]
    profiles = v["sigma_profiles"]
    if profiles is None and inp.get("profile"):
        profiles = (tuple(float(c) for c in inp["profile"]),)
        print(f"sigma profile {profiles[0]} as recorded by training (layers with c_k = 0 carry no noise and equal "
              "the prior bit for bit; give --sigma-profiles to change it)")
    for prof in profiles or ():
        if len(prof) != net.depth:
            raise ConfigError(f"--sigma-profiles {','.join(f'{c:g}' for c in prof)}: {len(prof)} entries, the "
                              f"network has K = {net.depth} layers")
    grid = SigmaGrid(profiles=profiles or ())
    posterior_std = inp.get("posterior_std")
    if a.methods:
        methods = list(a.methods)
        if "test-set" in methods and test is None:
            raise ConfigError("--methods test-set needs held-out data; the data has no test split (npz: add X_test "
                              "and y_test)")
        if any(mth.startswith("neyshabur2018") for mth in methods) and inp["radius"] is None:
            raise ConfigError("neyshabur2018 needs the radius of the input domain; give --radius B (||x|| <= B)")
    else:
        methods = [mth for mth in ALL_METHODS if mth != "sparse-mc"]
        skipped = []
        if test is None:
            methods.remove("test-set")
            skipped.append("test-set (no test split)")
        if inp["radius"] is None:
            methods = [mth for mth in methods if not mth.startswith("neyshabur2018")]
            skipped.append("neyshabur2018* (no --radius)")
        if posterior_std is not None:
            methods.append("pbb")
        if skipped:
            print("skipped: " + ", ".join(skipped))
    if "pbb" in methods:
        print("pbb: a bound on the randomised (Gibbs) predictor, not on the deployed network; "
              + ("posterior N(W, diag s^2) with the standard deviations learned in training"
                 if posterior_std is not None else "tied posterior N(W, (sigma c)^2 I) on the sigma grid"))
    print(f"certifying {net.describe()} with prior '{inp['prior_kind']}' ({inp['prior_desc']})")
    print(f"bound sample: {inp['desc']}")
    print(f"delta = {a.delta} (each method a separate statement at this level); eta1 = {a.eta1}, eta2 = {a.eta2}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorValidityWarning)  # printed below, on stderr, in the CLI's words
        cert = certify(net, bs.X, bs.y, prior=inp["prior"], init=inp["init"], delta=a.delta, methods=methods,
                       prior_kind=inp["prior_kind"], X_test=test.X if test is not None else None,
                       y_test=test.y if test is not None else None, radius=inp["radius"], eta1=a.eta1,
                       eta2=a.eta2, rescale=not a.no_rescale, device=a.device, progress=not a.quiet,
                       mc_draws=a.mc_draws, mc_batch=a.mc_batch, mc_seed=v["mc_seed"], executor=a.executor,
                       ray_address=a.ray_address, sigma_grid=grid, pbb_passes=a.pbb_passes, pbb_seed=v["pbb_seed"],
                       posterior_std=posterior_std if "pbb" in methods else None)
    if inp.get("recorded_prior"):
        cert.warnings = [w for w in cert.warnings if w.get("kind") != "prior-equals-network"]
    print(cert.table())
    if "sparse-mc" in cert.results:
        r = cert.results["sparse-mc"]
        print(f"sparse-mc: delta = {r.delta:g} (PAC-Bayes) + delta' = {r.delta_mc:g} (draws) = "
              f"{r.delta + r.delta_mc:g}; N = {r.n_draws} draws of {r.batch} samples each, seed {r.seed}; "
              f"q_hat = {r.q_hat:.4f}, eta1 = {r.eta1:g}")
    if "pbb" in cert.results:
        r = cert.results["pbb"]
        print(f"pbb ({r.posterior} posterior; Gibbs predictor): delta = {r.delta:g} + delta' = {r.delta_mc:g}; "
              f"{r.n_draws} draws ({r.passes} passes), seed {r.seed}; Gibbs error on S_bound {r.gibbs_error:.4f}")
        if "sparse" in cert.results:
            from .certification import derandomisation_cost

            dc = derandomisation_cost(cert.results["sparse"], r)
            print(f"derandomisation cost: sparse {dc['deterministic']:.4g} - pbb {dc['stochastic']:.4g} = "
                  f"{dc['difference']:.4g} (different predictors)")
    t = cert.timings
    print("time: " + ", ".join(f"{k} {val:.1f}s" for k, val in t.items()))
    for w in cert.warnings:
        print(f"WARNING: {w['message']}", file=sys.stderr)
    if a.json:
        rec = cert.to_dict(per_sample=a.per_sample)
        rec.update(inp["record"])
        rec["bound_sample"] = inp["desc"]
        rec["bound_sample_record"] = inp["bound_record"]
        rec["prior_source"] = inp["prior_desc"]
        if a.force:
            dump_json(a.json, rec)
        else:
            try:  # exclusive: a file created meanwhile (another run) is never overwritten
                dump_json_new(a.json, rec)
            except FileExistsError:
                raise ConfigError(f"--json {a.json} was created by another process while this run was computing; "
                                  "it was not overwritten (pass --force to overwrite, or give another path)") from None
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
        from ._io import check_output_path

        for attr in ("out", "json"):  # an empty output path is never the current folder
            val = getattr(args, attr, None)
            if isinstance(val, str):
                check_output_path(val, f"--{attr}")
        if args.command == "reproduce":
            from .reproduce import run_reproduce_cli

            return run_reproduce_cli(args)
        threads = getattr(args, "threads", None)
        if threads is None:
            return handlers[args.command](args)
        from .network import torch_threads

        with torch_threads(int(threads)):
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

