"""Runs: train-and-save (``sparsebound train``) and the bound sample of a checkpoint.

The ``reproduce`` study lives in :mod:`sparsebound.study` (:mod:`sparsebound.reproduce`
only keeps the older names); this module holds the pieces both the CLI and the study call: train a network (and
optionally its data-dependent prior) and write the checkpoint with everything
a bound needs later, and recover the bound sample from a checkpoint's record.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._io import load_json, to_jsonable
from .checkpoint import META_FILE, Checkpoint, save_checkpoint
from .data import Dataset, DataSplits, load_dataset, split_prior_bound
from .errors import CheckpointError, ConfigError, check_seed
from .recipes import ObjectiveOptions
from .training import TrainConfig, TrainResult, init_network, train


def versions() -> dict[str, str]:
    """Library versions for every results file."""
    from .certificate import environment_record

    return environment_record()


@dataclass(frozen=True)
class DataSpec:
    """Which data a run uses (recorded; enough to reload the same split).

    ``dataset`` is a name of :data:`sparsebound.data.DATASETS` or the user's own data,
    ``idx:DIR`` / ``npz:FILE``; ``radius`` (npz only) the declared input-domain radius.

    Raises:
        ConfigError: a split seed outside [0, 2^63 - 1] (``errors.check_seed``),
            non-positive sizes, a dataset that is not a string.
    """

    dataset: str = "mnist5k"
    data_dir: str | None = None
    split_seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    synthetic: dict | None = None
    radius: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"dataset must be a name such as 'mnist5k', got {self.dataset!r}")
        object.__setattr__(self, "split_seed", check_seed(self.split_seed, "--split-seed"))
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
            if v is not None:
                object.__setattr__(self, name, int(v))
        if self.radius is not None and not (isinstance(self.radius, numbers.Real) and 0 < self.radius < math.inf):
            raise ConfigError(f"--radius must be a positive number, got {self.radius!r}")

    def load(self) -> DataSplits:
        return load_dataset(self.dataset, data_dir=self.data_dir, split_seed=self.split_seed,
                            n_train=self.n_train, n_test=self.n_test, synthetic=self.synthetic,
                            radius=self.radius)

    def to_dict(self) -> dict[str, Any]:
        d = {"dataset": self.dataset, "data_dir": self.data_dir, "split_seed": self.split_seed,
             "n_train": self.n_train, "n_test": self.n_test, "synthetic": self.synthetic}
        if self.radius is not None:
            d["radius"] = self.radius
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls(dataset=d["dataset"], data_dir=d.get("data_dir"), split_seed=d.get("split_seed", 0),
                   n_train=d.get("n_train"), n_test=d.get("n_test"), synthetic=d.get("synthetic"),
                   radius=d.get("radius"))


def check_train_options(*, posterior: str, proximal: float, prior_fraction: float | None,
                        has_prior: bool = False) -> None:
    """The protocol options of :func:`train_checkpoint`, checked before any data or file is touched.

    Raises:
        ConfigError: an unknown posterior kind, a proximal posterior without a positive
            lambda or without a data-dependent prior, a prior fraction outside (0, 1).
    """
    if posterior not in ("standard", "proximal"):
        raise ConfigError(f"posterior must be 'standard' or 'proximal', got {posterior!r}")
    if not (isinstance(proximal, int | float) and proximal >= 0):
        raise ConfigError(f"--proximal must be a number >= 0 (or inf), got {proximal!r}")
    if posterior == "proximal" and not (proximal > 0):
        raise ConfigError("the proximal posterior needs a positive --proximal LAMBDA")
    if posterior == "standard" and proximal > 0:
        raise ConfigError("--proximal applies only with --posterior proximal; add it or drop --proximal")
    if prior_fraction is not None and not (isinstance(prior_fraction, int | float)
                                           and 0.0 < float(prior_fraction) < 1.0):
        raise ConfigError(f"--prior-fraction must lie in (0, 1), got {prior_fraction!r}")
    if prior_fraction is None and not has_prior and posterior == "proximal":
        raise ConfigError("a proximal posterior needs a data-dependent prior: give --prior-fraction")


def _train_record(res: TrainResult, cfg: TrainConfig) -> dict[str, Any]:
    return {"config": cfg.to_dict(), **res.to_dict()}


def _base_meta(data: DataSpec, splits: DataSplits, seed: int) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data.to_dict(),
        "data_info": splits.to_dict(),
        "radius": splits.train.radius,
        "seed": seed,
        "versions": versions(),
    }


def train_prior(
    out: str | os.PathLike[str],
    *,
    data: DataSpec,
    hidden: Sequence[int],
    prior_fraction: float,
    bias: bool = False,
    seed: int = 0,
    config: TrainConfig | None = None,
    prior_seed: int | None = None,
    splits: DataSplits | None = None,
    progress: bool = True,
) -> Checkpoint:
    """Train a data-dependent prior on ``S_prior`` only and save it as a checkpoint at ``out``.

    Initialise with ``seed``, split the training set into ``S_prior`` (fraction
    ``prior_fraction``) and ``S_bound`` with ``prior_seed`` (default: ``seed``) and
    train on ``S_prior`` (THEORY.md 4.4).  The returned checkpoint's ``network`` is
    the prior mean W0; its record holds the split (``bound_sample``), the training
    record and the SHA-256 of its tensors (``tensor_sha256``).  Pass it as
    ``prior=`` to :func:`train_checkpoint` to train any number of posteriors from
    the same prior without retraining it.

    Raises:
        ConfigError: bad widths, alpha outside (0, 1).
        DataError: data problems (see :func:`sparsebound.data.load_dataset`).
    """
    cfg = config or TrainConfig()
    splits = splits or data.load()
    tr, te = splits.train, splits.test
    init = init_network(tr.input_dim, hidden, tr.n_classes, bias=bias, seed=seed)
    alpha = float(prior_fraction)
    pseed = seed if prior_seed is None else int(prior_seed)
    prior_idx, bound_idx = split_prior_bound(len(tr), alpha, pseed)
    res_p = train(init, tr.subset(prior_idx), cfg, test=te, progress=progress, desc="prior")
    pmeta = _base_meta(data, splits, seed)
    pmeta["prior"] = {"kind": "init", "seed": seed}
    pmeta["role"] = "data-dependent prior, trained on S_prior only"
    pmeta["bound_sample"] = {"kind": "bound-split", "prior_fraction": alpha, "seed": pseed,
                             "n_prior": int(prior_idx.size), "n_bound": int(bound_idx.size)}
    pmeta["training"] = _train_record(res_p, cfg)
    pmeta["train_error"] = res_p.train_error
    pmeta["test_error"] = res_p.test_error
    folder = save_checkpoint(out, res_p.network, init, pmeta)
    meta = load_json(folder / META_FILE)  # the saved record (architecture, tensor hash)
    return Checkpoint(network=res_p.network, init=init, prior=None, meta=meta, path=Path(folder))


def _check_prior(prior: Checkpoint, data: DataSpec, hidden: Sequence[int], bias: bool, seed: int,
                 prior_fraction: float | None, prior_seed: int | None, splits: DataSplits) -> dict[str, Any]:
    """The split record of an already trained prior, after checking that it fits this posterior."""
    meta = prior.meta
    rec = meta.get("bound_sample") or {}
    if rec.get("kind") != "bound-split":
        raise ConfigError(f"the prior at {prior.path} is not a data-dependent prior (no recorded S_prior split); "
                          "train it with train_prior")
    if prior_fraction is not None and float(prior_fraction) != float(rec["prior_fraction"]):
        raise ConfigError(f"the prior at {prior.path} was trained with prior fraction {rec['prior_fraction']}, "
                          f"not {prior_fraction}")
    if prior_seed is not None and int(prior_seed) != int(rec["seed"]):
        raise ConfigError(f"the prior at {prior.path} used split seed {rec['seed']}, not {prior_seed}")
    if int(meta.get("seed", -1)) != int(seed):
        raise ConfigError(f"the prior at {prior.path} was initialised with seed {meta.get('seed')}, not {seed}")
    tr = splits.train
    want = [tr.input_dim, *[int(h) for h in hidden], tr.n_classes]
    if list(prior.network.widths) != want or prior.network.has_bias != bool(bias):
        raise ConfigError(f"the prior at {prior.path} has widths {list(prior.network.widths)} "
                          f"(bias {prior.network.has_bias}), this posterior needs {want} (bias {bool(bias)})")
    keys = ("dataset", "split_seed", "n_train", "n_test", "synthetic")
    got = {k: (meta.get("data") or {}).get(k) for k in keys}
    want_data = to_jsonable(data.to_dict())
    if to_jsonable(got) != {k: want_data[k] for k in keys}:
        raise ConfigError(f"the prior at {prior.path} was trained on other data ({got})")
    return dict(rec)


def train_checkpoint(
    out: str | os.PathLike[str],
    *,
    data: DataSpec,
    hidden: Sequence[int],
    bias: bool = False,
    seed: int = 0,
    config: TrainConfig | None = None,
    prior_fraction: float | None = None,
    prior_seed: int | None = None,
    posterior: str = "standard",
    proximal: float = 0.0,
    splits: DataSplits | None = None,
    progress: bool = True,
    prior: Checkpoint | None = None,
    objective: ObjectiveOptions | None = None,
) -> Checkpoint:
    """Train a network (and, with ``prior_fraction``, its data-dependent prior) and save it.

    Without ``prior_fraction`` (and without ``prior``): initialise with ``seed``,
    train on the whole training set; the bound sample is the whole training set
    and the prior mean the initialisation.

    With ``prior_fraction = alpha``: split the training set into ``S_prior``
    (fraction alpha) and ``S_bound`` with ``prior_seed`` (default: ``seed``), train
    the prior from the initialisation on ``S_prior`` only, then the posterior from
    the prior on all of S: ``posterior="standard"`` (plain continuation) or
    ``"proximal"`` (penalty ``proximal * ||W - W0||_F^2``; ``inf`` returns the prior
    unchanged).  The prior is saved too (``OUT/prior``) and embedded in the
    posterior checkpoint (THEORY.md 4.4).

    With ``prior`` (a checkpoint from :func:`train_prior`, e.g. shared by several
    posteriors): the prior is not retrained nor saved again; its recorded split,
    seed, architecture and data must fit (``prior_fraction`` may be omitted), and
    the posterior record names it (``prior.checkpoint``, ``prior.tensor_sha256``).

    With ``objective`` (:class:`~sparsebound.recipes.ObjectiveOptions`) other than ``erm``
    (needs a data-dependent prior): the recipe of :mod:`sparsebound.recipes` from that erm
    prior (``posterior`` and ``proximal`` are then the recipe's): ``certificate`` trains the
    robust prior on ``S_prior`` (saved as ``OUT/robust-prior`` and embedded as THE prior of
    the checkpoint) and the posterior from it; ``pbb`` trains the posterior with the pbb
    objective and saves its learned standard deviations.  The record's ``objective`` entry
    holds the rules (``s0``, ``sigma_t``, ``kls``), configurations, seeds and the sigma
    profile of the certificate (``certificate_profile``; ``certify CKPT`` uses it).

    Raises:
        ConfigError: bad widths, alpha outside (0, 1), unknown posterior kind, a
            ``prior`` that does not fit, an objective other than erm without a prior.
        DataError: data problems (see :func:`sparsebound.data.load_dataset`).
    """
    cfg = config or TrainConfig()
    recipe = objective is not None and objective.objective != "erm"
    if recipe and prior_fraction is None and prior is None:
        raise ConfigError(f"--objective {objective.objective} needs a data-dependent prior: give --prior-fraction "  # type: ignore[union-attr]
                          "(e.g. 0.5)")
    if posterior not in ("standard", "proximal"):
        raise ConfigError(f"posterior must be 'standard' or 'proximal', got {posterior!r}")
    if posterior == "proximal" and not (proximal > 0):
        raise ConfigError("the proximal posterior needs a positive --proximal LAMBDA")
    if prior_fraction is None and prior is None and posterior == "proximal":
        raise ConfigError("a proximal posterior needs a data-dependent prior: give --prior-fraction")
    seed = check_seed(seed, "seed (--seed)")
    if prior_seed is not None:
        prior_seed = check_seed(prior_seed, "prior_seed")
    splits = splits or data.load()
    tr, te = splits.train, splits.test
    if prior_fraction is None and prior is None:
        init = init_network(tr.input_dim, hidden, tr.n_classes, bias=bias, seed=seed)
        res = train(init, tr, cfg, test=te, progress=progress, desc=f"train {'-'.join(map(str, hidden))}")
        meta = _base_meta(data, splits, seed)
        meta["prior"] = {"kind": "init", "seed": seed}
        meta["bound_sample"] = {"kind": "train", "n": len(tr)}
        meta["training"] = _train_record(res, cfg)
        meta["train_error"] = res.train_error
        meta["test_error"] = res.test_error
        save_checkpoint(out, res.network, init, meta)
        return Checkpoint(network=res.network, init=init, prior=None, meta=meta, path=Path(out))
    shared = prior is not None
    if prior is None:
        assert prior_fraction is not None
        prior = train_prior(Path(out) / "prior", data=data, hidden=hidden, prior_fraction=prior_fraction,
                            bias=bias, seed=seed, config=cfg, prior_seed=prior_seed, splits=splits,
                            progress=progress)
    split_rec = _check_prior(prior, data, hidden, bias, seed, prior_fraction, prior_seed, splits)
    if recipe:
        assert objective is not None
        return _train_recipe(out, objective, prior, split_rec, data=data, splits=splits, seed=seed, cfg=cfg,
                             shared=shared, progress=progress)
    prior_net, init = prior.network, prior.init
    prox = proximal if posterior == "proximal" else 0.0
    pcfg = TrainConfig(**{**cfg.to_dict(), "proximal": prox})
    res = train(prior_net, tr, pcfg, anchor=prior_net, test=te, progress=progress, desc=f"posterior ({posterior})")
    meta = _base_meta(data, splits, seed)
    meta["prior"] = {"kind": "data-dependent", "seed": seed, "posterior": posterior, "proximal": prox,
                     "prior_train_error": prior.meta.get("train_error"),
                     "prior_test_error": prior.meta.get("test_error"),
                     "prior_training": prior.meta.get("training"),
                     "checkpoint": str(prior.path) if prior.path is not None else None,
                     "tensor_sha256": prior.meta.get("tensor_sha256"),
                     "shared": shared}
    meta["bound_sample"] = split_rec
    meta["training"] = _train_record(res, pcfg)
    meta["train_error"] = res.train_error
    meta["test_error"] = res.test_error
    save_checkpoint(out, res.network, init, meta, prior=prior_net)
    return Checkpoint(network=res.network, init=init, prior=prior_net, meta=meta, path=Path(out))


def _train_recipe(out: str | os.PathLike[str], opts: ObjectiveOptions, prior: Checkpoint, split_rec: dict[str, Any],
                  *, data: DataSpec, splits: DataSplits, seed: int, cfg: TrainConfig, shared: bool,
                  progress: bool) -> Checkpoint:
    """The ``certificate`` / ``pbb`` recipes of :mod:`sparsebound.recipes` from the erm prior ``prior``."""
    from .objectives import prior_split_sigma_star
    from .recipes import certificate_profile, posterior_config, robust_prior

    tr, te = splits.train, splits.test
    pidx, bidx = split_prior_bound(len(tr), float(split_rec["prior_fraction"]), int(split_rec["seed"]))
    s_prior = tr.subset(pidx)
    depth = prior.network.depth
    rec: dict[str, Any] = {"objective": opts.objective, "options": opts.to_dict(), "seed": seed,
                           "erm_prior": {"checkpoint": str(prior.path) if prior.path is not None else None,
                                         "tensor_sha256": prior.meta.get("tensor_sha256"),
                                         "train_error": prior.meta.get("train_error"),
                                         "test_error": prior.meta.get("test_error"),
                                         "training": prior.meta.get("training")}}
    rules: dict[str, Any] = {}
    the_prior, prior_train_err, prior_test_err = prior.network, prior.meta.get("train_error"), \
        prior.meta.get("test_error")
    prior_training: Any = prior.meta.get("training")
    prior_path, prior_sha = (str(prior.path) if prior.path is not None else None), prior.meta.get("tensor_sha256")
    if opts.objective == "certificate":
        rob, rules, rcfg, rres = robust_prior(prior.network, s_prior, opts, seed=seed, base=cfg, test=te,
                                              progress=progress)
    if opts.objective == "certificate" and rres is not None:
        rmeta = _base_meta(data, splits, seed)
        rmeta["prior"] = {"kind": "init", "seed": seed}
        rmeta["role"] = ("robust prior: the erm prior trained further with the certificate objective on S_prior "
                         "only (sparsebound.recipes); the prior of the certificate")
        rmeta["bound_sample"] = dict(split_rec)
        rmeta["training"] = _train_record(rres, rcfg)
        rmeta["erm_prior_training"] = prior.meta.get("training")
        rmeta["rules"] = rules
        rmeta["train_error"] = rres.train_error
        rmeta["test_error"] = rres.test_error
        rfolder = save_checkpoint(Path(out) / "robust-prior", rres.network, prior.init, rmeta)
        rsha = load_json(rfolder / META_FILE).get("tensor_sha256")
        rec["robust_prior"] = {"checkpoint": str(rfolder), "tensor_sha256": rsha, "training": _train_record(rres, rcfg),
                               "train_error": rres.train_error, "test_error": rres.test_error,
                               "accepted": rules["robust_prior_accepted"]}
        if rules["robust_prior_accepted"]:
            the_prior, prior_train_err, prior_test_err = rob, rres.train_error, rres.test_error
            prior_training = _train_record(rres, rcfg)
            prior_path, prior_sha = str(rfolder), rsha
    if opts.objective == "certificate" and opts.certificate_noise == "all":
        if "sigma_t" not in rules:
            raise ConfigError("--certificate-noise all needs a target noise level, but the erm prior certifies at "
                              "most half of S_prior (s0 = 0); train it longer (--max-epochs)")
        rules["kls"] = prior_split_sigma_star(the_prior, s_prior.X, s_prior.y)
        rules["kls_rule"] = ("median sigma*(x) over S_prior of the prior of the certificate (the robust prior "
                             "when accepted; objectives.prior_split_sigma_star)")
    pcfg = posterior_config(opts, cfg, depth=depth, m_bound=int(bidx.size), rules=rules)
    res = train(the_prior, tr, pcfg, anchor=the_prior, test=te, progress=progress,
                desc=f"posterior ({opts.objective})")
    profile = certificate_profile(opts, depth)
    rec["rules"] = rules
    rec["posterior_training"] = _train_record(res, pcfg)
    rec["frozen_layers"] = list(pcfg.frozen_layers)
    rec["certificate_profile"] = list(profile) if profile is not None else None
    rec["noise_layers"] = ([k + 1 for k, c in enumerate(profile) if c > 0] if profile is not None
                           else list(range(1, depth + 1)))
    which = "robust prior" if rules.get("robust_prior_accepted") else "erm prior (the robust prior was not kept)"
    rec["certifies"] = (
        f"the whole network; its hidden layers are those of the {which} (trained on S_prior only), only the "
        "output layer learned from the bound sample" if profile is not None else
        "the whole network, every layer trained on all of S" if opts.objective == "certificate" else
        "sparse etc.: the deployed network; pbb (learned): the randomised Gibbs predictor N(W, diag s^2) with the "
        "learned s, not the deployed network")
    posterior_name = {"certificate": f"certificate-{opts.certificate_noise}", "pbb": "pbb"}[opts.objective]
    meta = _base_meta(data, splits, seed)
    meta["prior"] = {"kind": "data-dependent", "seed": seed, "posterior": posterior_name,
                     "proximal": float(pcfg.proximal),
                     "prior_train_error": prior_train_err, "prior_test_error": prior_test_err,
                     "prior_training": prior_training, "checkpoint": prior_path, "tensor_sha256": prior_sha,
                     "shared": shared, "erm_prior_tensor_sha256": prior.meta.get("tensor_sha256"),
                     "erm_prior_training": prior.meta.get("training")}
    meta["bound_sample"] = split_rec
    meta["training"] = _train_record(res, pcfg)
    meta["objective"] = rec
    meta["train_error"] = res.train_error
    meta["test_error"] = res.test_error
    save_checkpoint(out, res.network, prior.init, meta, prior=the_prior,
                    posterior_std=res.posterior_std if opts.objective == "pbb" else None)
    meta = load_json(Path(out) / META_FILE)
    return Checkpoint(network=res.network, init=prior.init, prior=the_prior, meta=meta, path=Path(out),
                      posterior_std=[t.to(torch.float64) for t in res.posterior_std]
                      if opts.objective == "pbb" and res.posterior_std is not None else None)


def bound_sample(ckpt: Checkpoint, splits: DataSplits, prior: str = "recorded") -> tuple[Dataset, str]:
    """The bound sample S_bound for a checkpoint and a prior choice.

    ``prior="init"`` (the initialisation, independent of all data): the whole
    training set.  A data-dependent prior: the training points NOT used to
    train the prior (recorded split).  Returns ``(dataset, description)``.
    """
    tr = splits.train
    rec = ckpt.meta.get("bound_sample", {"kind": "train"})
    if not isinstance(rec, dict):
        raise CheckpointError(f"checkpoint {ckpt.path}: damaged bound-sample record; re-run training")
    split = rec.get("kind") == "bound-split"
    if ckpt.prior is not None and not split and prior != "init":
        raise CheckpointError(
            f"checkpoint {ckpt.path} has a data-dependent prior but no valid record of its prior/bound split; "
            "certify with --prior init or re-run training"
        )
    if prior == "init" or not split:
        return tr, "whole training set (prior independent of the data)"
    try:
        alpha, seed = float(rec["prior_fraction"]), int(rec["seed"])
        pidx, bidx = split_prior_bound(len(tr), alpha, seed)
    except (KeyError, TypeError, ValueError, ConfigError):
        raise CheckpointError(
            f"checkpoint {ckpt.path}: damaged prior/bound split record {rec!r}; re-run training"
        ) from None
    if "n_bound" in rec and (int(rec["n_bound"]) != bidx.size or int(rec.get("n_prior", pidx.size)) != pidx.size):
        raise CheckpointError(
            f"checkpoint {ckpt.path}: the training set has {len(tr)} points but the recorded split had "
            f"{rec.get('n_prior')} + {rec.get('n_bound')}; the data differ from training (check --data-dir)"
        )
    return tr.subset(bidx), (f"S_bound: {bidx.size} training points not used by the prior "
                             f"(prior fraction {alpha}, seed {seed})")


def data_spec_of(ckpt: Checkpoint, dataset: str | None = None, data_dir: str | None = None) -> DataSpec:
    """The data spec recorded in a checkpoint (optionally overridden)."""
    rec = ckpt.meta.get("data")
    if rec is None:
        if dataset is None:
            raise ConfigError(
                "the checkpoint records no dataset; name its data with --data (certify) or --dataset (sparsity), "
                "e.g. --data mnist5k"
            )
        return DataSpec(dataset=dataset, data_dir=data_dir)
    spec = DataSpec.from_dict(rec)
    if dataset is not None and dataset != spec.dataset:
        spec = DataSpec(dataset=dataset, data_dir=data_dir)
    elif data_dir is not None:
        spec = DataSpec(**{**spec.to_dict(), "data_dir": data_dir})
    return spec


