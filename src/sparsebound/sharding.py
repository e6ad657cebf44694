"""Where :func:`sparsebound.certify` runs its per-sample work: here, or sharded on Ray (issue 15, item 2).

Two kinds of work are embarrassingly parallel and dominate large certificates: the exact
reduced norms of ``sparse``'s cascade (:meth:`sparsebound.tables.ExactBetaCache.refine`) and
``sparse-mc``'s draw batches (:func:`sparsebound.montecarlo.mc_losses`).  Both are written as a
map of a module-level function over a list of chunks, with one large shared value (the weights,
or the network, the bound sample and its tables) handed over once:

    results = sharding.map(fn, sharding.put(shared), chunks)    # == [fn(shared, c) for c in chunks]

* :class:`LocalSharding` is that plain loop, in this process (the default);
* :class:`RaySharding` submits every chunk as a Ray task; the shared value is put in the
  object store once and each worker process deserialises it once (and keeps it for the
  following chunks).  Ray is started locally, or attached to a cluster, by the study's
  helper (:meth:`sparsebound.study.ray_executor.RayExecutor.connect`).

**Identical numbers.** The chunks are fixed by the work itself, never by the number of
workers: the exact norms are cut at the batches :func:`~sparsebound.norms.exact_reduced_norms`
uses anyway (:meth:`~sparsebound.operators.LinearOperator.exact_batch`: which samples are
computed together can change the last bits), and the draws at the batches of
:func:`~sparsebound.montecarlo.mc_losses` (each draw regenerated from ``(seed, index)``).
Every chunk runs the same code on the same inputs, with as many torch threads as the client
has (each Ray task reserves that many CPUs), so the results are bit for bit those of the
local loop.  On a cluster, that holds when the nodes have the same CPU type and library
versions as the client (floating-point kernels differ between CPU generations).

**Start-up.** A local Ray instance takes a few seconds to start; sharding pays off when the
per-sample work takes much longer (wide networks, many refined samples, many draws).  With
``certify --threads 1`` every task uses one core, so a 2-core machine runs two at a time.

Source: issue 15 (item 2); docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError

__all__ = ["EXECUTORS", "LocalSharding", "RaySharding", "Sharding", "resolve_sharding"]

#: the ``executor`` values :func:`sparsebound.certify` accepts by name.
EXECUTORS = ("local", "ray")


@runtime_checkable
class Sharding(Protocol):
    """A map of ``fn(shared, chunk)`` over chunks; results in chunk order."""

    name: str

    def put(self, value: Any) -> Any:
        """A handle of a large value shared by many chunks (handed to ``map``)."""
        ...

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, chunks: Sequence[Any]) -> list[Any]:
        """``[fn(value of shared, c) for c in chunks]``, wherever it runs."""
        ...

    def close(self) -> None:
        """Release what the sharding started (certify closes only the shardings it created)."""
        ...


class LocalSharding:
    """The plain loop, in this process."""

    name = "local"

    def put(self, value: Any) -> Any:
        return value

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, chunks: Sequence[Any]) -> list[Any]:
        return [fn(shared, c) for c in chunks]

    def close(self) -> None:
        return None


#: per Ray worker process: the last shared value it received (id of its object -> value).
_WORKER_SHARED: dict[str, Any] = {}


def _ray_chunk(fn: Callable[[Any, Any], Any], shared: list[Any], chunk: Any, threads: int) -> Any:
    """One chunk in a Ray worker, with the client's torch thread count; the shared value is
    fetched once per worker process (``shared`` is ``[ObjectRef]``: not resolved by Ray)."""
    import ray

    from .network import torch_threads

    ref = shared[0]
    key = ref.hex()
    if key not in _WORKER_SHARED:
        _WORKER_SHARED.clear()
        _WORKER_SHARED[key] = ray.get(ref)
    with torch_threads(threads):
        return fn(_WORKER_SHARED[key], chunk)


class RaySharding:
    """Chunks as Ray tasks (see the module docstring).

    Args:
        address: a Ray cluster (``None``: ``RAY_ADDRESS`` when set, else a local instance
            started at the first use and shut down by :meth:`close`).
        threads: torch threads (and Ray CPUs) per task; default the client's torch thread
            count when the work starts, which keeps the numbers identical to the local loop.
        gpus: GPUs per task (1 for ``device="cuda"``).

    Raises:
        ConfigError: Ray is not installed (the message names the extra), on creation.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, threads: int | None = None, gpus: int = 0) -> None:
        from .study.ray_executor import import_ray

        import_ray()  # a missing Ray is refused before any work
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ConfigError(f"threads per Ray task must be an integer >= 1, got {threads!r}")
        self.address = address
        self.threads = int(threads) if threads is not None else None
        self.gpus = int(gpus)
        self.n_tasks = 0
        self._executor: Any = None

    def _threads(self) -> int:
        import torch

        return self.threads if self.threads is not None else max(1, torch.get_num_threads())

    def connect(self) -> RaySharding:
        """Start or attach Ray (the study's helper: a local instance, ``address`` or ``RAY_ADDRESS``).

        Raises:
            ConfigError: an unreachable address, or a cluster without the CPUs a task asks for.
        """
        if self._executor is None:
            from .study.ray_executor import RayExecutor

            self._executor = RayExecutor(self.address, cpus_per_task=self._threads(),
                                         gpus_per_task=self.gpus).connect()
        return self

    def put(self, value: Any) -> Any:
        import ray

        self.connect()
        return [ray.put(value)]

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, chunks: Sequence[Any]) -> list[Any]:
        """Submit every chunk, wait for all; a chunk that raises re-raises here (the first one, in
        chunk order) and the others are cancelled.

        Raises:
            ConfigError: a worker or node lost on every retry.
        """
        if not chunks:
            return []
        from .study.ray_executor import MAX_RETRIES, import_ray

        ray = import_ray()
        self.connect()
        if not (isinstance(shared, list) and len(shared) == 1 and isinstance(shared[0], ray.ObjectRef)):
            shared = self.put(shared)
        threads = self._threads()
        remote = ray.remote(_ray_chunk).options(num_cpus=threads, num_gpus=self.gpus, max_retries=MAX_RETRIES,
                                                retry_exceptions=False)
        refs = [remote.remote(fn, shared, c, threads) for c in chunks]
        self.n_tasks += len(refs)
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            self._cancel(ray, refs)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except ray.exceptions.RayError as exc:
            self._cancel(ray, refs)
            raise ConfigError(f"a Ray worker or node was lost on each of {MAX_RETRIES + 1} attempts "
                              f"({type(exc).__name__}); check the cluster (`ray status`) or use executor='local'") \
                from None

    @staticmethod
    def _cancel(ray: Any, refs: Sequence[Any]) -> None:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # best effort: the certificate is failing anyway
                pass

    def close(self) -> None:
        """Shut Ray down if it was started (or attached) here (never raises)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None


def resolve_sharding(executor: str | Sharding | None, ray_address: str | None = None,
                     device: str | None = None) -> tuple[Sharding, bool]:
    """The sharding of :func:`sparsebound.certify`'s ``executor`` option, and whether the caller
    owns it (must close it).

    Raises:
        ConfigError: an unknown executor name, ``ray_address`` without ``executor="ray"``, or a
            missing Ray (naming the extra that installs it).
    """
    if executor is None or (isinstance(executor, str) and executor == "local"):
        if ray_address is not None:
            raise ConfigError("ray_address (--ray-address) applies with executor='ray' (--executor ray)")
        return LocalSharding(), False
    if isinstance(executor, str):
        if executor == "ray":
            gpus = 1 if device is not None and str(device).startswith("cuda") else 0
            return RaySharding(ray_address, gpus=gpus), True
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)} or a sparsebound.sharding.Sharding, "
                          f"got {executor!r}")
    if isinstance(executor, Sharding):
        if ray_address is not None:
            raise ConfigError("ray_address applies with executor='ray'; a Sharding object carries its own address")
        return executor, False
    raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)} or a sparsebound.sharding.Sharding, "
                      f"got {type(executor).__name__}")
