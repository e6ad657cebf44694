"""``sparsebound reproduce``: the width sweep of Muthukumar & Sulam (COLT 2023), end to end.

For every seed and hidden width (depth K: K-1 hidden layers of that width) the
pipeline

1. trains a network from its recorded initialisation (prior = initialisation,
   bound sample = the whole training set): ``OUT/runs/w{width}-s{seed}/init``;
2. trains a data-dependent prior on a fraction alpha of the training set and
   the posterior(s) from it (THEORY.md 4.4): ``.../ddp-standard``, ``.../ddp-proximal``;
3. measures the activation sparsity of the init-prior network on the training
   set (:func:`sparsebound.analysis.analyse_sparsity`);
4. certifies every network with every method (sparse, uniform-sparse, dense, the
   norm-based baselines and the held-out test-set bound), each a separate
   statement at confidence 1 - delta;
5. writes ``certificate.json`` per run (atomically), then ``results.json``,
   ``results.csv``, the figures and ``report.md`` in ``OUT``.

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
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, dump_json, ensure_writable_dir, load_json, to_jsonable
from .errors import CheckpointError, ConfigError, SparseboundError

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

#: every method certified in every run (each a separate statement at level delta).
METHODS: tuple[str, ...] = ("sparse", "uniform-sparse", "dense", "neyshabur2018", "neyshabur2018-init",
                            "bartlett2017", "test-set")
#: the sparsity-aware methods (per-sample machinery, sigma, KL, curves).
SPARSE_METHODS: tuple[str, ...] = ("sparse", "uniform-sparse", "dense")

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
    "posteriors": ["standard"],
    "proximal": 0.01,
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
    "m", "delta",
)

#: groups of runs: the init prior and one per posterior protocol of the data-dependent prior.
RUN_KINDS_ORDER = ("init", "ddp-standard", "ddp-proximal")


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
                    "results.csv, figures and report.md.  Re-running with the same --out skips finished runs.",
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
    p.add_argument("--prior-fraction", default=None,
                   help=f"alpha: fraction of the training set for the data-dependent prior "
                        f"(default {d['prior_fraction']})")
    p.add_argument("--posteriors", nargs="*", default=None,
                   help="posterior protocols with the data-dependent prior: standard, proximal "
                        "(default standard)")
    p.add_argument("--proximal", default=None,
                   help=f"lambda of the proximal posterior's penalty (default {d['proximal']})")
    p.add_argument("--delta", default=None, help=f"confidence level in (0,1) (default {d['delta']})")
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
    p.add_argument("--quiet", action="store_const", const=True, default=None, help="no progress bars")


def run_reproduce_cli(args: argparse.Namespace) -> int:
    """Entry point of ``sparsebound reproduce`` (errors propagate to the CLI)."""
    cli = {k: getattr(args, k) for k in ALLOWED_KEYS if getattr(args, k, None) is not None}
    cfg = resolve_config(cli, config_file=getattr(args, "config", None))
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
    raw: dict[str, Any] = dict(DEFAULTS)
    if quick:
        raw.update(QUICK)
    raw.update(file_vals)
    raw.update(cli)
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
    c["prior_fraction"] = _as_float("--prior-fraction", raw["prior_fraction"])
    if not (0.0 < c["prior_fraction"] < 1.0):
        raise ConfigError(f"--prior-fraction must lie in (0, 1), got {c['prior_fraction']}")
    posts = [str(p).strip().lower() for p in _as_list("--posteriors", raw["posteriors"])]
    bad = [p for p in posts if p not in ("standard", "proximal")]
    if bad:
        raise ConfigError(f"--posteriors must be 'standard' and/or 'proximal', got {bad}")
    c["posteriors"] = [p for p in ("standard", "proximal") if p in posts]
    c["proximal"] = _as_float("--proximal", raw["proximal"])
    if "proximal" in c["posteriors"] and not c["proximal"] > 0:
        raise ConfigError(f"the proximal posterior needs --proximal LAMBDA > 0, got {c['proximal']}")
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
    c["config_file"] = None if config_file is None else str(config_file)
    return c


# ======================================================================================
# the runs
# ======================================================================================


def _data_spec(c: dict[str, Any]):
    from .experiments import DataSpec

    return DataSpec(dataset=c["dataset"], data_dir=c["data_dir"], split_seed=c["split_seed"],
                    n_train=c["n_train"], n_test=c["n_test"])


def _train_config(c: dict[str, Any], seed: int):
    from .training import TrainConfig

    return TrainConfig(lr=c["lr"], momentum=c["momentum"], batch_size=c["batch_size"],
                       max_epochs=c["max_epochs"], target_error=c["target_error"], seed=seed,
                       device=c["device"])


def _strip(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _run_config(c: dict[str, Any], width: int, seed: int, kind: str) -> dict[str, Any]:
    """Everything that determines one run's results (compared on resume)."""
    hidden = [width] * (c["depth"] - 1)
    rc: dict[str, Any] = {
        "data": _strip(_data_spec(c).to_dict(), "data_dir"),
        "hidden": hidden,
        "seed": seed,
        "training": _strip(_train_config(c, seed).to_dict(), "device"),
        "kind": kind,
        "delta": c["delta"],
        "eta1": c["eta1"],
        "eta2": c["eta2"],
        "methods": list(METHODS),
        "exact_rounds": c["exact_rounds"],
        "rescale": not c["no_rescale"],
    }
    if kind != "init":
        post = kind.split("-", 1)[1]
        rc["prior_fraction"] = c["prior_fraction"]
        rc["posterior"] = post
        rc["proximal"] = c["proximal"] if post == "proximal" else 0.0
    return to_jsonable(rc)


def _checkpoint_matches(meta: dict[str, Any], c: dict[str, Any], hidden: list[int], seed: int,
                        kind: str) -> bool:
    """Whether a checkpoint on disk was trained with this run's settings."""
    try:
        want_cfg = _strip(_train_config(c, seed).to_dict(), "device")
        if _strip(meta.get("data", {}), "data_dir") != _strip(_data_spec(c).to_dict(), "data_dir"):
            return False
        if list(meta["architecture"]["widths"][1:-1]) != hidden or int(meta["seed"]) != seed:
            return False
        pr = meta["prior"]
        if kind == "init":
            return pr.get("kind") == "init" and _strip(meta["training"]["config"], "device") == want_cfg
        post = kind.split("-", 1)[1]
        prox = c["proximal"] if post == "proximal" else 0.0
        return (pr.get("kind") == "data-dependent" and pr.get("posterior") == post
                and float(pr.get("proximal", 0.0)) == float(prox)
                and float(meta["bound_sample"]["prior_fraction"]) == float(c["prior_fraction"])
                and _strip(pr["prior_training"]["config"], "device") == want_cfg)
    except (KeyError, TypeError, ValueError):
        return False


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
        ptr = pr.get("prior_training", {})
        out["prior"] = {
            "train_error": pr.get("prior_train_error"),
            "test_error": pr.get("prior_test_error"),
            "epochs": ptr.get("epochs"),
            "reached_target": ptr.get("reached_target"),
            "seconds": ptr.get("seconds"),
        }
        out["posterior"] = pr.get("posterior")
        out["proximal"] = pr.get("proximal")
        out["bound_split"] = meta.get("bound_sample")
    return out


def _get_checkpoint(rdir: Path, c: dict[str, Any], spec: Any, splits: Any, width: int, seed: int,
                    kind: str, progress: bool):
    """Load a matching checkpoint from ``rdir`` or train one there."""
    from .checkpoint import load_checkpoint
    from .experiments import train_checkpoint

    hidden = [width] * (c["depth"] - 1)
    try:
        ck = load_checkpoint(rdir)
        if _checkpoint_matches(ck.meta, c, hidden, seed, kind):
            return ck, True
    except CheckpointError:
        pass
    cfg = _train_config(c, seed)
    if kind == "init":
        ck = train_checkpoint(rdir, data=spec, hidden=hidden, seed=seed, config=cfg, prior_fraction=None,
                              splits=splits, progress=progress)
    else:
        post = kind.split("-", 1)[1]
        ck = train_checkpoint(rdir, data=spec, hidden=hidden, seed=seed, config=cfg,
                              prior_fraction=c["prior_fraction"], posterior=post,
                              proximal=c["proximal"] if post == "proximal" else 0.0,
                              splits=splits, progress=progress)
    return ck, False


def _certify_run(c: dict[str, Any], ck: Any, splits: Any, kind: str, progress: bool):
    from .certificate import certify
    from .experiments import bound_sample

    if kind == "init":
        bs, desc = bound_sample(ck, splits, prior="init")
        prior, prior_kind = ck.init, "init"
    else:
        bs, desc = bound_sample(ck, splits, prior="recorded")
        prior, prior_kind = ck.prior, "data-dependent"
    cert = certify(ck.network, bs.X, bs.y, prior=prior, init=ck.init, delta=c["delta"], methods=list(METHODS),
                   prior_kind=prior_kind, X_test=splits.test.X, y_test=splits.test.y, radius=bs.radius,
                   eta1=c["eta1"], eta2=c["eta2"], rescale=not c["no_rescale"],
                   exact_rounds=c["exact_rounds"], device=c["device"], progress=progress)
    return cert, desc, prior


def _one_run(c: dict[str, Any], spec: Any, splits: Any, width: int, seed: int, kind: str,
             progress: bool) -> tuple[dict[str, Any], bool]:
    """Train (or reuse), analyse, certify and save one run; returns (record, skipped)."""
    out = Path(c["out"])
    rdir = out / "runs" / f"w{width}-s{seed}" / kind
    cert_path = rdir / "certificate.json"
    rc = _run_config(c, width, seed, kind)
    if cert_path.is_file():
        try:
            rec = load_json(cert_path)
            if rec.get("run_config") == rc and (kind != "init" or (rdir / "sparsity.json").is_file()):
                return rec, True
        except (OSError, ValueError):
            pass
    t_run = time.perf_counter()
    t0 = time.perf_counter()
    ck, reused = _get_checkpoint(rdir, c, spec, splits, width, seed, kind, progress)
    t_train = time.perf_counter() - t0
    timings: dict[str, Any] = {"training_s": t_train}
    sparsity_summary = None
    if kind == "init":
        from .analysis import analyse_sparsity

        t0 = time.perf_counter()
        rep = analyse_sparsity(ck.network, splits.train.X, device=c["device"], progress=progress)
        timings["sparsity_s"] = time.perf_counter() - t0
        sparsity_summary = rep.to_dict()
        dump_json(rdir / "sparsity.json", {
            "summary": sparsity_summary,
            "per_sample": {"activity_ratios": rep.activity_ratios, "active_fractions": rep.active_fractions,
                           "mid_radii": list(rep.mid_radii)},
        })
    t0 = time.perf_counter()
    cert, desc, prior = _certify_run(c, ck, splits, kind, progress)
    timings["certify_s"] = time.perf_counter() - t0
    timings["certify"] = dict(cert.timings)
    timings["total_s"] = time.perf_counter() - t_run
    rec = cert.to_dict()
    post = None if kind == "init" else kind.split("-", 1)[1]
    rec["run"] = {
        "id": f"w{width}-s{seed}/{kind}",
        "kind": kind,
        "width": width,
        "depth": c["depth"],
        "hidden": [width] * (c["depth"] - 1),
        "seed": seed,
        "prior_kind": "init" if kind == "init" else "data-dependent",
        "posterior": post,
        "dataset": c["dataset"],
    }
    rec["run_config"] = rc
    rec["checkpoint"] = str(rdir)
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
    return (f"{r['id']}: train err {_fmt_f(rec.get('train_error'))}, test err {_fmt_f(rec.get('test_error'))}; "
            f"unclipped sparse {val('sparse')}, dense {val('dense')}, neyshabur2018 {val('neyshabur2018')}, "
            f"test-set {val('test-set')} ({tail})")


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
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = ensure_writable_dir(c["out"])
    spec = _data_spec(c)
    splits = spec.load()
    dump_json(out / "config.json", c)
    progress = not c["quiet"]
    kinds = ["init", *(f"ddp-{p}" for p in c["posteriors"])]
    jobs = [(s, w, k) for s in c["seeds"] for w in c["widths"] for k in kinds]
    records: list[dict[str, Any]] = []
    n_skipped = 0
    with tqdm(total=len(jobs), desc="reproduce", unit="run", disable=not progress) as bar:
        for seed, width, kind in jobs:
            bar.set_postfix_str(f"w{width}-s{seed}/{kind}")
            rec, skipped = _one_run(c, spec, splits, width, seed, kind, progress)
            n_skipped += int(skipped)
            records.append(rec)
            line = _run_line(rec, skipped)
            if progress:
                bar.write(line)
            else:
                print(line)
            bar.update(1)
    results = _assemble(c, records, splits, time.perf_counter() - t_start, n_skipped)
    dump_json(out / "results.json", results)
    atomic_write_text(out / "results.csv", _csv_text(results))
    results = load_json(out / "results.json")
    figs = make_figures(results, out)
    results["figures"] = figs
    dump_json(out / "results.json", results)
    atomic_write_text(out / "report.md", build_report(results))
    return results


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
              n_skipped: int) -> dict[str, Any]:
    from .experiments import versions
    from .noise import DEFAULT_ACTIVE_FRACTIONS

    runs = [_public_record(r) for r in records]
    first = runs[0] if runs else {}
    grids = {
        "sigma": first.get("grids", {}).get("sigma"),
        "active_fractions": list(DEFAULT_ACTIVE_FRACTIONS),
        "per_run": "runs[i].grids (sparsity grid, noise constants, exact-norm refinement)",
    }
    timing_rows = []
    for r in runs:
        t = r.get("timings", {})
        timing_rows.append({"run": r["run"]["id"], "training_s": t.get("training_s"),
                            "sparsity_s": t.get("sparsity_s"), "certify_s": t.get("certify_s"),
                            "total_s": t.get("total_s"), "certify": t.get("certify")})
    results: dict[str, Any] = {
        "format": "sparsebound-reproduce-1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": c,
        "seeds": list(c["seeds"]),
        "widths": list(c["widths"]),
        "depth": c["depth"],
        "kinds": list(dict.fromkeys(r["run"]["kind"] for r in runs)),
        "methods": list(METHODS),
        "data": splits.to_dict(),
        "delta": c["delta"],
        "eta1": c["eta1"],
        "eta2": c["eta2"],
        "grids": grids,
        "versions": versions(),
        "timings": {"wall_s": seconds, "runs_skipped": n_skipped, "per_run": timing_rows},
        "runs": runs,
    }
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
        for method in results["methods"]:
            m = r["results"].get(method)
            if m is None:
                continue
            unc = _num(m.get("unclipped"))
            lg = None if unc is None else (math.log10(unc) if 0 < unc < math.inf else
                                           ("inf" if unc == math.inf else None))
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
            })
    return rows


# ======================================================================================
# summary numbers (everything the report's readings quote)
# ======================================================================================


def _group_label(kind: str) -> str:
    return {"init": "prior = initialisation",
            "ddp-standard": "data-dependent prior, standard posterior",
            "ddp-proximal": "data-dependent prior, proximal posterior"}.get(kind, kind)


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
    """The trade-off level the report quotes, by the reporting rule of docs/theory.md section 9:
    the smallest bound where one is non-vacuous; otherwise the smallest unclipped bound among the
    levels whose augmented loss is within ``INFORMATIVE_WINDOW`` of the smallest one (the plain
    minimum would sit at a level where no sample is certified)."""
    from .certification import INFORMATIVE_WINDOW

    unc = [_num(t["unclipped"]) for t in rows]
    if min(unc) < 1.0:
        return rows[unc.index(min(unc))]
    aug = [_num(t["augmented_loss"]) for t in rows]
    lo = min(a for a in aug if a is not None)
    ok = [i for i, a in enumerate(aug) if a is not None and a <= lo + INFORMATIVE_WINDOW]
    return rows[min(ok, key=lambda i: unc[i])]


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
        for other in ("neyshabur2018", "neyshabur2018-init", "bartlett2017", "dense", "uniform-sparse"):
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
        g["trend_with_width"] = {m: _trend([row[m] for row in per_width if row[m] is not None])
                                 for m in ("sparse", "dense", "neyshabur2018", "bartlett2017", "test-set")}
        non_vac = [(r["run"]["width"], r["run"]["seed"], m, r["results"][m]["certificate"]) for r in rs
                   for m in results["methods"] if m != "test-set" and m in r["results"]
                   and not r["results"][m]["vacuous"]]
        g["non_vacuous"] = [{"width": w, "seed": s, "method": m, "certificate": v} for w, s, m, v in non_vac]
        # the best global active fraction of the trade-off curve (init runs carry it too)
        trade = []
        for r in rs:
            rows = [t for t in r.get("tradeoff", []) if _num(t.get("unclipped")) is not None]
            if not rows:
                continue
            best = _tradeoff_best(rows)
            plain = min(rows, key=lambda t: _num(t["unclipped"]))
            full = max(rows, key=lambda t: _num(t["active_fraction"]))
            trade.append({"width": r["run"]["width"], "seed": r["run"]["seed"],
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
    return {"groups": groups, "sparsity": spars}


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
                rows.append({"width": row["width"], "method": m, "unclipped": row[m],
                             "test_error": row["test_error"], "test_set_bound": row["test-set"]})
        name = f"certificates_vs_width_{kind}.png"
        nseeds = len(results["seeds"])
        short = {"init": "init prior", "ddp-standard": "data-dep. prior, standard",
                 "ddp-proximal": "data-dep. prior, proximal"}.get(kind, kind)
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
    order = {k: i for i, k in enumerate(RUN_KINDS_ORDER)}
    return sorted(results["runs"], key=lambda r: (r["run"]["width"], order.get(r["run"]["kind"], 9),
                                                  r["run"]["seed"]))


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
    L.append("# sparsebound reproduce: sparsity-aware certificates vs width")
    L.append("")
    L.append(f"Dataset `{c['dataset']}` ({data.get('n_train')} training / {data.get('n_test')} test points), "
             f"depth K = {results['depth']} (hidden layers of equal width), widths "
             f"{', '.join(str(w) for w in results['widths'])}, seeds {', '.join(str(s) for s in results['seeds'])}; "
             f"data-dependent prior trained on a fraction alpha = {c['prior_fraction']} of the training set"
             + (f", proximal posterior with lambda = {c['proximal']}" if "proximal" in c["posteriors"] else "")
             + ". Training: SGD with learning rate "
             f"{c['lr']}, momentum {c['momentum']}, batch size {c['batch_size']}, at most {c['max_epochs']} epochs, "
             f"stopping at training error {c['target_error']}.")
    L.append("")
    ms = sorted({(r["run"]["prior_kind"], r["m"]) for r in runs})
    m_text = "; ".join(f"m = {m} ({'whole training set' if pk == 'init' else 'S_bound'}, {pk} prior)"
                       for pk, m in ms)
    L.append(f"**Confidence:** delta = {results['delta']} (every method is a separate statement holding with "
             f"probability at least 1 - delta); noise failure levels eta1 = {results['eta1']} (test side) and "
             f"eta2 = {results['eta2']} (training side). Bound-sample sizes: {m_text}.")
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
    L.append("| width | prior | seed | m | train error | test error | test error LCB | ||W-W0||_F | "
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
    L.append("| width | prior | seed | " + " | ".join(results["methods"]) + " | sparse/neyshabur2018 | sparse/dense |")
    L.append("|---|---|---|" + "---|" * len(results["methods"]) + "---|---|")
    for r in runs:
        rat = r.get("ratios", {})
        cells = [_cell(r["results"].get(m)) for m in results["methods"]]
        L.append(f"| {r['run']['width']} | {_run_label(r)} | {r['run']['seed']} | " + " | ".join(cells)
                 + f" | {_g(rat.get('sparse/neyshabur2018'), 3)} | {_g(rat.get('sparse/dense'), 3)} |")
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
            if t in ("increases", "decreases"):
                s.append(f"From width {first['width']} to {last['width']} the unclipped {m} value {t} "
                         f"monotonically{mean}, from {_g(first[m])} to {_g(last[m])}.")
            elif t == "non-monotone":
                s.append(f"The unclipped {m} value does not change monotonically with width{mean} "
                         f"({_g(first[m])} at width {first['width']}, {_g(last[m])} at width {last['width']}).")
        s.append(f"The test error goes from {_f(first['test_error'])} (width {first['width']}) to "
                 f"{_f(last['test_error'])} (width {last['width']}) and the test-set bound from "
                 f"{_f(first['test-set'])} to {_f(last['test-set'])}.")
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
        same = _g(b_u) == _g(f_u)
        better = b_u < f_u and not same
        if same:
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
        out.append(
            f"Width {t['width']}: the smallest unclipped bound over global active fractions (among the "
            f"levels whose augmented loss is within {t['window']} of the smallest, when all are vacuous) is "
            f"{_g(t['best_unclipped'])} at active fraction {_g(t['best_active_fraction'], 3)} (augmented loss "
            f"{_f(t['best_augmented_loss'])}, complexity term {_g(t['best_complexity_term'])}), against "
            f"{_g(t['full_unclipped'])} at active fraction {_g(t['full_active_fraction'], 3)} (augmented loss "
            f"{_f(t['full_augmented_loss'])}, complexity term {_g(t['full_complexity_term'])})"
            + why
        )
        sp = next((r["results"]["sparse"]["unclipped"] for r in results["runs"]
                   if r["run"]["kind"] == "init" and r["run"]["seed"] == s0 and r["run"]["width"] == t["width"]
                   and "sparse" in r["results"]), None)
        if sp is not None:
            out.append(f"For comparison, the sparse certificate, which chooses the level per sample, is {_g(sp)}.")
        if _num(t["plain_min_active_fraction"]) != _num(t["best_active_fraction"]):
            out.append(f"(The star in its figure marks the plain minimum, {_g(t['plain_min_unclipped'])} at active "
                       f"fraction {_g(t['plain_min_active_fraction'], 3)}, where the augmented loss is "
                       f"{_f(t['plain_min_augmented_loss'])}.)")
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
        out.append(f"Width {r['run']['width']}: certified fraction at the chosen sigma: {'; '.join(parts)}.")
    out.append("No curve rises with sigma (more noise must be absorbed by the margins); a curve further to the "
               "right certifies the same share of samples at a larger noise level, which lowers the KL term.")
    return " ".join(out)


_ = (sys, SparseboundError)
