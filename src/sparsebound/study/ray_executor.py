"""Running a study's runs as Ray tasks (``sparsebound reproduce --executor ray``).

:class:`RayExecutor` implements the :class:`~sparsebound.study.runner.Executor`
seam with `Ray <https://docs.ray.io>`_ (an optional extra:
``pip install "sparsebound[ray]"``):

* **where**: with ``--ray-address ADDR`` (or ``RAY_ADDRESS`` in the environment,
  as ``ray job submit`` sets it) it connects to that cluster; otherwise it starts a
  local Ray instance with every CPU of this machine (no dashboard, quiet logs) and
  shuts it down at the end.  A Ray connection already open in this process is used
  as it is (and left open).
* **what**: every run is one Ray task of ``--threads`` CPUs (1 when not given;
  the run uses that many torch threads) and, with ``--device cuda``, one GPU.  The
  runs of one group (:attr:`~sparsebound.study.runner.RunTask.group`, a (width,
  seed) block: they share the data-dependent priors) are submitted one after the
  other, each when the previous one has finished; different groups run at the same
  time, at most :attr:`RayExecutor.slots` of them (the cluster's CPUs divided by
  the CPUs per run, and its GPUs for ``cuda``).  A group is taken from the caller
  only when a slot is free, so a time budget is planned when the group starts.
* **files**: the workers read and write the study's ``OUT`` folder themselves, so
  every node must see it at the same path (the local instance: trivially; a
  cluster: a shared filesystem mounted at the same path on every node, with the
  client's working directory there too when ``--out`` is relative).  Before the
  first run a probe task on every node checks this (and that the node has the
  client's sparsebound and torch versions); a node that fails gets a one-line
  :class:`~sparsebound.errors.ConfigError`.  The data must load on every node (the
  bundled data sets do; ``--data-dir`` must be on the shared filesystem too).
* **failures**: a task whose worker process or node is lost is retried by Ray, at
  most :data:`MAX_RETRIES` times (the retry resumes from the run's files: its
  sparse-mc seed recorded in ``run.json`` before drawing is reused, never redrawn);
  a task that raises is not retried (it would raise again).  Either way the run is
  yielded as a :class:`~sparsebound.study.runner.RunFailure` and the other runs go
  on; the study then records the failures in ``results.json`` and the report and
  exits with status 1 (:class:`~sparsebound.errors.RunFailedError`).

The numbers do not depend on the executor: a run computes the same certificate
wherever it runs (with ``--mc-seed`` the sparse-mc draws too; fresh seeds differ
between any two studies, local or not).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .runner import RunEnvironment, RunFailure, RunOutcome, RunTask, execute_run

__all__ = ["FAULTS_ENV", "MAX_RETRIES", "RAY_EXTRA", "RayExecutor", "check_answers", "import_ray", "probe_node",
           "run_task"]

#: how a missing Ray is installed.
RAY_EXTRA = 'pip install "sparsebound[ray]"'
#: retries of a task whose worker process or node was lost (exceptions raised by a run are not retried).
MAX_RETRIES = 2
#: test-only fault injection, read on the client when a study starts: comma-separated
#: ``ACTION:RUN_ID`` with ACTION ``raise`` (the run raises RuntimeError), ``die`` (its worker
#: process exits at once, on every attempt) or ``die-once`` (it exits on the first attempt only, leaving
#: ``.test-fault-retried`` in the run's folder when retried).
FAULTS_ENV = "SPARSEBOUND_TEST_FAULTS"
#: seconds the node probe may take before the study is refused.
PROBE_TIMEOUT_S = 300.0
#: object-store size of the local instance (the tasks pass small records, never tensors).
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (the message names the extra that installs it).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with {RAY_EXTRA}") \
            from None
    return ray


#: seconds to wait for a cluster's address to accept a connection.
CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """Refuse an address where nothing listens (``ray.init`` would retry for minutes).

    ``host:port`` and ``ray://host:port`` are checked; other forms (``auto``) are left to Ray.

    Raises:
        ConfigError: no connection to ``host:port`` within :data:`CONNECT_TIMEOUT_S` seconds.
    """
    import socket

    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); start it with "
                          "`ray start --head` and pass the address it prints to --ray-address") from None


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ======================================================================================
# what runs on a worker
# ======================================================================================

#: per worker process: the data of the last study it ran (loaded once, reused by its next runs).
_WORKER_DATA: dict[str, Any] = {}


def _data_key(task: RunTask) -> str:
    return repr(sorted(task.config.data_spec().to_dict().items()))


def _inject_fault(task: RunTask, faults: str | None) -> None:
    """Test-only (:data:`FAULTS_ENV`): fail this run as asked."""
    for item in (faults or "").split(","):
        action, _, run_id = item.strip().partition(":")
        if run_id != task.job.id:
            continue
        if action == "raise":
            raise RuntimeError(f"injected failure of {run_id}")
        if action == "die":
            os._exit(17)
        if action == "die-once":
            marker = task.run_dir / ".test-fault-died"
            if marker.exists():
                marker.rename(marker.with_name(".test-fault-retried"))
            else:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("died once\n")
                os._exit(17)


def _in_dir(cwd: str) -> str:
    old = os.getcwd()
    try:
        os.chdir(cwd)
    except OSError:
        pass  # the probe reports a node where the client's folder is missing
    return old


def run_task(task: RunTask, cwd: str, threads: int, faults: str | None = None) -> RunOutcome:
    """Run one task in a Ray worker: in the client's working directory, with ``threads``
    torch threads, the data loaded once per worker process; no progress bars."""
    import torch

    old_cwd, old_threads = _in_dir(cwd), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _inject_fault(task, faults)
        key = _data_key(task)
        if key not in _WORKER_DATA:
            _WORKER_DATA.clear()
            _WORKER_DATA[key] = task.config.data_spec().load()
        return execute_run(task, RunEnvironment(task.config, _WORKER_DATA[key]), progress=False)
    finally:
        torch.set_num_threads(old_threads)
        os.chdir(old_cwd)


def probe_node(probe: str, cwd: str, token: str) -> dict[str, Any]:
    """What a node sees: whether ``probe`` (a file in OUT) holds ``token``, and its versions."""
    import socket

    import torch

    from .. import __version__

    old = _in_dir(cwd)
    try:
        try:
            sees = Path(probe).read_text(encoding="utf-8") == token
        except OSError:
            sees = False
        return {"host": socket.gethostname(), "sees_out": sees, "sparsebound": __version__,
                "torch": torch.__version__}
    finally:
        os.chdir(old)


def check_answers(answers: dict[str, dict[str, Any]], out: Path, versions: dict[str, str]) -> None:
    """Refuse a cluster some node of which (``answers``: node id -> :func:`probe_node`'s answer)
    does not see ``out`` or runs other versions than ``versions`` (the client's).

    Raises:
        ConfigError: names the first such node and the fix.
    """
    for node, a in answers.items():
        host = f"Ray node {a.get('host')} ({node[:8]})"
        if not a.get("sees_out"):
            raise ConfigError(f"{host} does not see the output folder {str(out.resolve())!r}; put --out on a "
                              "filesystem shared by every node, mounted at the same path")
        theirs = {k: a.get(k) for k in versions}
        if theirs != versions:
            have = ", ".join(f"{k} {v}" for k, v in theirs.items())
            want = ", ".join(f"{k} {v}" for k, v in versions.items())
            raise ConfigError(f"{host} has {have}, this client {want}; install the same versions on every node")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ======================================================================================
# the executor
# ======================================================================================


class RayExecutor:
    """Runs each task as a Ray task (see the module docstring for where, how and what on failure).

    Args:
        address: a Ray cluster to connect to (``None``: ``RAY_ADDRESS`` when set, else a
            local instance started here).
        cpus_per_task: CPUs (and torch threads) of one run (>= 1).
        gpus_per_task: GPUs of one run (1 for ``--device cuda``, else 0).
        num_cpus: CPUs of a local instance started here (default: those of this process).
        max_retries: retries of a task whose worker or node is lost.

    Use :meth:`for_config` for a study's settings; :meth:`connect` before :meth:`run`
    (``run`` connects when needed) and :meth:`close` at the end.
    """

    def __init__(self, address: str | None = None, *, cpus_per_task: int = 1, gpus_per_task: int = 0,
                 num_cpus: int | None = None, max_retries: int = MAX_RETRIES) -> None:
        if cpus_per_task < 1 or gpus_per_task < 0 or max_retries < 0:
            raise ConfigError("a Ray task needs at least one CPU and no negative GPUs or retries")
        self.address = address
        self.cpus_per_task, self.gpus_per_task = int(cpus_per_task), int(gpus_per_task)
        self.num_cpus = num_cpus
        self.max_retries = int(max_retries)
        self.slots = 1
        self._connected = False
        self._started_here = False
        self._probed: set[str] = set()

    @classmethod
    def for_config(cls, config: Any) -> RayExecutor:
        """The executor of a study's settings (``ray_address``, ``threads``, ``device``)."""
        return cls(config.ray_address, cpus_per_task=int(config.threads or 1),
                   gpus_per_task=1 if str(config.device).startswith("cuda") else 0, max_retries=MAX_RETRIES)

    # ---- connection ----------------------------------------------------------------
    def connect(self) -> RayExecutor:
        """Connect to (or start) Ray and size :attr:`slots` from the cluster's resources.

        Raises:
            ConfigError: Ray missing, an unreachable address, or a cluster without the
                CPUs (GPUs) one run asks for.
        """
        if self._connected:
            return self
        ray = import_ray()
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
            quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
            try:
                if address:
                    ray.init(address=address, **quiet)
                else:
                    ray.init(address="local", num_cpus=self.num_cpus or _available_cpus(),
                             object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
                raise ConfigError(f"cannot connect to {where} ({_one_line(exc)}); start the cluster with "
                                  "`ray start --head` and pass the address it prints to --ray-address") from None
            self._started_here = True
        self._connected = True
        try:
            self._size(ray.cluster_resources())
        except ConfigError:
            self.close()
            raise
        return self

    def _size(self, res: dict[str, float]) -> None:
        cpus, gpus = float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))
        if cpus < self.cpus_per_task:
            raise ConfigError(f"each run asks for {self.cpus_per_task} CPUs (--threads) but the Ray cluster has "
                              f"{cpus:g}; lower --threads or add nodes")
        slots = int(cpus // self.cpus_per_task)
        if self.gpus_per_task:
            if gpus < self.gpus_per_task:
                raise ConfigError(f"--device cuda asks for a GPU per run but the Ray cluster has {gpus:g} GPUs; "
                                  "use --device cpu or add GPU nodes")
            slots = min(slots, int(gpus // self.gpus_per_task))
        self.slots = max(1, slots)

    def close(self) -> None:
        """Shut Ray down when this executor started or connected it (never raises)."""
        if self._started_here:
            try:
                import ray

                ray.shutdown()
            except Exception:  # best effort at the end of a study
                pass
        self._connected = self._started_here = False

    def __enter__(self) -> RayExecutor:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the node probe ------------------------------------------------------------
    def check_nodes(self, out: Path) -> None:
        """Every alive node with CPUs sees ``out`` (a token file written here) and has this
        client's sparsebound and torch versions.

        Raises:
            ConfigError: names the node and what it lacks.
        """
        import torch

        from .. import __version__

        ray = import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = secrets.token_hex(16)
        probe = out / f".ray-probe-{token[:8]}"
        probe.write_text(token, encoding="utf-8")
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive") and float(n.get("Resources", {}).get("CPU", 0)) > 0]
            fn = ray.remote(probe_node)
            refs = {n["NodeID"]: fn.options(num_cpus=0, max_retries=self.max_retries, scheduling_strategy=
                                            NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(str(probe), os.getcwd(), token) for n in nodes}
            try:
                answers = dict(zip(refs, ray.get(list(refs.values()), timeout=PROBE_TIMEOUT_S), strict=True))
            except ray.exceptions.GetTimeoutError:
                raise ConfigError(f"a Ray node did not answer within {PROBE_TIMEOUT_S:.0f}s; check the cluster "
                                  "(`ray status`)") from None
        finally:
            probe.unlink(missing_ok=True)
        check_answers(answers, out, {"sparsebound": __version__, "torch": torch.__version__})

    # ---- running -------------------------------------------------------------------
    def run(self, groups: Iterable[Sequence[RunTask]]) -> Iterator[RunOutcome | RunFailure]:
        """Run the groups (at most :attr:`slots` at a time; each group's tasks in order) and
        yield each outcome or failure as it arrives.  Closing the iterator cancels the
        tasks still running."""
        ray = import_ray()
        self.connect()
        faults = os.environ.get(FAULTS_ENV) or None
        remote = ray.remote(run_task).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                              max_retries=self.max_retries, retry_exceptions=False)
        cwd = os.getcwd()
        source = iter(groups)
        pending: dict[Any, tuple[RunTask, deque[RunTask]]] = {}
        active = 0  # groups started and not finished
        exhausted = False

        def submit(task: RunTask, rest: deque[RunTask]) -> None:
            out = str(task.out)
            if out not in self._probed:
                self.check_nodes(task.out)
                self._probed.add(out)
            pending[remote.remote(task, cwd, self.cpus_per_task, faults)] = (task, rest)

        def fill() -> None:
            nonlocal active, exhausted
            while not exhausted and active < self.slots:
                try:
                    group = deque(next(source))
                except StopIteration:
                    exhausted = True
                    return
                if group:
                    active += 1
                    submit(group.popleft(), group)

        try:
            fill()
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                task, rest = pending.pop(ref)
                result: RunOutcome | RunFailure
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    result = RunFailure(task, _one_line(cause) if isinstance(cause, BaseException) else
                                        _one_line(exc), "raised", None)
                except ray.exceptions.RayError as exc:
                    result = RunFailure(task, f"{_one_line(exc)} (its worker or node was lost on each of "
                                        f"{self.max_retries + 1} attempts)", "system", self.max_retries + 1)
                if rest:
                    submit(rest.popleft(), rest)
                else:
                    active -= 1
                yield result
                fill()
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # best effort: the study is stopping
                    pass
