"""Runs: train-and-save (``sparsebound train``) and the bound sample of a checkpoint.

The ``reproduce`` pipeline lives in :mod:`sparsebound.reproduce`; this module
holds the pieces both the CLI and that pipeline call: train a network (and
optionally its data-dependent prior) and write the checkpoint with everything
a bound needs later, and recover the bound sample from a checkpoint's record.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import Checkpoint, save_checkpoint
from .data import Dataset, DataSplits, load_dataset, split_prior_bound
from .errors import ConfigError
from .network import ReLUNetwork
from .training import TrainConfig, TrainResult, init_network, train


def versions() -> dict[str, str]:
    """Library versions for every results file."""
    from .certificate import environment_record

    return environment_record()


@dataclass(frozen=True)
class DataSpec:
    """Which data a run uses (recorded; enough to reload the same split)."""

    dataset: str = "mnist5k"
    data_dir: str | None = None
    split_seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    synthetic: dict | None = None

    def load(self) -> DataSplits:
        return load_dataset(self.dataset, data_dir=self.data_dir, split_seed=self.split_seed,
                            n_train=self.n_train, n_test=self.n_test, synthetic=self.synthetic)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "data_dir": self.data_dir, "split_seed": self.split_seed,
                "n_train": self.n_train, "n_test": self.n_test, "synthetic": self.synthetic}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls(dataset=d["dataset"], data_dir=d.get("data_dir"), split_seed=int(d.get("split_seed", 0)),
                   n_train=d.get("n_train"), n_test=d.get("n_test"), synthetic=d.get("synthetic"))


def _train_record(res: TrainResult, cfg: TrainConfig) -> dict[str, Any]:
    return {"config": cfg.to_dict(), **res.to_dict()}


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
) -> Checkpoint:
    """Train a network (and, with ``prior_fraction``, its data-dependent prior) and save it.

    Without ``prior_fraction``: initialise with ``seed``, train on the whole
    training set; the bound sample is the whole training set and the prior mean
    the initialisation.

    With ``prior_fraction = alpha``: split the training set into ``S_prior``
    (fraction alpha) and ``S_bound`` with ``prior_seed`` (default: ``seed``), train
    the prior from the initialisation on ``S_prior`` only, then the posterior from
    the prior on all of S: ``posterior="standard"`` (plain continuation) or
    ``"proximal"`` (penalty ``proximal * ||W - W0||_F^2``).  The prior is saved
    too (``OUT/prior``) and embedded in the posterior checkpoint (THEORY.md 4.4).

    Raises:
        ConfigError: bad widths, alpha outside (0, 1), unknown posterior kind.
        DataError: data problems (see :func:`sparsebound.data.load_dataset`).
    """
    cfg = config or TrainConfig()
    if posterior not in ("standard", "proximal"):
        raise ConfigError(f"posterior must be 'standard' or 'proximal', got {posterior!r}")
    if posterior == "proximal" and not (proximal > 0):
        raise ConfigError("the proximal posterior needs a positive --proximal LAMBDA")
    if prior_fraction is None and posterior == "proximal":
        raise ConfigError("a proximal posterior needs a data-dependent prior: give --prior-fraction")
    splits = splits or data.load()
    tr, te = splits.train, splits.test
    init = init_network(tr.input_dim, hidden, tr.n_classes, bias=bias, seed=seed)
    base_meta: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data.to_dict(),
        "data_info": splits.to_dict(),
        "radius": tr.radius,
        "seed": seed,
        "versions": versions(),
    }
    if prior_fraction is None:
        res = train(init, tr, cfg, test=te, progress=progress, desc=f"train {'-'.join(map(str, hidden))}")
        meta = dict(base_meta)
        meta["prior"] = {"kind": "init", "seed": seed}
        meta["bound_sample"] = {"kind": "train", "n": len(tr)}
        meta["training"] = _train_record(res, cfg)
        meta["train_error"] = res.train_error
        meta["test_error"] = res.test_error
        save_checkpoint(out, res.network, init, meta)
        return Checkpoint(network=res.network, init=init, prior=None, meta=meta, path=Path(out))
    alpha = float(prior_fraction)
    pseed = seed if prior_seed is None else int(prior_seed)
    prior_idx, bound_idx = split_prior_bound(len(tr), alpha, pseed)
    s_prior = tr.subset(prior_idx)
    res_p = train(init, s_prior, cfg, test=te, progress=progress, desc="prior")
    prior_net = res_p.network
    split_rec = {"kind": "bound-split", "prior_fraction": alpha, "seed": pseed,
                 "n_prior": int(prior_idx.size), "n_bound": int(bound_idx.size)}
    pmeta = dict(base_meta)
    pmeta["prior"] = {"kind": "init", "seed": seed}
    pmeta["role"] = "data-dependent prior, trained on S_prior only"
    pmeta["bound_sample"] = split_rec
    pmeta["training"] = _train_record(res_p, cfg)
    pmeta["train_error"] = res_p.train_error
    pmeta["test_error"] = res_p.test_error
    save_checkpoint(Path(out) / "prior", prior_net, init, pmeta)
    pcfg = TrainConfig(**{**cfg.to_dict(), "proximal": proximal if posterior == "proximal" else 0.0})
    res = train(prior_net, tr, pcfg, anchor=prior_net, test=te, progress=progress, desc=f"posterior ({posterior})")
    meta = dict(base_meta)
    meta["prior"] = {"kind": "data-dependent", "seed": seed, "posterior": posterior,
                     "proximal": proximal if posterior == "proximal" else 0.0,
                     "prior_train_error": res_p.train_error, "prior_test_error": res_p.test_error,
                     "prior_training": _train_record(res_p, cfg)}
    meta["bound_sample"] = split_rec
    meta["training"] = _train_record(res, pcfg)
    meta["train_error"] = res.train_error
    meta["test_error"] = res.test_error
    save_checkpoint(out, res.network, init, meta, prior=prior_net)
    return Checkpoint(network=res.network, init=init, prior=prior_net, meta=meta, path=Path(out))


def bound_sample(ckpt: Checkpoint, splits: DataSplits, prior: str = "recorded") -> tuple[Dataset, str]:
    """The bound sample S_bound for a checkpoint and a prior choice.

    ``prior="init"`` (the initialisation, independent of all data): the whole
    training set.  A data-dependent prior: the training points NOT used to
    train the prior (recorded split).  Returns ``(dataset, description)``.
    """
    tr = splits.train
    rec = ckpt.meta.get("bound_sample", {"kind": "train"})
    if prior == "init" or rec.get("kind") != "bound-split":
        return tr, "whole training set (prior independent of the data)"
    _, bidx = split_prior_bound(len(tr), float(rec["prior_fraction"]), int(rec["seed"]))
    return tr.subset(bidx), (f"S_bound: {bidx.size} training points not used by the prior "
                             f"(prior fraction {rec['prior_fraction']}, seed {rec['seed']})")


def data_spec_of(ckpt: Checkpoint, dataset: str | None = None, data_dir: str | None = None) -> DataSpec:
    """The data spec recorded in a checkpoint (optionally overridden)."""
    rec = ckpt.meta.get("data")
    if rec is None:
        if dataset is None:
            raise ConfigError("the checkpoint records no dataset; give --dataset")
        return DataSpec(dataset=dataset, data_dir=data_dir)
    spec = DataSpec.from_dict(rec)
    if dataset is not None and dataset != spec.dataset:
        spec = DataSpec(dataset=dataset, data_dir=data_dir)
    elif data_dir is not None:
        spec = DataSpec(**{**spec.to_dict(), "data_dir": data_dir})
    return spec


_ = (math, np, torch, ReLUNetwork)
