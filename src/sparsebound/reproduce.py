"""``sparsebound reproduce``: the width sweep of Muthukumar & Sulam (COLT 2023), end to end.

For every seed and hidden width (depth K: K-1 hidden layers of that width) the
pipeline

1. trains a network from its recorded initialisation (prior = initialisation,
   bound sample = the whole training set): ``OUT/runs/w{width}-s{seed}/init``;
2. for every prior fraction alpha, trains a data-dependent prior on a fraction
   alpha of the training set ONCE (``.../prior-a{alpha}``) and every posterior
   from it (THEORY.md 4.4): the standard posterior and the proximal posterior for
   every lambda of the grid (``inf``: the posterior is the prior).  With one alpha
   and one lambda the runs are ``.../ddp-standard`` and ``.../ddp-proximal``;
   otherwise ``.../ddp-standard-a{alpha}`` and ``.../ddp-proximal-a{alpha}-l{lambda}``;
3. measures the activation sparsity of the init-prior network on the training
   set (:func:`sparsebound.analysis.analyse_sparsity`);
4. certifies every network with every selected method (sparse, sparse-mc,
   uniform-sparse, dense, the norm-based baselines and the held-out test-set
   bound), each a separate statement at confidence 1 - delta (``sparse-mc``
   splits delta into delta' for its draws and delta - delta' for its PAC-Bayes
   step), with the a-priori sigma profiles of ``--sigma-profiles``;
5. writes ``certificate.json`` per run (atomically), then ``results.json``,
   ``results.csv``, the figures and ``report.md`` in ``OUT``.

With ``--budget-minutes M`` the number of training epochs and of sparse-mc draws
is scaled down (never below :data:`MIN_EPOCHS` / :data:`MIN_DRAWS`) so that the
whole sweep fits in about M minutes: the per-sample costs are calibrated on the
data before the first run and re-measured after every run, and the values of a
(seed, width) block are fixed when the block starts (``runs/w{w}-s{s}/budget.json``)
and recorded in every run (``settings``).

Runs are resumable: a run whose ``certificate.json`` records the same run
configuration is loaded instead of recomputed, and checkpoints that match are
reused instead of retrained.  Every file is written atomically, so Ctrl-C keeps
every finished result.

The report is generated from ``results.json`` alone (every number in it is a
value stored there; the derived numbers of the plain-language readings are
stored under ``results.json["summary"]``).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, dump_json, ensure_writable_dir, load_json, to_jsonable
from .errors import CheckpointError, ConfigError

__all__ = [
    "CSV_COLUMNS",
    "DEFAULTS",
    "METHODS",
    "QUICK",
    "add_reproduce_parser",
    "build_report",
    "resolve_config",
    "run_reproduce",
    "run_reproduce_cli",
]

#: the methods certified by default in every run (each a separate statement at level delta).
METHODS: tuple[str, ...] = ("sparse", "uniform-sparse", "dense", "neyshabur2018", "neyshabur2018-init",
                            "bartlett2017", "test-set")
#: every method ``--methods`` accepts, in the order of the tables.
ALL_METHODS: tuple[str, ...] = ("sparse", "sparse-mc", "uniform-sparse", "dense", "neyshabur2018",
                                "neyshabur2018-init", "bartlett2017", "test-set")
#: the sparsity-aware methods (per-sample machinery, sigma, KL, curves).
SPARSE_METHODS: tuple[str, ...] = ("sparse", "uniform-sparse", "dense")
#: the certificates of the report's "levers" table.
LEVER_METHODS: tuple[str, ...] = ("sparse", "sparse-mc", "dense", "neyshabur2018")
#: grid sigma values sparse-mc evaluates (fixed; recorded in every run).
MC_MAX_EVALS = 4
#: the smallest values ``--budget-minutes`` scales to (or the requested value when smaller).
MIN_EPOCHS = 3
MIN_DRAWS = 20
#: training-error level below which a network counts as fitted in the levers summary.
FIT_THRESHOLD = 0.02

#: defaults of the full run (the paper's MNIST width sweep on the 5000-image sample).
DEFAULTS: dict[str, Any] = {
    "quick": False,
    "dataset": "mnist5k",
    "data_dir": None,
    "n_train": None,
    "n_test": None,
    "split_seed": 0,
    "widths": [50, 100, 500, 1000],
    "depth": 3,
    "seeds": [0],
    "prior_fraction": 0.5,
    "prior_fractions": None,
    "posteriors": ["standard"],
    "proximal": [0.01],
    "methods": list(METHODS),
    "mc_draws": 2000,
    "mc_batch": 256,
    "mc_seed": 20231,
    "mc_delta_fraction": 0.5,
    "sigma_profiles": [],
    "budget_minutes": None,
    "threads": None,
    "delta": 0.05,
    "eta1": 1e-4,
    "eta2": 1e-3,
    "device": "cpu",
    "out": "runs/reproduce",
    "max_epochs": 60,
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 64,
    "target_error": 0.0,
    "exact_rounds": 3,
    "no_rescale": False,
    "quiet": False,
}

#: what ``--quick`` changes (explicit options and config-file values still win).
QUICK: dict[str, Any] = {
    "dataset": "mnist5k",
    "n_train": 1000,
    "n_test": 500,
    "widths": [20, 40],
    "depth": 3,
    "seeds": [0],
    "max_epochs": 8,
    "posteriors": ["standard"],
    "exact_rounds": 1,
    "no_rescale": True,
}

#: keys of a config file (the long option names, '-' or '_').
ALLOWED_KEYS: tuple[str, ...] = tuple(DEFAULTS)

CSV_COLUMNS: tuple[str, ...] = (
    "dataset", "width", "depth", "seed", "prior", "posterior", "method", "certificate", "unclipped",
    "log10_unclipped", "vacuous", "empirical_term", "complexity_term", "sigma", "kl_over_m",
    "certified_fraction", "distance_to_prior", "train_error", "test_error", "test_error_lower_confidence",
    "m", "delta", "run", "prior_fraction", "proximal", "max_epochs", "q_hat", "n_draws", "mc_seed",
    "delta_pacbayes", "delta_mc",
)


# ======================================================================================
# command line
# ======================================================================================


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    """The ``reproduce`` sub-command.

    Every option is parsed as text and checked by :func:`resolve_config`, so a bad
    value gives the one-line ``error: ...`` of the CLI (exit 2) rather than an
    argparse usage block; options left out fall back to the config file, then to
    the ``--quick`` settings, then to :data:`DEFAULTS`.
    """
    p = sub.add_parser(
        "reproduce",
        help="width sweep: train, certify with every method, figures and report",
        description="Reproduce the width sweep of Muthukumar & Sulam (COLT 2023): for every seed and width "
                    "train a ReLU network (prior = initialisation) and a data-dependent prior with its "
                    "posterior(s), certify all of them with every method, and write results.json, "
                    "results.csv, figures and report.md.  Several --prior-fractions and --proximal values sweep "
                    "the tightness levers (one prior per alpha, shared by its posteriors; the report then gets a "
                    "levers section).  Re-running with the same --out skips finished runs.",
    )
    d = DEFAULTS
    p.add_argument("--config", default=None, help="TOML or YAML file with any of the options below "
                                                  "(keys: long option names; the command line wins)")
    p.add_argument("--quick", action="store_const", const=True, default=None,
                   help="smoke run (about a minute): mnist5k 1000/500, widths 20 40, 8 epochs, one seed")
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
                   help=f"sparse-mc: seed of the draws, fixed before drawing (default {d['mc_seed']})")
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


def run_reproduce_cli(args: argparse.Namespace) -> int:
    """Entry point of ``sparsebound reproduce`` (errors propagate to the CLI)."""
    cli = {k: getattr(args, k) for k in ALLOWED_KEYS if getattr(args, k, None) is not None}
    cfg = resolve_config(cli, config_file=getattr(args, "config", None))
    if "proximal" in cli and "proximal" not in cfg["posteriors"]:
        print("note: --proximal is used only with --posteriors proximal (add it to train proximal posteriors)")
    results = run_reproduce(cfg)
    out = Path(cfg["out"])
    print(f"report: {out / 'report.md'}  (results: {out / 'results.json'}, {out / 'results.csv'}; "
          f"figures: {out / 'figures'})")
    del results
    return 0


# ======================================================================================
# configuration
# ======================================================================================


def _read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config file into a flat dict with '_' keys."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; give an existing TOML or YAML file")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    data: Any
    if suffix == ".toml":
        data = _parse_toml(text, p)
    elif suffix in (".yaml", ".yml"):
        data = _parse_yaml(text, p)
    else:
        try:
            data = _parse_toml(text, p)
        except ConfigError:
            data = _parse_yaml(text, p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a table of options, got {type(data).__name__}")
    if set(data) == {"reproduce"} and isinstance(data["reproduce"], dict):
        data = data["reproduce"]
    out: dict[str, Any] = {}
    unknown = []
    for k, v in data.items():
        key = str(k).strip().replace("-", "_")
        if key not in ALLOWED_KEYS:
            unknown.append(str(k))
            continue
        out[key] = v
    if unknown:
        allowed = ", ".join(k.replace("_", "-") for k in ALLOWED_KEYS)
        raise ConfigError(f"unknown key(s) {', '.join(repr(u) for u in unknown)} in config file {str(p)!r}; "
                          f"allowed keys: {allowed}")
    return out


def _parse_toml(text: str, p: Path) -> Any:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse TOML config {str(p)!r}: {str(exc).splitlines()[0]}") from None


def _parse_yaml(text: str, p: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML config {str(p)!r}: {' '.join(str(exc).split())}") from None


def _as_int(name: str, v: Any, minimum: int | None = None) -> int:
    if isinstance(v, bool):
        raise ConfigError(f"{name} must be an integer, got {v!r}")
    if isinstance(v, int):
        out = v
    elif isinstance(v, float) and v.is_integer():
        out = int(v)
    else:
        try:
            out = int(str(v).strip())
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {v!r}") from None
    if minimum is not None and out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {out}")
    return out


def _as_float(name: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{name} must be a number, got {v!r}")
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be finite, got {v!r}")
    return out


def _as_list(name: str, v: Any) -> list[Any]:
    if isinstance(v, str):
        v = v.replace(",", " ").split()
    if not isinstance(v, list | tuple):
        v = [v]
    if len(v) == 0:
        raise ConfigError(f"{name} needs at least one value")
    return list(v)


def _as_bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {v!r}")


def _as_lambda(v: Any) -> float:
    """One lambda of the proximal grid: a number > 0 or ``inf`` (posterior = prior)."""
    if isinstance(v, bool):
        raise ConfigError(f"--proximal values must be numbers > 0 or inf, got {v!r}")
    try:
        lam = float(str(v).strip()) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"--proximal values must be numbers > 0 or inf, got {v!r}") from None
    if math.isnan(lam) or not lam > 0:
        raise ConfigError(f"--proximal values must be > 0 (or inf: posterior = prior), got {v!r}; "
                          "the unpenalised posterior is --posteriors standard")
    return lam


def _as_profiles(v: Any, depth: int) -> list[list[float]]:
    """``--sigma-profiles``: zero or more per-layer profiles of ``depth`` positive numbers each."""
    if v is None or v == "":
        return []
    if isinstance(v, str):
        v = v.split()
    if not isinstance(v, list | tuple):
        raise ConfigError(f"--sigma-profiles must be a list of profiles such as 1,1,1, got {v!r}")
    out: list[list[float]] = []
    for prof in v:
        items = prof.replace(",", " ").split() if isinstance(prof, str) else prof
        if not isinstance(items, list | tuple):
            items = [items]
        vals = [_as_float("--sigma-profiles", x) for x in items]
        if len(vals) != depth:
            raise ConfigError(f"sigma profile {prof!r} has {len(vals)} entries but the network has depth "
                              f"K = {depth}; give {depth} comma-separated numbers per profile")
        if any(not x > 0 for x in vals):
            raise ConfigError(f"sigma profile {prof!r} must have positive entries")
        if vals not in out:
            out.append(vals)
    return out


def resolve_config(cli: dict[str, Any], config_file: str | None = None) -> dict[str, Any]:
    """Merge :data:`DEFAULTS` < ``--quick`` settings < config file < command line, and check it.

    Returns the resolved, typed configuration (the one saved as ``config.json``).

    Raises:
        ConfigError: unknown config keys, values of the wrong type or out of range
            (widths not positive integers, depth < 2, alpha or delta outside (0, 1), ...).
    """
    from .data import DATASETS
    from .network import resolve_device
    from .training import TrainConfig

    file_vals = _read_config_file(config_file) if config_file else {}
    quick = _as_bool("quick", cli.get("quick", file_vals.get("quick", False)))
    layers = [dict(DEFAULTS), dict(QUICK) if quick else {}, file_vals, cli]
    raw: dict[str, Any] = {}
    for layer in layers:
        raw.update(layer)
    raw["quick"] = quick

    c: dict[str, Any] = {"quick": quick}
    ds = str(raw["dataset"]).strip().lower().replace("_", "-")
    if ds not in DATASETS:
        raise ConfigError(f"unknown dataset {raw['dataset']!r}; use one of {', '.join(DATASETS)}")
    c["dataset"] = ds
    c["data_dir"] = None if raw["data_dir"] in (None, "") else str(raw["data_dir"])
    c["n_train"] = None if raw["n_train"] is None else _as_int("--n-train", raw["n_train"], 1)
    c["n_test"] = None if raw["n_test"] is None else _as_int("--n-test", raw["n_test"], 1)
    c["split_seed"] = _as_int("--split-seed", raw["split_seed"], 0)
    widths = [_as_int("--widths", w) for w in _as_list("--widths", raw["widths"])]
    if any(w < 1 for w in widths):
        raise ConfigError(f"--widths must be positive integers, got {widths}")
    c["widths"] = sorted(set(widths))
    c["depth"] = _as_int("--depth", raw["depth"])
    if c["depth"] < 2:
        raise ConfigError(f"--depth must be >= 2 (at least one hidden layer), got {c['depth']}")
    seeds = [_as_int("--seeds", s, 0) for s in _as_list("--seeds", raw["seeds"])]
    c["seeds"] = list(dict.fromkeys(seeds))
    # alphas: the highest layer (command line > file > quick > defaults) naming either option wins
    name, val = "--prior-fraction", DEFAULTS["prior_fraction"]
    for layer in reversed(layers):
        many, one = layer.get("prior_fractions"), layer.get("prior_fraction")
        if many is not None and one is not None:
            raise ConfigError("give either --prior-fraction or --prior-fractions, not both")
        if many is not None or one is not None:
            name, val = ("--prior-fractions", many) if many is not None else ("--prior-fraction", one)
            break
    alphas = [_as_float(name, a) for a in _as_list(name, val)]
    bad_a = [a for a in alphas if not (0.0 < a < 1.0)]
    if bad_a:
        raise ConfigError(f"{name} must lie in (0, 1), got {_g(bad_a[0])}")
    c["prior_fractions"] = sorted(set(alphas))
    posts = [str(p).strip().lower() for p in _as_list("--posteriors", raw["posteriors"])]
    bad = [p for p in posts if p not in ("standard", "proximal")]
    if bad:
        raise ConfigError(f"--posteriors must be 'standard' and/or 'proximal', got {bad}")
    c["posteriors"] = [p for p in ("standard", "proximal") if p in posts]
    lams = [_as_lambda(v) for v in _as_list("--proximal", raw["proximal"])]
    c["proximal"] = sorted(set(lams))
    methods = [str(m).strip().lower() for m in _as_list("--methods", raw["methods"])]
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        raise ConfigError(f"unknown method(s) {', '.join(bad)} in --methods; choose from {', '.join(ALL_METHODS)}")
    c["methods"] = [m for m in ALL_METHODS if m in methods]
    c["mc_draws"] = _as_int("--mc-draws", raw["mc_draws"], 1)
    c["mc_batch"] = _as_int("--mc-batch", raw["mc_batch"], 1)
    c["mc_seed"] = _as_int("--mc-seed", raw["mc_seed"], 0)
    c["mc_delta_fraction"] = _as_float("--mc-delta-fraction", raw["mc_delta_fraction"])
    if not (0.0 < c["mc_delta_fraction"] < 1.0):
        raise ConfigError(f"--mc-delta-fraction must lie in (0, 1), got {c['mc_delta_fraction']}")
    c["sigma_profiles"] = _as_profiles(raw["sigma_profiles"], c["depth"])
    if raw["budget_minutes"] in (None, ""):
        c["budget_minutes"] = None
    else:
        c["budget_minutes"] = _as_float("--budget-minutes", raw["budget_minutes"])
        if not c["budget_minutes"] > 0:
            raise ConfigError(f"--budget-minutes must be positive, got {c['budget_minutes']}")
    for name in ("delta", "eta1", "eta2"):
        c[name] = _as_float(f"--{name}", raw[name])
        if not (0.0 < c[name] < 1.0):
            raise ConfigError(f"--{name} must lie in (0, 1), got {c[name]}")
    c["device"] = str(raw["device"]).strip()
    resolve_device(c["device"])
    c["out"] = str(raw["out"])
    c["max_epochs"] = _as_int("--max-epochs", raw["max_epochs"], 0)
    c["lr"] = _as_float("--lr", raw["lr"])
    c["momentum"] = _as_float("--momentum", raw["momentum"])
    c["batch_size"] = _as_int("--batch-size", raw["batch_size"], 1)
    c["target_error"] = _as_float("--target-error", raw["target_error"])
    c["exact_rounds"] = _as_int("--exact-rounds", raw["exact_rounds"], 0)
    c["no_rescale"] = _as_bool("no-rescale", raw["no_rescale"])
    c["quiet"] = _as_bool("quiet", raw["quiet"])
    TrainConfig(lr=c["lr"], momentum=c["momentum"], batch_size=c["batch_size"], max_epochs=c["max_epochs"],
                target_error=c["target_error"])  # raises ConfigError on bad values
    c["threads"] = None if raw["threads"] in (None, "") else _as_int("--threads", raw["threads"], 1)
    c["config_file"] = None if config_file is None else str(config_file)
    return c


# ======================================================================================
# the runs
# ======================================================================================


@dataclass(frozen=True)
class _Job:
    """One run: the init-prior network, or one posterior of a data-dependent prior."""

    seed: int
    width: int
    kind: str  # run name: init, ddp-standard, ddp-proximal, ddp-standard-a0.5, ddp-proximal-a0.5-l1, ...
    posterior: str | None = None  # None for init
    alpha: float | None = None
    lam: float | None = None  # proximal lambda (None for init and standard)

    @property
    def id(self) -> str:
        return f"w{self.width}-s{self.seed}/{self.kind}"

    @property
    def trains_posterior(self) -> bool:
        return not (self.lam is not None and math.isinf(self.lam))


@dataclass(frozen=True)
class _Settings:
    """The values a (seed, width) block runs with (scaled by ``--budget-minutes``)."""

    max_epochs: int
    mc_draws: int | None  # None when sparse-mc is not computed

    def record(self, c: dict[str, Any], plan: dict[str, Any] | None) -> dict[str, Any]:
        return {"max_epochs": self.max_epochs, "max_epochs_requested": c["max_epochs"],
                "mc_draws": self.mc_draws, "mc_draws_requested": c["mc_draws"] if self.mc_draws is not None else None,
                "scaled_by_budget": plan is not None and (self.max_epochs != c["max_epochs"] or (
                    self.mc_draws is not None and self.mc_draws != c["mc_draws"])),
                "budget_minutes": c["budget_minutes"], "budget_plan": plan}


def _tag(x: float) -> str:
    """A number as it appears in run names (0.5, 0.01, 1, 1e-05, inf)."""
    return "inf" if math.isinf(x) else format(x, "g")


def _jobs(c: dict[str, Any]) -> list[_Job]:
    """Every run, in order: per seed and width, init, then per alpha its posteriors."""
    prox = c["proximal"] if "proximal" in c["posteriors"] else []
    sweep = len(c["prior_fractions"]) > 1 or len(prox) > 1
    jobs = []
    for s in c["seeds"]:
        for w in c["widths"]:
            jobs.append(_Job(s, w, "init"))
            for a in c["prior_fractions"]:
                if "standard" in c["posteriors"]:
                    jobs.append(_Job(s, w, f"ddp-standard-a{_tag(a)}" if sweep else "ddp-standard",
                                     "standard", a, None))
                for lam in prox:
                    jobs.append(_Job(s, w, f"ddp-proximal-a{_tag(a)}-l{_tag(lam)}" if sweep else "ddp-proximal",
                                     "proximal", a, lam))
    return jobs


def _data_spec(c: dict[str, Any]):
    from .experiments import DataSpec

    return DataSpec(dataset=c["dataset"], data_dir=c["data_dir"], split_seed=c["split_seed"],
                    n_train=c["n_train"], n_test=c["n_test"])


def _train_config(c: dict[str, Any], seed: int, max_epochs: int | None = None):
    from .training import TrainConfig

    return TrainConfig(lr=c["lr"], momentum=c["momentum"], batch_size=c["batch_size"],
                       max_epochs=c["max_epochs"] if max_epochs is None else max_epochs,
                       target_error=c["target_error"], seed=seed, device=c["device"])


def _strip(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _run_config(c: dict[str, Any], job: _Job, st: _Settings) -> dict[str, Any]:
    """Everything that determines one run's results (compared on resume)."""
    rc: dict[str, Any] = {
        "data": _strip(_data_spec(c).to_dict(), "data_dir"),
        "hidden": [job.width] * (c["depth"] - 1),
        "seed": job.seed,
        "training": _strip(_train_config(c, job.seed, st.max_epochs).to_dict(), "device"),
        "kind": job.kind,
        "delta": c["delta"],
        "eta1": c["eta1"],
        "eta2": c["eta2"],
        "methods": list(c["methods"]),
        "exact_rounds": c["exact_rounds"],
        "rescale": not c["no_rescale"],
    }
    if job.posterior is not None:
        rc["prior_fraction"] = job.alpha
        rc["posterior"] = job.posterior
        rc["proximal"] = job.lam if job.posterior == "proximal" else 0.0
    if c["sigma_profiles"]:
        rc["sigma_profiles"] = c["sigma_profiles"]
    if "sparse-mc" in c["methods"]:
        rc["mc"] = {"draws": st.mc_draws, "seed": c["mc_seed"], "delta_fraction": c["mc_delta_fraction"],
                    "max_evals": MC_MAX_EVALS}
    return to_jsonable(rc)


def _same_data_arch(meta: dict[str, Any], c: dict[str, Any], hidden: list[int], seed: int) -> bool:
    return (_strip(meta.get("data", {}), "data_dir") == _strip(_data_spec(c).to_dict(), "data_dir")
            and list(meta["architecture"]["widths"][1:-1]) == hidden and int(meta["seed"]) == seed
            and not meta["architecture"].get("bias", False))


def _prior_matches(meta: dict[str, Any], c: dict[str, Any], job: _Job, st: _Settings) -> bool:
    """Whether a prior checkpoint on disk was trained with this run's settings."""
    try:
        hidden = [job.width] * (c["depth"] - 1)
        want_cfg = to_jsonable(_strip(_train_config(c, job.seed, st.max_epochs).to_dict(), "device"))
        bs = meta["bound_sample"]
        return (_same_data_arch(meta, c, hidden, job.seed) and meta["prior"].get("kind") == "init"
                and bs.get("kind") == "bound-split" and float(bs["prior_fraction"]) == float(job.alpha)
                and int(bs["seed"]) == job.seed
                and _strip(meta["training"]["config"], "device") == want_cfg)
    except (KeyError, TypeError, ValueError):
        return False


def _checkpoint_matches(meta: dict[str, Any], c: dict[str, Any], job: _Job, st: _Settings) -> bool:
    """Whether a checkpoint on disk was trained with this run's settings."""
    try:
        hidden = [job.width] * (c["depth"] - 1)
        want_cfg = to_jsonable(_strip(_train_config(c, job.seed, st.max_epochs).to_dict(), "device"))
        if not _same_data_arch(meta, c, hidden, job.seed):
            return False
        pr = meta["prior"]
        if job.posterior is None:
            return pr.get("kind") == "init" and _strip(meta["training"]["config"], "device") == want_cfg
        prox = job.lam if job.posterior == "proximal" else 0.0
        return (pr.get("kind") == "data-dependent" and pr.get("posterior") == job.posterior
                and float(pr.get("proximal", 0.0)) == float(prox)
                and float(meta["bound_sample"]["prior_fraction"]) == float(job.alpha)
                and _strip(pr["prior_training"]["config"], "device") == want_cfg
                and _strip(meta["training"]["config"], "device") == to_jsonable({**want_cfg, "proximal": prox}))
    except (KeyError, TypeError, ValueError):
        return False


def _same_net(a: Any, b: Any) -> bool:
    import torch

    if a is None or b is None or len(a.weights) != len(b.weights) or a.has_bias != b.has_bias:
        return False
    if not all(torch.equal(x, y) for x, y in zip(a.weights, b.weights, strict=True)):
        return False
    return a.biases is None or all(torch.equal(x, y) for x, y in zip(a.biases, b.biases, strict=True))


def _training_summary(meta: dict[str, Any], reused: bool) -> dict[str, Any]:
    tr = meta.get("training", {})
    out = {
        "epochs": tr.get("epochs"),
        "reached_target": tr.get("reached_target"),
        "train_error": meta.get("train_error"),
        "test_error": meta.get("test_error"),
        "seconds": tr.get("seconds"),
        "config": tr.get("config"),
        "reused_checkpoint": reused,
    }
    pr = meta.get("prior", {})
    if pr.get("kind") == "data-dependent":
        ptr = pr.get("prior_training") or {}
        out["prior"] = {
            "train_error": pr.get("prior_train_error"),
            "test_error": pr.get("prior_test_error"),
            "epochs": ptr.get("epochs"),
            "reached_target": ptr.get("reached_target"),
            "seconds": ptr.get("seconds"),
            "checkpoint": pr.get("checkpoint"),
            "tensor_sha256": pr.get("tensor_sha256"),
        }
        out["posterior"] = pr.get("posterior")
        out["proximal"] = pr.get("proximal")
        out["bound_split"] = meta.get("bound_sample")
    return out


class _Context:
    """State shared by the runs of one invocation: data, shared priors, budget."""

    def __init__(self, c: dict[str, Any], spec: Any, splits: Any, progress: bool) -> None:
        self.c, self.spec, self.splits, self.progress = c, spec, splits, progress
        self.out = Path(c["out"])
        self.priors: dict[tuple[int, int, float], Any] = {}
        self.priors_trained: list[str] = []
        self.budget: _Budget | None = None

    def block_dir(self, job: _Job) -> Path:
        return self.out / "runs" / f"w{job.width}-s{job.seed}"

    def prior_dir(self, job: _Job) -> Path:
        return self.block_dir(job) / f"prior-a{_tag(float(job.alpha))}"

    def prior(self, job: _Job, st: _Settings) -> Any:
        """The data-dependent prior of ``job``: trained once per (width, seed, alpha), then reused."""
        from .checkpoint import load_checkpoint
        from .experiments import train_prior

        key = (job.width, job.seed, float(job.alpha))
        if key in self.priors:
            return self.priors[key]
        pdir = self.prior_dir(job)
        try:
            ck = load_checkpoint(pdir)
            if _prior_matches(ck.meta, self.c, job, st):
                self.priors[key] = ck
                return ck
        except CheckpointError:
            pass
        t0 = time.perf_counter()
        ck = train_prior(pdir, data=self.spec, hidden=[job.width] * (self.c["depth"] - 1),
                         prior_fraction=float(job.alpha), seed=job.seed,
                         config=_train_config(self.c, job.seed, st.max_epochs), splits=self.splits,
                         progress=self.progress)
        if self.budget is not None:
            self.budget.observe_training(job.width, ck.meta, time.perf_counter() - t0)
        self.priors[key] = ck
        self.priors_trained.append(f"w{job.width}-s{job.seed}/{pdir.name}")
        return ck


def _get_checkpoint(ctx: _Context, rdir: Path, job: _Job, st: _Settings, prior: Any):
    """Load a matching checkpoint from ``rdir`` or train one there (from the shared prior)."""
    from .checkpoint import load_checkpoint
    from .experiments import train_checkpoint

    c = ctx.c
    hidden = [job.width] * (c["depth"] - 1)
    try:
        ck = load_checkpoint(rdir)
        if _checkpoint_matches(ck.meta, c, job, st) and (prior is None or _same_net(ck.prior, prior.network)):
            return ck, True
    except CheckpointError:
        pass
    cfg = _train_config(c, job.seed, st.max_epochs)
    t0 = time.perf_counter()
    if job.posterior is None:
        ck = train_checkpoint(rdir, data=ctx.spec, hidden=hidden, seed=job.seed, config=cfg, prior_fraction=None,
                              splits=ctx.splits, progress=ctx.progress)
    else:
        ck = train_checkpoint(rdir, data=ctx.spec, hidden=hidden, seed=job.seed, config=cfg,
                              prior_fraction=job.alpha, posterior=job.posterior,
                              proximal=job.lam if job.posterior == "proximal" else 0.0,
                              splits=ctx.splits, progress=ctx.progress, prior=prior)
    if ctx.budget is not None and job.trains_posterior:
        ctx.budget.observe_training(job.width, ck.meta, time.perf_counter() - t0)
    return ck, False


def _certify_run(ctx: _Context, ck: Any, job: _Job, st: _Settings):
    from .certificate import certify
    from .experiments import bound_sample
    from .pacbayes import SigmaGrid

    c, splits = ctx.c, ctx.splits
    if job.posterior is None:
        bs, desc = bound_sample(ck, splits, prior="init")
        prior, prior_kind = ck.init, "init"
    else:
        bs, desc = bound_sample(ck, splits, prior="recorded")
        prior, prior_kind = ck.prior, "data-dependent"
    grid = SigmaGrid(profiles=tuple(tuple(float(x) for x in p) for p in c["sigma_profiles"]))
    cert = certify(ck.network, bs.X, bs.y, prior=prior, init=ck.init, delta=c["delta"], methods=list(c["methods"]),
                   prior_kind=prior_kind, X_test=splits.test.X, y_test=splits.test.y, radius=bs.radius,
                   eta1=c["eta1"], eta2=c["eta2"], sigma_grid=grid, rescale=not c["no_rescale"],
                   exact_rounds=c["exact_rounds"], mc_draws=st.mc_draws or c["mc_draws"], mc_seed=c["mc_seed"],
                   mc_batch=c["mc_batch"],
                   mc_delta_fraction=c["mc_delta_fraction"], mc_max_evals=MC_MAX_EVALS, device=c["device"],
                   progress=ctx.progress)
    return cert, desc, prior


def _finished(cert_path: Path, rc: dict[str, Any], job: _Job, ctx: _Context) -> dict[str, Any] | None:
    """The finished record of a run, when it was computed with this configuration (and prior)."""
    if not cert_path.is_file():
        return None
    try:
        rec = load_json(cert_path)
    except (OSError, ValueError):
        return None
    if rec.get("run_config") != rc:
        return None
    if job.posterior is None:
        return rec if (cert_path.parent / "sparsity.json").is_file() else None
    sha = (rec.get("prior_checkpoint") or {}).get("tensor_sha256")
    key = (job.width, job.seed, float(job.alpha))
    if sha is not None:
        if key in ctx.priors:
            now = ctx.priors[key].meta.get("tensor_sha256")
        else:
            try:
                now = load_json(ctx.prior_dir(job) / "checkpoint.json").get("tensor_sha256")
            except (OSError, ValueError):
                now = None
        if now is not None and now != sha:
            return None  # the shared prior was retrained since: recompute from it
    return rec


def _one_run(ctx: _Context, job: _Job, st: _Settings, plan: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """Train (or reuse), analyse, certify and save one run; returns (record, skipped)."""
    c, splits, progress = ctx.c, ctx.splits, ctx.progress
    rdir = ctx.block_dir(job) / job.kind
    cert_path = rdir / "certificate.json"
    rc = _run_config(c, job, st)
    rec = _finished(cert_path, rc, job, ctx)
    if rec is not None:
        return rec, True
    t_run = time.perf_counter()
    t0 = time.perf_counter()
    prior_ck = None
    n_trained = len(ctx.priors_trained)
    if job.posterior is not None:
        prior_ck = ctx.prior(job, st)
    prior_trained_now = len(ctx.priors_trained) > n_trained
    t_prior = time.perf_counter() - t0
    ck, reused = _get_checkpoint(ctx, rdir, job, st, prior_ck)
    t_train = time.perf_counter() - t0
    timings: dict[str, Any] = {"training_s": t_train}
    if job.posterior is not None:
        timings["prior_training_s"] = t_prior if prior_trained_now else 0.0
    sparsity_summary = None
    if job.posterior is None:
        from .analysis import analyse_sparsity

        t0 = time.perf_counter()
        rep = analyse_sparsity(ck.network, splits.train.X, device=c["device"], progress=progress)
        timings["sparsity_s"] = time.perf_counter() - t0
        if ctx.budget is not None:
            ctx.budget.observe("sparsity", job.width, timings["sparsity_s"] / len(splits.train))
        sparsity_summary = rep.to_dict()
        dump_json(rdir / "sparsity.json", {
            "summary": sparsity_summary,
            "per_sample": {"activity_ratios": rep.activity_ratios, "active_fractions": rep.active_fractions,
                           "mid_radii": list(rep.mid_radii)},
        })
    t0 = time.perf_counter()
    cert, desc, prior = _certify_run(ctx, ck, job, st)
    timings["certify_s"] = time.perf_counter() - t0
    timings["certify"] = dict(cert.timings)
    timings["total_s"] = time.perf_counter() - t_run
    if ctx.budget is not None:
        ctx.budget.observe_certify(job.width, cert, timings["certify_s"], st)
    rec = cert.to_dict()
    rec["run"] = {
        "id": job.id,
        "kind": job.kind,
        "width": job.width,
        "depth": c["depth"],
        "hidden": [job.width] * (c["depth"] - 1),
        "seed": job.seed,
        "prior_kind": "init" if job.posterior is None else "data-dependent",
        "posterior": job.posterior,
        "prior_fraction": job.alpha,
        "proximal": job.lam,
        "dataset": c["dataset"],
    }
    rec["run_config"] = rc
    rec["settings"] = st.record(c, plan)
    rec["checkpoint"] = str(rdir)
    if prior_ck is not None:
        rec["prior_checkpoint"] = {"path": str(ctx.prior_dir(job)), "tensor_sha256": prior_ck.meta.get("tensor_sha256"),
                                   "trained_for_this_run": prior_trained_now}
    rec["bound_sample"] = desc
    rec["train_error"] = ck.meta.get("train_error")
    rec["distance_to_prior_fro"] = ck.network.distance_to(prior)
    rec["distance_to_init_fro"] = ck.network.distance_to(ck.init)
    rec["training"] = _training_summary(ck.meta, reused)
    if sparsity_summary is not None:
        rec["sparsity"] = sparsity_summary
    rec["timings"] = timings
    dump_json(cert_path, rec)
    return load_json(cert_path), False


def _run_line(rec: dict[str, Any], skipped: bool) -> str:
    r = rec["run"]
    res = rec["results"]

    def val(m: str) -> str:
        v = _num(res.get(m, {}).get("unclipped"))
        return f"{v:.3g}" if v is not None else "?"

    t = rec.get("timings", {})
    tail = "loaded from disk" if skipped else (
        f"train {t.get('training_s', 0.0):.0f}s"
        + (f", sparsity {t['sparsity_s']:.0f}s" if "sparsity_s" in t else "")
        + f", certify {t.get('certify_s', 0.0):.0f}s")
    shown = [m for m in ("sparse", "sparse-mc", "dense", "neyshabur2018", "test-set") if m in res]
    return (f"{r['id']}: train err {_fmt_f(rec.get('train_error'))}, test err {_fmt_f(rec.get('test_error'))}; "
            f"unclipped " + ", ".join(f"{m} {val(m)}" for m in shown) + f" ({tail})")


def _fmt_f(v: Any) -> str:
    x = _num(v)
    return "?" if x is None else f"{x:.4f}"


def run_reproduce(c: dict[str, Any]) -> dict[str, Any]:
    """Run the sweep described by a resolved config (see :func:`resolve_config`).

    Returns the ``results.json`` record.

    Raises:
        ConfigError / DataError: unwritable output folder, data that cannot be loaded
            (both checked before any training).
    """
    import torch

    if c.get("threads"):
        old_threads = torch.get_num_threads()
        torch.set_num_threads(int(c["threads"]))
        try:
            return _run_reproduce(c)
        finally:
            torch.set_num_threads(old_threads)
    return _run_reproduce(c)


def _run_reproduce(c: dict[str, Any]) -> dict[str, Any]:
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = ensure_writable_dir(c["out"])
    spec = _data_spec(c)
    splits = spec.load()
    dump_json(out / "config.json", c)
    progress = not c["quiet"]
    ctx = _Context(c, spec, splits, progress)
    jobs = _jobs(c)
    say = print if not progress else (lambda s: tqdm.write(s))
    if c["budget_minutes"] is not None:
        ctx.budget = _Budget(c, splits, jobs, t_start, say)
    records: list[dict[str, Any]] = []
    n_skipped = 0
    block: tuple[int, int] | None = None
    st = _Settings(c["max_epochs"], c["mc_draws"] if "sparse-mc" in c["methods"] else None)
    plan: dict[str, Any] | None = None
    with tqdm(total=len(jobs), desc="reproduce", unit="run", disable=None if progress else True) as bar:
        for i, job in enumerate(jobs):
            if ctx.budget is not None and block != (job.seed, job.width):
                block = (job.seed, job.width)
                st, plan = ctx.budget.plan_block(ctx.block_dir(job), jobs[i:])
            bar.set_postfix_str(job.id)
            rec, skipped = _one_run(ctx, job, st, plan)
            n_skipped += int(skipped)
            records.append(rec)
            line = _run_line(rec, skipped)
            if progress:
                bar.write(line)
            else:
                print(line)
            bar.update(1)
    _warn_prior_mismatch(records, say)
    results = _assemble(c, records, splits, time.perf_counter() - t_start, n_skipped, ctx)
    dump_json(out / "results.json", results)
    atomic_write_text(out / "results.csv", _csv_text(results))
    results = load_json(out / "results.json")
    figs = make_figures(results, out)
    results["figures"] = figs
    dump_json(out / "results.json", results)
    atomic_write_text(out / "report.md", build_report(results))
    return results


def _warn_prior_mismatch(records: list[dict[str, Any]], say: Any) -> None:
    """Posteriors of one (width, seed, alpha) must share one prior; say so when a resumed run did not."""
    shas: dict[tuple[Any, Any, Any], set[str]] = {}
    for r in records:
        sha = (r.get("prior_checkpoint") or {}).get("tensor_sha256")
        if sha is not None:
            shas.setdefault((r["run"]["width"], r["run"]["seed"], r["run"].get("prior_fraction")), set()).add(sha)
    for (w, s, a), v in shas.items():
        if len(v) > 1:
            say(f"warning: the posteriors of w{w}-s{s} with alpha {a} come from {len(v)} different prior "
                "checkpoints (a prior was retrained between invocations); delete their certificate.json to "
                "recompute them from one prior")


# ======================================================================================
# time budget (--budget-minutes)
# ======================================================================================

#: cost components of the budget model (seconds per sample, per width).
_COSTS = ("epoch", "train_fixed", "certify", "certify_fixed", "mc", "mc_fixed", "sparsity")


class _Budget:
    """Scale ``max_epochs`` and ``mc_draws`` so that the sweep fits in ``--budget-minutes``.

    Cost model per width (seconds): a training of E epochs on n points costs
    ``E n epoch + (n + n_test) train_fixed``; a certification on m bound points
    ``certify_fixed + m certify + N (mc_fixed + m mc)`` (N sparse-mc draws); the
    sparsity analysis ``n sparsity``.  The rates are calibrated before the first block
    with a throwaway network of every width (one epoch on a subset; certifications on
    two subset sizes, whose difference separates the per-sample from the fixed
    cost), then the per-sample rates are replaced by what the runs measure (for widths
    not measured yet, the calibrated rate times the median measured/calibrated ratio
    of the other widths when that ratio is above one, at most four).  At the start of every
    (seed, width) block one scale s in [0, 1] is chosen, the largest for which the
    estimated cost of all remaining runs fits in the time left, and
    ``max_epochs = round(s E)``, ``mc_draws = round(s N)`` (at least
    :data:`MIN_EPOCHS` / :data:`MIN_DRAWS`, at most the requested values) are fixed
    for the whole block, saved in ``budget.json`` of the block (so that a resumed
    run uses the same values) and recorded in every run.
    """

    def __init__(self, c: dict[str, Any], splits: Any, jobs: list[_Job], t_start: float, say: Any) -> None:
        self.c, self.splits, self.jobs, self.t_start, self.say = c, splits, jobs, t_start, say
        self.seconds = float(c["budget_minutes"]) * 60.0
        self.mc = "sparse-mc" in c["methods"]
        self.calibrated: dict[str, dict[int, float]] = {k: {} for k in _COSTS}
        self.measured: dict[str, dict[int, float]] = {k: {} for k in _COSTS}
        self.calibration_s: float | None = None
        self.blocks: list[dict[str, Any]] = []
        self.n_train, self.n_test = len(splits.train), len(splits.test)

    # ---- measurements -------------------------------------------------------------
    def observe(self, what: str, width: int, rate: float) -> None:
        if rate >= 0 and math.isfinite(rate):
            self.measured[what][width] = rate

    def observe_training(self, width: int, meta: dict[str, Any], wall_s: float) -> None:
        tr = meta.get("training") or {}
        epochs, sec = int(tr.get("epochs") or 0), float(tr.get("seconds") or 0.0)
        n = int((meta.get("bound_sample") or {}).get("n_prior") or 0) if meta.get("role") else self.n_train
        n = n or self.n_train
        if epochs > 0:
            self.observe("epoch", width, sec / (epochs * n))
        self.observe("train_fixed", width, max(0.0, wall_s - sec) / (n + self.n_test))

    def observe_certify(self, width: int, cert: Any, seconds: float, st: _Settings) -> None:
        mc = float(cert.timings.get("sparse_mc", 0.0))
        fixed = self.rate("certify_fixed", width)
        self.observe("certify", width, max(0.0, seconds - fixed - mc) / cert.m)
        if self.mc and st.mc_draws:
            per_draw = min(cert.m, self.c["mc_batch"])  # samples evaluated per draw
            self.observe("mc", width, max(0.0, mc / st.mc_draws - self.rate("mc_fixed", width)) / per_draw)

    def rate(self, what: str, width: int) -> float:
        if width in self.measured[what]:
            return self.measured[what][width]
        cal = self.calibrated[what].get(width, 0.0)
        ratios = [v / self.calibrated[what][w] for w, v in self.measured[what].items()
                  if self.calibrated[what].get(w, 0.0) > 0]
        if ratios:
            ratios.sort()
            # upward only (and at most 4x): a budget is better under-used than overrun
            cal *= min(4.0, max(1.0, ratios[len(ratios) // 2]))
        return cal

    # ---- calibration ---------------------------------------------------------------
    def calibrate(self) -> None:
        """Time a short training, a certification and the sparsity analysis of a throwaway
        network of every width on a small subset (nothing is saved)."""
        import numpy as np

        from .analysis import analyse_sparsity
        from .training import init_network, train

        t_cal = time.perf_counter()
        c, tr, te = self.c, self.splits.train, self.splits.test
        n_c, m_c = min(len(tr), 2000), min(len(tr), 1000)
        sub = tr.subset(np.arange(n_c))
        # the per-epoch test evaluation, in proportion
        sub_te = te.subset(np.arange(max(1, min(len(te), round(n_c * len(te) / len(tr))))))
        bsub = tr.subset(np.arange(m_c))
        tsub = te.subset(np.arange(min(len(te), m_c)))
        draws = min(c["mc_draws"], 3)
        widths = sorted({j.width for j in self.jobs})
        # warm-up (first-call overheads must not enter any rate)
        net = init_network(tr.input_dim, [widths[0]] * (c["depth"] - 1), tr.n_classes, seed=0)
        warm = train(net, tr.subset(np.arange(min(len(tr), 64))), _train_config(c, 0, 1), progress=False)
        analyse_sparsity(warm.network, bsub.X[:16], device=c["device"], progress=False)
        self._certify_once(warm.network, net, tr.subset(np.arange(min(len(tr), 16))), te.subset(np.arange(
            min(len(te), 16))), min(draws, 1))
        for w in widths:
            net = init_network(tr.input_dim, [w] * (c["depth"] - 1), tr.n_classes, seed=0)
            res = train(net, sub, _train_config(c, 0, 1), test=sub_te, progress=False)
            self.calibrated["epoch"][w] = float(res.curve[-1]["seconds"]) / n_c if res.curve else 0.0
            t0 = time.perf_counter()
            res.network.error_rate(bsub.X, bsub.y)
            self.calibrated["train_fixed"][w] = (time.perf_counter() - t0) / m_c
            t0 = time.perf_counter()
            analyse_sparsity(res.network, bsub.X, device=c["device"], progress=False)
            self.calibrated["sparsity"][w] = (time.perf_counter() - t0) / m_c
            # two sizes: the difference is the per-sample cost, the rest is fixed (the larger size
            # first, so that first-call overheads inflate the per-sample estimate, not the fixed one)
            pts = []
            for m_k in sorted({max(8, m_c // 4), m_c}, reverse=True):
                sec, mc = self._certify_once(res.network, net, tr.subset(np.arange(m_k)), tsub, draws)
                pts.append((m_k, sec - mc, mc / max(1, draws)))
            (m2, c2, d2), (m1, c1, d1) = pts[0], pts[-1]
            slope = max(0.0, (c2 - c1) / (m2 - m1)) if m2 > m1 else c2 / m2
            self.calibrated["certify"][w] = slope
            self.calibrated["certify_fixed"][w] = max(0.0, c2 - slope * m2)
            mslope = max(0.0, (d2 - d1) / (m2 - m1)) if m2 > m1 else d2 / m2
            self.calibrated["mc"][w] = mslope if self.mc else 0.0
            self.calibrated["mc_fixed"][w] = max(0.0, d2 - mslope * m2) if self.mc else 0.0
        self.calibration_s = time.perf_counter() - t_cal

    def _certify_once(self, net: Any, prior: Any, bs: Any, ts: Any, draws: int) -> tuple[float, float]:
        """(seconds, sparse-mc seconds) of one certification as the runs do it."""
        from .certificate import certify
        from .pacbayes import SigmaGrid

        c = self.c
        profiles = tuple(tuple(float(x) for x in p) for p in c["sigma_profiles"])
        t0 = time.perf_counter()
        cert = certify(net, bs.X, bs.y, prior=prior, init=prior, delta=c["delta"], methods=list(c["methods"]),
                       X_test=ts.X, y_test=ts.y, radius=bs.radius, eta1=c["eta1"], eta2=c["eta2"],
                       sigma_grid=SigmaGrid(profiles=profiles), rescale=not c["no_rescale"],
                       exact_rounds=c["exact_rounds"], mc_draws=draws, mc_seed=c["mc_seed"], mc_batch=c["mc_batch"],
                       mc_delta_fraction=c["mc_delta_fraction"], mc_max_evals=MC_MAX_EVALS, device=c["device"],
                       progress=False)
        return time.perf_counter() - t0, float(cert.timings.get("sparse_mc", 0.0))

    # ---- planning ------------------------------------------------------------------
    def _values(self, s: float) -> _Settings:
        e0, n0 = self.c["max_epochs"], self.c["mc_draws"]
        e = min(e0, max(min(MIN_EPOCHS, e0), round(s * e0)))
        n = min(n0, max(min(MIN_DRAWS, n0), round(s * n0))) if self.mc else None
        return _Settings(int(e), None if n is None else int(n))

    def estimate(self, jobs: list[_Job], st: _Settings) -> float:
        """Estimated seconds of ``jobs`` (priors counted once per (width, seed, alpha))."""
        n, nt = self.n_train, self.n_test
        total = 0.0
        priors: set[tuple[int, int, float]] = set()
        for j in jobs:
            w = j.width

            def training(n_pts: int, w: int = w) -> float:
                return st.max_epochs * n_pts * self.rate("epoch", w) + (n_pts + nt) * self.rate("train_fixed", w)

            if j.posterior is None:
                m = n
                total += training(n) + n * self.rate("sparsity", w)
            else:
                a = float(j.alpha)
                n_prior = round(a * n)
                m = n - n_prior
                if (w, j.seed, a) not in priors:
                    priors.add((w, j.seed, a))
                    total += training(n_prior)
                if j.trains_posterior:
                    total += training(n)
            total += self.rate("certify_fixed", w) + m * self.rate("certify", w)
            if self.mc and st.mc_draws:
                total += st.mc_draws * (self.rate("mc_fixed", w) + min(m, self.c["mc_batch"]) * self.rate("mc", w))
        return total

    def _fingerprint(self, width: int, seed: int) -> dict[str, Any]:
        c = self.c
        return to_jsonable({"data": _strip(_data_spec(c).to_dict(), "data_dir"), "depth": c["depth"],
                            "width": width, "seed": seed, "lr": c["lr"], "momentum": c["momentum"],
                            "batch_size": c["batch_size"], "target_error": c["target_error"],
                            "methods": c["methods"], "budget_minutes": c["budget_minutes"],
                            "max_epochs_requested": c["max_epochs"], "mc_draws_requested": c["mc_draws"]})

    def plan_block(self, bdir: Path, remaining: list[_Job]) -> tuple[_Settings, dict[str, Any]]:
        """The settings of the block starting ``remaining`` (reused from ``bdir/budget.json``)."""
        job = remaining[0]
        block = f"w{job.width}-s{job.seed}"
        fp = self._fingerprint(job.width, job.seed)
        path = bdir / "budget.json"
        try:
            old = load_json(path)
            if old.get("fingerprint") == fp:
                st = _Settings(int(old["max_epochs"]), old.get("mc_draws"))
                plan = {**old, "reused_plan": True}
                self.blocks.append(_strip(plan, "fingerprint", "rates"))
                self.say(f"budget: {block}: reusing the recorded plan: at most {st.max_epochs} epochs"
                         + (f", {st.mc_draws} sparse-mc draws" if st.mc_draws is not None else ""))
                return st, _strip(plan, "fingerprint")
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if self.calibration_s is None:
            self.calibrate()
            self.say(f"budget: calibrated the per-sample costs in {self.calibration_s:.0f}s")
        elapsed = time.perf_counter() - self.t_start
        left = self.seconds - elapsed - (10.0 + 0.02 * self.seconds)  # reserve: figures and report
        full = self._values(1.0)
        est_full = self.estimate(remaining, full)
        if est_full <= left:
            s, st, est = 1.0, full, est_full
        else:
            lo, hi = 0.0, 1.0
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                if self.estimate(remaining, self._values(mid)) <= left:
                    lo = mid
                else:
                    hi = mid
            s = lo
            st = self._values(s)
            est = self.estimate(remaining, st)
        plan = {"block": block, "max_epochs": st.max_epochs, "mc_draws": st.mc_draws, "scale": s,
                "estimate_s": est, "estimate_full_s": est_full, "left_s": left, "elapsed_s": elapsed,
                "n_remaining_runs": len(remaining), "fits": est <= left, "reused_plan": False,
                "rates": {k: {str(w): self.rate(k, w) for w in sorted({j.width for j in remaining})}
                          for k in _COSTS}}
        dump_json(path, {**plan, "fingerprint": fp})
        self.blocks.append(_strip(plan, "rates"))
        req = f"{self.c['max_epochs']} epochs" + (f", {self.c['mc_draws']} draws" if self.mc else "")
        got = f"{st.max_epochs} epochs" + (f", {st.mc_draws} draws" if self.mc else "")
        if s >= 1.0:
            self.say(f"budget: {block}: no scaling needed ({req}; estimated {est:.0f}s for the {len(remaining)} "
                     f"remaining runs, {max(left, 0.0):.0f}s left)")
        elif est <= left:
            self.say(f"budget: {block}: scaled {req} -> {got} (estimated {est:.0f}s for the {len(remaining)} "
                     f"remaining runs instead of {est_full:.0f}s; {left:.0f}s left)")
        else:
            self.say(f"budget: {block}: cannot fit even at the minimums; using {got} (requested {req}; estimated "
                     f"{est:.0f}s for the {len(remaining)} remaining runs, {max(left, 0.0):.0f}s left)")
        return st, plan

    def record(self, wall_s: float) -> dict[str, Any]:
        return {"budget_minutes": self.c["budget_minutes"], "wall_s": wall_s, "wall_minutes": wall_s / 60.0,
                "max_epochs_requested": self.c["max_epochs"],
                "mc_draws_requested": self.c["mc_draws"] if self.mc else None,
                "min_epochs": MIN_EPOCHS, "min_draws": MIN_DRAWS if self.mc else None,
                "calibration_s": self.calibration_s, "blocks": self.blocks,
                "model": "training E n epoch + (n + n_test) train_fixed; certify certify_fixed + m certify + "
                         "N (mc_fixed + m mc); sparsity n sparsity (seconds; rates per width: "
                         "runs[i].settings.budget_plan.rates)"}


# ======================================================================================
# results.json / results.csv
# ======================================================================================


def _num(v: Any) -> float | None:
    """A JSON value as a float ("inf" strings accepted); None when absent."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _public_record(rec: dict[str, Any]) -> dict[str, Any]:
    """The per-run record for results.json (no per-sample arrays: certificate.json has none either)."""
    return {k: v for k, v in rec.items() if k not in ("per_sample",)}


def _assemble(c: dict[str, Any], records: list[dict[str, Any]], splits: Any, seconds: float,
              n_skipped: int, ctx: _Context | None = None) -> dict[str, Any]:
    from .experiments import versions
    from .noise import DEFAULT_ACTIVE_FRACTIONS

    runs = [_public_record(r) for r in records]
    first = runs[0] if runs else {}
    grids = {
        "sigma": first.get("grids", {}).get("sigma"),
        "sigma_profiles": c["sigma_profiles"] or "all-ones",
        "active_fractions": list(DEFAULT_ACTIVE_FRACTIONS),
        "per_run": "runs[i].grids (sparsity grid, noise constants, exact-norm refinement)",
    }
    timing_rows = []
    for r in runs:
        t = r.get("timings", {})
        timing_rows.append({"run": r["run"]["id"], "training_s": t.get("training_s"),
                            "prior_training_s": t.get("prior_training_s"),
                            "sparsity_s": t.get("sparsity_s"), "certify_s": t.get("certify_s"),
                            "total_s": t.get("total_s"), "certify": t.get("certify")})
    ordered = sorted(runs, key=_run_sort_key)
    results: dict[str, Any] = {
        "format": "sparsebound-reproduce-1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": c,
        "seeds": list(c["seeds"]),
        "widths": list(c["widths"]),
        "depth": c["depth"],
        "kinds": list(dict.fromkeys(r["run"]["kind"] for r in ordered)),
        "methods": list(c["methods"]),
        "prior_fractions": list(c["prior_fractions"]),
        "proximal": list(c["proximal"]) if "proximal" in c["posteriors"] else [],
        "sigma_profiles": c["sigma_profiles"],
        "data": splits.to_dict(),
        "delta": c["delta"],
        "eta1": c["eta1"],
        "eta2": c["eta2"],
        "grids": grids,
        "versions": versions(),
        "timings": {"wall_s": seconds, "runs_skipped": n_skipped, "per_run": timing_rows,
                    "priors_trained": list(ctx.priors_trained) if ctx is not None else []},
        "runs": runs,
    }
    if ctx is not None and ctx.budget is not None:
        results["budget"] = ctx.budget.record(seconds)
    results["summary"] = _summary(results)
    return to_jsonable(results)


def _csv_text(results: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in csv_rows(results):
        w.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def csv_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One tidy row per run and method (the rows of results.csv)."""
    rows = []
    for r in results["runs"]:
        run = r["run"]
        settings = r.get("settings") or {}
        epochs = settings.get("max_epochs", (r.get("run_config") or {}).get("training", {}).get("max_epochs"))
        for method in results["methods"]:
            m = r["results"].get(method)
            if m is None:
                continue
            unc = _num(m.get("unclipped"))
            lg = None if unc is None else (math.log10(unc) if 0 < unc < math.inf else
                                           ("inf" if unc == math.inf else None))
            mc = method == "sparse-mc"
            rows.append({
                "dataset": run["dataset"], "width": run["width"], "depth": run["depth"], "seed": run["seed"],
                "prior": run["prior_kind"], "posterior": run["posterior"] or "", "method": method,
                "certificate": m.get("certificate"), "unclipped": m.get("unclipped"), "log10_unclipped": lg,
                "vacuous": m.get("vacuous"), "empirical_term": m.get("empirical_term"),
                "complexity_term": m.get("complexity_term"), "sigma": m.get("sigma"),
                "kl_over_m": m.get("kl_over_m"), "certified_fraction": m.get("certified_fraction"),
                "distance_to_prior": m.get("distance_to_prior"), "train_error": r.get("train_error"),
                "test_error": r.get("test_error"),
                "test_error_lower_confidence": r.get("test_error_lower_confidence"),
                "m": m.get("m", r.get("m")), "delta": r.get("delta"),
                "run": run["kind"], "prior_fraction": _alpha(r), "proximal": _lam(r), "max_epochs": epochs,
                "q_hat": m.get("q_hat") if mc else None, "n_draws": m.get("n_draws") if mc else None,
                "mc_seed": m.get("seed") if mc else None, "delta_pacbayes": m.get("delta") if mc else None,
                "delta_mc": m.get("delta_mc") if mc else None,
            })
    return rows


def _alpha(r: dict[str, Any]) -> float | None:
    """The prior fraction of a run (None for the init prior)."""
    v = r["run"].get("prior_fraction", (r.get("run_config") or {}).get("prior_fraction"))
    return None if r["run"]["prior_kind"] == "init" else _num(v)


def _lam(r: dict[str, Any]) -> Any:
    """The proximal lambda of a run ("inf" kept as a string; None unless proximal)."""
    if r["run"].get("posterior") != "proximal":
        return None
    return r["run"].get("proximal", (r.get("run_config") or {}).get("proximal"))


def _run_sort_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """init first, then by alpha, standard before proximal, lambda ascending (inf last)."""
    run = r["run"]
    if run["prior_kind"] == "init":
        kk: tuple[Any, ...] = (0, 0.0, 0, 0.0)
    else:
        kk = (1, _alpha(r) or 0.0, 0 if run.get("posterior") == "standard" else 1, _num(_lam(r)) or 0.0)
    return (run["width"], *kk, run["seed"])


# ======================================================================================
# summary numbers (everything the report's readings quote)
# ======================================================================================


def _group_label(kind: str) -> str:
    return {"init": "prior = initialisation",
            "ddp-standard": "data-dependent prior, standard posterior",
            "ddp-proximal": "data-dependent prior, proximal posterior"}.get(kind, kind)


def _short_kind(kind: str) -> str:
    return {"init": "init prior", "ddp-standard": "data-dep. prior, standard",
            "ddp-proximal": "data-dep. prior, proximal"}.get(kind, kind)


def _unc(run: dict[str, Any], method: str) -> float | None:
    return _num(run["results"].get(method, {}).get("unclipped"))


def _trend(values: Sequence[float]) -> str:
    """'increases', 'decreases', 'constant' or 'non-monotone' over an ordered list."""
    if len(values) < 2:
        return "single"
    d = [b - a for a, b in itertools.pairwise(values)]
    if all(x > 0 for x in d):
        return "increases"
    if all(x < 0 for x in d):
        return "decreases"
    if all(x == 0 for x in d):
        return "constant"
    return "non-monotone"


def _mean(xs: Iterable[float | None]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def _window() -> float:
    from .certification import INFORMATIVE_WINDOW

    return INFORMATIVE_WINDOW


def _tradeoff_best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The trade-off level the report quotes (the rule of ``figures.tradeoff_best_index``, so
    that the report and the figure's star agree); ``rows`` carry at least one finite bound."""
    from .report import figures as fig

    i = fig.tradeoff_best_index(rows)
    if i is None:
        raise ValueError("no trade-off level carries a finite bound")
    return rows[i]


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    """Derived numbers quoted by the report (all computed from the run records)."""
    runs = results["runs"]
    groups: dict[str, Any] = {}
    for kind in results["kinds"]:
        rs = [r for r in runs if r["run"]["kind"] == kind]
        widths = sorted({r["run"]["width"] for r in rs})
        g: dict[str, Any] = {"label": _group_label(kind), "widths": widths, "n_runs": len(rs)}
        # vacuity per method
        vac = {}
        for m in results["methods"]:
            flags = [bool(r["results"][m]["vacuous"]) for r in rs if m in r["results"]]
            vac[m] = "all" if flags and all(flags) else ("none" if not any(flags) else "some")
        g["vacuous"] = vac
        # factor by which sparse is below each other method (other / sparse), per run
        comp = {}
        for other in ("neyshabur2018", "neyshabur2018-init", "bartlett2017", "dense", "uniform-sparse",
                      "sparse-mc"):
            fac = []
            for r in rs:
                s, o = _unc(r, "sparse"), _unc(r, other)
                if s is not None and o is not None and s > 0:
                    fac.append(o / s)
            if fac:
                fin = [f for f in fac if math.isfinite(f)]
                comp[other] = {
                    "factor_min": min(fin) if fin else None,
                    "factor_max": max(fin) if fin else None,
                    "n_infinite": len(fac) - len(fin),
                    "sparse_below_all": all(f > 1 for f in fac),
                    "sparse_above_all": all(f < 1 for f in fac),
                    "sparse_equal_all": all(f == 1 for f in fac),
                    "n_runs": len(fac),
                }
        g["sparse_vs"] = comp
        # per-width means (over seeds) of the unclipped values and errors
        per_width = []
        for w in widths:
            rw = [r for r in rs if r["run"]["width"] == w]
            row: dict[str, Any] = {"width": w}
            for m in results["methods"]:
                row[m] = _mean(_unc(r, m) for r in rw)
            row["test_error"] = _mean(_num(r.get("test_error")) for r in rw)
            row["train_error"] = _mean(_num(r.get("train_error")) for r in rw)
            per_width.append(row)
        g["per_width_mean_unclipped"] = per_width
        g["trend_with_width"] = {m: _trend([row[m] for row in per_width if row.get(m) is not None])
                                 for m in ("sparse", "sparse-mc", "dense", "neyshabur2018", "bartlett2017",
                                           "test-set") if m in results["methods"]}
        non_vac = [(r["run"]["width"], r["run"]["seed"], m, r["results"][m]["certificate"]) for r in rs
                   for m in results["methods"] if m != "test-set" and m in r["results"]
                   and not r["results"][m]["vacuous"]]
        g["non_vacuous"] = [{"width": w, "seed": s, "method": m, "certificate": v} for w, s, m, v in non_vac]
        # the best global active fraction of the trade-off curve (init runs carry it too)
        trade = []
        for r in rs:
            every = r.get("tradeoff", [])
            rows = [t for t in every if _num(t.get("unclipped")) is not None]
            if not rows:
                continue
            best = _tradeoff_best(rows)
            plain = min(rows, key=lambda t: (_num(t["unclipped"]), -(_num(t["active_fraction"]) or 0.0)))
            # the densest level of the curve, certified or not (None: nothing reaches the common level)
            full = max(every, key=lambda t: _num(t["active_fraction"]) or 0.0)
            trade.append({"width": r["run"]["width"], "seed": r["run"]["seed"],
                          "common_level": all("certifiable" in t for t in every),
                          "uncertified_active_fractions": [t["active_fraction"] for t in every
                                                           if _num(t.get("unclipped")) is None],
                          "best_active_fraction": best["active_fraction"], "best_unclipped": best["unclipped"],
                          "best_augmented_loss": best["augmented_loss"], "window": _window(),
                          "best_complexity_term": best["complexity_term"],
                          "full_active_fraction": full["active_fraction"], "full_unclipped": full["unclipped"],
                          "full_augmented_loss": full["augmented_loss"],
                          "full_complexity_term": full["complexity_term"],
                          "plain_min_active_fraction": plain["active_fraction"],
                          "plain_min_unclipped": plain["unclipped"],
                          "plain_min_augmented_loss": plain["augmented_loss"]})
        g["tradeoff_best"] = trade
        groups[kind] = g
    # sparsity: mean effective activity ratio and share of positive radii per width / layer (init runs)
    spars = []
    for r in runs:
        if r["run"]["kind"] != "init" or "sparsity" not in r:
            continue
        for h in r["sparsity"]["hidden_layers"]:
            mid = str(r["sparsity"].get("mid_fraction"))
            rad = h.get("radius", {}).get(mid, {})
            spars.append({"width": r["run"]["width"], "seed": r["run"]["seed"], "layer": h["layer"],
                          "effective_activity_ratio_mean": h["effective_activity_ratio"]["mean"],
                          "active_fraction_raw_mean": h["active_fraction_raw"]["mean"],
                          "mid_fraction": r["sparsity"].get("mid_fraction"),
                          "radius_share_positive": rad.get("share_positive")})
    out: dict[str, Any] = {"groups": groups, "sparsity": spars, "levers": _levers(results)}
    mc = _mc_summary(results)
    if mc is not None:
        out["mc"] = mc
    return out


def _mc_summary(results: dict[str, Any]) -> dict[str, Any] | None:
    """delta, delta' and N of sparse-mc (docs/theory.md section 10), as recorded in the runs."""
    rows = [(r, r["results"]["sparse-mc"]) for r in results["runs"] if "sparse-mc" in r["results"]]
    if not rows:
        return None
    c = results["config"]

    def distinct(vals: Iterable[Any]) -> list[Any]:
        return sorted({v for v in vals if v is not None}, key=float)

    per_width = []
    for w in results["widths"]:
        n = distinct(m.get("n_draws") for r, m in rows if r["run"]["width"] == w)
        if n:
            per_width.append({"width": w, "n_draws": n})
    return {"delta_total": results["delta"], "delta": distinct(m.get("delta") for _, m in rows),
            "delta_mc": distinct(m.get("delta_mc") for _, m in rows),
            "delta_fraction": c.get("mc_delta_fraction"), "n_draws": distinct(m.get("n_draws") for _, m in rows),
            "n_draws_per_width": per_width, "seed": c.get("mc_seed"), "max_evals": MC_MAX_EVALS}


def _best_of(r: dict[str, Any]) -> tuple[str, float] | None:
    """The lowest unclipped sparsity-aware certificate of a run (sparse or sparse-mc)."""
    cands = [(m, _unc(r, m)) for m in ("sparse", "sparse-mc") if _unc(r, m) is not None]
    if not cands:
        return None
    return min(cands, key=lambda t: t[1])


def _setting(r: dict[str, Any]) -> dict[str, Any]:
    return {"run": r["run"]["id"], "kind": r["run"]["kind"], "prior_kind": r["run"]["prior_kind"],
            "posterior": r["run"].get("posterior"), "alpha": _alpha(r), "lambda": _lam(r),
            "train_error": r.get("train_error"), "test_error": r.get("test_error"),
            "distance_to_prior_fro": r.get("distance_to_prior_fro")}


def _effect(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Trend and max/min factor of the sparse values of one lever (ordered)."""
    v = [_num(x["unclipped"]) for x in values]
    fin = [x for x in v if x is not None and math.isfinite(x)]
    lo = min(fin) if fin else None
    best = values[v.index(lo)] if lo is not None else None
    return {"values": values, "trend": _trend(fin) if len(fin) == len(v) else "non-monotone",
            "factor": (max(fin) / lo) if fin and lo and lo > 0 else None,
            "lowest": best}


def _levers(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (width, seed) with more than one posterior of a data-dependent prior: the best setting
    among the fitted networks and the effect of each lever on the sparse certificate."""
    out = []
    for s in results["seeds"]:
        for w in results["widths"]:
            rs = sorted((r for r in results["runs"] if r["run"]["width"] == w and r["run"]["seed"] == s),
                        key=_run_sort_key)
            ddp = [r for r in rs if r["run"]["prior_kind"] == "data-dependent"]
            if len(ddp) < 2:
                continue
            blk: dict[str, Any] = {"width": w, "seed": s, "threshold": FIT_THRESHOLD,
                                   "runs": [r["run"]["id"] for r in rs], "n_networks": len(rs),
                                   "delta_union": len(rs) * results["delta"]}
            scored = [(r, _best_of(r)) for r in rs if _best_of(r) is not None
                      and _num(r.get("train_error")) is not None]
            if scored:
                low = min(_num(r.get("train_error")) for r, _ in scored)
                fitted = [(r, b) for r, b in scored if _num(r.get("train_error")) <= FIT_THRESHOLD]
                rule = "fitted" if fitted else "lowest"
                pool = fitted or [(r, b) for r, b in scored if _num(r.get("train_error")) == low]
                r, (m, _v) = min(pool, key=lambda t: t[1][1])
                res = r["results"][m]
                blk["best"] = {**_setting(r), "rule": rule, "lowest_train_error": low, "n_eligible": len(pool),
                               "method": m, "certificate": res["certificate"], "unclipped": res["unclipped"],
                               "vacuous": res["vacuous"]}
                r, (m, _v) = min(scored, key=lambda t: t[1][1])
                res = r["results"][m]
                blk["best_overall"] = {**_setting(r), "method": m, "certificate": res["certificate"],
                                       "unclipped": res["unclipped"], "vacuous": res["vacuous"]}
            # prior fraction at fixed posterior (standard, or proximal with one lambda)
            alpha_eff = []
            settings = list(dict.fromkeys((r["run"]["posterior"], str(_lam(r))) for r in ddp))
            for post, lam in settings:
                vals = [{"alpha": _alpha(r), "unclipped": _unc(r, "sparse"), "train_error": r.get("train_error")}
                        for r in ddp if r["run"]["posterior"] == post and str(_lam(r)) == lam
                        and _unc(r, "sparse") is not None]
                if len(vals) > 1:
                    alpha_eff.append({"posterior": post, "lambda": None if lam == "None" else
                                      next(_lam(r) for r in ddp if str(_lam(r)) == lam), **_effect(vals)})
            blk["alpha_effect"] = alpha_eff
            # lambda at fixed alpha (the standard posterior is lambda 0)
            lam_eff = []
            for a in dict.fromkeys(_alpha(r) for r in ddp):
                vals = [{"posterior": r["run"]["posterior"], "lambda": _lam(r) if _lam(r) is not None else 0.0,
                         "unclipped": _unc(r, "sparse"), "distance_to_prior_fro": r.get("distance_to_prior_fro"),
                         "train_error": r.get("train_error")}
                        for r in ddp if _alpha(r) == a and _unc(r, "sparse") is not None]
                if len(vals) > 1:
                    lam_eff.append({"alpha": a, **_effect(vals)})
            blk["lambda_effect"] = lam_eff
            # init prior vs the best data-dependent one (sparse)
            init = next((r for r in rs if r["run"]["prior_kind"] == "init" and _unc(r, "sparse") is not None), None)
            dd = [r for r in ddp if _unc(r, "sparse") is not None and _num(r.get("train_error")) is not None]
            if init is not None and dd and _num(init.get("train_error")) is not None:
                # at comparable fit: data-dependent networks fitting S at least as well as the init one
                limit = max(FIT_THRESHOLD, _num(init["train_error"]))
                comp = [r for r in dd if _num(r["train_error"]) <= limit]
                b = min(comp or dd, key=lambda r: _unc(r, "sparse"))
                blk["init_vs_data_dependent"] = {"init": _unc(init, "sparse"), "best": _unc(b, "sparse"),
                                                 "best_run": b["run"]["kind"], "fit_limit": limit,
                                                 "comparable_fit": bool(comp),
                                                 "best_train_error": b.get("train_error"),
                                                 "init_train_error": init.get("train_error"),
                                                 "factor": (_unc(init, "sparse") / _unc(b, "sparse"))
                                                 if _unc(b, "sparse") else None}
            # sparse-mc vs sparse on the same network
            rat = [_unc(r, "sparse-mc") / _unc(r, "sparse") for r in rs
                   if _unc(r, "sparse-mc") is not None and _unc(r, "sparse") and math.isfinite(_unc(r, "sparse"))]
            rat = [x for x in rat if math.isfinite(x)]
            if rat:
                blk["mc_vs_sparse"] = {"ratio_min": min(rat), "ratio_max": max(rat),
                                       "n_lower": sum(x < 1 for x in rat), "n_runs": len(rat)}
            out.append(blk)
    return out


# ======================================================================================
# figures
# ======================================================================================


def _first_seed_runs(results: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    s0 = results["seeds"][0]
    rs = [r for r in results["runs"] if r["run"]["kind"] == kind and r["run"]["seed"] == s0]
    return sorted(rs, key=lambda r: r["run"]["width"])


def make_figures(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """Draw every figure into ``OUT/figures`` from the results record; returns their paths (relative)."""
    import numpy as np

    from .report import figures as fig

    fdir = out / "figures"
    fdir.mkdir(parents=True, exist_ok=True)
    figs: dict[str, Any] = {"certificates_vs_width": {}, "tradeoff": {}, "certified_fraction": {}}
    for kind in results["kinds"]:
        summ = results["summary"]["groups"][kind]["per_width_mean_unclipped"]
        rows = []
        for row in summ:
            for m in results["methods"]:
                if m == "test-set":
                    continue
                rows.append({"width": row["width"], "method": m, "unclipped": row.get(m),
                             "test_error": row["test_error"], "test_set_bound": row.get("test-set")})
        name = f"certificates_vs_width_{kind}.png"
        nseeds = len(results["seeds"])
        short = _short_kind(kind)
        fig.certificates_vs_width(rows, fdir / name, title=f"Certificates vs width ({short})"
                                  + (f", mean of {nseeds} seeds" if nseeds > 1 else ""))
        figs["certificates_vs_width"][kind] = f"figures/{name}"
    # sparsity of the init-prior networks (first seed)
    ratios, radii = {}, {}
    for r in _first_seed_runs(results, "init"):
        p = Path(r["checkpoint"]) / "sparsity.json"
        try:
            ps = load_json(p)["per_sample"]
        except (OSError, ValueError, KeyError):
            continue
        ratios[f"width {r['run']['width']}"] = np.asarray(ps["activity_ratios"], dtype=np.float64)
        radii[f"width {r['run']['width']}"] = [np.asarray(_floats_list(x), dtype=np.float64)
                                               for x in ps["mid_radii"]]
    fig.activity_histogram(ratios, fdir / "activity_ratios.png",
                         title="Effective activity ratio on the training set (prior = initialisation)")
    figs["activity_ratios"] = "figures/activity_ratios.png"
    mid = None
    for r in results["runs"]:
        if "sparsity" in r:
            mid = r["sparsity"].get("mid_fraction")
            break
    fig.radius_distributions(radii, fdir / "radii.png",
                           level_label=f"{100 * mid:.0f}% active" if mid is not None else "mid level")
    figs["radii"] = "figures/radii.png"
    for r in _first_seed_runs(results, "init"):
        w = r["run"]["width"]
        name = f"tradeoff_w{w}.png"
        fig.tradeoff_curve(r.get("tradeoff", []), fdir / name,
                         title=f"Sparsity trade-off, width {w} (prior = initialisation)")
        figs["tradeoff"][str(w)] = f"figures/{name}"
        curves = {m: r["results"][m]["curve"] for m in SPARSE_METHODS if m in r["results"]}
        name = f"certified_fraction_w{w}.png"
        fig.certified_fraction_vs_sigma(curves, fdir / name,
                                      title=f"Certified fraction vs sigma, width {w} (prior = initialisation)")
        figs["certified_fraction"][str(w)] = f"figures/{name}"
    return figs


def _floats_list(x: Any) -> list[float]:
    out = []
    for v in x:
        f = _num(v)
        out.append(math.nan if f is None else f)
    return out


# ======================================================================================
# report.md (from results.json only)
# ======================================================================================


def _g(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ("inf" for infinity)."""
    x = _num(v)
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _f(v: Any, decimals: int = 4) -> str:
    x = _num(v)
    if x is None:
        return "n/a"
    return f"{x:.{decimals}f}"


def _run_label(r: dict[str, Any]) -> str:
    k = r["run"]["kind"]
    return {"init": "init", "ddp-standard": "data-dep. (standard)",
            "ddp-proximal": "data-dep. (proximal)"}.get(k, k)


def _ordered_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(results["runs"], key=_run_sort_key)


def _cell(m: dict[str, Any] | None) -> str:
    """'certificate / unclipped' with a dagger when vacuous."""
    if m is None:
        return "n/a"
    return f"{_f(m.get('certificate'))} / {_g(m.get('unclipped'))}" + (" †" if m.get("vacuous") else "")


def _range_text(lo: float | None, hi: float | None, digits: int = 3) -> str:
    if lo is None or hi is None:
        return "an infinite factor"
    if _g(lo, digits) == _g(hi, digits):
        return f"{_g(lo, digits)} times"
    return f"between {_g(lo, digits)} and {_g(hi, digits)} times"


def _list_text(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def build_report(results: dict[str, Any]) -> str:
    """``report.md`` from the results record (every number printed is a value of ``results``)."""
    c = results["config"]
    runs = _ordered_runs(results)
    summ = results["summary"]
    L: list[str] = []
    data = results.get("data", {})
    alphas = results.get("prior_fractions") or c.get("prior_fractions") or []
    lams = results.get("proximal") or []
    L.append("# sparsebound reproduce: sparsity-aware certificates vs width")
    L.append("")
    has_ddp = any(r["run"]["prior_kind"] == "data-dependent" for r in runs)
    L.append(f"Dataset `{c['dataset']}` ({data.get('n_train')} training / {data.get('n_test')} test points), "
             f"depth K = {results['depth']} (hidden layers of equal width), widths "
             f"{', '.join(str(w) for w in results['widths'])}, seeds {', '.join(str(s) for s in results['seeds'])}"
             + ((f"; data-dependent prior trained on a fraction alpha = {', '.join(_g(a) for a in alphas)} of the "
                 "training set (one prior per alpha, shared by its posteriors)") if has_ddp else "")
             + (f", proximal posterior with lambda = {', '.join(_g(x) for x in lams)}" if lams and has_ddp else "")
             + ". Training: SGD with learning rate "
             f"{c['lr']}, momentum {c['momentum']}, batch size {c['batch_size']}, at most {c['max_epochs']} epochs"
             + (" (scaled down by the time budget where stated below)" if results.get("budget") else "")
             + f", stopping at training error {c['target_error']}.")
    L.append("")
    ms = sorted({(r["run"]["prior_kind"], r["m"]) for r in runs})
    m_text = "; ".join(f"m = {m} ({'whole training set' if pk == 'init' else 'S_bound'}, {pk} prior)"
                       for pk, m in ms)
    L.append(f"**Confidence:** delta = {results['delta']} (every method is a separate statement holding with "
             f"probability at least 1 - delta); noise failure levels eta1 = {results['eta1']} (test side) and "
             f"eta2 = {results['eta2']} (training side). Bound-sample sizes: {m_text}.")
    L.append("")
    mc = summ.get("mc")
    if mc:
        per_w = "; ".join(f"width {x['width']}: N = {', '.join(str(n) for n in x['n_draws'])}"
                          for x in mc["n_draws_per_width"])
        L.append(f"**sparse-mc** (Monte-Carlo training side, docs/theory.md section 10) holds at the same overall "
                 f"level delta = {mc['delta_total']}, split into delta = {', '.join(_g(x) for x in mc['delta'])} "
                 f"for its PAC-Bayes step and delta' = {', '.join(_g(x) for x in mc['delta_mc'])} for its N "
                 f"posterior draws (the two add up to the overall level); N = "
                 f"{', '.join(str(n) for n in mc['n_draws'])} ({per_w}), draw seed {mc['seed']} fixed before "
                 f"drawing, at most {mc['max_evals']} grid sigma values evaluated, eta1 = {results['eta1']}.")
        L.append("")
    profs = results.get("sigma_profiles") or []
    if profs:
        L.append("**Sigma profiles** (per-layer multipliers fixed a priori; they share the grid weight): "
                 + "; ".join("(" + ", ".join(_g(x) for x in p_) + ")" for p_ in profs) + ".")
        L.append("")
    bud = results.get("budget")
    if bud:
        blocks = "; ".join(
            f"{b['block']}: at most {b['max_epochs']} epochs"
            + (f", N = {b['mc_draws']} draws" if b.get("mc_draws") is not None else "")
            for b in bud["blocks"])
        skipped = results["timings"].get("runs_skipped", 0)
        L.append(f"**Time budget:** {_g(bud['budget_minutes'])} minutes requested; this invocation took "
                 f"{_g(bud['wall_minutes'], 3)} minutes before the figures"
                 + (f" ({skipped} runs loaded from disk)" if skipped else "")
                 + (f", {_g(bud['calibration_s'], 3)} s of it calibrating the costs" if bud.get("calibration_s")
                    else "")
                 + ". Values per width block (requested: "
                 f"{bud['max_epochs_requested']} epochs"
                 + (f", N = {bud['mc_draws_requested']} draws" if bud.get("mc_draws_requested") is not None else "")
                 + f"): {blocks}. Each run records the values it used (`settings` in results.json).")
        L.append("")
    L.append("**Reading the values:** each cell is `certificate / unclipped`. The certificate is "
             "min(1, unclipped). A value marked † is **vacuous**: its unclipped bound is at least one, so "
             "it says nothing about the risk; it is reported unclipped so that methods can still be compared. "
             "The `test-set` column is the held-out reference bound kl_inv(test error, ln(1/delta)/m_test). "
             "Library versions, grids and per-run timings are in `results.json`.")
    L.append("")
    # ---- network table
    L.append("## Summary")
    L.append("")
    L.append("### Networks")
    L.append("")
    L.append("| width | prior | seed | m | train error | test error | test error LCB | \\|\\|W-W0\\|\\|_F | "
             "median sigma* (sparse) | KL/m (sparse) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        sp = r["results"].get("sparse", {})
        L.append(f"| {r['run']['width']} | {_run_label(r)} | {r['run']['seed']} | {r['m']} | "
                 f"{_f(r.get('train_error'))} | {_f(r.get('test_error'))} | "
                 f"{_f(r.get('test_error_lower_confidence'))} | {_g(r.get('distance_to_prior_fro'))} | "
                 f"{_g(sp.get('sigma_star_summary', {}).get('median'))} | {_g(sp.get('kl_over_m'))} |")
    L.append("")
    L.append("W0 is the prior mean of the row (the initialisation, or the data-dependent prior); the test error "
             "LCB is the lower (1 - delta)-confidence bound of the certified network's test error, below which "
             "no valid certificate can lie; median sigma* is the median over bound samples of the largest "
             "noise level at which the sample is certified (sparse method).")
    L.append("")
    # ---- certificate table
    L.append("### Certificates")
    L.append("")
    rat_cols = [k for k in ("sparse/neyshabur2018", "sparse/dense")
                if k.split("/")[1] in results["methods"] and "sparse" in results["methods"]]
    L.append("| width | prior | seed | " + " | ".join([*results["methods"], *rat_cols]) + " |")
    L.append("|---|---|---|" + "---|" * (len(results["methods"]) + len(rat_cols)))
    for r in runs:
        rat = r.get("ratios", {})
        cells = [_cell(r["results"].get(m)) for m in results["methods"]]
        cells += [_g(rat.get(k), 3) for k in rat_cols]
        L.append(f"| {r['run']['width']} | {_run_label(r)} | {r['run']['seed']} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("Ratios are of the unclipped values (below one favours the sparse certificate).")
    L.append("")
    vac_lines = []
    for g in summ["groups"].values():
        allv = [m for m, v in g["vacuous"].items() if v == "all"]
        some = [m for m, v in g["vacuous"].items() if v == "some"]
        none = [m for m, v in g["vacuous"].items() if v == "none"]
        parts = []
        if allv:
            parts.append(f"vacuous in every run: {_list_text(allv)}")
        if some:
            parts.append(f"vacuous in some runs: {_list_text(some)}")
        if none:
            parts.append(f"never vacuous: {_list_text(none)}")
        vac_lines.append(f"- {g['label']}: " + "; ".join(parts) + ".")
    L.append("**Vacuous values** (unclipped at least one, marked †):")
    L.append("")
    L.extend(vac_lines)
    L.append("")
    # ---- levers
    if summ.get("levers"):
        L.extend(_levers_section(results))
    # ---- figures
    L.append("## Figures")
    L.append("")
    for kind, path in results["figures"]["certificates_vs_width"].items():
        g = summ["groups"][kind]
        L.append(f"### Certificates vs width ({g['label']})")
        L.append("")
        L.append(f"![certificates vs width, {g['label']}]({path})")
        L.append("")
        L.append(_reading_width(results, kind))
        L.append("")
    L.append("### Effective activity ratio")
    L.append("")
    L.append(f"![effective activity ratio]({results['figures']['activity_ratios']})")
    L.append("")
    L.append(_reading_sparsity(results))
    L.append("")
    L.append("### Sparse local radius")
    L.append("")
    L.append(f"![sparse local radius]({results['figures']['radii']})")
    L.append("")
    L.append(_reading_radii(results))
    L.append("")
    L.append("### Sparsity trade-off")
    L.append("")
    for w, path in results["figures"]["tradeoff"].items():
        L.append(f"![trade-off, width {w}]({path})")
        L.append("")
    L.append(_reading_tradeoff(results))
    L.append("")
    L.append("### Certified fraction vs sigma")
    L.append("")
    for w, path in results["figures"]["certified_fraction"].items():
        L.append(f"![certified fraction, width {w}]({path})")
        L.append("")
    L.append(_reading_certified(results))
    L.append("")
    return "\n".join(L)


def _lam_text(v: Any) -> str:
    x = _num(v)
    return "n/a" if x is None else _g(x)


def _levers_section(results: dict[str, Any]) -> list[str]:
    """The "levers" section: every posterior per width and a reading of the best setting."""
    L: list[str] = ["## Tightness levers", ""]
    meths = [m for m in LEVER_METHODS if m in results["methods"]]
    L.append("Every network of a width: the prior (initialisation, or data-dependent with prior fraction alpha), "
             "the posterior (standard: trained on; proximal: penalty lambda ||W - W0||_F^2, lambda = inf keeps "
             "the prior), its errors, its distance to the prior mean, and its certificates "
             "(`certificate / unclipped`, † = vacuous).")
    L.append("")
    blocks = results["summary"]["levers"]
    for w in results["widths"]:
        if not any(b["width"] == w for b in blocks):
            continue
        L.append(f"### Levers, width {w}")
        L.append("")
        L.append("| seed | run | prior | posterior | alpha | lambda | train error | test error | \\|\\|W-W0\\|\\|_F | "
                 "median sigma* (sparse) | KL/m (sparse) | " + " | ".join(meths) + " |")
        L.append("|" + "---|" * (11 + len(meths)))
        for r in _ordered_runs(results):
            if r["run"]["width"] != w:
                continue
            sp = r["results"].get("sparse", {})
            dd = r["run"]["prior_kind"] == "data-dependent"
            L.append(f"| {r['run']['seed']} | {r['run']['kind']} | {r['run']['prior_kind']} | "
                     f"{r['run'].get('posterior') or '-'} | {_g(_alpha(r)) if dd else '-'} | "
                     f"{_lam_text(_lam(r)) if _lam(r) is not None else '-'} | {_f(r.get('train_error'))} | "
                     f"{_f(r.get('test_error'))} | {_g(r.get('distance_to_prior_fro'))} | "
                     f"{_g(sp.get('sigma_star_summary', {}).get('median'))} | {_g(sp.get('kl_over_m'))} | "
                     + " | ".join(_cell(r["results"].get(m)) for m in meths) + " |")
        L.append("")
        for b in blocks:
            if b["width"] == w:
                L.append(_reading_levers(results, b))
                L.append("")
    return L


def _setting_text(x: dict[str, Any]) -> str:
    if x["prior_kind"] == "init":
        return "the initialisation prior"
    post = ("the standard posterior" if x.get("posterior") == "standard"
            else f"the proximal posterior with lambda {_lam_text(x.get('lambda'))}")
    return f"the data-dependent prior with alpha {_g(x.get('alpha'))} and {post}"


def _effect_values(e: dict[str, Any], key: str) -> str:
    parts = []
    for v in e["values"]:
        if key == "alpha":
            parts.append(f"{_g(v['unclipped'])} at alpha {_g(v['alpha'])}")
        elif v["posterior"] == "standard":
            parts.append(f"{_g(v['unclipped'])} for the standard posterior")
        else:
            parts.append(f"{_g(v['unclipped'])} at lambda {_lam_text(v['lambda'])}")
    return ", ".join(parts)


def _effect_tail(e: dict[str, Any]) -> str:
    t = {"increases": "it increases", "decreases": "it decreases", "constant": "it does not change",
         "non-monotone": "it is not monotone"}.get(e["trend"], "")
    fac = e.get("factor")
    f_txt = f"; the largest is {_g(fac, 3)} times the smallest" if fac is not None and _g(fac, 3) != "1" else ""
    return f" ({t}{f_txt})" if t else (f" ({f_txt[2:]})" if f_txt else "")


def _reading_levers(results: dict[str, Any], b: dict[str, Any]) -> str:
    s: list[str] = []
    seed = f" (seed {b['seed']})" if len(results["seeds"]) > 1 else ""
    best = b.get("best")
    if best:
        if best["rule"] == "fitted":
            pool = f"Among the networks with training error at most {_g(b['threshold'])}"
        else:
            pool = (f"No network reaches training error {_g(b['threshold'])}; among those with the lowest "
                    f"training error reached ({_f(best['lowest_train_error'])})")
        verdict = ("it is non-vacuous" if not best["vacuous"]
                   else "it is vacuous, so none of these networks gets a risk guarantee")
        s.append(f"Width {b['width']}{seed}: {pool}, the lowest sparsity-aware certificate is "
                 f"{_f(best['certificate'])} ({best['method']}, unclipped {_g(best['unclipped'])}) for "
                 f"{_setting_text(best)} (training error {_f(best['train_error'])}, test error "
                 f"{_f(best['test_error'])}); {verdict}. (Each certificate holds at level delta for its own "
                 f"network; a setting picked after seeing all {b['n_networks']} of them is covered by a union "
                 f"bound at level {_g(b['delta_union'])}.)")
        ov = b.get("best_overall")
        if ov and ov["run"] != best["run"]:
            s.append(f"Over all networks of this width the lowest is {_f(ov['certificate'])} ({ov['method']}, "
                     f"unclipped {_g(ov['unclipped'])}, {'non-vacuous' if not ov['vacuous'] else 'vacuous'}) for "
                     f"{_setting_text(ov)}, whose training error is {_f(ov['train_error'])} (test error "
                     f"{_f(ov['test_error'])}): a tighter bound on a network that fits the data worse.")
    for e in b.get("alpha_effect", []):
        fixed = ("the standard posterior" if e["posterior"] == "standard"
                 else f"the proximal posterior with lambda {_lam_text(e['lambda'])}")
        s.append(f"Prior fraction, with {fixed}: the unclipped sparse certificate is "
                 f"{_effect_values(e, 'alpha')}{_effect_tail(e)}.")
    for e in b.get("lambda_effect", []):
        d = [v["distance_to_prior_fro"] for v in e["values"]]
        s.append(f"Proximal lambda, at alpha {_g(e['alpha'])}: the unclipped sparse certificate is "
                 f"{_effect_values(e, 'lambda')}{_effect_tail(e)}; ||W-W0||_F goes from {_g(d[0])} to "
                 f"{_g(d[-1])}.")
    iv = b.get("init_vs_data_dependent")
    if iv:
        among = (f"among the data-dependent networks with training error at most {_f(iv['fit_limit'])} (that of "
                 f"the init-prior network, or {_g(b['threshold'])} if larger)" if iv["comparable_fit"] else
                 f"no data-dependent network fits the training set as well as the init-prior one (training "
                 f"error {_f(iv['init_train_error'])}); among all of them")
        if iv["factor"] is not None and iv["factor"] > 1:
            s.append(f"Prior: {among}, the lowest unclipped sparse certificate is {_g(iv['best'])} "
                     f"({iv['best_run']}, training error {_f(iv['best_train_error'])}), against {_g(iv['init'])} "
                     f"with the initialisation prior ({_g(iv['factor'], 3)} times lower).")
        else:
            s.append(f"Prior: {among}, none improves on the initialisation prior for the sparse certificate "
                     f"({_g(iv['init'])}; best data-dependent {_g(iv['best'])}, {iv['best_run']}).")
    if not s:
        return (f"Width {b['width']}{seed}: no sparsity-aware certificate (sparse, sparse-mc) was computed, so "
                "there is no lever reading.")
    mv = b.get("mc_vs_sparse")
    if mv:
        s.append(f"sparse-mc against sparse on the same network: the ratio sparse-mc/sparse of the unclipped "
                 f"values lies between {_g(mv['ratio_min'], 3)} and {_g(mv['ratio_max'], 3)}; sparse-mc is lower "
                 f"for {mv['n_lower']} of {mv['n_runs']} networks.")
    return " ".join(s)


def _reading_width(results: dict[str, Any], kind: str) -> str:
    g = results["summary"]["groups"][kind]
    comp = g["sparse_vs"]
    n = g["n_runs"]
    every = "at every width" + (" and seed" if len(results["seeds"]) > 1 else "") if n > 1 else "in this run"
    s: list[str] = []
    for other in ("neyshabur2018", "neyshabur2018-init", "bartlett2017", "dense"):
        cv = comp.get(other)
        if cv is None:
            continue
        if cv["sparse_below_all"] and cv["factor_max"] is not None and _g(cv["factor_max"], 3) == "1":
            s.append(f"The sparse and {other} certificates agree to 3 significant digits {every} "
                     f"(sparse is never above {other}).")
        elif cv["sparse_below_all"]:
            s.append(f"The sparse certificate (unclipped) is {_range_text(cv['factor_min'], cv['factor_max'])} "
                     f"below {other} {every}.")
        elif cv["sparse_above_all"]:
            s.append(f"The sparse certificate (unclipped) is above {other} {every} (the ratio {other}/sparse "
                     f"lies between {_g(cv['factor_min'], 3)} and {_g(cv['factor_max'], 3)}).")
        elif cv["sparse_equal_all"]:
            s.append(f"The sparse and {other} certificates are equal {every}.")
        else:
            s.append(f"The ratio {other}/sparse of the unclipped values ranges from {_g(cv['factor_min'], 3)} to "
                     f"{_g(cv['factor_max'], 3)}: sparse is not below {other} {every}.")
    pw = g["per_width_mean_unclipped"]
    if len(pw) > 1:
        tr = g["trend_with_width"]
        first, last = pw[0], pw[-1]
        mean = " (means over seeds)" if len(results["seeds"]) > 1 else ""
        for m in ("sparse", "neyshabur2018", "bartlett2017"):
            t = tr.get(m)
            if first.get(m) is None or last.get(m) is None:
                continue
            if t in ("increases", "decreases"):
                s.append(f"From width {first['width']} to {last['width']} the unclipped {m} value {t} "
                         f"monotonically{mean}, from {_g(first[m])} to {_g(last[m])}.")
            elif t == "non-monotone":
                s.append(f"The unclipped {m} value does not change monotonically with width{mean} "
                         f"({_g(first[m])} at width {first['width']}, {_g(last[m])} at width {last['width']}).")
        s.append(f"The test error goes from {_f(first['test_error'])} (width {first['width']}) to "
                 f"{_f(last['test_error'])} (width {last['width']})"
                 + (f" and the test-set bound from {_f(first['test-set'])} to {_f(last['test-set'])}."
                    if first.get("test-set") is not None and last.get("test-set") is not None else "."))
    nv = g["non_vacuous"]
    if nv:
        s.append("Non-vacuous certificates: " + "; ".join(
            f"{x['method']} {_f(x['certificate'])} at width {x['width']}" for x in nv) + ".")
    else:
        s.append("No certificate other than the held-out test-set bound is non-vacuous here, so the comparison "
                 "is between unclipped values, not risk guarantees.")
    return " ".join(s)


def _reading_sparsity(results: dict[str, Any]) -> str:
    sp = results["summary"]["sparsity"]
    s0 = results["seeds"][0]
    rows = [x for x in sp if x["seed"] == s0]
    if not rows:
        return "No sparsity analysis is available."
    layers = sorted({x["layer"] for x in rows})
    out = ["The effective activity ratio is the active fraction of the greedy sparse vector of each training "
           "sample (smaller means sparser)."]
    for k in layers:
        rk = sorted((x for x in rows if x["layer"] == k), key=lambda x: x["width"])
        vals = [x["effective_activity_ratio_mean"] for x in rk]
        parts = ", ".join(f"{_f(x['effective_activity_ratio_mean'], 3)} at width {x['width']}" for x in rk)
        t = _trend(vals)
        tail = {"increases": "it increases with width", "decreases": "it decreases with width",
                "constant": "it does not change with width",
                "non-monotone": "it does not change monotonically with width"}.get(t, "")
        raw = ", ".join(f"{_f(x['active_fraction_raw_mean'], 3)}" for x in rk)
        out.append(f"Hidden layer {k}: mean effective activity ratio {parts}"
                   + (f"; {tail}" if tail else "") + f" (mean raw active fraction {raw}, same widths).")
    return " ".join(out)


def _reading_radii(results: dict[str, Any]) -> str:
    sp = results["summary"]["sparsity"]
    s0 = results["seeds"][0]
    rows = [x for x in sp if x["seed"] == s0 and x.get("radius_share_positive") is not None]
    if not rows:
        return "No radius statistics are available."
    mid = rows[0]["mid_fraction"]
    parts = "; ".join(f"hidden layer {x['layer']} at width {x['width']}: {_f(x['radius_share_positive'], 3)}"
                      for x in sorted(rows, key=lambda x: (x["layer"], x["width"])))
    return (f"Share of training samples whose sparse local radius is positive at the grid level with active "
            f"fraction {mid} (every unit of the witness strictly inactive): {parts}.")


def _reading_tradeoff(results: dict[str, Any]) -> str:
    g = results["summary"]["groups"].get("init")
    if not g or not g["tradeoff_best"]:
        return "No trade-off curve is available."
    s0 = results["seeds"][0]
    out = []
    for t in sorted((x for x in g["tradeoff_best"] if x["seed"] == s0), key=lambda x: x["width"]):
        b_u, f_u = _num(t["best_unclipped"]), _num(t["full_unclipped"])
        same = f_u is not None and _g(b_u) == _g(f_u)
        better = f_u is None or (b_u < f_u and not same)
        if f_u is None:
            why = (": the densest level certifies nothing at the common level, so a global sparsity level "
                   "is what makes a bound comparable at all.")
        elif same:
            why = ": at the printed precision a global sparsity level does not change the bound."
        elif better and (f_u - b_u) < 0.01 * f_u:
            why = ": a global sparsity level lowers the bound by less than one percent."
        elif better:
            cx = _num(t["best_complexity_term"]) < _num(t["full_complexity_term"])
            al = _num(t["best_augmented_loss"]) > _num(t["full_augmented_loss"])
            why = (": the sparser level trades a smaller complexity term for a larger augmented loss."
                   if cx and al else ": assuming sparsity lowers the bound.")
        else:
            why = ": assuming a global sparsity level does not lower the bound here."
        rule = ("each level at one informative level common to all of them: grid points whose empirical "
                f"term is within {t['window']} of the smallest over every level and sigma, or its smallest "
                "bound where one is non-vacuous"
                if t.get("common_level") else
                f"among the levels whose augmented loss is within {t['window']} of the smallest, when all are "
                "vacuous")
        full = (f"{_g(t['full_unclipped'])} at active fraction {_g(t['full_active_fraction'], 3)} (augmented "
                f"loss {_f(t['full_augmented_loss'])}, complexity term {_g(t['full_complexity_term'])})"
                if f_u is not None else
                f"no bound at active fraction {_g(t['full_active_fraction'], 3)} (smallest augmented loss "
                f"{_f(t['full_augmented_loss'])})")
        out.append(
            f"Width {t['width']}: the smallest unclipped bound over global active fractions ({rule}) is "
            f"{_g(t['best_unclipped'])} at active fraction {_g(t['best_active_fraction'], 3)} (augmented loss "
            f"{_f(t['best_augmented_loss'])}, complexity term {_g(t['best_complexity_term'])}), against "
            f"{full}" + why
        )
        unc = t.get("uncertified_active_fractions") or []
        if unc:
            out.append("Active fractions with no grid point at the common level (no bound reported): "
                       + ", ".join(_g(x, 3) for x in unc) + ".")
        sp = next((r["results"]["sparse"]["unclipped"] for r in results["runs"]
                   if r["run"]["kind"] == "init" and r["run"]["seed"] == s0 and r["run"]["width"] == t["width"]
                   and "sparse" in r["results"]), None)
        if sp is not None:
            out.append(f"For comparison, the sparse certificate, which chooses the level per sample, is {_g(sp)}.")
        if _num(t["plain_min_active_fraction"]) != _num(t["best_active_fraction"]):
            out.append(f"(The plain minimum over all levels, {_g(t['plain_min_unclipped'])} at active "
                       f"fraction {_g(t['plain_min_active_fraction'], 3)}, sits where the augmented loss is "
                       f"{_f(t['plain_min_augmented_loss'])}: it certifies too few samples to compare.)")
    out.append("Each curve forces every sample to the same active fraction at every hidden layer and uses the "
               "rescaling and sigma profile of the sparse certificate; the sparse certificate itself chooses the "
               "level per sample.")
    return " ".join(out)


def _reading_certified(results: dict[str, Any]) -> str:
    out = []
    for r in _first_seed_runs(results, "init"):
        parts = []
        for m in SPARSE_METHODS:
            mr = r["results"].get(m)
            if mr is None:
                continue
            parts.append(f"{m} {_f(mr['certified_fraction'], 3)} at sigma {_g(mr['sigma'], 3)}")
        if parts:
            out.append(f"Width {r['run']['width']}: certified fraction at the chosen sigma: {'; '.join(parts)}.")
    if not out:
        return "No certified-fraction curve is available (none of sparse, uniform-sparse, dense was computed)."
    out.append("No curve rises with sigma (more noise must be absorbed by the margins); a curve further to the "
               "right certifies the same share of samples at a larger noise level, which lowers the KL term.")
    return " ".join(out)


