"""Checkpoints: trained weights, initial weights, optional prior, and the record.

A checkpoint is a folder with

* ``model.safetensors``: float64 tensors ``network.weight.k`` / ``network.bias.k``,
  ``init.weight.k`` / ``init.bias.k`` (the recorded initialisation, default prior
  mean) and, for a data-dependent prior, ``prior.weight.k`` / ``prior.bias.k``;
  for a posterior trained with the ``pbb`` objective, ``posterior_std.k``: the learned
  standard deviations of layer k (augmented weight shape, bias column last);
* ``checkpoint.json``: architecture, seeds, data split, prior protocol, training
  curve, final errors, library versions, and the SHA-256 of the tensor file.

Both files are written atomically (tensors first, then the JSON that names
their hash), so a failed run never leaves a half-written checkpoint and a
mismatched pair is detected on load.  Weights are stored in float64, so
loading restores the network bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write_with, dump_json
from .errors import CheckpointError, NetworkError
from .network import ReLUNetwork

FORMAT = "sparsebound-checkpoint/1"
TENSOR_FILE = "model.safetensors"
META_FILE = "checkpoint.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        network: the trained network W.
        init: the recorded initialisation (prior mean of the ``init`` prior; the
            reference matrices of the baselines).
        prior: the data-dependent prior mean W0, when the network was trained with one.
        meta: the JSON record.
        path: the checkpoint folder.
        posterior_std: the learned posterior standard deviations (``pbb`` objective), one
            float64 tensor per layer of the augmented weight shape, or ``None``.
    """

    network: ReLUNetwork
    init: ReLUNetwork
    prior: ReLUNetwork | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    posterior_std: list[torch.Tensor] | None = None


def _tensors(prefix: str, net: ReLUNetwork) -> dict[str, torch.Tensor]:
    out = {}
    for k, w in enumerate(net.weights, start=1):
        # clone: safetensors refuses tensors that share memory (network is init/prior)
        out[f"{prefix}.weight.{k}"] = w.contiguous().clone()
        if net.biases is not None:
            out[f"{prefix}.bias.{k}"] = net.biases[k - 1].contiguous().clone()
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    out: str | os.PathLike[str],
    network: ReLUNetwork,
    init: ReLUNetwork,
    meta: dict[str, Any],
    prior: ReLUNetwork | None = None,
    posterior_std: list[torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (tensors, then the JSON record).

    ``posterior_std`` (optional): learned posterior standard deviations, one tensor per
    layer (``TrainResult.posterior_std``), stored in float64 in the same hashed tensor file.

    Raises:
        ShapeMismatchError: ``init``/``prior`` of another architecture.
        ConfigError: the folder is not writable.
    """
    from safetensors.torch import save_file

    from ._io import ensure_writable_dir

    folder = ensure_writable_dir(out)
    network.check_compatible(init, "initialisation")
    tensors = _tensors("network", network) | _tensors("init", init)
    if prior is not None:
        network.check_compatible(prior, "prior")
        tensors |= _tensors("prior", prior)
    if posterior_std is not None:
        if len(posterior_std) != network.depth:
            raise CheckpointError(f"posterior_std has {len(posterior_std)} tensors, the network {network.depth} layers")
        for k, t in enumerate(posterior_std, start=1):
            tensors[f"posterior_std.{k}"] = t.detach().to(torch.float64).contiguous().clone()
    tpath = folder / TENSOR_FILE
    atomic_write_with(tpath, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    record = dict(meta)
    record["format"] = FORMAT
    record["architecture"] = {
        "widths": list(network.widths),
        "depth": network.depth,
        "bias": network.has_bias,
        "n_parameters": network.n_parameters,
    }
    record["has_prior"] = prior is not None
    record["has_posterior_std"] = posterior_std is not None
    record["tensor_sha256"] = _sha256(tpath)
    dump_json(folder / META_FILE, record)
    return folder


def _net_from(tensors: dict[str, torch.Tensor], prefix: str, depth: int, bias: bool, where: Path) -> ReLUNetwork:
    try:
        ws = [tensors[f"{prefix}.weight.{k}"] for k in range(1, depth + 1)]
        bs = [tensors[f"{prefix}.bias.{k}"] for k in range(1, depth + 1)] if bias else None
    except KeyError as exc:
        raise CheckpointError(
            f"checkpoint {where} lacks tensor {exc.args[0]}; it is incomplete, re-run `sparsebound train`"
        ) from None
    try:
        return ReLUNetwork(ws, bs)
    except NetworkError as exc:
        raise CheckpointError(f"checkpoint {where}: {exc}") from None


def _schema_error(meta_p: Path, field_: str, want: str, got: Any) -> CheckpointError:
    return CheckpointError(
        f"{meta_p}: field {field_!r} must be {want}, got {got!r:.60}; the checkpoint is damaged, re-run training"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_meta(meta: dict[str, Any], meta_p: Path) -> None:
    """Validate the types of every field a command reads from ``checkpoint.json`` (once, at load).

    Fields are optional (a minimal record loads), but a field that is present must
    have its type: ``data`` an object with a string ``dataset``, an integer
    ``split_seed`` >= 0 and integer-or-null sizes; ``data_info``, ``versions``,
    ``prior``, ``training`` (and its ``config``) objects; ``bound_sample`` an
    object of kind ``train`` or ``bound-split`` (the latter with ``prior_fraction``
    in (0, 1), an integer ``seed`` >= 0 and integer ``n_prior``/``n_bound``);
    numbers for ``radius``, ``train_error``, ``test_error`` (or null); an integer
    ``seed``; a boolean ``has_prior``.

    Raises:
        CheckpointError: the first field of the wrong type ("the checkpoint is damaged").
    """
    for key in ("data", "data_info", "versions", "prior", "training", "bound_sample", "architecture", "objective"):
        if key in meta and not isinstance(meta[key], dict):
            raise _schema_error(meta_p, key, "an object", meta[key])
    d = meta.get("data")
    if d is not None:
        if not isinstance(d.get("dataset"), str):
            raise _schema_error(meta_p, "data.dataset", "a dataset name", d.get("dataset"))
        if "split_seed" in d and not (_is_int(d["split_seed"]) and d["split_seed"] >= 0):
            raise _schema_error(meta_p, "data.split_seed", "an integer >= 0", d["split_seed"])
        for k in ("n_train", "n_test"):
            if d.get(k) is not None and not (_is_int(d[k]) and d[k] >= 1):
                raise _schema_error(meta_p, f"data.{k}", "a positive integer or null", d[k])
        for k in ("data_dir",):
            if d.get(k) is not None and not isinstance(d[k], str):
                raise _schema_error(meta_p, f"data.{k}", "a string or null", d[k])
        if d.get("synthetic") is not None and not isinstance(d["synthetic"], dict):
            raise _schema_error(meta_p, "data.synthetic", "an object or null", d["synthetic"])
        if d.get("radius") is not None and not (_is_num(d["radius"]) and d["radius"] > 0):
            raise _schema_error(meta_p, "data.radius", "a positive number or null", d["radius"])
    tr = meta.get("training")
    if tr is not None:
        if "config" in tr and not isinstance(tr["config"], dict):
            raise _schema_error(meta_p, "training.config", "an object", tr["config"])
        if "epochs" in tr and not _is_int(tr["epochs"]):
            raise _schema_error(meta_p, "training.epochs", "an integer", tr["epochs"])
        if "curve" in tr and not isinstance(tr["curve"], list):
            raise _schema_error(meta_p, "training.curve", "a list", tr["curve"])
    pr = meta.get("prior")
    if pr is not None and "kind" in pr and not isinstance(pr["kind"], str):
        raise _schema_error(meta_p, "prior.kind", "a string", pr["kind"])
    bs = meta.get("bound_sample")
    if bs is not None:
        kind = bs.get("kind")
        if kind not in ("train", "bound-split"):
            raise _schema_error(meta_p, "bound_sample.kind", "'train' or 'bound-split'", kind)
        if kind == "bound-split":
            a = bs.get("prior_fraction")
            if not (_is_num(a) and 0.0 < a < 1.0):
                raise _schema_error(meta_p, "bound_sample.prior_fraction", "a number in (0, 1)", a)
            for k in ("seed", "n_prior", "n_bound"):
                if not (_is_int(bs.get(k)) and bs[k] >= 0):
                    raise _schema_error(meta_p, f"bound_sample.{k}", "an integer >= 0", bs.get(k))
        elif "n" in bs and not (_is_int(bs["n"]) and bs["n"] >= 0):
            raise _schema_error(meta_p, "bound_sample.n", "an integer >= 0", bs["n"])
    for k in ("radius", "train_error", "test_error"):
        if meta.get(k) is not None and not _is_num(meta[k]):
            raise _schema_error(meta_p, k, "a number or null", meta[k])
    if "seed" in meta and not (_is_int(meta["seed"]) and meta["seed"] >= 0):
        raise _schema_error(meta_p, "seed", "an integer >= 0", meta["seed"])
    for k in ("has_prior", "has_posterior_std"):
        if k in meta and not isinstance(meta[k], bool):
            raise _schema_error(meta_p, k, "true or false", meta[k])
    if meta.get("tensor_sha256") is not None and not isinstance(meta["tensor_sha256"], str):
        raise _schema_error(meta_p, "tensor_sha256", "a hex string", meta["tensor_sha256"])
    ob = meta.get("objective")
    if ob is not None:
        prof = ob.get("certificate_profile")
        if prof is not None and not (isinstance(prof, list) and all(_is_num(c) and c >= 0 for c in prof)):
            raise _schema_error(meta_p, "objective.certificate_profile", "a list of numbers >= 0 or null", prof)
        for k in ("rules", "options"):
            if k in ob and not isinstance(ob[k], dict):
                raise _schema_error(meta_p, f"objective.{k}", "an object", ob[k])
        for k in ("robust_prior", "erm_prior"):
            if ob.get(k) is not None and not isinstance(ob[k], dict):
                raise _schema_error(meta_p, f"objective.{k}", "an object or null", ob[k])
        for k in ("s0", "sigma_t", "target_factor", "kls", "prior_epochs"):
            v = (ob.get("rules") or {}).get(k)
            if v is not None and not (_is_num(v) or v in ("inf", "-inf")):  # dump_json writes inf as "inf"
                raise _schema_error(meta_p, f"objective.rules.{k}", "a number", v)
        arch_ = meta.get("architecture")
        depth = arch_.get("depth") if isinstance(arch_, dict) else None
        if prof and _is_int(depth) and len(prof) != depth:
            raise _schema_error(meta_p, "objective.certificate_profile", f"a list of {depth} numbers (one per layer)",
                                prof)
    arch = meta.get("architecture")
    if arch is not None and "widths" in arch and not (
            isinstance(arch["widths"], list) and all(_is_int(w) and w > 0 for w in arch["widths"])):
        raise _schema_error(meta_p, "architecture.widths", "a list of positive integers", arch["widths"])


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint folder (or its ``checkpoint.json`` / ``model.safetensors``).

    Raises:
        CheckpointError: missing files, unreadable JSON or tensors, a record with a
            field of the wrong type (:func:`check_meta`), a tensor file that does not
            match the record, non-finite weights.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    folder = p.parent if p.is_file() or p.suffix in (".json", ".safetensors") else p
    meta_p, tens_p = folder / META_FILE, folder / TENSOR_FILE
    if not meta_p.is_file() or not tens_p.is_file():
        raise CheckpointError(
            f"no checkpoint at {str(p)!r} (need {META_FILE} and {TENSOR_FILE}); "
            "give the folder written by `sparsebound train --out`"
        )
    try:
        meta = json.loads(meta_p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {meta_p}: {exc}; the checkpoint is damaged, re-run training") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_p} is not a sparsebound checkpoint record (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_p} is not a sparsebound checkpoint (format {meta.get('format')!r})")
    check_meta(meta, meta_p)
    sha = meta.get("tensor_sha256")
    if sha and _sha256(tens_p) != sha:
        raise CheckpointError(
            f"{tens_p} does not match {meta_p} (hash differs); the checkpoint was half-written, re-run training"
        )
    try:
        tensors = load_file(str(tens_p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {tens_p}: {exc}; re-run training") from None
    arch = meta.get("architecture")
    try:
        depth, bias = int(arch["depth"]), bool(arch.get("bias", False))
    except (TypeError, ValueError, KeyError, AttributeError):
        raise CheckpointError(
            f"{meta_p} has no valid 'architecture' record; the checkpoint is damaged, re-run training"
        ) from None
    network = _net_from(tensors, "network", depth, bias, folder)
    init = _net_from(tensors, "init", depth, bias, folder)
    prior = _net_from(tensors, "prior", depth, bias, folder) if meta.get("has_prior") else None
    std = None
    if meta.get("has_posterior_std"):
        try:
            std = [tensors[f"posterior_std.{k}"] for k in range(1, depth + 1)]
        except KeyError as exc:
            raise CheckpointError(f"checkpoint {folder} lacks tensor {exc.args[0]}; it is incomplete, re-run "
                                  "`sparsebound train`") from None
        if not all(bool(torch.isfinite(t).all()) and bool((t >= 0).all()) for t in std):
            raise CheckpointError(f"checkpoint {folder}: posterior_std holds negative or non-finite values; "
                                  "re-run training")
    return Checkpoint(network=network, init=init, prior=prior, meta=meta, path=folder, posterior_std=std)
