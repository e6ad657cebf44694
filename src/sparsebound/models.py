"""Reading a user's PyTorch model as a :class:`~sparsebound.network.ReLUNetwork`.

sparsebound certifies feed-forward ReLU networks (THEORY.md section 1):
``x -> W_K relu(... relu(W_1 x + b_1) ...) + b_K``.  A user's model may be written
in many ways that compute exactly that; this module reads the *computation*
(not the class) and converts it, or names the first layer that is not part of
such a network.

Front ends, each reducing the model to a chain of operations:

* any ``torch.nn.Module`` (``nn.Sequential``, an ``nn.Module`` subclass whose
  ``forward`` calls its layers, a module wrapping a Sequential, the
  ``torch.fx.GraphModule``): its graph is read with
  ``torch.fx`` (symbolic tracing, in evaluation mode);
* TorchScript (``torch.jit.script``/``trace``, ``torch.jit.save`` files): the
  frozen TorchScript graph;
* ONNX files: read with the official ``onnx`` package (optional extra
  ``sparsebound[onnx]``), node by node, and checked against ONNX's own reference
  evaluator;
* a ``state_dict`` (``torch.save(model.state_dict())``) or a safetensors file:
  loaded into a given architecture (an ``nn.Module``), or, without one, read
  as a stack of Linear layers with ReLU in between (the assumption is stated in
  :attr:`LoadedModel.description`).

Accepted chain: ``[Flatten/reshape] Linear ReLU Linear ReLU ... Linear
[softmax | log_softmax]`` where identity-like operations (Dropout in evaluation
mode, Identity, ``contiguous``) are skipped.  A final softmax or log-softmax
along the class dimension is dropped: it changes neither the predicted class nor
the margin ``f_y - max_{c != y} f_c`` of log-softmax (a common shift of every
logit), and the 0-1 risk certified is that of the predicted class.  Anything
else (Conv2d, Sigmoid, LayerNorm, BatchNorm, a residual connection, a ReLU after
the last layer, ...) raises :class:`~sparsebound.errors.NetworkError` naming the
layer.

After conversion the network is always checked against the model itself on
random inputs and, where given, on the user's data (the model evaluated in its
own dtype and device; tolerance fitted to that dtype's rounding, see
:meth:`ReLUNetwork._check_same_function`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import operator
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, NetworkError
from .network import ReLUNetwork

__all__ = [
    "LoadedModel",
    "load_architecture",
    "load_model",
    "network_from_module",
    "network_from_state_dict",
    "zero_network_like",
]

# --------------------------------------------------------------------------------------
# the chain of operations every front end produces
# --------------------------------------------------------------------------------------


@dataclass
class _Op:
    """One operation on the data path.

    ``kind``: ``flatten``, ``linear``, ``bias`` (add a constant vector), ``relu``,
    ``identity``, ``softmax``, ``log_softmax`` or ``unsupported`` (then ``what``
    says what it is).  ``name`` is how the user knows the layer."""

    kind: str
    name: str
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    what: str = ""


_SUPPORTED = "sparsebound certifies feed-forward ReLU networks: [Flatten] Linear ReLU ... Linear"


def _unsupported(op: _Op) -> NetworkError:
    return NetworkError(
        f"{op.name} ({op.what}) is not supported: {_SUPPORTED} (identity-like layers such as Dropout in "
        "evaluation mode are skipped); rebuild the model from those layers or certify another model"
    )


@dataclass
class _Chain:
    weights: list[torch.Tensor] = field(default_factory=list)
    biases: list[torch.Tensor | None] = field(default_factory=list)
    output_map: str | None = None  # None, "softmax" or "log_softmax"


def _build_chain(ops: Sequence[_Op]) -> _Chain:
    """Check the pattern ``[flatten] linear [bias] relu ... linear [bias] [softmax]``."""
    ch = _Chain()
    expect_relu = False  # True right after a linear layer
    for i, op in enumerate(ops):
        if ch.output_map is not None and op.kind != "identity":
            raise NetworkError(
                f"{op.name} ({op.what or op.kind}) follows the final {ch.output_map}; the {ch.output_map} must be "
                "the last operation (the class scores)"
            )
        if op.kind == "identity":
            continue
        if op.kind == "unsupported":
            raise _unsupported(op)
        if op.kind == "linear":
            if expect_relu:
                raise NetworkError(
                    f"{op.name} (Linear) follows a Linear without a ReLU in between; insert a ReLU (two stacked "
                    "linear maps are not a ReLU network layer)"
                )
            assert op.weight is not None
            ch.weights.append(op.weight)
            ch.biases.append(op.bias)
            expect_relu = True
        elif op.kind == "bias":
            if not expect_relu:
                raise NetworkError(
                    f"{op.name} ({op.what}) adds a constant that is not the bias of a Linear layer; {_SUPPORTED}"
                )
            assert op.bias is not None
            prev = ch.biases[-1]
            # a constant added right after a Linear layer is (part of) its bias: same function
            # (summed in float64: exact for two float32 vectors of similar magnitude)
            ch.biases[-1] = op.bias if prev is None else (
                prev.reshape(-1).to(torch.float64) + op.bias.reshape(-1).to(torch.float64))
        elif op.kind == "relu":
            if not expect_relu:
                raise NetworkError(
                    f"{op.name} (ReLU) does not follow a Linear layer; the supported pattern is "
                    "[Flatten] Linear ReLU ... Linear"
                )
            expect_relu = False
        elif op.kind == "flatten":
            if ch.weights:
                raise NetworkError(f"{op.name} (Flatten) appears after a Linear layer; put Flatten first")
        elif op.kind in ("softmax", "log_softmax"):
            if not expect_relu:
                raise NetworkError(f"{op.name} ({op.kind}) does not follow the output Linear layer")
            ch.output_map = op.kind
        else:  # pragma: no cover - front ends only emit the kinds above
            raise NetworkError(f"{op.name}: internal conversion error (kind {op.kind!r})")
        del i
    if not ch.weights:
        raise NetworkError("the model has no Linear layer; nothing to certify")
    if not expect_relu:
        raise NetworkError(
            "the model ends with a ReLU; the last module must be the Linear output layer "
            "(its outputs are the class scores)"
        )
    return ch


def _network_of(ch: _Chain) -> ReLUNetwork:
    any_bias = any(b is not None for b in ch.biases)
    for k, (w, b) in enumerate(zip(ch.weights, ch.biases, strict=True)):
        if w.ndim != 2:
            raise NetworkError(f"weight of layer {k + 1} has shape {tuple(w.shape)}; a Linear weight is a matrix")
        if b is not None and b.numel() != w.shape[0]:
            raise NetworkError(
                f"the bias added after layer {k + 1} has {b.numel()} entries, the layer has {w.shape[0]} outputs; "
                f"{_SUPPORTED}"
            )
    return ReLUNetwork(ch.weights, [None if b is None else b.reshape(-1) for b in ch.biases] if any_bias else None)


# --------------------------------------------------------------------------------------
# torch.fx front end
# --------------------------------------------------------------------------------------

_IDENTITY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
_RELU_FUNCTIONS = {torch.relu, torch.relu_, torch.nn.functional.relu, torch.nn.functional.relu_}
_SOFTMAX_FUNCTIONS = {torch.softmax: "softmax", torch.nn.functional.softmax: "softmax",
                      torch.log_softmax: "log_softmax", torch.nn.functional.log_softmax: "log_softmax"}
_DROPOUT_FUNCTIONS = {torch.nn.functional.dropout, torch.nn.functional.alpha_dropout,
                      torch.nn.functional.feature_alpha_dropout, torch.dropout}
_IDENTITY_METHODS = {"contiguous", "float", "double", "clone", "detach"}
_SHAPE_METHODS = {"size", "dim", "numel"}


def _fx_graph(model: nn.Module) -> tuple[torch.fx.Graph, nn.Module]:
    if isinstance(model, torch.fx.GraphModule):
        return model.graph, model
    try:
        graph = torch.fx.Tracer().trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError...)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise NetworkError(
            f"cannot read the computation of {type(model).__name__} with torch.fx ({type(exc).__name__}: "
            f"{first[:200]}); a feed-forward ReLU network has no data-dependent control flow. Rebuild it as "
            "nn.Sequential(nn.Flatten(), nn.Linear(...), nn.ReLU(), ..., nn.Linear(...)) or save it with "
            "torch.jit.trace"
        ) from None
    return graph, model


def _fetch_attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _where(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, typ = list(stack.values())[-1][:2]
        tname = getattr(typ, "__name__", str(typ))
        return f" in module {path} ({tname})"
    return ""


def _describe_fx(node: torch.fx.Node, root: nn.Module) -> str:
    if node.op == "call_module":
        return f"layer {node.target} ({type(_fetch_attr(root, str(node.target))).__name__})"
    if node.op == "output":
        return "the model's output"
    return f"{node.name}{_where(node)}"


def _is_shape_query(node: torch.fx.Node, root: nn.Module) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target in (getattr, len) and (
            node.target is len or (len(node.args) > 1 and node.args[1] in ("shape", "ndim", "dtype", "device"))):
        return True
    if node.op == "call_module":
        m = _fetch_attr(root, str(node.target))
        if type(m).__name__ == "OnnxShape":
            return True
    return False


def _const(arg: Any, root: nn.Module) -> torch.Tensor | None:
    """The tensor behind a ``get_attr`` node (a parameter, buffer or initializer), else None."""
    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        v = _fetch_attr(root, str(arg.target))
        if isinstance(v, torch.Tensor):
            return v.detach()
    return None


def _arg(node: torch.fx.Node, pos: int, name: str, default: Any) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(name, default)


def _extra_args(node: torch.fx.Node, data: torch.fx.Node, names: Sequence[str],
                allowed: Mapping[str, Callable[[Any], bool]]) -> str | None:
    """Check that ``node`` passes the data as its first argument and nothing but the
    arguments in ``allowed`` (by the positional ``names``), each with a value the check
    accepts.  Returns a description of the first argument the conversion would ignore
    (then the operation is refused), else None.

    Every accepted operation goes through this: an argument the converter does not
    read (``alpha=`` of ``torch.add``, ``out=``, a ``dtype=`` ...) would make it read
    another function than the model computes."""
    args = list(node.args)
    if not args or args[0] is not data:
        if node.kwargs.get("input") is data and not args:
            pass
        else:
            return "the data is not its first argument"
    given: dict[str, Any] = {}
    for pos, a in enumerate(args[1:], start=1):
        if pos >= len(names):
            return f"an extra positional argument {a!r}"
        given[names[pos]] = a
    for k, a in node.kwargs.items():
        if k == "input" and a is data and not args:
            continue
        if k in given:
            return f"argument {k!r} given twice"
        given[k] = a
    for k, a in given.items():
        check = allowed.get(k)
        if check is None:
            return f"the argument {k}={a!r}, which the conversion does not read"
        try:
            ok = bool(check(a))
        except Exception:
            ok = False
        if not ok:
            return f"the argument {k}={a!r}"
    return None


def _any_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_false(v: Any) -> bool:
    return v is False


def _is_none(v: Any) -> bool:
    return v is None


def _float_dtype_or_none(v: Any) -> bool:
    return v is None or v in (torch.float32, torch.float64)


def _int_value(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _anything(v: Any) -> bool:
    return True


def _is_batch_size(v: Any, data: torch.fx.Node) -> bool:
    """``x.size(0)`` or ``x.shape[0]`` of the data itself (fx nodes), as in ``x.view(x.size(0), -1)``."""
    if not isinstance(v, torch.fx.Node):
        return False
    if v.op == "call_method" and v.target == "size" and v.args[:1] == (data,):
        return (len(v.args) > 1 and v.args[1] == 0) or v.kwargs.get("dim") == 0
    if v.op == "call_function" and v.target is operator.getitem and len(v.args) == 2 and v.args[1] == 0:
        src = v.args[0]
        if isinstance(src, torch.fx.Node):
            if src.op == "call_function" and src.target is getattr and src.args == (data, "shape"):
                return True
            if src.op == "call_method" and src.target == "size" and src.args == (data,) and not src.kwargs:
                return True
    return False


def _flatten_shape_problem(shape: Sequence[Any], data: torch.fx.Node) -> str | None:
    """A reshape/view target is accepted only as a flatten to ``(batch, features)``:
    ``(-1, d)``, ``(x.size(0), -1)``, ``(x.size(0), d)`` or ``(x.shape[0], -1)``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    if len(shape) != 2:
        return (f"a target shape with {len(shape)} entries ({tuple(shape)!r}); only a flatten to (batch, features) "
                "is read")
    first, second = shape
    if first == -1:
        if _int_value(second) and second > 0:
            return None
    elif _is_batch_size(first, data) and (second == -1 or (_int_value(second) and second > 0)):
        return None
    return f"the target shape {tuple(shape)!r}; only (-1, d), (x.size(0), -1) or (x.size(0), d) is read as a flatten"


def _check_leaf_hooks(m: nn.Module, name: str) -> None:
    hooks = (m._forward_hooks, m._forward_pre_hooks, getattr(m, "_backward_hooks", {}))
    if any(len(h) for h in hooks):
        raise NetworkError(
            f"layer {name} ({type(m).__name__}) has hooks; sparsebound certifies the plain layer computation, "
            "so it would certify a different function. Remove the hooks"
        )


def _fx_module_op(node: torch.fx.Node, m: nn.Module, root: nn.Module, data: torch.fx.Node) -> _Op:
    name = f"layer {node.target}"
    tname = type(m).__name__
    _check_leaf_hooks(m, str(node.target))
    if tuple(node.args) != (data,) or node.kwargs:
        return _Op("unsupported", name, what=f"{tname} called with arguments besides the data")
    if isinstance(m, nn.Linear):
        if type(m).forward is not nn.Linear.forward:
            return _Op("unsupported", name, what=f"{tname} with its own forward")
        return _Op("linear", name, m.weight.detach(), None if m.bias is None else m.bias.detach())
    if isinstance(m, nn.ReLU):
        if type(m).forward is not nn.ReLU.forward:
            return _Op("unsupported", name, what=f"{tname} with its own forward")
        return _Op("relu", name)
    if isinstance(m, nn.Flatten):
        if type(m).forward is not nn.Flatten.forward:
            return _Op("unsupported", name, what=f"{tname} with its own forward")
        if m.start_dim != 1 or m.end_dim != -1:
            return _Op("unsupported", name, what=f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})")
        return _Op("flatten", name)
    if isinstance(m, _IDENTITY_MODULES):
        if type(m) not in _IDENTITY_MODULES:
            return _Op("unsupported", name, what=f"{tname} (a subclass of an identity-like layer)")
        return _Op("identity", name)
    if isinstance(m, nn.Softmax | nn.LogSoftmax):
        if type(m) not in (nn.Softmax, nn.LogSoftmax):
            return _Op("unsupported", name, what=f"{tname} (a subclass of {type(m).__mro__[1].__name__})")
        if m.dim not in (1, -1):
            return _Op("unsupported", name, what=f"{tname}(dim={m.dim})")
        return _Op("softmax" if isinstance(m, nn.Softmax) else "log_softmax", name)
    return _Op("unsupported", name, what=tname)


def _flatten_op(node: torch.fx.Node, data: torch.fx.Node, name: str, label: str, first: str) -> _Op:
    """``torch.flatten(x, ...)`` / ``x.flatten(...)`` (``label``; ``first`` names the tensor argument):
    a flatten to (batch, features) only, every other argument refused."""
    bad = _extra_args(node, data, (first, "start_dim", "end_dim"), {"start_dim": _int_value, "end_dim": _int_value})
    if bad:
        return _fx_refused(name, label, bad)
    start = _arg(node, 1, "start_dim", 0)
    end = _arg(node, 2, "end_dim", -1)
    if start != 1 or end != -1:
        return _Op("unsupported", name, what=f"{label}(start_dim={start}, end_dim={end})")
    return _Op("flatten", name)


def _fx_refused(name: str, what: str, problem: str) -> _Op:
    return _Op("unsupported", name, what=f"{what} with {problem}")


def _fx_function_op(node: torch.fx.Node, root: nn.Module, data: torch.fx.Node) -> _Op:
    fn = node.target
    fname = getattr(fn, "__name__", str(fn))
    name = f"operation {node.name}{_where(node)}"
    if fn in _RELU_FUNCTIONS:
        bad = _extra_args(node, data, ("input", "inplace"), {"inplace": _any_bool})
        return _fx_refused(name, fname, bad) if bad else _Op("relu", name)
    if fn is torch.flatten:
        return _flatten_op(node, data, name, "torch.flatten", "input")
    if fn is torch.reshape:
        bad = _extra_args(node, data, ("input", "shape"), {"shape": _anything})
        if bad is None:
            bad = _flatten_shape_problem(list(_arg(node, 1, "shape", ())), data)
        return _fx_refused(name, "torch.reshape", bad) if bad else _Op("flatten", name)
    if fn is torch.nn.functional.linear:
        bad = _extra_args(node, data, ("input", "weight", "bias"), {"weight": _anything, "bias": _anything})
        if bad:
            return _fx_refused(name, "F.linear", bad)
        w = _const(_arg(node, 1, "weight", None), root)
        b_arg = _arg(node, 2, "bias", None)
        b = _const(b_arg, root)
        if w is not None and (b_arg is None or b is not None):
            return _Op("linear", name, w, b)
        return _Op("unsupported", name, what="F.linear with weights computed in forward()")
    if fn in _DROPOUT_FUNCTIONS:
        if fn is torch.dropout:
            bad = _extra_args(node, data, ("input", "p", "train"), {"p": _anything, "train": _any_bool})
            training = _arg(node, 2, "train", True)
        else:  # F.dropout defaults to training=True, F.(feature_)alpha_dropout to False
            bad = _extra_args(node, data, ("input", "p", "training", "inplace"),
                              {"p": _anything, "training": _any_bool, "inplace": _any_bool})
            training = _arg(node, 2, "training", fn is torch.nn.functional.dropout)
        if bad:
            return _fx_refused(name, fname, bad)
        if training is False:
            return _Op("identity", name)
        return _Op("unsupported", name, what=f"{fname} that stays active in evaluation mode")
    if fn in _SOFTMAX_FUNCTIONS:
        names = ("input", "dim", "_stacklevel", "dtype") if fn in (
            torch.nn.functional.softmax, torch.nn.functional.log_softmax) else ("input", "dim", "dtype")
        bad = _extra_args(node, data, names, {"dim": _int_value, "_stacklevel": _anything,
                                              "dtype": _float_dtype_or_none})
        if bad:
            return _fx_refused(name, fname, bad)
        dim = _arg(node, 1, "dim", None)
        if dim in (1, -1):
            return _Op(_SOFTMAX_FUNCTIONS[fn], name)
        return _Op("unsupported", name, what=f"{fname}(dim={dim})")
    if fn in (operator.add, operator.iadd, torch.add):
        # torch.add(input, other, *, alpha=1): input + alpha * other; operator.add(a, b): a + b
        args = list(node.args)
        kwargs = dict(node.kwargs)
        if fn is torch.add:
            if "input" in kwargs:
                args.insert(0, kwargs.pop("input"))
            if "other" in kwargs:
                args.insert(1, kwargs.pop("other"))
            alpha = kwargs.pop("alpha", 1)
            if len(args) > 2:
                return _fx_refused(name, fname, f"an extra positional argument {args[2]!r}")
        else:
            alpha = 1
        if kwargs:
            k, v = next(iter(kwargs.items()))
            return _fx_refused(name, fname, f"the argument {k}={v!r}, which the conversion does not read")
        if len(args) != 2 or sum(a is data for a in args) != 1:
            if any(isinstance(a, torch.fx.Node) and a is not data for a in args):
                return _Op("unsupported", name, what=f"{fname} of two computed tensors: a residual connection")
            return _Op("unsupported", name, what=f"{fname} of the data with itself or with a Python number")
        if not (isinstance(alpha, int | float) and not isinstance(alpha, bool) and math.isfinite(alpha)):
            return _fx_refused(name, fname, f"alpha={alpha!r}")
        if args[1] is data and alpha != 1:
            return _fx_refused(name, fname, f"alpha={alpha!r} scaling the data (not a constant)")
        other = args[1] if args[0] is data else args[0]
        c = _const(other, root)
        if c is None:
            if isinstance(other, torch.fx.Node):
                return _Op("unsupported", name, what=f"{fname} of two computed tensors: a residual connection")
            return _Op("unsupported", name, what=f"{fname} of the data and a Python number {other!r}")
        c = c.reshape(-1).to(torch.float64) * float(alpha) if alpha != 1 else c.reshape(-1)
        what = "addition of a constant" if alpha == 1 else f"addition of a constant times alpha={alpha!r}"
        return _Op("bias", name, bias=c, what=what)
    return _Op("unsupported", name, what=f"{getattr(fn, '__module__', '') or ''}.{fname}".lstrip("."))


def _fx_method_op(node: torch.fx.Node, data: torch.fx.Node) -> _Op:
    meth = str(node.target)
    name = f"operation {node.name}{_where(node)}"
    fmt_ok = {"memory_format": lambda v: v in (torch.contiguous_format, torch.preserve_format)}
    if meth in ("relu", "relu_"):
        bad = _extra_args(node, data, ("self",), {})
        return _fx_refused(name, f"Tensor.{meth}", bad) if bad else _Op("relu", name)
    if meth == "flatten":
        return _flatten_op(node, data, name, "Tensor.flatten", "self")
    if meth in ("view", "reshape"):
        if node.kwargs or not node.args or node.args[0] is not data:
            return _fx_refused(name, f"Tensor.{meth}", "keyword arguments or the data not first")
        bad = _flatten_shape_problem(list(node.args[1:]), data)
        return _fx_refused(name, f"Tensor.{meth}", bad) if bad else _Op("flatten", name)
    if meth in _IDENTITY_METHODS:
        allowed: dict[str, Callable[[Any], bool]] = (
            dict(fmt_ok) if meth in ("contiguous", "clone", "float", "double") else {})
        bad = _extra_args(node, data, ("self", "memory_format") if allowed else ("self",), allowed)
        return _fx_refused(name, f"Tensor.{meth}", bad) if bad else _Op("identity", name)
    if meth in ("softmax", "log_softmax"):
        bad = _extra_args(node, data, ("self", "dim", "dtype"), {"dim": _int_value, "dtype": _float_dtype_or_none})
        if bad:
            return _fx_refused(name, f"Tensor.{meth}", bad)
        dim = _arg(node, 1, "dim", None)
        if dim in (1, -1):
            return _Op(meth, name)
        return _Op("unsupported", name, what=f"Tensor.{meth}(dim={dim})")
    return _Op("unsupported", name, what=f"Tensor.{meth}")


def _check_no_hooks(model: nn.Module) -> None:
    """Refuse hooks anywhere: on the root module or any submodule (forward, forward
    pre-, backward hooks) and global module hooks.  ``torch.fx`` does not see hooks
    (it calls ``forward`` directly), so a hook would make the model compute another
    function than the graph read; a hook that changes its input in place would also
    change the caller's tensors."""
    from torch.nn.modules import module as _mod

    glob = [getattr(_mod, n, None) for n in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                             "_global_backward_hooks", "_global_backward_pre_hooks")]
    if any(g for g in glob):
        raise NetworkError(
            "global module hooks are registered (torch.nn.modules.module.register_module_forward_hook or the like); "
            "they change what every module computes, so sparsebound cannot vouch for the function it reads. Remove "
            "them before converting the model"
        )
    for path, m in model.named_modules():
        hooks = [getattr(m, n, None) for n in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                               "_backward_pre_hooks")]
        if any(h for h in hooks):
            where = f"layer {path}" if path else "the model itself (its root module)"
            raise NetworkError(
                f"{where} ({type(m).__name__}) has hooks; sparsebound certifies the computation read from the "
                "layers, which hooks change (and hooks may modify their inputs in place), so it would certify a "
                "different function. Remove the hooks, or fold what they do into the model's layers"
            )


def _ops_from_fx(model: nn.Module) -> list[_Op]:
    _check_no_hooks(model)
    was_training = model.training
    model.eval()  # trace the evaluation-mode computation (dropout off)
    try:
        graph, root = _fx_graph(model)
    finally:
        model.train(was_training)
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise NetworkError(
            f"{type(model).__name__}.forward takes {len(inputs)} inputs; a feed-forward network takes one"
        )
    cur = inputs[0]
    ops: list[_Op] = []
    for _ in range(len(nodes) + 1):
        users = [u for u in cur.users if not _is_shape_query(u, root)]
        if len(users) == 0:
            raise NetworkError(f"the output of {cur.name} is not used; the model does not return it")
        if len(users) > 1:
            names = "; ".join(_describe_fx(u, root) for u in users)
            raise NetworkError(
                f"the output of {'the input' if cur.op == 'placeholder' else cur.name} is used by several "
                f"operations ({names}): a residual connection or branch, which is not supported: {_SUPPORTED}"
            )
        u = users[0]
        if u.op == "output":
            out = u.args[0]
            if out is not cur:
                raise NetworkError(
                    f"{type(model).__name__}.forward returns {type(out).__name__} rather than one tensor of class "
                    "scores; return the logits only"
                )
            return ops
        if u.op == "call_module":
            m = _fetch_attr(root, str(u.target))
            op = _fx_module_op(u, m, root, cur)
        elif u.op == "call_function":
            op = _fx_function_op(u, root, cur)
        elif u.op == "call_method":
            op = _fx_method_op(u, cur)
        else:  # pragma: no cover - placeholders/get_attr do not consume data
            op = _Op("unsupported", f"operation {u.name}", what=u.op)
        ops.append(op)
        if op.kind == "unsupported":
            raise _unsupported(op)
        cur = u
    raise NetworkError("the model's graph does not end; cannot read it")  # pragma: no cover


# --------------------------------------------------------------------------------------
# TorchScript front end
# --------------------------------------------------------------------------------------


def _ts_const(value: Any) -> Any:
    node = value.node()
    if node.kind() != "prim::Constant":
        raise LookupError
    return value.toIValue()


def _ts_name(node: Any) -> str:
    for v in node.inputs():
        dn = v.debugName()
        if dn.startswith("self.") and dn.endswith(".weight"):
            return f"layer {dn[len('self.'):-len('.weight')]}"
    scope = node.scopeName()
    if scope:
        return f"operation {node.kind()} in {scope.replace('__module.', '')}"
    src = ""
    try:
        src = str(node.sourceRange()).strip().splitlines()[0]
    except Exception:
        src = ""
    return f"operation {node.kind()}" + (f" at {src}" if src else "")


def _ops_from_torchscript(model: torch.jit.ScriptModule) -> list[_Op]:
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            frozen = torch.jit.freeze(model)
    except Exception as exc:
        raise NetworkError(
            f"cannot read the TorchScript model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
    finally:
        model.train(was_training)
    graph = frozen.graph
    inputs = [v for v in graph.inputs()][1:]  # the first is the module itself
    if len(inputs) != 1:
        raise NetworkError(f"the TorchScript model's forward takes {len(inputs)} inputs; a feed-forward network "
                           "takes one")
    cur = inputs[0]
    ops: list[_Op] = []
    shape_kinds = {"aten::size", "aten::dim", "aten::numel", "prim::shape", "aten::len"}
    for _ in range(10_000):
        users = [use.user for use in cur.uses() if use.user.kind() not in shape_kinds]
        if len(users) == 0:
            raise NetworkError("the TorchScript model does not use its input")
        if len(users) > 1:
            raise NetworkError(
                f"a value of the TorchScript model is used by several operations "
                f"({', '.join(u.kind() for u in users)}): a residual connection or branch, which is not supported: "
                f"{_SUPPORTED}"
            )
        node = users[0]
        kind = node.kind()
        if kind == "prim::Return":
            return ops
        name = _ts_name(node)
        args = list(node.inputs())
        op: _Op
        try:
            if kind == "aten::linear":
                w = _ts_const(args[1])
                b = _ts_const(args[2]) if len(args) > 2 else None
                op = _Op("linear", name, w.detach(), None if b is None else b.detach())
            elif kind in ("aten::relu", "aten::relu_"):
                op = _Op("relu", name)
            elif kind == "aten::flatten":
                start, end = _ts_const(args[1]), _ts_const(args[2])
                op = _Op("flatten", name) if (start, end) == (1, -1) else _Op(
                    "unsupported", name, what=f"flatten(start_dim={start}, end_dim={end})")
            elif kind in ("aten::view", "aten::reshape"):
                op = _Op("flatten", name)
            elif kind in ("aten::dropout", "aten::dropout_", "aten::feature_dropout", "aten::alpha_dropout"):
                op = _Op("identity", name) if _ts_const(args[2]) is False else _Op(
                    "unsupported", name, what="dropout active in evaluation mode")
            elif kind in ("aten::contiguous", "aten::detach", "aten::clone"):
                op = _Op("identity", name)
            elif kind in ("aten::softmax", "aten::log_softmax"):
                dim = _ts_const(args[1])
                dt = _ts_const(args[2]) if len(args) > 2 else None
                # ScalarType codes 6 (float32) and 7 (float64): a dtype= the conversion may ignore
                if dt not in (None, 6, 7, torch.float32, torch.float64):
                    op = _Op("unsupported", name, what=f"{kind} with dtype={dt}")
                elif len(args) > 3:
                    op = _Op("unsupported", name, what=f"{kind} with {len(args)} arguments")
                else:
                    op = _Op(kind.split("::")[1], name) if dim in (1, -1) else _Op(
                        "unsupported", name, what=f"{kind}(dim={dim})")
            elif kind in ("aten::add", "aten::add_") and args[0] is cur:
                c = _ts_const(args[1])
                alpha = _ts_const(args[2]) if len(args) > 2 else 1
                if isinstance(c, torch.Tensor) and alpha == 1:
                    op = _Op("bias", name, bias=c.detach().reshape(-1), what="addition of a constant")
                else:
                    op = _Op("unsupported", name, what=kind)
            else:
                op = _Op("unsupported", name, what=kind)
        except LookupError:
            op = _Op("unsupported", name, what=f"{kind} with computed (non-constant) arguments")
        if op.kind == "unsupported":
            raise _unsupported(op)
        ops.append(op)
        outs = list(node.outputs())
        if len(outs) != 1:
            raise _unsupported(_Op("unsupported", name, what=f"{kind} with {len(outs)} outputs"))
        cur = outs[0]
    raise NetworkError("the TorchScript graph does not end; cannot read it")  # pragma: no cover


# --------------------------------------------------------------------------------------
# public conversion
# --------------------------------------------------------------------------------------


def _output_map(kind: str | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if kind == "softmax":
        return lambda z: torch.softmax(z, dim=1)
    if kind == "log_softmax":
        return lambda z: torch.log_softmax(z, dim=1)
    return None


def network_from_module(
    model: nn.Module,
    *,
    example_inputs: torch.Tensor | None = None,
) -> ReLUNetwork:
    """Convert any ``nn.Module`` that computes a feed-forward ReLU network.

    Args:
        model: an ``nn.Sequential``, an ``nn.Module`` subclass (layers made in
            ``__init__``, called in ``forward``), a module wrapping either, a
            ``torch.fx.GraphModule`` or a TorchScript
            module.  Read in evaluation mode (Dropout off); the model is not modified.
        example_inputs: optional ``(N, ...)`` inputs as the model takes them (e.g.
            the bound sample); the converted network is compared with the model on
            them as well as on random inputs.

    Returns:
        The :class:`ReLUNetwork` with the model's weights (exact float64 copies).

    Raises:
        NetworkError: the first operation that is not part of a ReLU MLP (named,
            with its type), a residual connection, a ReLU after the last layer, a
            model whose output differs from the converted network.

    Source: THEORY.md section 1 (the networks certified).
    """
    if isinstance(model, ReLUNetwork):
        return model
    if not isinstance(model, nn.Module):
        raise ConfigError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return _convert_module(model, example_inputs)[0]


def _convert_module(model: nn.Module, example_inputs: torch.Tensor | None) -> tuple[ReLUNetwork, str | None]:
    """The network read from ``model`` (checked against it) and its output map (None, softmax, log_softmax)."""
    if isinstance(model, torch.jit.ScriptModule):
        ops = _ops_from_torchscript(model)
    else:
        ops = _ops_from_fx(model)
    ch = _build_chain(ops)
    net = _network_of(ch)
    net._check_same_function(model, inputs=example_inputs, output_map=_output_map(ch.output_map))
    return net, ch.output_map


_NUM = re.compile(r"(\d+)")


def _natural_key(s: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in _NUM.split(s)]


def _strip_wrapper(sd: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("state_dict", "model_state_dict", "model"):
        if key in sd and isinstance(sd[key], Mapping) and len(sd) <= 8:
            return sd[key]
    return sd


def _chaining_orders(groups: Mapping[str, Mapping[str, torch.Tensor]], limit: int = 2) -> list[list[str]]:
    """Up to ``limit`` orders of all the layers in which each layer's ``d_out`` is the next one's
    ``d_in`` (a depth-first search over the layers; stops once ``limit`` orders are found)."""
    names = list(groups)
    shape = {p: (int(groups[p]["weight"].shape[1]), int(groups[p]["weight"].shape[0])) for p in names}
    found: list[list[str]] = []
    steps = [0]

    def extend(order: list[str], left: set[str]) -> None:
        if len(found) >= limit:
            return
        steps[0] += 1
        if steps[0] > 200_000:
            raise NetworkError(
                f"the state_dict has {len(names)} Linear layers whose order cannot be settled by their shapes; give "
                "the architecture with --arch / architecture="
            )
        if not left:
            found.append(list(order))
            return
        for p in sorted(left, key=_natural_key):
            if order and shape[p][0] != shape[order[-1]][1]:
                continue
            order.append(p)
            left.remove(p)
            extend(order, left)
            left.add(p)
            order.pop()

    extend([], set(names))
    return found


def network_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    architecture: nn.Module | None = None,
) -> tuple[ReLUNetwork, str]:
    """A network from a ``state_dict`` (and, optionally, the architecture it belongs to).

    With ``architecture`` (an ``nn.Module`` of the same layout): the tensors are
    loaded into it (``load_state_dict(strict=True)``) and it is converted with
    :func:`network_from_module` (its computation is read and checked).

    Without: the keys must be Linear weights and biases only (``PREFIX.weight``
    2-D, ``PREFIX.bias`` 1-D) and must chain (``d_out`` of each = ``d_in`` of the
    next) in exactly one order, which is then the order used, with ReLU between
    consecutive layers and none after the last: the computation of
    ``nn.Sequential(Linear, ReLU, ..., Linear)``.  That is an assumption the file
    cannot confirm; the returned description says so.  When the shapes chain in
    more than one order (two hidden layers of the same square shape, say) the file
    does not say which is applied first, and the state_dict is refused: neither the
    key order nor the names are evidence of the order of application.

    Returns:
        ``(network, description)``; the description names the layers read.

    Raises:
        NetworkError: tensors that are not a Linear stack, shapes that do not chain
            or chain in several orders (without ``architecture``), keys that do not fit
            ``architecture``.
    """
    sd = _strip_wrapper(state_dict)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise NetworkError(f"state_dict entry {bad[0]!r} is not a tensor; give a plain model.state_dict()")
    if architecture is not None:
        if not isinstance(architecture, nn.Module):
            raise ConfigError(f"architecture must be an nn.Module, got {type(architecture).__name__}")
        try:
            architecture.load_state_dict(dict(sd), strict=True)
        except RuntimeError as exc:
            text = " ".join(str(exc).split())
            raise NetworkError(
                f"the state_dict does not fit {type(architecture).__name__}: {text[:300]}; give the architecture "
                "the weights were saved from"
            ) from None
        return _convert_module(architecture, None)[0], f"state_dict loaded into {type(architecture).__name__}"
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in sd.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias"):
            raise NetworkError(
                f"state_dict entry {key!r} is not a Linear weight or bias; this file holds more than a ReLU MLP "
                "(give its architecture with --arch / architecture=)"
            )
        groups.setdefault(prefix, {})[leaf] = t
    if not groups:
        raise NetworkError("the state_dict is empty; nothing to certify")
    for prefix, g in groups.items():
        label = prefix or "(top level)"
        if "weight" not in g:
            raise NetworkError(f"layer {label} has a bias but no weight; not a Linear layer")
        if g["weight"].ndim != 2:
            raise NetworkError(
                f"layer {label} has a weight of shape {tuple(g['weight'].shape)}, not a Linear (d_out, d_in) matrix "
                "(a convolution?); sparsebound certifies ReLU MLPs"
            )
        if "bias" in g and (g["bias"].ndim != 1 or g["bias"].numel() != g["weight"].shape[0]):
            raise NetworkError(f"layer {label}: bias of shape {tuple(g['bias'].shape)} does not fit its weight "
                               f"{tuple(g['weight'].shape)}")

    orders = _chaining_orders(groups, limit=2)
    if not orders:
        shapes = ", ".join(f"{p}: {tuple(groups[p]['weight'].shape)}" for p in sorted(groups, key=_natural_key))
        raise NetworkError(
            f"the Linear layers of the state_dict do not chain in any order ({shapes}); give the architecture "
            "with --arch / architecture="
        )
    if len(orders) > 1:
        a, b = (", ".join(o) for o in orders[:2])
        raise NetworkError(
            f"the Linear layers of the state_dict chain by shape in more than one order (e.g. {a} and {b}); a "
            "state_dict does not record the order its layers are applied in, so sparsebound will not guess: give "
            "the architecture with --arch FILE.py:Class / architecture= (or save the model with torch.jit.save or "
            "as ONNX)"
        )
    order = orders[0]
    ws = [groups[p]["weight"] for p in order]
    bs = [groups[p].get("bias") for p in order]
    any_bias = any(b is not None for b in bs)
    net = ReLUNetwork(ws, bs if any_bias else None)
    desc = ("architecture read from the state_dict: Linear layers " + ", ".join(order)
            + " with ReLU between them and none after the last (an assumption: the file stores no activations)")
    return net, desc


def zero_network_like(net: ReLUNetwork) -> ReLUNetwork:
    """The all-zero network of ``net``'s architecture (the zero prior mean)."""
    ws = [torch.zeros_like(w) for w in net.weights]
    bs = [torch.zeros_like(b) for b in net.biases] if net.biases is not None else None
    return ReLUNetwork(ws, bs)


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """A network read from a file.

    Attributes:
        network: the converted :class:`ReLUNetwork`.
        format: ``checkpoint``, ``torchscript``, ``onnx``, ``safetensors`` or ``state_dict``.
        path: the file or folder read.
        description: how it was read (one line, printed and recorded).
        module: the ``nn.Module`` the network was read from, when there is one (its
            computation can be compared with the network on data).
    """

    network: ReLUNetwork
    format: str
    path: str
    description: str
    module: nn.Module | None = None
    output_map: str | None = None

    def check_on_data(self, X: torch.Tensor) -> float | None:
        """Compare the converted network with :attr:`module` (the model as the file
        computes it) on the user's data ``X`` (``(N, ...)`` float rows, all of them up to
        16384), as :func:`network_from_module` does with ``example_inputs``.  Nothing to
        compare for a sparsebound checkpoint (its network is the network) or a state_dict
        read without an architecture (no module: the assumed Linear/ReLU stack).

        Returns:
            the low-precision disagreement rate (see
            :meth:`ReLUNetwork._check_same_function`), else None.

        Raises:
            NetworkError: the model computes another function on that data.
        """
        if self.module is None:
            return None
        return self.network._check_same_function(self.module, inputs=X, output_map=_output_map(self.output_map))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "description": self.description,
                "network": self.network.describe()}


def load_architecture(spec: str) -> nn.Module:
    """An architecture (``nn.Module`` instance) from ``"FILE.py:Class(args)"`` or ``"package.module:Class(args)"``.

    The arguments are Python literals (numbers, strings, lists, ``True``...),
    e.g. ``"models.py:MLP(784, [100, 100], 10, bias=True)"``; without
    parentheses the class is built with no arguments.  The file or module is
    imported, which runs its code: give only your own code.

    Raises:
        ConfigError: a malformed spec, a missing file/module/class, arguments that
            are not literals, or a constructor that fails.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"--arch {spec!r}: give FILE.py:Class or package.module:Class, optionally with "
                          "literal arguments, e.g. models.py:MLP(784, [100, 100], 10)")
    src, _, call = spec.rpartition(":")
    if src.endswith(".py") is False and ("/" in src or os.sep in src):
        raise ConfigError(f"--arch {spec!r}: {src!r} is neither a .py file nor a module name")
    try:
        expr = ast.parse(call.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError(
            f"--arch {spec!r}: cannot parse {call!r}; write Class or Class(arg, ..., key=value)"
        ) from None
    if isinstance(expr, ast.Name):
        cls_name, args, kwargs = expr.id, [], {}
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        try:
            args = [ast.literal_eval(a) for a in expr.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in expr.keywords if k.arg is not None}
        except ValueError:
            raise ConfigError(f"--arch {spec!r}: the arguments must be Python literals (numbers, strings, lists, "
                              "True/False/None)") from None
        if any(k.arg is None for k in expr.keywords):
            raise ConfigError(f"--arch {spec!r}: **kwargs are not supported; name each argument")
        cls_name = expr.func.id
    else:
        raise ConfigError(f"--arch {spec!r}: write Class or Class(arg, ..., key=value) after the colon")
    try:
        if src.endswith(".py"):
            p = Path(src).expanduser()
            if not p.is_file():
                raise ConfigError(f"--arch: file {src!r} does not exist")
            mod_spec = importlib.util.spec_from_file_location(f"_sparsebound_arch_{p.stem}", p)
            if mod_spec is None or mod_spec.loader is None:
                raise ConfigError(f"--arch: cannot import {src!r}")
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(src)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"--arch: importing {src!r} failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ConfigError(f"--arch: {src!r} has no {cls_name!r}")
    try:
        obj = cls(*args, **kwargs)
    except Exception as exc:
        raise ConfigError(f"--arch: {cls_name}(...) failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if not isinstance(obj, nn.Module):
        raise ConfigError(f"--arch: {cls_name}(...) is a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def _sniff(p: Path) -> str:
    if p.is_dir():
        return "checkpoint"
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"
    with open(p, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            return "state_dict"
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "state_dict"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "state_dict"


# --------------------------------------------------------------------------------------
# ONNX front end (the official ``onnx`` package reads the file; no converter to torch needed)
# --------------------------------------------------------------------------------------

#: ONNX element types the reference check can feed (TensorProto enum -> numpy dtype name).
_ONNX_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64"}
_ONNX_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "reading ONNX files needs the optional package onnx; install it with pip install 'sparsebound[onnx]'"
        ) from None
    return onnx


class OnnxReference(nn.Module):
    """An ONNX graph as a callable ``nn.Module`` (evaluated by ``onnx.reference.ReferenceEvaluator``,
    the ONNX project's reference implementation, in the graph's own input dtype).

    It exists so that the network read from the graph is compared with the graph's own
    computation (:meth:`ReLUNetwork._check_same_function`), as for every other front end;
    it has no trainable parameters (one buffer carries the input dtype).
    """

    def __init__(self, model: Any, input_name: str, dtype: str) -> None:
        super().__init__()
        from onnx.reference import ReferenceEvaluator

        self._evaluator = ReferenceEvaluator(model)
        self._input = input_name
        self.register_buffer("dtype_marker", torch.zeros(1, dtype=_ONNX_TORCH_DTYPES[dtype]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().to(self.dtype_marker.dtype).numpy()
        (out,) = self._evaluator.run(None, {self._input: arr})[:1]
        return torch.from_numpy(np.asarray(out).copy())


def _ops_from_onnx(model: Any) -> tuple[list[_Op], str, str]:
    """Walk the data path of an ONNX graph from its one input to its one output.

    Returns the chain of operations, the input's name and its dtype.  Shape
    arithmetic (``Shape``/``Gather``/``Concat``... feeding a ``Reshape``, as
    ``x.view(x.size(0), -1)`` exports) is off the data path and ignored; a
    ``Reshape`` before the first layer counts as a flatten (the comparison with the
    graph's own output afterwards catches any reshape that is not one).
    """
    from onnx import numpy_helper

    graph = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    inputs = [v for v in graph.input if v.name not in consts]
    if len(inputs) != 1:
        raise NetworkError(f"the ONNX graph takes {len(inputs)} inputs; a feed-forward network takes one")
    if len(graph.output) != 1:
        raise NetworkError(f"the ONNX graph has {len(graph.output)} outputs; a classifier has one (the class scores)")
    elem = inputs[0].type.tensor_type.elem_type
    if elem not in _ONNX_FLOAT_TYPES:
        raise NetworkError(f"the ONNX graph's input has element type {elem}; give a float32/float16/float64 model")
    # values computed from shapes only (never from the data's values)
    shape_only: set[str] = set()
    for node in graph.node:  # ONNX lists nodes in topological order
        ins = [i for i in node.input if i]
        if node.op_type == "Shape" or (node.op_type != "Constant" and any(i in shape_only for i in ins)
                                       and all(i in shape_only or i in consts for i in ins)):
            shape_only.update(node.output)
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for i in node.input:
            users.setdefault(i, []).append(node)
    cur = inputs[0].name
    ops: list[_Op] = []

    def const(name: str) -> np.ndarray | None:
        return consts.get(name)

    def attr(node: Any, key: str, default: Any) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == key:
                return helper.get_attribute_value(a)
        return default

    for _ in range(100_000):
        if cur == graph.output[0].name:
            if users.get(cur):
                raise NetworkError("the ONNX graph's output is also used inside the graph; not a plain MLP")
            return ops, inputs[0].name, _ONNX_FLOAT_TYPES[elem]
        nxt = [n for n in users.get(cur, []) if n.op_type != "Shape"]
        if not nxt:
            raise NetworkError(f"the ONNX graph's value {cur!r} is not used and is not the output")
        if len(nxt) > 1:
            raise NetworkError(
                f"the ONNX graph's value {cur!r} feeds several operations ({', '.join(n.op_type for n in nxt)}): "
                f"a branch or residual connection, which is not supported: {_SUPPORTED}"
            )
        node = nxt[0]
        t = node.op_type
        name = f"ONNX node {node.name!r}" if node.name else f"an ONNX {t} node"
        others = [i for i in node.input if i != cur]
        op: _Op
        if t in ("Identity", "Dropout"):
            op = _Op("identity", name)
        elif t == "Flatten":
            op = _Op("flatten", name) if int(attr(node, "axis", 1)) == 1 else _Op(
                "unsupported", name, what=f"Flatten(axis={attr(node, 'axis', 1)})")
        elif t == "Reshape" and node.input[0] == cur and (
                node.input[1] in shape_only or const(node.input[1]) is not None):
            op = _Op("flatten", name)
        elif t == "Relu":
            op = _Op("relu", name)
        elif t == "Gemm" and node.input[0] == cur and const(node.input[1]) is not None:
            if int(attr(node, "transA", 0)) != 0:
                op = _Op("unsupported", name, what="Gemm with transA=1")
            else:
                B = torch.from_numpy(np.array(const(node.input[1]), dtype=np.float64))
                W = (B if int(attr(node, "transB", 0)) else B.T) * float(attr(node, "alpha", 1.0))
                bias = None
                if len(node.input) > 2 and node.input[2]:
                    C = const(node.input[2])
                    if C is None:
                        op = _Op("unsupported", name, what="Gemm with a computed bias")
                        raise _unsupported(op)
                    Ct = torch.from_numpy(np.array(C, dtype=np.float64)) * float(attr(node, "beta", 1.0))
                    bias = Ct.reshape(-1).expand(W.shape[0]).clone() if Ct.numel() in (1, W.shape[0]) else None
                    if bias is None:
                        raise _unsupported(_Op("unsupported", name, what=f"Gemm bias of shape {tuple(Ct.shape)}"))
                op = _Op("linear", name, W.contiguous(), bias)
        elif t == "MatMul" and node.input[0] == cur and const(node.input[1]) is not None:
            B = np.array(const(node.input[1]), dtype=np.float64)
            op = _Op("linear", name, torch.from_numpy(B.T.copy())) if B.ndim == 2 else _Op(
                "unsupported", name, what=f"MatMul with a {B.ndim}-D weight")
        elif t == "Add" and len(others) == 1 and const(others[0]) is not None:
            c = torch.from_numpy(np.array(const(others[0]), dtype=np.float64))
            op = _Op("bias", name, bias=c.reshape(-1), what="addition of a constant")
        elif t in ("Softmax", "LogSoftmax"):
            axis = int(attr(node, "axis", -1))
            op = _Op("softmax" if t == "Softmax" else "log_softmax", name) if axis in (1, -1) else _Op(
                "unsupported", name, what=f"{t}(axis={axis})")
        else:
            op = _Op("unsupported", name, what=t if not others or all(const(o) is not None for o in others)
                     else f"{t} of computed values")
        if op.kind == "unsupported":
            raise _unsupported(op)
        if len(node.output) != 1 and t != "Dropout":
            raise _unsupported(_Op("unsupported", name, what=f"{t} with {len(node.output)} outputs"))
        ops.append(op)
        cur = node.output[0]
    raise NetworkError("the ONNX graph does not end; cannot read it")  # pragma: no cover


def network_from_onnx(model: Any, *, example_inputs: torch.Tensor | None = None) -> tuple[ReLUNetwork, nn.Module]:
    """Convert an ONNX ``ModelProto`` (a feed-forward ReLU MLP) to a :class:`ReLUNetwork`.

    Reads ``Flatten``/``Reshape``, ``Gemm``, ``MatMul`` + ``Add``, ``Relu``, ``Identity``,
    ``Dropout`` (inference) and a final ``Softmax``/``LogSoftmax``; names any other node.
    The network is then compared with the graph's own computation
    (``onnx.reference.ReferenceEvaluator``) on random inputs and ``example_inputs``.

    Returns:
        The network and the reference module (the graph as a callable).

    Raises:
        NetworkError: an unsupported node (named), a branch, a network whose output
            differs from the graph's.
    """
    net, ref, _ = _convert_onnx(model, example_inputs)
    return net, ref


def _convert_onnx(model: Any, example_inputs: torch.Tensor | None) -> tuple[ReLUNetwork, nn.Module, str | None]:
    ops, input_name, dtype = _ops_from_onnx(model)
    ch = _build_chain(ops)
    net = _network_of(ch)
    ref = OnnxReference(model, input_name, dtype)
    net._check_same_function(ref, inputs=example_inputs, output_map=_output_map(ch.output_map))
    return net, ref, ch.output_map


def _load_onnx(p: Path) -> tuple[ReLUNetwork, nn.Module, str | None]:
    onnx = _import_onnx()
    try:
        model = onnx.load(str(p))
    except Exception as exc:
        raise NetworkError(
            f"cannot read the ONNX file {str(p)!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
    return _convert_onnx(model, None)


def _read_state_dict(p: Path, fmt: str) -> Mapping[str, torch.Tensor]:
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise NetworkError(f"cannot read the safetensors file {str(p)!r}: {exc}") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unpickl" in type(exc).__name__:
            raise NetworkError(
                f"{str(p)!r} is a pickled Python object, not a state_dict; sparsebound does not unpickle code. "
                "Save the weights with torch.save(model.state_dict(), path) (give the class with --arch), or the "
                "model with torch.jit.save(torch.jit.trace(model, x), path)"
            ) from None
        raise NetworkError(f"cannot read {str(p)!r} as a PyTorch file ({type(exc).__name__}); give a state_dict, "
                           "TorchScript, safetensors or ONNX file") from None
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only refuses modules
        raise NetworkError(f"{str(p)!r} holds a module object; save its state_dict instead")
    if not isinstance(obj, Mapping):
        raise NetworkError(f"{str(p)!r} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    return obj


def load_model(
    path: str | os.PathLike[str],
    *,
    architecture: nn.Module | str | None = None,
    option: str = "--model",
) -> LoadedModel:
    """Read a ReLU MLP from a file in any of the supported formats.

    Formats (told apart by content, or the suffix ``.onnx``/``.safetensors``):

    * a sparsebound checkpoint folder (its trained network; its recorded initialisation
      when ``option="--init"``);
    * TorchScript (``torch.jit.save``);
    * ONNX (needs ``pip install 'sparsebound[onnx]'``, the ``onnx`` package);
    * safetensors, or a ``torch.save``'d state_dict (read with ``weights_only=True``;
      pickled model objects are refused): loaded into ``architecture`` when given
      (an ``nn.Module``, or a spec for :func:`load_architecture`), else read as a
      Linear stack (see :func:`network_from_state_dict`).

    Args:
        option: the command-line option the file came from (named in errors).

    Raises:
        ConfigError: missing file, ``onnx`` not installed, a bad architecture spec.
        NetworkError: a model that is not a ReLU MLP (the layer is named).
        CheckpointError: a damaged sparsebound checkpoint.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{option} {str(path)!r}: no such file or folder")
    arch = load_architecture(architecture) if isinstance(architecture, str) else architecture
    fmt = _sniff(p)
    if fmt == "checkpoint":
        from .checkpoint import load_checkpoint

        ck = load_checkpoint(p)
        if option == "--init":  # the initialisation recorded in the checkpoint, not its trained network
            return LoadedModel(ck.init, "checkpoint", str(p), f"the recorded initialisation of checkpoint {p}")
        return LoadedModel(ck.network, "checkpoint", str(p), f"sparsebound checkpoint {p} (its trained network)")
    if fmt == "onnx":
        net, module, omap = _load_onnx(p)
        return LoadedModel(net, "onnx", str(p), f"ONNX file {p}", module, omap)
    if fmt == "torchscript":
        try:
            with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:
            raise NetworkError(f"cannot load the TorchScript file {str(p)!r} ({type(exc).__name__})") from None
        net, omap = _convert_module(module, None)
        return LoadedModel(net, "torchscript", str(p), f"TorchScript file {p}", module, omap)
    sd = _read_state_dict(p, fmt)
    net, desc = network_from_state_dict(sd, arch)
    omap = None
    if arch is not None:
        net, omap = _convert_module(arch, None)  # the same network; its output map is needed for the data check
    return LoadedModel(net, fmt, str(p), f"{fmt} file {p}; {desc}", arch, omap)
