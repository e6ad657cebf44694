"""The ``reproduce`` sub-command: argument parsing and printing only.

Every option is parsed as text and checked once by
:func:`~sparsebound.study.config.resolve_config`, so a bad value gives the
CLI's one-line ``error: ...`` (exit 2) rather than an argparse usage block;
options left out fall back to the config file, then to the ``--quick``
settings, then to the defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import RunFailedError
from .budget import MIN_DRAWS, MIN_EPOCHS
from .config import ALL_METHODS, ALLOWED_KEYS, DEFAULTS, METHODS, resolve_config
from .ray_executor import RAY_EXTRA

__all__ = ["add_reproduce_parser", "run_reproduce_cli"]


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``reproduce`` sub-command on the CLI's sub-parsers."""
    p = sub.add_parser(
        "reproduce",
        help="width sweep: train, certify with every method, figures and report",
        description="Reproduce the width sweep of Muthukumar & Sulam (COLT 2023): for every seed and width "
                    "train a ReLU network (prior = initialisation) and a data-dependent prior with its "
                    "posterior(s), certify all of them with every method, and write results.json, "
                    "results.csv, figures and report.md.  Several --prior-fractions and --proximal values sweep "
                    "the tightness levers (one prior per alpha, shared by its posteriors; the report then gets a "
                    "levers section).  Re-running with the same options and --out skips finished runs; other "
                    "options into the same --out need --force.",
    )
    d = DEFAULTS
    p.add_argument("--config", default=None, help="TOML or YAML file with any of the options below "
                                                  "(keys: long option names; null = use the default; the command "
                                                  "line wins)")
    p.add_argument("--quick", action="store_const", const=True, default=None,
                   help="smoke run (1-2 minutes on 2 idle cores): mnist5k 1000/500, widths 20 40, 8 epochs, one seed")
    p.add_argument("--dataset", default=None, help=f"dataset (default {d['dataset']})")
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (mnist, fashion-mnist)")
    p.add_argument("--n-train", default=None, help="training-set size (default: the dataset's)")
    p.add_argument("--n-test", default=None, help="test-set size (default: the dataset's)")
    p.add_argument("--split-seed", default=None, help="seed of the train/test split (default 0)")
    p.add_argument("--widths", nargs="*", default=None,
                   help=f"hidden widths to sweep (default {' '.join(map(str, d['widths']))})")
    p.add_argument("--depth", default=None, help=f"K, number of weight layers (>= 2; default {d['depth']})")
    p.add_argument("--seeds", nargs="*", default=None, help="initialisation seeds (default 0)")
    p.add_argument("--prior-fractions", nargs="*", default=None, metavar="ALPHA",
                   help="fractions alpha of the training set for the data-dependent prior; one prior is "
                        f"trained per alpha and shared by its posteriors (default {d['prior_fraction']})")
    p.add_argument("--prior-fraction", default=None, metavar="ALPHA",
                   help="a single alpha (alias of --prior-fractions ALPHA)")
    p.add_argument("--posteriors", nargs="*", default=None,
                   help="posterior protocols with the data-dependent prior: standard, proximal "
                        "(default standard)")
    p.add_argument("--proximal", nargs="*", default=None, metavar="LAMBDA",
                   help="lambda grid of the proximal posterior's penalty lambda ||W - W0||_F^2, each > 0; "
                        "inf: posterior = prior (default 0.01; used with --posteriors proximal)")
    p.add_argument("--methods", nargs="*", default=None,
                   help=f"certificates to compute, any of {' '.join(ALL_METHODS)} "
                        f"(default {' '.join(METHODS)})")
    p.add_argument("--mc-draws", default=None,
                   help=f"sparse-mc: number N of posterior draws (default {d['mc_draws']})")
    p.add_argument("--mc-batch", default=None,
                   help=f"sparse-mc: bound samples evaluated per draw (default {d['mc_batch']}; all of them "
                        "when larger than the bound sample)")
    p.add_argument("--mc-seed", default=None,
                   help="sparse-mc: reproduce the draws exactly: each run derives its seed from this one and its "
                        "name (default: a fresh seed per run from the operating system; every seed is recorded "
                        "before drawing)")
    p.add_argument("--mc-delta-fraction", default=None,
                   help="sparse-mc: share f of delta spent on the draws (delta' = f delta; default "
                        f"{d['mc_delta_fraction']})")
    p.add_argument("--sigma-profiles", nargs="*", default=None, metavar="C1,...,CK",
                   help="per-layer sigma profiles fixed a priori, each K comma-separated positive numbers, "
                        "e.g. 1,1,1 2,1,0.5 (they share the grid weight; default: all ones)")
    p.add_argument("--budget-minutes", default=None,
                   help="fit the whole run into about this many minutes by scaling --max-epochs and "
                        f"--mc-draws down (never below {MIN_EPOCHS} epochs / {MIN_DRAWS} draws); the values "
                        "used are recorded per run")
    p.add_argument("--delta", default=None, help="failure probability delta in (0,1): each bound holds with "
                   f"probability >= 1 - delta (default {d['delta']})")
    p.add_argument("--eta1", default=None, help=f"test-side noise failure level (default {d['eta1']})")
    p.add_argument("--eta2", default=None, help=f"training-side noise failure level (default {d['eta2']})")
    p.add_argument("--device", default=None, help="cpu or cuda (default cpu)")
    p.add_argument("--out", default=None, help=f"output folder (default {d['out']})")
    p.add_argument("--force", action="store_true",
                   help="replace a study with other settings in --out (its runs and figures that the new report "
                        "does not mention are removed)")
    p.add_argument("--max-epochs", default=None, help=f"maximum training epochs (default {d['max_epochs']})")
    p.add_argument("--lr", default=None, help=f"SGD learning rate (default {d['lr']})")
    p.add_argument("--momentum", default=None, help=f"SGD momentum (default {d['momentum']})")
    p.add_argument("--batch-size", default=None, help=f"mini-batch size (default {d['batch_size']})")
    p.add_argument("--target-error", default=None, help="stop training at this training error (default 0)")
    p.add_argument("--exact-rounds", default=None,
                   help=f"rounds of exact per-sample reduced norms for 'sparse' (default {d['exact_rounds']})")
    p.add_argument("--no-rescale", action="store_const", const=True, default=None,
                   help="skip the layer-rescaling search")
    p.add_argument("--threads", default=None,
                   help="torch CPU threads (default: torch's choice); 1 is often much faster on a shared machine")
    p.add_argument("--quiet", action="store_const", const=True, default=None, help="no progress bars")
    p.add_argument("--executor", default=None,
                   help="where the runs execute: local (here, one after the other; the default) or ray (each run a "
                        "Ray task of --threads CPUs, default 1, and a GPU with --device cuda; the (width, seed) "
                        f"blocks in parallel; needs {RAY_EXTRA})")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: the Ray cluster to use (the address `ray start --head` prints; every "
                        "node must see --out at the same path); default: RAY_ADDRESS, else a local Ray instance "
                        "with this machine's CPUs, shut down at the end")
    o = p.add_argument_group("training objectives (sparsebound.recipes)")
    o.add_argument("--objectives", nargs="*", default=None, metavar="OBJ",
                   help="erm (always: the init and ddp-standard runs), certificate, pbb: each objective other than "
                        "erm adds one run per seed and prior fraction at --objective-widths, named "
                        "ddp-OBJ-a{alpha}, certified with --methods plus pbb (default: erm certificate; "
                        "--quick: erm)")
    o.add_argument("--objective-widths", nargs="*", default=None, metavar="WIDTH",
                   help="widths of the objective runs (default 100 1000 when both are in --widths, else the smallest "
                        "and the largest of --widths)")
    o.add_argument("--target-factor", default=None,
                   help=f"certificate: sigma_t = FACTOR * s0 (default {d['target_factor']}, fixed a priori)")
    o.add_argument("--prior-epochs", default=None,
                   help="certificate: epochs of the robust prior (default 100 on 2500 prior points, scaled)")
    o.add_argument("--pbb-passes", default=None,
                   help=f"pbb: passes over the bound sample (default {d['pbb_passes']})")


def run_reproduce_cli(args: argparse.Namespace) -> int:
    """Entry point of ``sparsebound reproduce`` (errors propagate to the CLI, which prints them).

    Returns 0, or 1 when some runs failed on their workers (``--executor ray``): the report
    line (when the others were written) and ``error: ...`` naming the failures are printed.
    """
    from .pipeline import run_study

    cli = {k: getattr(args, k) for k in ALLOWED_KEYS if getattr(args, k, None) is not None}
    cfg = resolve_config(cli, config_file=getattr(args, "config", None))
    if "proximal" in cli and "proximal" not in cfg.posteriors:
        print("note: --proximal is used only with --posteriors proximal (add it to train proximal posteriors)")
    if cfg.ray_address is not None and cfg.executor != "ray":
        print("note: --ray-address is used only with --executor ray (the runs execute here)")
    status = 0
    try:
        run_study(cfg, force=bool(getattr(args, "force", False)))
    except RunFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.study is None:
            return 1
        status = 1
    out = Path(cfg.out)
    print(f"report: {out / 'report.md'}  (results: {out / 'results.json'}, {out / 'results.csv'}; "
          f"figures: {out / 'figures'})")
    return status
