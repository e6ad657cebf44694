"""Training ReLU MLPs: initialisation, SGD with momentum, priors and posteriors.

A thin shell around PyTorch (float32 training).  What the certificate later
needs is recorded: the seed and the exact initial weights (the default prior
mean), the data split, the training curve.

Data-dependent priors (THEORY.md 4.4): the prior is trained on ``S_prior`` only;
the posterior continues from the prior on all of ``S`` (``standard``), or with
a proximal penalty ``lambda ||W - W0||_F^2`` toward the prior (``proximal``).
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as nnf

from .data import Dataset
from .errors import ConfigError, check_seed
from .network import ReLUNetwork, resolve_device


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings (all recorded in checkpoints), validated on construction.

    Attributes:
        lr: SGD learning rate.
        momentum: SGD momentum.
        batch_size: mini-batch size.
        max_epochs: hard stop.
        target_error: stop as soon as the training error (full pass) is <= this
            (objective ``erm`` only; the other objectives run ``max_epochs``).
        seed: seed of the mini-batch order (an integer in [0, 2^63 - 1], ``errors.check_seed``).
        proximal: lambda of the penalty ``lambda * sum_k ||W_k - A_k||_F^2`` toward
            an anchor network A (the prior), applied as an exact proximal step after
            each SGD step (stable for any lambda); 0 switches it off; ``inf`` returns
            the anchor unchanged.
        weight_decay: plain L2 penalty (default 0).
        device: ``cpu`` or ``cuda``.
        objective: ``erm`` (cross-entropy), ``pbb`` (PAC-Bayes objective of the Gibbs
            predictor with learned per-parameter variances) or ``certificate`` (surrogate of
            the deterministic certificate at ``objective_sigma``); see
            :mod:`sparsebound.objectives`.  The objective never enters a bound.
        objective_sigma: ``certificate``: the target noise level sigma_t; ``pbb``: the prior
            standard deviation sigma_P (per layer ``objective_sigma * c_k``).  Choose it on a
            grid fixed a priori (e.g. a point of :class:`~sparsebound.pacbayes.SigmaGrid`).
        objective_profile: per-layer multipliers c_k >= 0 (empty: all ones); c_k = 0 needs
            layer k in ``frozen_layers``.
        objective_m: the bound-sample size m in the objective's ``KL / m`` (0: ``certificate``
            has no KL term, ``pbb`` uses the number of training points).
        objective_delta: the delta inside the objective's complexity term.
        objective_bound: ``quad`` or ``classic`` (Perez-Ortiz et al. 2021).
        objective_pmin: p_min of the bounded cross-entropy.
        frozen_layers: 1-based layers that never move (kept bit-identical to the start
            network; any objective).
        objective_ramp_epochs: ``certificate``: the noise level of the robust logits grows
            linearly from ``objective_sigma / R`` to ``objective_sigma`` over the first R epochs
            (0: no ramp); the KL term always uses its full noise level.
        objective_kl_sigma: ``certificate``: the noise level of the KL term (0: the same as
            ``objective_sigma``).  The robust logits use cheap, pessimistic bounds (dense level,
            full spectral norms), so the certificate usually reaches a larger sigma than the one
            the surrogate trains for; the KL term should use the sigma the certificate will use
            (e.g. chosen on the prior split, docs/theory.md section 12).

    Raises:
        ConfigError: a value out of range (lr <= 0, momentum outside [0, 1), batch size < 1,
            negative epochs, target error outside [0, 1], negative proximal lambda or
            weight decay, a seed outside [0, 2^63 - 1]).
    """

    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    max_epochs: int = 100
    target_error: float = 0.0
    seed: int = 0
    proximal: float = 0.0
    weight_decay: float = 0.0
    device: str = "cpu"
    objective: str = "erm"
    objective_sigma: float = 0.0
    objective_profile: tuple[float, ...] = ()
    objective_m: int = 0
    objective_delta: float = 0.025
    objective_bound: str = "quad"
    objective_pmin: float = 1e-4
    frozen_layers: tuple[int, ...] = ()
    objective_ramp_epochs: int = 0
    objective_kl_sigma: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", check_seed(self.seed, "seed (--seed)"))
        for name in ("batch_size", "max_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ConfigError(f"{name.replace('_', ' ')} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not (0.0 <= self.momentum < 1.0):
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.max_epochs < 0:
            raise ConfigError(f"max epochs must be >= 0, got {self.max_epochs}")
        if not (0.0 <= self.target_error <= 1.0):
            raise ConfigError(f"target training error must lie in [0, 1], got {self.target_error}")
        if not (self.proximal >= 0):
            raise ConfigError(f"proximal lambda must be >= 0, got {self.proximal}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight decay must be a finite number >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if math.isinf(self.proximal):
            d["proximal"] = "inf"
        d["objective_profile"] = [float(c) for c in self.objective_profile]
        d["frozen_layers"] = [int(k) for k in self.frozen_layers]
        return d


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        network: the trained network (float64 copy of the float32 weights).
        curve: one dict per epoch (``epoch``, ``loss``, ``train_error``,
            ``test_error`` when test data was given, ``seconds``).
        train_error, test_error: final errors (float64 forward pass).
        epochs: epochs run; ``reached_target``: stopped by the target error.
        objective: the objective's record (name, frozen layers, last mini-batch values of
            its surrogate, KL and objective).
        posterior_std: ``pbb`` only: per layer the learned standard deviations in the
            augmented weight shape (float64), the posterior ``N(W, diag std^2)`` that the
            ``pbb`` certificate takes (:func:`sparsebound.pbb.pbb_certificate`); else None.
    """

    network: ReLUNetwork
    curve: list[dict[str, float]] = field(default_factory=list)
    train_error: float = float("nan")
    test_error: float | None = None
    epochs: int = 0
    reached_target: bool = False
    seconds: float = 0.0
    objective: dict[str, Any] = field(default_factory=dict)
    posterior_std: list[torch.Tensor] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "curve": self.curve,
            "train_error": self.train_error,
            "test_error": self.test_error,
            "epochs": self.epochs,
            "reached_target": self.reached_target,
            "seconds": self.seconds,
            "objective": self.objective,
        }


#: bytes per parameter a training run holds at once: float32 weights, gradients and momentum, the float64
#: network kept by sparsebound and its float64 copies in certification (a generous estimate)
BYTES_PER_PARAMETER = 64


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory_for(dims: Sequence[int], bias: bool) -> None:
    """Refuse, before any allocation, a network whose parameters cannot fit in this
    machine's memory (``BYTES_PER_PARAMETER`` bytes each, against half the physical
    memory).

    Raises:
        ConfigError: naming the widths, the parameter count and the memory needed.
    """
    n = sum(dims[k] * dims[k - 1] + (dims[k] if bias else 0) for k in range(1, len(dims)))
    need = n * BYTES_PER_PARAMETER
    mem = _physical_memory()
    if mem is not None and need > mem // 2:
        raise ConfigError(
            f"a network of widths {list(dims)} has {n:,} parameters and needs about {need / 2**30:.1f} GiB to train "
            f"and certify ({BYTES_PER_PARAMETER} bytes per parameter), more than half of this machine's "
            f"{mem / 2**30:.1f} GiB; choose smaller --widths"
        )


def init_network(
    input_dim: int, hidden: Sequence[int], n_classes: int, *, bias: bool = False, seed: int = 0
) -> ReLUNetwork:
    """PyTorch's default ``nn.Linear`` initialisation, seeded.

    Weights (and biases) ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (Kaiming-uniform
    with a = sqrt(5)), drawn from ``torch.Generator().manual_seed(seed)`` so the
    initialisation is reproducible from the seed alone.

    Raises:
        ConfigError: empty or non-positive widths (depth < 2), a seed outside [0, 2^63 - 1].
    """
    hidden = [int(h) for h in hidden]
    if not hidden:
        raise ConfigError("give at least one hidden width (depth K >= 2), e.g. --widths 100 100")
    if any(h < 1 for h in hidden):
        raise ConfigError(f"hidden widths must be positive integers, got {hidden}")
    dims = [int(input_dim), *hidden, int(n_classes)]
    check_memory_for(dims, bias)
    gen = torch.Generator().manual_seed(check_seed(seed, "seed (--seed)"))
    ws, bs = [], []
    for k in range(1, len(dims)):
        bound = 1.0 / math.sqrt(dims[k - 1])
        ws.append((torch.rand(dims[k], dims[k - 1], generator=gen, dtype=torch.float32) * 2 - 1) * bound)
        if bias:
            bs.append((torch.rand(dims[k], generator=gen, dtype=torch.float32) * 2 - 1) * bound)
    return ReLUNetwork(ws, bs if bias else None)


def _error_f32(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    wrong = 0
    with torch.no_grad():
        for i in range(0, X.shape[0], batch):
            wrong += int((model(X[i : i + batch]).argmax(1) != y[i : i + batch]).sum())
    return wrong / max(1, X.shape[0])


def train(
    start: ReLUNetwork,
    data: Dataset,
    config: TrainConfig,
    *,
    anchor: ReLUNetwork | None = None,
    test: Dataset | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train from ``start`` with SGD + momentum on cross-entropy.

    Args:
        start: initial network (not modified).
        data: training set (``X`` float32 ``(N, d_0)``, ``y`` int64).
        config: :class:`TrainConfig`.
        anchor: network of the proximal penalty (defaults to ``start``).
        test: optional held-out set, evaluated every epoch for the curve.
        progress: show a tqdm bar over epochs.

    Returns:
        :class:`TrainResult`; the network is returned even when the target error
        was not reached (``reached_target`` False).

    Raises:
        ShapeMismatchError / DataError: data that does not fit the network.
        ConfigError: CUDA asked for where none is available.
    """
    from tqdm.auto import tqdm

    from .objectives import build_objective, check_objective

    dev = resolve_device(config.device)
    start.check_data(data.X, data.y)
    check_objective(config, start.widths)
    t_start = time.perf_counter()
    anchor_net = anchor if anchor is not None else start
    start.check_compatible(anchor_net, "proximal anchor")
    if math.isinf(config.proximal):
        res = TrainResult(network=anchor_net, epochs=0, reached_target=False)
        res.train_error = anchor_net.error_rate(data.X, data.y)
        res.test_error = anchor_net.error_rate(test.X, test.y) if test is not None else None
        return res
    model = start.to_sequential(torch.float32).to(dev)
    anchor_model = anchor_net.to_sequential(torch.float32).to(dev)
    X = data.X.to(dev, torch.float32)
    y = data.y.to(dev, torch.int64)
    Xt = test.X.to(dev, torch.float32) if test is not None else None
    yt = test.y.to(dev, torch.int64) if test is not None else None
    objective = build_objective(model, anchor_model, config, int(X.shape[0]))
    # a frozen prefix (layers 1..j, objective erm) never changes: compute its features once and
    # train the rest on them (the same objective; the frozen layers are restored bit for bit below)
    net_fn: nn.Module = model
    j = _frozen_prefix(config, start.depth)
    if j:
        prefix = nn.Sequential(*list(model)[: 1 + 2 * j])
        net_fn = nn.Sequential(*list(model)[1 + 2 * j:])
        with torch.no_grad():
            X = _features(prefix, X)
            Xt = _features(prefix, Xt) if Xt is not None else None
    opt = torch.optim.SGD(objective.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(int(config.seed))
    N = X.shape[0]
    curve: list[dict[str, float]] = []
    model.eval()
    err = _error_f32(net_fn, X, y)
    # the target-error stop applies to erm; the other objectives optimise a bound, not the fit,
    # and run max_epochs
    stop_at_target = config.objective == "erm"
    reached = stop_at_target and err <= config.target_error
    epochs = 0
    bar = tqdm(total=config.max_epochs, desc=desc, disable=None if progress else True, leave=False, unit="epoch")
    try:
        while not reached and epochs < config.max_epochs:
            model.train()
            objective.start_epoch(epochs)
            perm = torch.randperm(N, generator=gen).to(dev)
            tot, nb = 0.0, 0
            for i in range(0, N, config.batch_size):
                idx = perm[i : i + config.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = objective.loss(X[idx], y[idx]) if not j else nnf.cross_entropy(net_fn(X[idx]), y[idx])
                if not torch.isfinite(loss):
                    raise ConfigError(
                        f"training diverged (loss {float(loss.detach())}) at epoch {epochs + 1}; "
                        "lower the learning rate"
                    )
                loss.backward()
                opt.step()
                objective.after_step()
                # proximal steps for lambda ||W - A||^2 (the proximal posterior's penalty, and the KL
                # term of the certificate objective): the exact minimiser of lambda' ||w - A||^2 +
                # ||w - v||^2 / (2 lr), stable for every lambda; with momentum mu the step is lr/(1-mu)
                # at stationarity, so lambda' = lambda/(1-mu) keeps the stationary points of the
                # objective + lambda ||W - A||^2
                with torch.no_grad():
                    for p_, a_, lam in objective.prox_terms():
                        if lam > 0:
                            c = 2.0 * lam * config.lr / (1.0 - config.momentum)
                            p_.add_(a_, alpha=c).div_(1.0 + c)
                tot += float(loss.detach())
                nb += 1
            epochs += 1
            model.eval()
            err = _error_f32(net_fn, X, y)
            row = {"epoch": epochs, "loss": tot / max(1, nb), "train_error": err,
                   "seconds": time.perf_counter() - t_start}
            if Xt is not None and yt is not None:
                row["test_error"] = _error_f32(net_fn, Xt, yt)
            curve.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", err=f"{err:.4f}")
            reached = stop_at_target and err <= config.target_error
    finally:
        bar.close()
    net = _restore_frozen(ReLUNetwork.from_sequential(model.cpu()), start, config.frozen_layers)
    res = TrainResult(network=net, curve=curve, epochs=epochs, reached_target=bool(reached),
                      seconds=time.perf_counter() - t_start, objective=objective.record(),
                      posterior_std=objective.posterior_std())
    res.train_error = net.error_rate(data.X, data.y)
    res.test_error = net.error_rate(test.X, test.y) if test is not None else None
    return res


def _frozen_prefix(config: TrainConfig, depth: int) -> int:
    """j when the frozen layers are exactly 1..j (j < depth) and the objective is erm, else 0."""
    fr = sorted({int(k) for k in config.frozen_layers})
    if config.objective != "erm" or not fr or fr != list(range(1, len(fr) + 1)) or len(fr) >= depth:
        return 0
    return len(fr)


def _features(prefix: nn.Module, X: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    return torch.cat([prefix(X[i : i + batch]) for i in range(0, X.shape[0], batch)]) if X.shape[0] else X


def _restore_frozen(net: ReLUNetwork, start: ReLUNetwork, frozen: Sequence[int]) -> ReLUNetwork:
    """``net`` with the frozen layers replaced by ``start``'s exact float64 tensors (they never
    moved; copying makes them bit-identical to the prior, which a zero-noise layer needs)."""
    if not frozen:
        return net
    ws = list(net.weights)
    bs = list(net.biases) if net.biases is not None else None
    for k in frozen:
        ws[k - 1] = start.weights[k - 1].clone()
        if bs is not None and start.biases is not None:
            bs[k - 1] = start.biases[k - 1].clone()
    return ReLUNetwork(ws, bs)


def train_error_of(net: ReLUNetwork, data: Dataset) -> float:
    """0-1 error of ``net`` on ``data`` (certified float64 forward pass)."""
    return net.error_rate(data.X, data.y)

