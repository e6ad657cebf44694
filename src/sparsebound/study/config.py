"""The settings of a study: one frozen dataclass, merged and validated in one place.

A study (``sparsebound reproduce``) is configured from four layers, each
overriding the one before it:

1. :data:`DEFAULTS` (the paper's MNIST width sweep on the 5000-image sample);
2. :data:`QUICK` when ``quick`` is set (a smoke run of about a minute);
3. a TOML or YAML config file (``--config``; keys are the long option names,
   with ``-`` or ``_``; an optional top-level ``[reproduce]`` table);
4. the command line.

:func:`resolve_config` merges them and checks every value, once, and returns a
:class:`StudyConfig`.  Nothing downstream re-validates or re-parses.

**Null and empty values** (one rule for every key): a ``null`` value in a config
file (YAML ``~`` or an empty value) means *not given*: the key falls back to the
layer below (the ``--quick`` preset, then the default), exactly as if it were
left out.  An empty string is never a value: ``out: ""`` or ``--out ""`` is
refused with an error naming the key.

**Seeds** (``--seeds``, ``--split-seed``, ``--mc-seed``) follow the project's one
seed rule, :func:`sparsebound.errors.check_seed` (an integer in ``[0, 2^63 - 1]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, check_seed

__all__ = [
    "ALLOWED_KEYS",
    "ALL_METHODS",
    "DEFAULTS",
    "EXECUTORS",
    "IDENTITY_EXCLUDED",
    "LEVER_METHODS",
    "MC_MAX_EVALS",
    "METHODS",
    "QUICK",
    "SPARSE_METHODS",
    "StudyConfig",
    "read_config_file",
    "resolve_config",
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
    "mc_seed": None,  # None: a fresh seed per run (THEORY.md 4.5); an integer: seeds derived from it
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
    "executor": "local",
    "ray_address": None,  # None: start a local Ray instance (with --executor ray)
    "objectives": ["erm", "certificate"],
    # the default job's small and over-parametrized widths; when they are not both widths of the
    # study (other --widths, --quick), the smallest and the largest width of the study
    "objective_widths": [100, 1000],
    "target_factor": 6.0,
    "prior_epochs": None,  # None: recipes.default_prior_epochs(|S_prior|)
    "pbb_passes": 4,
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
    "objectives": ["erm"],
}

#: keys of a config file (the long option names, '-' or '_').
ALLOWED_KEYS: tuple[str, ...] = tuple(DEFAULTS)

#: settings that do not change any result (how and where the study runs, not what it computes);
#: they are left out of :meth:`StudyConfig.identity`.
IDENTITY_EXCLUDED: tuple[str, ...] = ("quick", "quiet", "threads", "out", "config_file", "device", "data_dir",
                                      "executor", "ray_address")
#: where the runs execute (``--executor``): here, one after the other; or as Ray tasks.
EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class StudyConfig:
    """The resolved, validated settings of one study (saved as ``OUT/config.json``).

    Every field has its final type: sizes and counts are ``int``, levels ``float``
    (``proximal`` may hold ``inf``: the posterior is the prior), lists are tuples
    (sorted and without duplicates where the order carries no meaning; ``methods``
    in the order of the tables).  ``n_train``/``n_test`` ``None`` mean the dataset's
    own sizes; ``mc_seed`` ``None`` means a fresh seed per run, drawn from the
    operating system and recorded before drawing (THEORY.md 4.5); an integer means
    every run derives its seed from it and its run name (exact reproduction).
    ``executor`` (``local`` or ``ray``) and ``ray_address`` (``None``: a local Ray
    instance) say where the runs execute; like ``threads`` and ``out`` they change no
    result (:data:`IDENTITY_EXCLUDED`).
    """

    quick: bool
    dataset: str
    data_dir: str | None
    n_train: int | None
    n_test: int | None
    split_seed: int
    widths: tuple[int, ...]
    depth: int
    seeds: tuple[int, ...]
    prior_fractions: tuple[float, ...]
    posteriors: tuple[str, ...]
    proximal: tuple[float, ...]
    methods: tuple[str, ...]
    mc_draws: int
    mc_batch: int
    mc_seed: int | None
    mc_delta_fraction: float
    sigma_profiles: tuple[tuple[float, ...], ...]
    budget_minutes: float | None
    delta: float
    eta1: float
    eta2: float
    device: str
    out: str
    max_epochs: int
    lr: float
    momentum: float
    batch_size: int
    target_error: float
    exact_rounds: int
    no_rescale: bool
    quiet: bool
    threads: int | None
    executor: str = "local"
    ray_address: str | None = None
    objectives: tuple[str, ...] = ("erm",)
    objective_widths: tuple[int, ...] = ()
    target_factor: float = 6.0
    prior_epochs: int | None = None
    pbb_passes: int = 4
    config_file: str | None = None

    # ---- derived views ------------------------------------------------------------
    @property
    def uses_mc(self) -> bool:
        """Whether ``sparse-mc`` is certified (its options then matter)."""
        return "sparse-mc" in self.methods

    @property
    def proximal_grid(self) -> tuple[float, ...]:
        """The lambda values actually trained (empty unless ``proximal`` is a posterior)."""
        return self.proximal if "proximal" in self.posteriors else ()

    @property
    def recipes(self) -> tuple[str, ...]:
        """The objectives other than ``erm`` (each one more run per seed, alpha and objective width)."""
        return tuple(o for o in self.objectives if o != "erm")

    def objective_options(self, objective: str) -> Any:
        """The :class:`sparsebound.recipes.ObjectiveOptions` of a recipe run of this study."""
        from ..recipes import ObjectiveOptions

        return ObjectiveOptions(objective=objective, target_factor=self.target_factor,
                                prior_epochs=self.prior_epochs)

    @property
    def hidden_depth(self) -> int:
        """Number of hidden layers (K - 1)."""
        return self.depth - 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (lists, ``inf`` kept as a float), in the order of ``config.json``."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return d

    def identity(self) -> dict[str, Any]:
        """The settings that determine the study's results.

        Two invocations with equal identities compute the same runs, so the second may
        resume the first.  Left out: :data:`IDENTITY_EXCLUDED` (where and how it runs);
        the ``sparse-mc`` options when ``sparse-mc`` is not certified; the lambda grid
        when no proximal posterior is trained.
        """
        from .._io import to_jsonable

        d = {k: v for k, v in self.to_dict().items() if k not in IDENTITY_EXCLUDED}
        if not self.uses_mc:
            for k in ("mc_draws", "mc_batch", "mc_seed", "mc_delta_fraction"):
                d.pop(k)
        if "proximal" not in self.posteriors:
            d.pop("proximal")
        if not self.recipes:
            for k in ("objective_widths", "target_factor", "prior_epochs", "pbb_passes"):
                d.pop(k)
        if self.objectives == ("erm",):
            d.pop("objectives")  # studies written before --objectives existed keep their identity
        return to_jsonable(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyConfig:
        """Rebuild from a ``config.json`` record (this version's or an older one).

        The values are validated again (:func:`resolve_config`), so a hand-edited file
        gets the same one-line errors as the command line.

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        cli = {k: v for k, v in d.items() if k != "config_file"}
        if "prior_fractions" in cli:
            cli.pop("prior_fraction", None)
        cfg = resolve_config(cli, None, _record=True)
        return cfg if d.get("config_file") is None else _replace(cfg, config_file=str(d["config_file"]))

    # ---- pieces handed to the training and data layers --------------------------------
    def data_spec(self) -> Any:
        """The :class:`sparsebound.experiments.DataSpec` of this study."""
        from ..experiments import DataSpec

        return DataSpec(dataset=self.dataset, data_dir=self.data_dir, split_seed=self.split_seed,
                        n_train=self.n_train, n_test=self.n_test)

    def train_config(self, seed: int, max_epochs: int | None = None) -> Any:
        """The :class:`sparsebound.training.TrainConfig` of one run (``max_epochs`` as scaled by a budget)."""
        from ..training import TrainConfig

        return TrainConfig(lr=self.lr, momentum=self.momentum, batch_size=self.batch_size,
                           max_epochs=self.max_epochs if max_epochs is None else max_epochs,
                           target_error=self.target_error, seed=seed, device=self.device)


def _replace(cfg: StudyConfig, **changes: Any) -> StudyConfig:
    from dataclasses import replace

    return replace(cfg, **changes)


# ======================================================================================
# config files
# ======================================================================================


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config file into a flat dict with ``_`` keys.

    ``null`` values are dropped (the rule of this module: null means not given).

    Raises:
        ConfigError: missing or unreadable file, not UTF-8, not TOML/YAML, not a table,
            unknown keys.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; give an existing TOML or YAML file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r} ({exc.strerror or exc}); check its permissions") \
            from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                          "save it as UTF-8 TOML or YAML") from None
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
        if v is not None:
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


# ======================================================================================
# value checks (each names the option the user has to change)
# ======================================================================================


def _opt(key: str) -> str:
    return "--" + key.replace("_", "-")


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


def _as_profiles(v: Any, depth: int) -> list[tuple[float, ...]]:
    """``--sigma-profiles``: zero or more per-layer profiles of ``depth`` positive numbers each."""
    if isinstance(v, str):
        v = v.split()
    if not isinstance(v, list | tuple):
        raise ConfigError(f"--sigma-profiles must be a list of profiles such as 1,1,1, got {v!r}")
    out: list[tuple[float, ...]] = []
    for prof in v:
        items = prof.replace(",", " ").split() if isinstance(prof, str) else prof
        if not isinstance(items, list | tuple):
            items = [items]
        vals = tuple(_as_float("--sigma-profiles", x) for x in items)
        if len(vals) != depth:
            raise ConfigError(f"sigma profile {prof!r} has {len(vals)} entries but the network has depth "
                              f"K = {depth}; give {depth} comma-separated numbers per profile")
        if any(not x > 0 for x in vals):
            raise ConfigError(f"sigma profile {prof!r} must have positive entries")
        if vals not in out:
            out.append(vals)
    return out


def _level(name: str, v: Any) -> float:
    x = _as_float(name, v)
    if not (0.0 < x < 1.0):
        raise ConfigError(f"{name} must lie in (0, 1), got {x}")
    return x


def _refuse_empty_strings(layer: Mapping[str, Any], where: str) -> None:
    """An empty string is never a value (the module's rule): name the key and the fix."""
    for k, v in layer.items():
        if isinstance(v, str) and not v.strip():
            raise ConfigError(f"{_opt(k)} (key {k!r}) is empty {where}; give a value, or leave it out (or null in "
                              "a config file) to use its default")


# ======================================================================================
# merge and check
# ======================================================================================


def resolve_config(cli: Mapping[str, Any], config_file: str | None = None, *, _record: bool = False) -> StudyConfig:
    """Merge :data:`DEFAULTS` < ``--quick`` settings < config file < command line, and check it.

    Args:
        cli: option values given on the command line (``_`` keys; ``None`` = not given).
        config_file: a TOML or YAML file with any of the options (see :func:`read_config_file`).

    Returns:
        The resolved :class:`StudyConfig`.

    Raises:
        ConfigError: unknown config keys, values of the wrong type or out of range (widths
            not positive integers, depth < 2, alpha or delta outside (0, 1), a negative
            seed, an empty string, an unknown dataset or device, ...).
    """
    from ..data import DATASETS
    from ..network import resolve_device

    where = "in the stored configuration" if _record else "on the command line"
    cli = {k: v for k, v in cli.items() if v is not None}
    unknown = [k for k in cli if k not in ALLOWED_KEYS]
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ALLOWED_KEYS)}")
    _refuse_empty_strings(cli, where)
    file_vals = read_config_file(config_file) if config_file else {}
    _refuse_empty_strings(file_vals, f"in config file {str(config_file)!r}")
    quick = _as_bool("quick", cli.get("quick", file_vals.get("quick", False)))
    layers = [dict(DEFAULTS), dict(QUICK) if quick else {}, file_vals, cli]
    raw: dict[str, Any] = {}
    for layer in layers:
        raw.update(layer)

    c: dict[str, Any] = {"quick": quick}
    ds = str(raw["dataset"]).strip().lower().replace("_", "-")
    if ds not in DATASETS:
        raise ConfigError(f"unknown dataset {raw['dataset']!r}; use one of {', '.join(DATASETS)}")
    c["dataset"] = ds
    c["data_dir"] = None if raw["data_dir"] is None else str(raw["data_dir"])
    c["n_train"] = None if raw["n_train"] is None else _as_int("--n-train", raw["n_train"], 1)
    c["n_test"] = None if raw["n_test"] is None else _as_int("--n-test", raw["n_test"], 1)
    c["split_seed"] = check_seed(raw["split_seed"], "--split-seed")
    widths = [_as_int("--widths", w) for w in _as_list("--widths", raw["widths"])]
    if any(w < 1 for w in widths):
        raise ConfigError(f"--widths must be positive integers, got {widths}")
    c["widths"] = tuple(sorted(set(widths)))
    c["depth"] = _as_int("--depth", raw["depth"])
    if c["depth"] < 2:
        raise ConfigError(f"--depth must be >= 2 (at least one hidden layer), got {c['depth']}")
    seeds = [check_seed(s, "--seeds") for s in _as_list("--seeds", raw["seeds"])]
    c["seeds"] = tuple(dict.fromkeys(seeds))
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
        raise ConfigError(f"{name} must lie in (0, 1), got {bad_a[0]:.4g}")
    c["prior_fractions"] = tuple(sorted(set(alphas)))
    posts = [str(p).strip().lower() for p in _as_list("--posteriors", raw["posteriors"])]
    bad = [p for p in posts if p not in ("standard", "proximal")]
    if bad:
        raise ConfigError(f"--posteriors must be 'standard' and/or 'proximal', got {bad}")
    c["posteriors"] = tuple(p for p in ("standard", "proximal") if p in posts)
    c["proximal"] = tuple(sorted({_as_lambda(v) for v in _as_list("--proximal", raw["proximal"])}))
    methods = [str(m).strip().lower() for m in _as_list("--methods", raw["methods"])]
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        raise ConfigError(f"unknown method(s) {', '.join(bad)} in --methods; choose from {', '.join(ALL_METHODS)}")
    c["methods"] = tuple(m for m in ALL_METHODS if m in methods)
    c["mc_draws"] = _as_int("--mc-draws", raw["mc_draws"], 1)
    c["mc_batch"] = _as_int("--mc-batch", raw["mc_batch"], 1)
    c["mc_seed"] = None if raw["mc_seed"] is None else check_seed(raw["mc_seed"], "--mc-seed")
    c["mc_delta_fraction"] = _level("--mc-delta-fraction", raw["mc_delta_fraction"])
    c["sigma_profiles"] = tuple(_as_profiles(raw["sigma_profiles"], c["depth"]))
    if raw["budget_minutes"] is None:
        c["budget_minutes"] = None
    else:
        c["budget_minutes"] = _as_float("--budget-minutes", raw["budget_minutes"])
        if not c["budget_minutes"] > 0:
            raise ConfigError(f"--budget-minutes must be positive, got {c['budget_minutes']}")
    for key in ("delta", "eta1", "eta2"):
        c[key] = _level(f"--{key}", raw[key])
    c["device"] = str(raw["device"]).strip()
    resolve_device(c["device"])
    c["out"] = str(raw["out"])
    c["max_epochs"] = _as_int("--max-epochs", raw["max_epochs"], 0)
    c["lr"] = _as_float("--lr", raw["lr"])
    c["momentum"] = _as_float("--momentum", raw["momentum"])
    c["batch_size"] = _as_int("--batch-size", raw["batch_size"], 1)
    c["target_error"] = _as_float("--target-error", raw["target_error"])
    c["exact_rounds"] = _as_int("--exact-rounds", raw["exact_rounds"], 0)
    c["no_rescale"] = _as_bool("--no-rescale", raw["no_rescale"])
    c["quiet"] = _as_bool("--quiet", raw["quiet"])
    c["threads"] = None if raw["threads"] is None else _as_int("--threads", raw["threads"], 1)
    c["executor"] = str(raw["executor"]).strip().lower()
    if c["executor"] not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {raw['executor']!r}")
    c["ray_address"] = None if raw["ray_address"] is None else str(raw["ray_address"]).strip()
    from ..recipes import OBJECTIVE_RECIPES, ObjectiveOptions

    objs = [str(o).strip().lower() for o in _as_list("--objectives", raw["objectives"])]
    bad = [o for o in objs if o not in OBJECTIVE_RECIPES]
    if bad:
        raise ConfigError(f"--objectives must be among {', '.join(OBJECTIVE_RECIPES)}, got {bad}")
    if "erm" not in objs:
        raise ConfigError("--objectives must include erm (the init and ddp-standard runs every study has); e.g. "
                          "--objectives erm certificate")
    c["objectives"] = tuple(o for o in OBJECTIVE_RECIPES if o in objs)
    ow_given = any(layer.get("objective_widths") is not None for layer in layers[1:])
    if raw["objective_widths"] is None or (not ow_given and not set(raw["objective_widths"]) <= set(c["widths"])):
        c["objective_widths"] = tuple(sorted({c["widths"][0], c["widths"][-1]}))
    else:
        ow = sorted({_as_int("--objective-widths", w, 1)
                     for w in _as_list("--objective-widths", raw["objective_widths"])})
        missing = [w for w in ow if w not in c["widths"]]
        if missing:
            raise ConfigError(f"--objective-widths {missing} are not among --widths {list(c['widths'])}; give "
                              "widths of the study")
        c["objective_widths"] = tuple(ow)
    c["target_factor"] = _as_float("--target-factor", raw["target_factor"])
    c["prior_epochs"] = None if raw["prior_epochs"] is None else _as_int("--prior-epochs", raw["prior_epochs"], 1)
    c["pbb_passes"] = _as_int("--pbb-passes", raw["pbb_passes"], 1)
    ObjectiveOptions(objective="certificate", target_factor=c["target_factor"], prior_epochs=c["prior_epochs"])
    c["config_file"] = None if config_file is None else str(config_file)
    cfg = StudyConfig(**c)
    cfg.train_config(0)  # TrainConfig raises ConfigError on bad optimiser values
    return cfg

