"""Feed-forward ReLU networks as the certificate sees them (THEORY.md section 1).

A :class:`ReLUNetwork` holds K >= 2 weight matrices ``W_k`` of shape
``(d_k, d_{k-1})`` (optionally biases ``b_k`` of shape ``(d_k,)``) and computes

    x^0 = x,  z^k = W_k x^{k-1} (+ b_k),  x^k = relu(z^k) (k < K),  f = z^K.

Weights are kept in float64 on the CPU (an exact copy of float32 weights); the
forward pass used for certification runs in float64 and also returns a rigorous
bound on its own floating-point rounding error, so that every radius and margin
the certificate uses is a *lower* bound of the exact real-arithmetic value and
every norm an *upper* bound (docs/theory.md, "Rounding").

Source: Muthukumar & Sulam, COLT 2023, section 2; THEORY.md section 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, NetworkError, ShapeMismatchError
from .operators import DenseLinear
from .rounding import (
    TINY64,
    U64,
    frobenius_sq_distance_upper,
    next_down,
    next_up,
    sqrt_up,
    sum_up,
)

UNIT_ROUNDOFF_F64 = U64


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The one place where the compute device is decided.

    Args:
        device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ConfigError: unknown device name, or CUDA asked for where none is available.
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(str(device))
        except (RuntimeError, ValueError):
            raise ConfigError(
                f"unknown device {device!r}; use --device cpu or --device cuda"
            ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {str(dev)!r}; use --device cpu or --device cuda")
    return dev


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily run torch CPU kernels on ``n`` threads.

    Used around LAPACK solvers and loops of small tensor operations, which run
    many times slower on two threads when the cores are shared with another
    process; large matrix products keep the default.
    """
    old = torch.get_num_threads()
    if old == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def full_precision() -> Iterator[None]:
    """Run float32 matrix products in full IEEE float32 (no TF32 / bfloat16 shortcuts).

    ``torch.set_float32_matmul_precision('high'/'medium')`` or
    ``torch.backends.cuda.matmul.allow_tf32`` make float32 products use fewer
    mantissa bits, which would break any float32 rounding analysis; this
    restores full precision for the duration and puts the settings back after.
    """
    old_prec = torch.get_float32_matmul_precision()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_prec)
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
        torch.backends.cudnn.allow_tf32 = old_cudnn


@dataclass(frozen=True)
class Activations:
    """Everything one forward pass of ``W`` on ``N`` inputs yields (float64, CPU).

    Attributes:
        pre_activations: K-1 tensors ``z^k`` of shape ``(N, d_k)`` for the hidden
            layers k = 1..K-1 (float64, computed values).
        preact_error: ``(N, K)`` float64; column k-1 is at least
            ``max_i |z^k_i - zhat^k_i| + 2u (max_i |zhat^k_i| + max_i |z^k_i - zhat^k_i|)``
            for layer k (k = 1..K; the last column is the output): a bound of the layer's
            rounding error with room for ONE float64 addition or subtraction of it to any
            computed entry, so that ``fl(zhat_i + err) >= z_i`` and ``fl(zhat_i - err) <= z_i``
            (docs/theory.md section 7).
        hidden_norms: ``(N, K)`` float64; column k is an upper bound of
            ``n_k = ||x^k||`` for k = 0..K-1 (with biases: ``||(x^k, 1)||``).
        outputs: ``(N, C)`` float64 computed logits ``f_W(x)``.
        margins: ``(N,)`` float64 computed margin ``M = f_y - max_{c != y} f_c``
            (only when labels were given, else empty).
        margins_lower: ``(N,)`` float64 lower bound of the exact margin.
        predictions: ``(N,)`` int64 argmax of ``outputs``.
        margins_upper: ``(N,)`` float64 upper bound of the exact margin (empty without labels).
    """

    pre_activations: tuple[torch.Tensor, ...]
    preact_error: torch.Tensor
    hidden_norms: torch.Tensor
    outputs: torch.Tensor
    margins: torch.Tensor
    margins_lower: torch.Tensor
    predictions: torch.Tensor
    margins_upper: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.float64))

    @property
    def n_samples(self) -> int:
        return int(self.outputs.shape[0])

    def error_rate(self, y: torch.Tensor) -> float:
        """0-1 error ``mean(M <= 0)`` (ties count as errors, THEORY.md 1) against labels
        ``y`` (``(N,)`` int64), from the computed margins."""
        return float((self._bounds(y)[0] <= 0).double().mean())

    def error_rate_upper(self, y: torch.Tensor) -> float:
        """Error counted on the safe side for upper bounds: every sample whose exact margin
        might be <= 0 (its rigorous lower bound is <= 0) counts as an error."""
        return float((self._bounds(y)[1] <= 0).double().mean())

    def error_rate_lower(self, y: torch.Tensor) -> float:
        """Error counted on the safe side for lower bounds: only samples whose exact margin
        is surely <= 0 (its rigorous upper bound is <= 0) count."""
        return float((self._bounds(y)[2] <= 0).double().mean())

    def _bounds(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.outputs.shape[0]
        if self.margins.numel() == n and self.margins_lower.numel() == n and self.margins_upper.numel() == n:
            return self.margins, self.margins_lower, self.margins_upper
        return margin_bounds(self.outputs, self.preact_error[:, -1], y.to(torch.int64).cpu().view(-1))


def margin_bounds(
    outputs: torch.Tensor, out_err: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Computed margins and rigorous lower and upper bounds of the exact ones.

    Args:
        outputs: ``(N, C)`` computed logits; out_err: ``(N,)`` the output column of
            ``Activations.preact_error`` (error bound with room for one operation);
            y: ``(N,)`` int64 labels.

    Proof (docs/theory.md section 7): with ``e = max_i |f_i - fhat_i|`` and ``Z = max_i |fhat_i|``,
    ``|M - (fhat_y - max_{c != y} fhat_c)| <= 2e``; the computed ``m = fl(fhat_y - max fhat_c)``
    errs by at most ``u |m| / (1 - u) <= 4u Z``, and ``out_err >= e + 2u (Z + e)``, so
    ``M`` lies in ``[m - 2 out_err, m + 2 out_err]``; each end is one more float64
    operation, moved one float outward.
    """
    m = margins_from_outputs(outputs, y)
    two = 2.0 * out_err  # exact
    return m, next_down(m - two), next_up(m + two)
def as_labels(y: object) -> torch.Tensor:
    """Labels as a 1-D int64 tensor.

    Raises:
        DataError: one-hot labels ``(N, C)`` (the message says ``y.argmax(1)``), float,
            complex or boolean labels (silently truncating 2.9 to 2 would certify another
            task), or labels that are not 1-D.
    """
    from .data import one_hot_hint
    from .errors import DataError

    t = torch.as_tensor(y)
    hint = one_hot_hint(t) if t.ndim == 2 and not t.is_complex() else None
    if hint is not None:
        raise DataError(hint)
    if t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
        raise DataError(f"labels must be integer class indices, got dtype {t.dtype}; convert with y.long()")
    if t.ndim != 1:
        raise DataError(f"labels must be a 1-D tensor of class indices, got shape {tuple(t.shape)}; pass y.view(-1)")
    return t.to(torch.int64)


def margins_from_outputs(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Margin ``M = f_y - max_{c != y} f_c`` per row (THEORY.md section 1).

    Args:
        outputs: ``(N, C)`` logits, C >= 2.
        y: ``(N,)`` int64 labels in ``[0, C)``.
    """
    true = outputs.gather(1, y.view(-1, 1)).squeeze(1)
    other = outputs.clone()
    other.scatter_(1, y.view(-1, 1), -math.inf)
    return true - other.max(dim=1).values


class ReLUNetwork:
    """A K-layer ReLU network ``f_W(x) = W_K relu(W_{K-1} ... relu(W_1 x))``.

    Args:
        weights: K >= 2 arrays/tensors, ``W_k`` of shape ``(d_k, d_{k-1})``.
        biases: ``None`` (bias-free) or K arrays of shape ``(d_k,)``; a ``None``
            entry in the list is a zero bias.

    Raises:
        NetworkError: fewer than two layers, shapes that do not chain, non-finite
            weights or biases.

    Source: THEORY.md section 1 (biases as an extra constant input column).
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor | np.ndarray],
        biases: Sequence[torch.Tensor | np.ndarray | None] | None = None,
    ) -> None:
        if len(weights) < 2:
            raise NetworkError(
                f"a ReLU network needs K >= 2 weight layers, got {len(weights)}; "
                "add a hidden layer (a single linear layer has no hidden activations to be sparse)"
            )
        ws = [self._as_f64(w, f"weight of layer {k + 1}") for k, w in enumerate(weights)]
        for k, w in enumerate(ws):
            if w.ndim != 2:
                raise NetworkError(
                    f"weight of layer {k + 1} must be a matrix (d_out, d_in), got shape {tuple(w.shape)}"
                )
            if k > 0 and w.shape[1] != ws[k - 1].shape[0]:
                raise NetworkError(
                    f"layer {k + 1} expects {w.shape[1]} inputs but layer {k} has "
                    f"{ws[k - 1].shape[0]} outputs; fix the layer sizes"
                )
        bs: list[torch.Tensor] | None = None
        if biases is not None:
            if len(biases) != len(ws):
                raise NetworkError(
                    f"got {len(biases)} biases for {len(ws)} layers; give one per layer (None for zero)"
                )
            bs = []
            for k, (w, b) in enumerate(zip(ws, biases, strict=True)):
                if b is None:
                    bs.append(torch.zeros(w.shape[0], dtype=torch.float64))
                    continue
                bt = self._as_f64(b, f"bias of layer {k + 1}").reshape(-1)
                if bt.shape[0] != w.shape[0]:
                    raise NetworkError(
                        f"bias of layer {k + 1} has {bt.shape[0]} entries, expected {w.shape[0]}"
                    )
                bs.append(bt)
        self.weights: tuple[torch.Tensor, ...] = tuple(ws)
        self.biases: tuple[torch.Tensor, ...] | None = tuple(bs) if bs is not None else None
        if self.output_dim < 2:
            raise NetworkError(
                f"the output layer has {self.output_dim} unit(s); a classifier needs >= 2 classes"
            )

    @staticmethod
    def _as_f64(a: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
        t = a.detach().cpu() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
        if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)):
            raise NetworkError(f"{what} has dtype {t.dtype}; weights must be real numbers")
        t = t.to(torch.float64).clone()
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise NetworkError(
                f"{what} has {bad} NaN/Inf entries; retrain or load a finite checkpoint"
            )
        return t

    # ----- shape -------------------------------------------------------------
    @property
    def depth(self) -> int:
        """K, the number of weight layers."""
        return len(self.weights)

    @property
    def widths(self) -> tuple[int, ...]:
        """``(d_0, d_1, ..., d_K)``: input dimension, hidden widths, classes."""
        return (int(self.weights[0].shape[1]), *(int(w.shape[0]) for w in self.weights))

    @property
    def input_dim(self) -> int:
        return self.widths[0]

    @property
    def output_dim(self) -> int:
        return self.widths[-1]

    @property
    def has_bias(self) -> bool:
        return self.biases is not None

    @property
    def n_parameters(self) -> int:
        n = sum(w.numel() for w in self.weights)
        if self.biases is not None:
            n += sum(b.numel() for b in self.biases)
        return int(n)

    def augmented_weight(self, k: int) -> torch.Tensor:
        """``[W_k | b_k]`` of shape ``(d_k, d_{k-1} + 1)`` with biases, else ``W_k``.

        ``k`` is 1-based as in THEORY.md (layer k maps x^{k-1} to z^k).
        """
        w = self.weights[k - 1]
        if self.biases is None:
            return w
        return torch.cat([w, self.biases[k - 1].view(-1, 1)], dim=1)

    @property
    def operators(self) -> tuple[DenseLinear, ...]:
        """The layers as :class:`~sparsebound.operators.LinearOperator` objects (``[W_k | b_k]``), k = 1..K:
        everything the certificate asks of a layer's weights goes through them."""
        bs = self.biases if self.biases is not None else (None,) * self.depth
        return tuple(DenseLinear(w, b) for w, b in zip(self.weights, bs, strict=True))

    def describe(self) -> str:
        arch = "-".join(str(d) for d in self.widths)
        return f"{arch} ReLU network, K={self.depth}, {'with' if self.has_bias else 'no'} biases"

    # ----- conversion --------------------------------------------------------
    @classmethod
    def from_module(cls, model: nn.Module, *, example_inputs: torch.Tensor | None = None) -> ReLUNetwork:
        """Build from any ``torch.nn.Module`` that computes a feed-forward ReLU network.

        ``nn.Sequential`` of Flatten / Linear / ReLU, an ``nn.Module`` subclass whose
        ``forward`` calls its layers (``F.relu``, ``torch.flatten``, ``x.view(len(x), -1)``
        ...), a module wrapping a Sequential, a ``torch.fx.GraphModule`` or a TorchScript
        module (ONNX files: :func:`sparsebound.models.load_model`).  Identity-like layers (Dropout in
        evaluation mode, Identity) are skipped; a final softmax / log-softmax is dropped
        (it changes neither the predicted class nor the log-softmax margins).  The
        computation is read with ``torch.fx`` (TorchScript: the frozen graph) and the
        converted network is compared with the model on random inputs and on
        ``example_inputs`` (``(N, ...)``, as the model takes them) when given.

        Raises:
            NetworkError: any other operation (named, with its type: Conv2d, Sigmoid,
                LayerNorm, a residual connection ...), a missing ReLU between linear
                layers, a ReLU after the last layer, hooks, or a model whose outputs
                differ from the converted network by more than its dtype's rounding.

        See :mod:`sparsebound.models` (also for loading files).
        """
        from .models import network_from_module

        return network_from_module(model, example_inputs=example_inputs)

    @classmethod
    def from_sequential(cls, model: nn.Module) -> ReLUNetwork:
        """Build from a ``torch.nn.Sequential`` (or any module; see :meth:`from_module`).

        Raises:
            NetworkError: as :meth:`from_module`.
        """
        return cls.from_module(model)

    def _check_same_function(
        self,
        model: nn.Module,
        inputs: torch.Tensor | None = None,
        output_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> float | None:
        """Compare ``model`` with this network on random inputs (and on ``inputs`` when
        given): catches hooks, custom forwards, ignored arguments, or anything else
        that makes the model compute another function than the one certified.

        Inputs: 16 standard normal rows at each of the scales 1, 4, 16 and 64 (a
        unit whose pre-activation differs between model and network by a shifted
        threshold is active on some of them), and the rows of ``inputs`` (all of
        them up to 16384, else 16384 evenly spaced rows; evaluated in batches of
        4096).  Every evaluation runs on private copies: the caller's tensors are
        never handed to the model, and a model that modifies its input in place is
        refused.

        The model runs in its own dtype and on its own device; the reference is this
        network in float64 on the same (dtype-rounded) inputs.  The tolerance fits the
        model's arithmetic: the same network is also evaluated as an
        ``nn.Sequential`` in the model's dtype, and its deviation from float64 (which
        grows with width, depth, weight scale and the dtype's unit roundoff: 2^-8 for
        bfloat16, 2^-11 for float16, 2^-24 for float32) sets the scale, with a floor of
        a few unit roundoffs of the output magnitude.  ``output_map`` (softmax /
        log-softmax) is applied to the reference when the model ends with it.

        Returns:
            For a model whose dtype is below float32 and ``inputs`` given: the
            fraction of those rows on which the model's predicted class differs from
            this (float64) network's, which is what is certified; else None.  A
            :class:`UserWarning` reports it (zero included).

        Raises:
            NetworkError: the outputs differ by more than that tolerance (the message
                gives both deviations), the model modifies its input, or it cannot be
                evaluated.
        """
        import warnings

        params = list(model.parameters()) + list(model.buffers())
        float_params = [t for t in params if t.dtype.is_floating_point]
        p = float_params[0] if float_params else None
        dev = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None else torch.float32
        gen = torch.Generator().manual_seed(1234)
        # (batch, is_random): random batches at growing scales, then the data in batches
        xs: list[tuple[torch.Tensor, bool]] = [
            (scale * torch.randn(16, self.input_dim, generator=gen, dtype=torch.float64), True)
            for scale in (1.0, 4.0, 16.0, 64.0)]
        if inputs is not None:
            xi = torch.as_tensor(inputs)
            if xi.ndim >= 1 and xi.shape[0] > 0 and xi.dtype.is_floating_point and xi.layout == torch.strided \
                    and xi.device.type != "meta":
                n = int(xi.shape[0])
                cap = 16384
                rows = xi if n <= cap else xi[torch.linspace(0, n - 1, cap).round().long().to(xi.device)]
                for start in range(0, int(rows.shape[0]), 4096):
                    xs.append((rows[start:start + 4096], False))
        was_training = model.training
        got, ref, same_dtype, is_random = [], [], [], []
        try:
            model.eval()
            with torch.no_grad(), full_precision():
                for x, rnd in xs:
                    xd = x.to(dev, dtype, copy=True)  # the model's private copy
                    x64 = xd.to("cpu", torch.float64, copy=True).reshape(x.shape[0], -1)
                    before = xd.clone()
                    try:
                        out = model(xd)
                    except Exception as exc:  # any failure means we cannot vouch for the model
                        first = str(exc).splitlines()[0] if str(exc) else ""
                        raise NetworkError(
                            f"the model cannot be evaluated on inputs of shape {tuple(x.shape)} "
                            f"({type(exc).__name__}: {first[:200]}); give a feed-forward ReLU network that takes "
                            f"inputs of dimension {self.input_dim}"
                        ) from None
                    if not isinstance(out, torch.Tensor):
                        raise NetworkError(f"the model returns a {type(out).__name__}, not a tensor of class scores")
                    if not torch.equal(xd, before):
                        raise NetworkError(
                            "the model modifies its input in place (an in-place operation or hook on the input); "
                            "sparsebound certifies the function read from its layers and never lets a model change "
                            "the caller's data. Remove the in-place operation"
                        )
                    got.append(out.detach().to("cpu", torch.float64))
                    is_random.append(rnd)
                    r = self.forward(x64, keep_pre_activations=False).outputs
                    ref.append(output_map(r) if output_map is not None else r)
                    try:  # functional ops: global module hooks do not reach them
                        h = before.reshape(x.shape[0], -1)
                        for k, w in enumerate(self.weights):
                            b = self.biases[k].to(dev, dtype) if self.biases is not None else None
                            h = torch.nn.functional.linear(h, w.to(dev, dtype), b)
                            if k < self.depth - 1:
                                h = torch.relu(h)
                        s = h.detach().to("cpu", torch.float64)
                        same_dtype.append(output_map(s) if output_map is not None else s)
                    except Exception:  # dtype not supported by F.linear on this device
                        same_dtype.append(None)
        finally:
            model.train(was_training)
        u = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11,
             torch.bfloat16: 2.0**-8}.get(dtype, 2.0**-8)
        dname = str(dtype).replace("torch.", "")
        disagree = n_data = 0
        for g, r, s, rnd in zip(got, ref, same_dtype, is_random, strict=True):
            if g.shape != r.shape:
                raise NetworkError(
                    f"the model returns outputs of shape {tuple(g.shape)} but the network read from its layers gives "
                    f"{tuple(r.shape)}; it computes something else than its Linear/ReLU layers"
                )
            if not torch.isfinite(g).all():
                if rnd and s is not None and not torch.isfinite(s).all():
                    continue  # large random inputs overflow the model's dtype, as they do the same layers
                raise NetworkError(
                    f"the model's outputs overflow in {dname} on test inputs; its weights are too large for that dtype"
                )
            scale = float(r.abs().max()) + 1.0
            own = float((s - r).abs().max()) if s is not None and torch.isfinite(s).all() else 0.0
            tol = 8.0 * own + 4.0 * self.depth * u * scale
            diff = float((g - r).abs().max())
            if not diff <= tol:
                raise NetworkError(
                    f"the model's outputs differ from the network read from its layers by up to {diff:.3g}, more than "
                    f"{dname} rounding explains (the same layers computed in {dname} differ by {own:.3g}; tolerance "
                    f"{tol:.3g}){' on the given data' if not rnd else ''}: the model computes another function (a "
                    "custom forward, hooks, an argument or operation the conversion cannot see), so sparsebound "
                    "would certify a different function"
                )
            if not rnd:
                n_data += int(g.shape[0])
                disagree += int((g.argmax(dim=1) != r.argmax(dim=1)).sum()) if g.ndim == 2 else 0
        if dtype in (torch.float16, torch.bfloat16) and n_data:
            rate = disagree / n_data
            warnings.warn(
                f"the model is in {dname}; sparsebound certifies the float64 network read from its layers, whose "
                f"predicted class differs from the {dname} model's on {disagree} of {n_data} given inputs "
                f"({100 * rate:.3g}%): the certificate is for the float64 network, and the {dname} model's own risk "
                "may differ by about that fraction",
                UserWarning, stacklevel=3)
            return rate
        return None

    def to_sequential(self, dtype: torch.dtype = torch.float32) -> nn.Sequential:
        """An equivalent ``nn.Sequential`` (Flatten, Linear, ReLU, ..., Linear)."""
        layers: list[nn.Module] = [nn.Flatten()]
        for k, w in enumerate(self.weights):
            lin = nn.Linear(w.shape[1], w.shape[0], bias=self.has_bias, dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(w.to(dtype))
                if self.biases is not None:
                    lin.bias.copy_(self.biases[k].to(dtype))
            layers.append(lin)
            if k < self.depth - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def rescaled(self, lambdas: Sequence[float]) -> ReLUNetwork:
        """The same function with layer k scaled by ``lambda_k > 0`` (prod = 1).

        Biases are scaled by ``prod_{j<=k} lambda_j`` so that every hidden
        activation is scaled by that product and the output is unchanged
        (positive homogeneity of ReLU; THEORY.md 4.2, "Consequences").

        Raises:
            ConfigError: wrong count, non-positive factors, or product not 1.
        """
        lam = [float(v) for v in lambdas]
        if len(lam) != self.depth:
            raise ConfigError(f"need {self.depth} rescaling factors, got {len(lam)}")
        if any(not (v > 0 and math.isfinite(v)) for v in lam):
            raise ConfigError("rescaling factors must be positive and finite")
        if abs(math.prod(lam) - 1.0) > 1e-9:
            raise ConfigError(f"rescaling factors must multiply to 1, got {math.prod(lam)!r}")
        ws = [w * lam[k] for k, w in enumerate(self.weights)]
        bs = None
        if self.biases is not None:
            cum = np.cumprod(lam)
            bs = [b * float(cum[k]) for k, b in enumerate(self.biases)]
        return ReLUNetwork(ws, bs)

    def check_compatible(self, other: ReLUNetwork, what: str = "prior") -> None:
        """Raise unless ``other`` has the same widths and bias layout."""
        if other.widths != self.widths or other.has_bias != self.has_bias:
            raise ShapeMismatchError(
                f"the {what} network is {other.describe()} but the certified network is "
                f"{self.describe()}; use a {what} of the same architecture"
            )

    def distance_to(self, other: ReLUNetwork) -> float:
        """An upper bound of ``sqrt(sum_k ||W_k - W0_k||_F^2)`` including bias columns
        (float64; exact where the arithmetic provably is, see :meth:`frobenius_sq_distances`)."""
        return sqrt_up(sum_up(self.frobenius_sq_distances(other)))

    def canonical_form(self) -> list[torch.Tensor]:
        """The augmented weights ``[W_k | b_k]`` with every hidden unit rescaled to
        max-norm 1 (the factor moved into the next layer's column; a unit whose row is
        zero outputs 0 and its column is zeroed).  Two networks with the same canonical
        form compute the same function (positive homogeneity of ReLU); every positive
        rescaling of layers or single units (the rescalings of THEORY.md 4.2) leaves it
        unchanged, so it identifies a rescaled copy of a network."""
        mats = [self.augmented_weight(k).clone() for k in range(1, self.depth + 1)]
        for k in range(self.depth - 1):
            a = mats[k]
            s = a.abs().amax(dim=1)
            dead = s == 0
            s = torch.where(dead, torch.ones_like(s), s)
            mats[k] = a / s[:, None]
            nxt = mats[k + 1]
            cols = nxt[:, : s.numel()] * s[None, :]
            cols[:, dead] = 0.0
            mats[k + 1] = torch.cat([cols, nxt[:, s.numel():]], dim=1)
        return mats

    def same_function_as(self, other: ReLUNetwork, rtol: float = 1e-6) -> bool:
        """Whether ``other`` is this network up to positive rescaling of its layers or
        units (and float rounding: canonical forms equal within ``rtol`` of each layer's
        largest entry).  Used to recognise a prior that is (a rescaled copy of) the
        certified network."""
        if self.widths != other.widths:
            return False
        for a, b in zip(self.canonical_form(), other.canonical_form(), strict=True):
            scale = float(torch.maximum(a.abs().max(), b.abs().max())) if a.numel() else 0.0
            if not float((a - b).abs().max()) <= rtol * scale:
                return False
        return True

    def frobenius_sq_distances(self, other: ReLUNetwork) -> list[float]:
        """Per layer an upper bound of ``||[W_k|b_k] - [W0_k|b0_k]||_F^2`` (float64).

        Rounded outward (``rounding.frobenius_sq_distance_upper``), valid at any finite
        scale (``inf`` where it exceeds the float64 range); equal to the computed sum where
        the differences and the sum of squares are provably exact (docs/theory.md section 7).
        """
        self.check_compatible(other)
        return [
            frobenius_sq_distance_upper(self.augmented_weight(k), other.augmented_weight(k))
            for k in range(1, self.depth + 1)
        ]

    # ----- data checks -------------------------------------------------------
    def check_data(self, X: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Check that ``X`` ``(N, d_0)`` (or ``(N, *)`` flattening to d_0) and
        labels ``y`` ``(N,)`` fit this network.

        Raises:
            ShapeMismatchError: wrong input dimension or label count.
            DataError: empty data, non-finite inputs, labels out of range.
        """
        from .errors import DataError

        if X.shape[0] == 0:
            raise DataError("the data set is empty; give at least one sample")
        d = int(np.prod(X.shape[1:])) if X.ndim > 1 else 1
        if d != self.input_dim:
            raise ShapeMismatchError(
                f"the network expects inputs of dimension {self.input_dim} but the data has "
                f"dimension {d} (shape {tuple(X.shape)}); use data of the network's input size"
            )
        if not torch.isfinite(X).all():
            raise DataError("the inputs contain NaN/Inf values; clean the data first")
        if X.is_complex():
            raise DataError("the inputs are complex numbers; give real-valued inputs")
        if y is not None:
            from .data import one_hot_hint

            hint = one_hot_hint(y) if y.ndim == 2 and not y.is_complex() else None
            if hint is not None:
                raise DataError(hint)
            if y.ndim != 1:
                raise DataError(
                    f"labels must be a 1-D tensor of class indices, got shape {tuple(y.shape)}; pass y.view(-1)"
                )
            if y.dtype.is_floating_point or y.is_complex() or y.dtype == torch.bool:
                raise DataError(
                    f"labels must be integer class indices, got dtype {y.dtype}; convert with y.long() if they "
                    "are whole numbers"
                )
            if y.shape[0] != X.shape[0]:
                raise ShapeMismatchError(
                    f"{X.shape[0]} inputs but {y.shape[0]} labels; give one label per input"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.output_dim):
                raise DataError(
                    f"labels must lie in [0, {self.output_dim - 1}] for a network with "
                    f"{self.output_dim} outputs, found range [{int(y.min())}, {int(y.max())}]"
                )

    # ----- forward -------------------------------------------------------------
    def forward(
        self,
        X: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        batch_size: int = 2048,
        device: str | torch.device | None = None,
        keep_pre_activations: bool = True,
    ) -> Activations:
        """Float64 forward pass with rigorous rounding-error bounds.

        Args:
            X: ``(N, d_0)`` inputs as the network sees them (any float dtype; cast
                exactly to float64).
            y: optional ``(N,)`` int64 labels; margins are computed when given.
            batch_size: samples per batch (memory bound: about
                ``batch_size * sum(d_k) * 24`` bytes on the device).
            device: ``"cpu"`` or ``"cuda"``; results always come back on the CPU.
            keep_pre_activations: store the hidden pre-activations (``N * sum d_k``
                float64 values); switch off when only outputs are needed.

        Returns:
            :class:`Activations`.

        Raises:
            ShapeMismatchError / DataError: see :meth:`check_data`.

        Source: THEORY.md section 1 (forward pass) and section 4.1 ("Compute z,
        rho, n and M in float64"); rounding analysis: docs/theory.md, "Rounding".
        """
        dev = resolve_device(device)
        X = X.reshape(X.shape[0], -1) if X.ndim != 2 else X
        self.check_data(X, y)
        K = self.depth
        # each layer's operator computes z and the bound of its rounding error
        # (operators.DenseLinear.apply; docs/theory.md section 7, "Forward pass")
        ops = [op.to(dev) for op in self.operators]
        pre: list[list[torch.Tensor]] = [[] for _ in range(K - 1)]
        errs, norms, outs = [], [], []
        N = X.shape[0]
        for start in range(0, N, batch_size):
            x = X[start : start + batch_size].to(dev, torch.float64)
            e: torch.Tensor | None = None  # entrywise bound of |xhat - x| (the data is exact)
            e_cols, n_cols = [], []
            for k in range(K):
                n_cols.append(ops[k].input_norm_upper(x, e))  # ||x|| <= ||xhat|| + ||xhat - x||
                z, e_new = ops[k].apply(x, e)
                zmax = z.abs().amax(dim=1)
                emax = e_new.amax(dim=1)
                # room for one more float64 operation with the bound (see Activations)
                room = next_up(4.0 * U64 * next_up(zmax + emax)) + TINY64
                e_cols.append(next_up(emax + room))
                if k < K - 1:
                    if keep_pre_activations:
                        pre[k].append(z.cpu())
                    x = torch.relu(z)  # relu is exact and 1-Lipschitz: |relu(zhat) - relu(z)| <= e_new
                    e = e_new
                else:
                    outs.append(z.cpu())
            errs.append(torch.stack(e_cols, dim=1).cpu())
            norms.append(torch.stack(n_cols, dim=1).cpu())
        outputs = torch.cat(outs)
        err = torch.cat(errs)
        hidden_norms = torch.cat(norms)
        finite = bool(torch.isfinite(outputs).all() and torch.isfinite(err).all()
                      and torch.isfinite(hidden_norms).all())
        if finite and keep_pre_activations:
            finite = all(bool(torch.isfinite(torch.cat(p)).all()) for p in pre)
        if not finite:
            raise NetworkError(
                "the float64 forward pass overflowed (an activation, its norm or its rounding bound is not "
                "finite); the weights or inputs are too large to certify, rescale them"
            )
        if y is not None:
            margins, margins_lower, margins_upper = margin_bounds(outputs, err[:, -1], y.to(torch.int64).cpu())
        else:
            margins = margins_lower = margins_upper = torch.empty(0, dtype=torch.float64)
        return Activations(
            pre_activations=tuple(torch.cat(p) for p in pre) if keep_pre_activations else (),
            preact_error=err,
            hidden_norms=hidden_norms,
            outputs=outputs,
            margins=margins,
            margins_lower=margins_lower,
            predictions=outputs.argmax(dim=1),
            margins_upper=margins_upper,
        )

    def predict(self, X: torch.Tensor, *, batch_size: int = 4096, device: str | None = None) -> torch.Tensor:
        """Predicted classes ``(N,)`` int64 (float64 forward, as certified)."""
        return self.forward(X, batch_size=batch_size, device=device, keep_pre_activations=False).predictions

    def error_rate(self, X: torch.Tensor, y: torch.Tensor, *, device: str | None = None) -> float:
        """0-1 error on ``(X, y)`` with the certified (float64) forward pass."""
        acts = self.forward(X, y, device=device, keep_pre_activations=False)
        return acts.error_rate(y)


