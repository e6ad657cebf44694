"""``certify(..., executor=...)``: the per-sample work (exact reduced norms of ``sparse``, ``sparse-mc``'s
draw batches) sharded in fixed chunks gives the local certificate bit for bit (issue 15, item 2).

Without Ray: a sharding that pickles every chunk and its shared value and runs the chunks in
reverse order (what a cluster may do) gives the same numbers, and the option errors.  With a
real local Ray instance (2 CPUs, shared by the module; start-up takes seconds): the certificate
of ``sparse`` and ``sparse-mc`` on Ray equals the local one, through a ``RaySharding`` object, and
through ``certify --executor ray``.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from sparsebound import certify, cli
from sparsebound.errors import ConfigError
from sparsebound.network import ReLUNetwork
from sparsebound.sharding import LocalSharding, RaySharding, resolve_sharding


def _task(m: int = 600, seed: int = 7) -> dict[str, Any]:
    """A 10-24-20-3 network, a prior close to it and data it labels (some samples near the
    certification threshold, so the cascade refines them)."""
    g = torch.Generator().manual_seed(seed)
    widths = (10, 24, 20, 3)
    ws = [torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) / math.sqrt(widths[k])
          for k in range(3)]
    net = ReLUNetwork(ws)
    prior = ReLUNetwork([w + 0.002 * torch.randn(w.shape, generator=g, dtype=torch.float64) / math.sqrt(w.shape[1])
                         for w in ws])
    X = torch.randn(m, widths[0], generator=g, dtype=torch.float64).float()
    y = net.forward(X).outputs.argmax(1)
    return {"net": net, "prior": prior, "X": X, "y": y}


#: sparse's cascade and sparse-mc with draws in 3 batches (4096 // 512 = 8 draws per batch)
OPTS: dict[str, Any] = {"methods": ["sparse", "sparse-mc"], "mc_draws": 24, "mc_batch": 512, "mc_seed": 5,
                        "exact_rounds": 2, "progress": False, "tradeoff": False}


def _record(cert: Any) -> str:
    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in ("timings_s", "environment")}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d

    return json.dumps(strip(cert.to_dict(per_sample=True)))


class PickledReversed:
    """Each chunk on pickled copies of its inputs, the last chunk first (as separate processes
    on a cluster would see them, in any order); results in chunk order."""

    name = "pickled-reversed"

    def __init__(self) -> None:
        self.n_tasks = 0

    def put(self, value: Any) -> Any:
        return pickle.dumps(value)

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, chunks: Sequence[Any]) -> list[Any]:
        out: list[Any] = [None] * len(chunks)
        for i in reversed(range(len(chunks))):
            out[i] = pickle.loads(pickle.dumps(fn(pickle.loads(shared), pickle.loads(pickle.dumps(chunks[i])))))
        self.n_tasks += len(chunks)
        return out

    def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return _task()


@pytest.fixture(scope="module")
def local_record(task: dict[str, Any]) -> tuple[str, Any]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cert = certify(task["net"], task["X"], task["y"], prior=task["prior"], **OPTS)
    finally:
        torch.set_num_threads(n)
    return _record(cert), cert


def test_sharded_chunks_in_any_order_give_the_local_certificate(task, local_record, one_torch_thread) -> None:
    rec, cert = local_record
    assert cert.grids["exact_norms"]["norms_computed"] > 0  # the cascade did refine
    assert cert.results["sparse-mc"].n_draws == 24
    sh = PickledReversed()
    other = certify(task["net"], task["X"], task["y"], prior=task["prior"], executor=sh, **OPTS)
    assert sh.n_tasks >= 2 * 3  # exact-norm chunks, and 3 draw batches per sigma evaluated
    assert _record(other) == rec


def test_executor_option_errors(task) -> None:
    with pytest.raises(ConfigError, match="executor must be one of local, ray"):
        certify(task["net"], task["X"], task["y"], prior=task["prior"], executor="dask", progress=False)
    with pytest.raises(ConfigError, match="ray_address"):
        resolve_sharding("local", "127.0.0.1:6379")
    sh, owned = resolve_sharding(None)
    assert isinstance(sh, LocalSharding) and not owned


def test_missing_ray_is_one_line_naming_the_extra(task, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"sparsebound\[ray\]") as exc:
        certify(task["net"], task["X"], task["y"], prior=task["prior"], executor="ray", progress=False)
    assert "\n" not in str(exc.value)
    assert cli.main(["certify", "no-such-checkpoint", "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "sparsebound[ray]" in err[0]
    assert cli.main(["certify", "no-such-checkpoint", "--ray-address", "127.0.0.1:1"]) == 2
    assert "--ray-address applies with --executor ray" in capsys.readouterr().err


# --------------------------------------------------------------------------- with Ray


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance with 2 CPUs, shared by the module (certify uses a connection it finds)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False, object_store_memory=256 * 1024 * 1024)
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_certificate_bit_for_bit(ray_instance, task, local_record, one_torch_thread) -> None:
    rec, _ = local_record
    sh = RaySharding(threads=1)
    cert = certify(task["net"], task["X"], task["y"], prior=task["prior"], executor=sh, **OPTS)
    assert sh.n_tasks >= 2 * 3  # the work did run as Ray tasks
    assert _record(cert) == rec
    sh.close()
    assert ray_instance.is_initialized()  # a connection it found is left open


def test_cli_certify_executor_ray_writes_the_local_certificate(ray_instance, tmp_path) -> None:
    """By name (``executor="ray"``, through the CLI): the same certificate file."""
    ck = tmp_path / "ck"
    assert cli.main(["train", "--dataset", "synthetic", "--widths", "16", "16", "--max-epochs", "3", "--out", str(ck),
                     "--quiet"]) == 0
    common = ["certify", str(ck), "--methods", "sparse-mc", "--mc-draws", "8", "--mc-seed", "3", "--threads", "1",
              "--quiet", "--json"]
    assert cli.main([*common, str(tmp_path / "local.json")]) == 0
    assert cli.main([*common, str(tmp_path / "ray.json"), "--executor", "ray"]) == 0

    def load(name: str) -> Any:
        d = json.loads((tmp_path / name).read_text())
        for k in ("timings_s", "environment"):
            d.pop(k)
        d["results"]["sparse-mc"].pop("timings_s")
        return d

    assert load("ray.json") == load("local.json")
