"""How sparse a trained network is, sample by sample (``sparsebound sparsity``).

For a network W and a data set this module measures, per hidden layer k:

* the raw active fraction ``#{i : z^k_i > 0} / d_k`` of each sample;
* the effective activity ratio ``a_k / d_k`` of the greedy sparse vector
  ``s*(x, eps)`` on the a-priori grid (the largest grid sparsity whose sparse
  local radius is at least ``eps_k``; THEORY.md section 2, Muthukumar & Sulam,
  COLT 2023, section 3 and its histograms of the effective activity ratio);
* quantiles of the sparse local radius ``rho_k(x; s_k)`` at a few grid levels
  (lower bounds of the exact values, in the units of the pre-activations z^k);

and, per weight layer, the uniform reduced-norm bounds of THEORY.md 5.2
(:func:`sparsebound.norms.uniform_sparse_norms`): how much smaller than the
full spectral norm ``||W_k||`` the norm of any ``a x b`` submatrix can be, for
``a`` = active sizes of layer k and ``b`` = active sizes of layer k-1.

Nothing here is a certificate: it is the diagnostic that shows whether the
sparsity-aware certificate has room to be tight.  The CLI entry point is
:func:`run_sparsity`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .network import ReLUNetwork
from .noise import DEFAULT_ACTIVE_FRACTIONS
from .norms import UniformNormTable, uniform_sparse_norms
from .sparsity import SparsityGrid, SparsityTable

__all__ = [
    "DEFAULT_ACTIVE_FRACTIONS",
    "MID_FRACTION",
    "QUANTILES",
    "REPORT_FRACTIONS",
    "SparsityReport",
    "analyse_sparsity",
    "format_report",
    "run_sparsity",
]

REPORT_FRACTIONS: tuple[float, ...] = (0.9, 0.75, 0.5, 0.25)
"""Active fractions at which radius quantiles and reduced-norm bounds are reported."""

MID_FRACTION = 0.5
"""Active fraction of the grid level used for the radius figure and the printed table."""

QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
"""Quantiles reported for every per-sample quantity."""


# ----- small helpers --------------------------------------------------------------
def _stats(x: np.ndarray, qs: Sequence[float] = QUANTILES) -> dict[str, Any]:
    """Mean and quantiles of a 1-D float array (inf allowed; empty -> NaN)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return {"mean": math.nan, "quantiles": {str(q): math.nan for q in qs}}
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(x))
        quant = np.quantile(x, qs, method="linear") if np.isfinite(x).all() else np.quantile(
            x, qs, method="lower")
    return {"mean": mean, "quantiles": {str(q): float(v) for q, v in zip(qs, quant, strict=True)}}


def grid_position(grid: SparsityGrid, k: int, fraction: float) -> int:
    """Grid position of hidden layer k (1-based) whose active size is the smallest
    grid size >= ``round(fraction * d_k)`` (exact when ``fraction`` is on the grid).

    Positions index ``grid.active[k-1]`` (descending sizes; 0 is the dense level).
    """
    d = grid.widths[k]
    target = min(d, max(1, round(float(fraction) * d)))
    sizes = grid.active[k - 1]
    ok = np.nonzero(sizes >= target)[0]
    return int(ok[-1])  # sizes descend: the last one still >= target is the smallest


def _eps_list(eps: Sequence[float] | float, n_hidden: int) -> tuple[float, ...]:
    """The radius profile as one value per hidden layer (1 value is broadcast)."""
    vals = [eps] if np.isscalar(eps) else list(eps)
    try:
        out = [float(v) for v in vals]
    except (TypeError, ValueError):
        raise ConfigError(f"--eps values must be numbers, got {vals!r}") from None
    if len(out) == 1:
        out = out * n_hidden
    if len(out) != n_hidden:
        raise ConfigError(
            f"--eps needs 1 value or one per hidden layer ({n_hidden} for this network), got {len(vals)}"
        )
    if any(not (math.isfinite(v) and v >= 0.0) for v in out):
        raise ConfigError(f"--eps values must be finite and >= 0 (radii of pre-activations), got {out}")
    return tuple(out)


# ----- the report -----------------------------------------------------------------
@dataclass(frozen=True)
class SparsityReport:
    """Per-layer sparsity and reduced-norm statistics of one network on one data set.

    Attributes:
        widths: ``(d_0, ..., d_K)``.
        has_bias: whether the layers have biases (weight matrices are then the
            augmented ``[W_k | b_k]`` and column counts include the bias column).
        n_samples: N.
        eps: radius profile ``(eps_1, ..., eps_{K-1})`` of the greedy sparse vector.
        grid: the a-priori :class:`~sparsebound.sparsity.SparsityGrid`.
        report_fractions: active fractions at which radii and norms are tabulated.
        mid_fraction: active fraction of the level in ``mid_radii``.
        hidden: K-1 JSON-ready dicts, one per hidden layer k: ``layer``, ``width``,
            ``active_fraction_raw`` and ``effective_activity_ratio`` (mean and
            quantiles over samples), ``greedy_sparsity`` (mean and quantiles of
            ``s_k``), ``radius`` (per report fraction: the grid level's active
            size, its fraction, quantiles of rho_k and the share of samples with
            ``rho_k > 0`` / ``>= eps_k``), ``mid_level``.
        weights: K JSON-ready dicts, one per weight layer k: ``layer``, ``shape``
            (of the matrix bounded), ``bias_column``, ``spectral`` (upper bound of
            ``||W_k||``), ``row_sizes``/``col_sizes`` of the table and ``points``: per
            report fraction f the sizes (a, b) and at them ``babel_bound``,
            ``babel_function`` (mu_{a,b}, units of W^2), ``frobenius_bound``,
            ``row_bound``, ``bound`` (the minimum, THEORY.md 5.2) and
            ``bound_over_spectral``.
        active_fractions: ``(N, K-1)`` float64 raw active fraction per sample.
        activity_ratios: ``(N, K-1)`` float64 effective activity ratio per sample.
        greedy_levels: ``(N, K-1)`` int64 grid positions of ``s*(x, eps)``.
        mid_radii: K-1 ``(N,)`` float64 arrays: rho_k lower bounds at the level
            ``mid_fraction`` (units of z^k).
        norm_tables: K :class:`~sparsebound.norms.UniformNormTable` (full grids).
        seconds: wall-clock time of each step.
    """

    widths: tuple[int, ...]
    has_bias: bool
    n_samples: int
    eps: tuple[float, ...]
    grid: SparsityGrid
    report_fractions: tuple[float, ...]
    mid_fraction: float
    hidden: tuple[dict[str, Any], ...]
    weights: tuple[dict[str, Any], ...]
    active_fractions: np.ndarray = field(repr=False)
    activity_ratios: np.ndarray = field(repr=False)
    greedy_levels: np.ndarray = field(repr=False)
    mid_radii: tuple[np.ndarray, ...] = field(repr=False)
    norm_tables: tuple[UniformNormTable, ...] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        """K, the number of weight layers."""
        return len(self.widths) - 1

    def weight_point(self, k: int, fraction: float) -> dict[str, Any]:
        """The reduced-norm record of weight layer k (1-based) at active fraction ``fraction``.

        Raises:
            KeyError: ``fraction`` was not tabulated.
        """
        for p in self.weights[k - 1]["points"]:
            if abs(p["active_fraction"] - fraction) < 1e-12:
                return p
        raise KeyError(f"active fraction {fraction} not tabulated for layer {k}")

    def to_dict(self, *, per_sample: bool = False, tables: bool = False) -> dict[str, Any]:
        """JSON-ready dict; per-sample arrays only with ``per_sample``, the full norm
        tables only with ``tables``."""
        out: dict[str, Any] = {
            "widths": list(self.widths),
            "bias": self.has_bias,
            "n_samples": self.n_samples,
            "eps": list(self.eps),
            "grid": self.grid.to_dict(),
            "report_fractions": list(self.report_fractions),
            "mid_fraction": self.mid_fraction,
            "quantiles": list(QUANTILES),
            "hidden_layers": [dict(h) for h in self.hidden],
            "weight_layers": [dict(w) for w in self.weights],
            "seconds": dict(self.seconds),
        }
        if per_sample:
            out["per_sample"] = {
                "active_fractions": self.active_fractions.tolist(),
                "activity_ratios": self.activity_ratios.tolist(),
                "greedy_levels": self.greedy_levels.tolist(),
                "mid_radii": [r.tolist() for r in self.mid_radii],
            }
        if tables:
            out["norm_tables"] = [t.to_dict() for t in self.norm_tables]
        return out


def analyse_sparsity(
    network: ReLUNetwork,
    X: torch.Tensor | np.ndarray,
    *,
    eps: Sequence[float] | float = 0.0,
    fractions: Sequence[float] = DEFAULT_ACTIVE_FRACTIONS,
    device: str | torch.device | None = None,
    progress: bool = False,
    report_fractions: Sequence[float] = REPORT_FRACTIONS,
    mid_fraction: float = MID_FRACTION,
) -> SparsityReport:
    """Sparsity, sparse local radii and uniform reduced-norm bounds of ``network`` on ``X``.

    Steps: (1) float64 forward pass with rigorous rounding bounds
    (:meth:`ReLUNetwork.forward`); (2) :class:`SparsityTable` on the grid
    ``round(f d_k)`` for ``f`` in ``fractions``; (3) per hidden layer the raw
    active fraction, the effective activity ratio ``a_k / d_k`` of the greedy
    sparse vector ``s*(x, eps)`` (largest grid sparsity with ``rho_k >= eps_k``),
    radius quantiles at ``report_fractions``; (4) per weight layer k the uniform
    bounds of THEORY.md 5.2 for ``[W_k | b_k]`` (or ``W_k``) on the grid of
    row sizes = active sizes of layer k (all ``d_K`` rows for the output layer)
    and column sizes = active sizes of layer k-1 plus the bias column (all inputs
    for layer 1), reported at the "diagonal" points where both layers have the
    same active fraction.

    Args:
        network: the :class:`ReLUNetwork` (K >= 2).
        X: ``(N, d_0)`` inputs as the network sees them.
        eps: radius profile: a scalar or one value per hidden layer (>= 0, units of
            the pre-activations).
        fractions: the a-priori active-fraction grid (each in (0, 1]).
        device: where the forward pass runs (``"cpu"`` / ``"cuda"``); the norm
            tables are computed on the CPU.
        progress: tqdm bars for the norm tables.
        report_fractions: active fractions tabulated in the report (rounded up to
            the nearest grid size).
        mid_fraction: level of ``mid_radii`` (the radius figure).

    Returns:
        :class:`SparsityReport`.

    Raises:
        ConfigError: bad eps count or values, fractions outside (0, 1].
        ShapeMismatchError / DataError: ``X`` does not fit the network.

    Cost: the forward pass and one sort per hidden layer (O(N d log d)); the norm
    tables take about ``rows * cols^2 / 2`` sorted products per layer (seconds for
    widths of a few hundred, about a minute for 1000 x 1000).

    Source: THEORY.md sections 2 and 5.2; Muthukumar & Sulam, COLT 2023, section 3
    (sparse local radius, effective activity ratio) and section 4 (reduced babel
    function).
    """
    timings: dict[str, float] = {}
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X))
    K = network.depth
    eps_t = _eps_list(eps, K - 1)
    rep_f = tuple(float(f) for f in report_fractions)
    if any(not (0.0 < f <= 1.0) for f in (*rep_f, float(mid_fraction))):
        raise ConfigError(f"report fractions must lie in (0, 1], got {[*rep_f, mid_fraction]}")
    grid = SparsityGrid.from_fractions(network.widths, fractions)

    t0 = time.perf_counter()
    acts = network.forward(X, device=device, keep_pre_activations=True)
    timings["forward"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = SparsityTable.build(acts, grid)
    levels = table.greedy_levels(list(eps_t))
    ratios = table.activity_ratios(levels).numpy()
    raw = (table.active_units.double() / torch.tensor(network.widths[1:-1], dtype=torch.float64)).numpy()
    hidden, mid_radii = [], []
    for k in range(1, K):
        d = network.widths[k]
        radii = table.radii[k - 1].numpy()
        sparsity = grid.sparsity(k)
        radius_rec = {}
        for f in rep_f:
            t = grid_position(grid, k, f)
            r = radii[:, t]
            radius_rec[str(f)] = {
                "active_size": int(grid.active[k - 1][t]),
                "grid_fraction": float(grid.active[k - 1][t]) / d,
                "sparsity": int(sparsity[t]),
                **_stats(r),
                "share_positive": float((r > 0).mean()),
                "share_at_least_eps": float((r >= eps_t[k - 1]).mean()),
            }
        tm = grid_position(grid, k, mid_fraction)
        mid_radii.append(radii[:, tm].copy())
        lv = levels[:, k - 1].numpy()
        hidden.append({
            "layer": k,
            "width": d,
            "eps": eps_t[k - 1],
            "active_fraction_raw": _stats(raw[:, k - 1]),
            "effective_activity_ratio": _stats(ratios[:, k - 1]),
            "greedy_sparsity": _stats(sparsity[lv].astype(np.float64)),
            "radius": radius_rec,
            "mid_level": {"active_fraction": float(mid_fraction), "active_size": int(grid.active[k - 1][tm]),
                          "grid_fraction": float(grid.active[k - 1][tm]) / d},
        })
    timings["sparsity"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    weights, tables = [], []
    bias = 1 if network.has_bias else 0
    points_f = tuple(sorted({*rep_f, float(mid_fraction)}, reverse=True))
    for k in range(1, K + 1):
        W = network.augmented_weight(k)
        rows = grid.active[k - 1] if k < K else np.array([network.widths[K]])
        cols = (grid.active[k - 2] if k > 1 else np.array([network.widths[0]])) + bias
        tab = uniform_sparse_norms(W, [int(a) for a in rows], [int(b) for b in cols], progress=progress)
        tables.append(tab)
        points = []
        for f in points_f:
            a = int(grid.active[k - 1][grid_position(grid, k, f)]) if k < K else network.widths[K]
            b = (int(grid.active[k - 2][grid_position(grid, k - 1, f)]) if k > 1 else network.widths[0]) + bias
            ia, ib = tab.row_sizes.index(a), tab.col_sizes.index(b)
            bnd = float(tab.bound[ia, ib])
            points.append({
                "active_fraction": f,
                "rows": a,
                "cols": b,
                "babel_bound": float(tab.babel_bound[ia, ib]),
                "babel_function": float(tab.babel_function[ia, ib]),
                "frobenius_bound": float(tab.frobenius_bound[ia, ib]),
                "row_bound": float(tab.row_bound[ib]),
                "bound": bnd,
                "bound_over_spectral": bnd / tab.spectral if tab.spectral > 0 else math.nan,
            })
        weights.append({
            "layer": k,
            "shape": [int(W.shape[0]), int(W.shape[1])],
            "bias_column": bool(bias),
            "spectral": float(tab.spectral),
            "row_sizes": list(tab.row_sizes),
            "col_sizes": list(tab.col_sizes),
            "points": points,
        })
    timings["norms"] = time.perf_counter() - t0

    return SparsityReport(
        widths=tuple(network.widths),
        has_bias=network.has_bias,
        n_samples=int(acts.n_samples),
        eps=eps_t,
        grid=grid,
        report_fractions=rep_f,
        mid_fraction=float(mid_fraction),
        hidden=tuple(hidden),
        weights=tuple(weights),
        active_fractions=raw,
        activity_ratios=ratios,
        greedy_levels=levels.numpy(),
        mid_radii=tuple(mid_radii),
        norm_tables=tuple(tables),
        seconds=timings,
    )


# ----- printing ---------------------------------------------------------------------
def format_report(report: SparsityReport, header: str | None = None) -> str:
    """A short table: per layer width, mean raw active fraction, mean effective
    activity ratio, median radius at the mid level, spectral norm, and the uniform
    bound / spectral norm at the mid level."""
    mid = report.mid_fraction
    pct = f"{100 * mid:.0f}%"
    lines = [header] if header else []
    cols = ("layer", "width", "active", "eff.ratio", f"rho@{pct}", "||W_k||", f"bound/||W_k||@{pct}",
            "min(babel,Frob)/||W_k||")
    lines.append(f"  {cols[0]:>5}  {cols[1]:>6}  {cols[2]:>7}  {cols[3]:>9}  {cols[4]:>9}  {cols[5]:>9}  "
                 f"{cols[6]:>18}  {cols[7]:>23}")
    for k in range(1, report.depth + 1):
        w = report.weights[k - 1]
        p = report.weight_point(k, mid)
        if k < report.depth:
            h = report.hidden[k - 1]
            rmed = float(np.median(report.mid_radii[k - 1])) if report.n_samples else math.nan
            act = f"{h['active_fraction_raw']['mean']:.3f}"
            eff = f"{h['effective_activity_ratio']['mean']:.3f}"
            rad = f"{rmed:.3g}"
            width = str(h["width"])
        else:
            act = eff = rad = "-"
            width = f"{report.widths[k]} (output)"
        alt = min(p["babel_bound"], p["frobenius_bound"]) / w["spectral"] if w["spectral"] > 0 else math.nan
        lines.append(f"  {k:>5}  {width:>6}  {act:>7}  {eff:>9}  {rad:>9}  {w['spectral']:>9.4g}  "
                     f"{p['bound_over_spectral']:>18.3f}  {alt:>23.3f}")
    lines.append(
        f"  active: mean share of units with positive pre-activation; eff.ratio: mean a_k/d_k of the greedy "
        f"sparsity vector (largest grid sparsity with radius >= eps); rho@{pct}: median sparse local radius "
        f"when {pct} of the units are declared active (negative: the {pct} least active units are not all off); "
        f"||W_k||: spectral norm; bound/||W_k||@{pct}: best uniform reduced-norm bound at {pct} active over the "
        "spectral norm (1.000: the spectral norm itself is the best uniform bound); min(babel,Frob)/||W_k||: the "
        "reduced babel and sparse Frobenius bounds alone (> 1: looser than the spectral norm, typical of dense "
        "trained weights; per-sample exact norms are what `certify` uses where it matters)."
    )
    return "\n".join(lines)


# ----- CLI ------------------------------------------------------------------------
def _label(widths: Sequence[int]) -> str:
    hidden = list(widths[1:-1])
    if len(set(hidden)) == 1:
        return f"width {hidden[0]}"
    return "widths " + "-".join(str(h) for h in hidden)


def _unique_labels(labels: list[str], paths: list[str]) -> list[str]:
    out = []
    for lab, p in zip(labels, paths, strict=True):
        out.append(lab if labels.count(lab) == 1 else f"{lab} ({Path(p).name or p})")
    seen: dict[str, int] = {}
    final = []
    for lab in out:
        seen[lab] = seen.get(lab, 0) + 1
        final.append(lab if out.count(lab) == 1 else f"{lab} #{seen[lab]}")
    return final


def run_sparsity(args: Any) -> dict[str, Any]:
    """``sparsebound sparsity``: analyse one or more checkpoints and print/write the results.

    Reads from ``args``: ``checkpoints`` (list of folders), ``dataset``,
    ``data_dir``, ``split_seed``, ``n_train``, ``n_test`` (the split recorded in
    each checkpoint is used unless ``--dataset`` is given; then the three split
    options apply), ``split`` ('train' | 'test'), ``eps`` (1 value or one per
    hidden layer), ``device``, ``out`` (folder or None), ``quiet``.

    With ``out``: writes ``sparsity.json`` (config, eps, grids, per-checkpoint
    summaries, versions), ``activity_histogram.png`` and
    ``radius_distributions.png``, each atomically.

    Returns:
        The JSON record (also when nothing is written).

    Raises:
        ConfigError: bad eps, an unwritable or invalid output folder, bad split.
        CheckpointError / DataError / ShapeMismatchError: unreadable checkpoints,
            data that does not fit.
    """
    from ._io import dump_json, ensure_writable_dir
    from .checkpoint import load_checkpoint
    from .experiments import DataSpec, data_spec_of, versions

    split = getattr(args, "split", "train")
    if split not in ("train", "test"):
        raise ConfigError(f"--split must be 'train' or 'test', got {split!r}")
    eps_in = list(args.eps) if args.eps is not None else [0.0]
    if not eps_in:
        raise ConfigError("--eps needs at least one value")
    paths = [str(p) for p in args.checkpoints]
    if not paths:
        raise ConfigError("give at least one checkpoint folder")
    ckpts = [load_checkpoint(p) for p in paths]
    for p, ck in zip(paths, ckpts, strict=True):
        n_hidden = ck.network.depth - 1
        if len(eps_in) not in (1, n_hidden):
            raise ConfigError(
                f"--eps needs 1 value or one per hidden layer; {p} has {n_hidden} hidden layers, "
                f"got {len(eps_in)} values"
            )
        _eps_list(eps_in, n_hidden)
    out_dir = ensure_writable_dir(args.out) if args.out else None
    quiet = bool(getattr(args, "quiet", False))
    if args.dataset is None and (args.n_train is not None or args.n_test is not None or args.split_seed):
        print("note: --split-seed/--n-train/--n-test apply only with --dataset; using each checkpoint's "
              "recorded split", file=sys.stderr)

    labels = _unique_labels([_label(ck.network.widths) for ck in ckpts], paths)
    data_cache: dict[str, Any] = {}
    records, reports = [], []
    for p, ck, label in zip(paths, ckpts, labels, strict=True):
        spec = data_spec_of(ck, args.dataset, args.data_dir)
        if args.dataset is not None:
            spec = DataSpec(**{**spec.to_dict(), "split_seed": int(args.split_seed),
                               "n_train": args.n_train, "n_test": args.n_test})
        key = json.dumps(spec.to_dict(), sort_keys=True, default=str)
        if key not in data_cache:
            data_cache[key] = spec.load()
        splits = data_cache[key]
        ds = splits.train if split == "train" else splits.test
        t0 = time.perf_counter()
        rep = analyse_sparsity(ck.network, ds.X, eps=eps_in, device=args.device, progress=not quiet)
        secs = time.perf_counter() - t0
        eps_txt = ", ".join(f"{e:g}" for e in rep.eps)
        header = (f"{label}: {p}\n  {ck.network.describe()}; {spec.dataset} {split} split, "
                  f"{rep.n_samples} samples; eps = ({eps_txt}); {secs:.1f}s")
        print(format_report(rep, header))
        print()
        reports.append((label, rep))
        records.append({
            "label": label,
            "checkpoint": str(ck.path) if ck.path is not None else p,
            "network": ck.network.describe(),
            "data": spec.to_dict(),
            "split": split,
            "train_error": ck.meta.get("train_error"),
            "test_error": ck.meta.get("test_error"),
            "summary": rep.to_dict(),
        })

    fractions = list(DEFAULT_ACTIVE_FRACTIONS)
    record: dict[str, Any] = {
        "command": "sparsity",
        "config": {
            "checkpoints": paths,
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "split_seed": args.split_seed if args.dataset is not None else None,
            "n_train": args.n_train if args.dataset is not None else None,
            "n_test": args.n_test if args.dataset is not None else None,
            "split": split,
            "device": args.device,
        },
        "eps": eps_in,
        "grids": {"active_fractions": fractions, "report_fractions": list(REPORT_FRACTIONS),
                  "mid_fraction": MID_FRACTION},
        "checkpoints": records,
        "versions": versions(),
    }
    if out_dir is not None:
        from .report.figures import activity_histogram, radius_distributions

        max_hidden = max(rep.depth - 1 for _, rep in reports)
        names = [f"hidden layer {k}" for k in range(1, max_hidden + 1)]
        split_txt = "training" if split == "train" else "test"
        eps_txt = ", ".join(f"{e:g}" for e in eps_in)
        f1 = activity_histogram(
            {lab: rep.activity_ratios for lab, rep in reports}, out_dir / "activity_histogram.png",
            layer_names=names,
            title=f"Effective activity ratio of the greedy sparse vector over the {split_txt} set "
                  f"($\\epsilon$ = {eps_txt})")
        f2 = radius_distributions(
            {lab: list(rep.mid_radii) for lab, rep in reports}, out_dir / "radius_distributions.png",
            layer_names=names, level_label=f"{100 * MID_FRACTION:.0f}% active",
            title=f"Sparse local radius at {100 * MID_FRACTION:.0f}% active units, {split_txt} set "
                  "(box: quartiles, whiskers: 5-95%)")
        record["figures"] = [f1.name, f2.name]
        jpath = dump_json(out_dir / "sparsity.json", record)
        print(f"written: {jpath}, {f1}, {f2}")
    return record
