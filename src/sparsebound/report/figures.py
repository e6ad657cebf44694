"""Figures for ``sparsebound sparsity`` and the ``reproduce`` report (matplotlib, PNG).

Every function takes plain numbers / numpy arrays / dicts (as found in the
results' ``to_dict()`` records) and an output path, draws on a private
``Figure`` with the Agg canvas (no pyplot, no display, no global backend
switch), writes the PNG atomically (:func:`sparsebound._io.atomic_write_with`)
and returns the path.

Robustness: NaN values are dropped; on log axes, ``+inf`` or values beyond the
plotted range are drawn as upward triangles on the top edge and zero /
negative values as downward triangles on the bottom edge (each with a legend
entry), so that vacuous or infinite certificates remain visible.  An empty
input gives a figure that says "no data" rather than an error.

Figures:

* :func:`activity_histogram` -- effective activity ratio ``a_k / d_k`` over a
  data set, one panel per hidden layer, several checkpoints overlaid
  (Muthukumar & Sulam, COLT 2023, the effective-activity-ratio histograms;
  THEORY.md section 2).
* :func:`radius_distributions` -- sparse local radius ``rho_k(x; s_k)`` at one
  grid level, box plots per checkpoint, one panel per hidden layer.
* :func:`certificates_vs_width` -- risk certificates of several methods against
  the hidden width, with the test error and the test-set bound for reference.
* :func:`tradeoff_curve` -- certificate, augmented loss and complexity term
  against the active fraction (the sparsity / generalization trade-off).
* :func:`certified_fraction_vs_sigma` -- ``1 - augmented loss`` against the
  noise level sigma.
* :func:`study_figures` -- all of the above for a study (``reproduce``), from its
  typed :class:`~sparsebound.study.results.StudyResult`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .._io import atomic_write_with

if TYPE_CHECKING:
    from ..study.results import RunRecord, StudyResult

__all__ = [
    "DPI",
    "activity_histogram",
    "certificates_vs_width",
    "certified_fraction_vs_sigma",
    "figure_paths",
    "radius_distributions",
    "study_figures",
    "tradeoff_curve",
]

DPI = 120
"""Resolution of every PNG (dots per inch)."""

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
            "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_PathLike = str | os.PathLike[str]


# ----- helpers ------------------------------------------------------------------
def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _figure(n_panels: int = 1, *, panel: tuple[float, float] = (4.8, 3.6), max_cols: int = 3,
            extra_width: float = 0.0) -> tuple[Figure, list[Any]]:
    """A constrained-layout figure with ``n_panels`` axes (row-major, unused ones hidden)."""
    n = max(1, n_panels)
    ncols = min(n, max_cols)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel[0] * ncols + extra_width, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Figure, path: _PathLike) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI`, atomically; return the path."""
    p = Path(path)
    atomic_write_with(p, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png", facecolor="white"))
    return p


def _no_data(ax: Any, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _floats(values: Any) -> np.ndarray:
    """``values`` as a flat float64 array (None -> NaN, "inf" strings accepted)."""
    if values is None:
        return np.zeros(0)
    if np.isscalar(values):
        values = [values]
    out = []
    for v in values if not isinstance(values, np.ndarray) else values.ravel():
        try:
            out.append(float(v) if v is not None else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def _log_range(series: Iterable[np.ndarray], always: Sequence[float] = ()) -> tuple[float, float]:
    """y-limits (lo, hi) of a log axis covering every finite positive value (and ``always``)."""
    pos = [v[np.isfinite(v) & (v > 0)] for v in series]
    vals = np.concatenate([*pos, np.asarray(always, dtype=np.float64)]) if pos or always else np.zeros(0)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return 1e-3, 10.0
    lo, hi = float(vals.min()), float(vals.max())
    return lo / 2.0, hi * 2.0


def _log_series(ax: Any, x: np.ndarray, y: np.ndarray, lo: float, hi: float, *, color: str,
                label: str | None, **style: Any) -> tuple[bool, bool]:
    """Plot ``y`` on a log axis limited to [lo, hi].

    Finite values in range are joined by a line; ``+inf`` / values above ``hi``
    become ``^`` markers on the top edge, zero / negative / below ``lo`` become
    ``v`` markers on the bottom edge; NaN is skipped.  Returns whether any
    top / bottom marker was drawn.
    """
    ok = np.isfinite(y) & (y > 0) & (y >= lo) & (y <= hi)
    top = (y > hi) | (np.isposinf(y))
    bottom = (~np.isnan(y)) & ~ok & ~top
    if ok.any():
        ax.plot(x[ok], y[ok], color=color, label=label, **style)
    elif label is not None:
        # keep the legend entry even when nothing is in range
        ax.plot([], [], color=color, label=label, **style)
    if top.any():
        ax.plot(x[top], np.full(int(top.sum()), hi), ls="none", marker="^", ms=9, color=color, clip_on=False,
                zorder=5)
    if bottom.any():
        ax.plot(x[bottom], np.full(int(bottom.sum()), lo), ls="none", marker="v", ms=9, color=color,
                clip_on=False, zorder=5)
    return bool(top.any()), bool(bottom.any())


def _edge_handles(top: bool, bottom: bool) -> list[Line2D]:
    out = []
    if top:
        out.append(Line2D([], [], ls="none", marker="^", ms=8, color="0.35", label="off scale (inf or too large)"))
    if bottom:
        out.append(Line2D([], [], ls="none", marker="v", ms=8, color="0.35", label="zero / below scale"))
    return out


def _vacuous_line(ax: Any, hi: float) -> None:
    """Horizontal line at 1 with the label "vacuous above" and a light shade above it."""
    ax.axhline(1.0, color="0.25", lw=1.0, zorder=1)
    if hi > 1.0:
        ax.axhspan(1.0, hi, color="#d62728", alpha=0.06, lw=0, zorder=0)
    ax.text(0.99, 1.0, "vacuous above", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
            fontsize=8.5, color="0.25")


def _layer_count(arrays: Iterable[np.ndarray]) -> int:
    n = 0
    for a in arrays:
        a = np.asarray(a)
        n = max(n, 1 if a.ndim <= 1 else a.shape[1])
    return n


def _column(a: Any, k: int) -> np.ndarray | None:
    """Column k of an (N, L) array (a 1-D array is one layer); None when absent."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim <= 1:
        return a.ravel() if k == 0 else None
    return a[:, k] if k < a.shape[1] else None


def _layer_name(layer_names: Sequence[str] | None, k: int) -> str:
    if layer_names is not None and k < len(layer_names):
        return str(layer_names[k])
    return f"hidden layer {k + 1}"


# ----- sparsity figures ------------------------------------------------------------
def activity_histogram(
    groups: Mapping[str, np.ndarray],
    path: _PathLike,
    *,
    layer_names: Sequence[str] | None = None,
    title: str = "Effective activity ratio over the training set",
    bins: Sequence[float] | int | None = None,
    xlabel: str = "effective activity ratio  $a_k / d_k$",
) -> Path:
    """Histogram of effective activity ratios, checkpoints overlaid, one panel per hidden layer.

    Args:
        groups: ``label -> (N, L)`` array (or ``(N,)`` for one layer) of per-sample
            ratios ``a_k / d_k`` in (0, 1] (dimensionless); e.g.
            ``{"width 100": report.activity_ratios}``.  Groups may have different N
            and different depths (a group without layer k is absent from panel k).
        path: PNG to write.
        layer_names: panel titles (default "hidden layer k").
        title: figure title.
        bins: histogram bin edges or count; default 0.05-wide bins centred on
            multiples of 0.05 (the default active-fraction grid).
        xlabel: x-axis label.

    Each histogram is normalised to the fraction of that group's samples per bin;
    the group mean is marked by a dashed vertical line.  Source: Muthukumar &
    Sulam, COLT 2023 (histograms of the effective activity ratio for MNIST
    networks of widths 50-1000); THEORY.md section 2.

    Returns:
        ``Path(path)``.
    """
    arrays = {str(k): np.asarray(v, dtype=np.float64) for k, v in groups.items()}
    n_layers = _layer_count(arrays.values())
    fig, axes = _figure(max(1, n_layers))
    allv = np.concatenate([a.ravel() for a in arrays.values()]) if arrays else np.zeros(0)
    allv = allv[np.isfinite(allv)]
    if bins is None:
        lo = min(0.0, float(allv.min())) if allv.size else 0.0
        hi = max(1.0, float(allv.max())) if allv.size else 1.0
        start = math.floor((lo + 0.025) / 0.05) * 0.05 - 0.025
        edges = np.arange(start, hi + 0.05, 0.05)
    elif isinstance(bins, int | np.integer):
        edges = np.histogram_bin_edges(allv if allv.size else np.array([0.0, 1.0]), bins=int(bins))
    else:
        edges = np.asarray(bins, dtype=np.float64)
    if n_layers == 0 or allv.size == 0:
        _no_data(axes[0])
    for k in range(n_layers):
        ax = axes[k]
        drawn = 0
        for i, (label, arr) in enumerate(arrays.items()):
            col = _column(arr, k)
            if col is None:
                continue
            v = col[np.isfinite(col)]
            if v.size == 0:
                continue
            w = np.full(v.size, 1.0 / v.size)
            c = _color(i)
            ax.hist(v, bins=edges, weights=w, histtype="stepfilled", color=c, alpha=0.18)
            ax.hist(v, bins=edges, weights=w, histtype="step", color=c, lw=1.8,
                    label=f"{label}  (mean {v.mean():.2f})")
            ax.axvline(float(v.mean()), color=c, ls="--", lw=1.0)
            drawn += 1
        ax.set_title(_layer_name(layer_names, k), fontsize=11)
        if drawn == 0:
            _no_data(ax)
            continue
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of samples")
        ax.set_xlim(float(edges[0]), float(edges[-1]))
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=8, loc="upper left", frameon=False)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def radius_distributions(
    groups: Mapping[str, Sequence[np.ndarray]],
    path: _PathLike,
    *,
    layer_names: Sequence[str] | None = None,
    level_label: str = "50% active",
    title: str | None = None,
) -> Path:
    """Box plots of the sparse local radius at one grid level, per checkpoint, one panel per layer.

    Args:
        groups: ``label -> [rho_1, rho_2, ...]``, one ``(N,)`` array per hidden
            layer: lower bounds of ``rho_k(x; s_k)`` (units of the pre-activations
            ``z^k``) at the grid level named by ``level_label``.  Non-finite values
            (``+inf`` at the dense level) are left out.
        path: PNG to write.
        layer_names: panel titles (default "hidden layer k").
        level_label: which grid level the radii belong to (for the title).
        title: figure title (default names the level).

    Boxes span the quartiles, whiskers the 5-95% range, a white dot marks the mean;
    each tick names the share of samples with ``rho > 0`` (every unit of the
    witness ``I_k`` strictly inactive).  Source: THEORY.md section 2.

    Returns:
        ``Path(path)``.
    """
    data = {str(k): [np.asarray(a, dtype=np.float64).ravel() for a in v] for k, v in groups.items()}
    n_layers = max((len(v) for v in data.values()), default=0)
    labels = list(data)
    fig, axes = _figure(max(1, n_layers), panel=(max(3.6, 1.1 * len(labels) + 2.2), 3.8))
    if n_layers == 0:
        _no_data(axes[0])
    for k in range(n_layers):
        ax = axes[k]
        vals, pos, ticks, colors = [], [], [], []
        for i, label in enumerate(labels):
            layers = data[label]
            if k >= len(layers):
                continue
            v = layers[k]
            v = v[np.isfinite(v)]
            pos.append(i + 1)
            if v.size == 0:
                ticks.append(f"{label}\n(no finite values)")
                vals.append(np.array([np.nan]))
            else:
                ticks.append(f"{label}\n{100.0 * float((v > 0).mean()):.0f}% > 0")
                vals.append(v)
            colors.append(_color(i))
        ax.set_title(_layer_name(layer_names, k), fontsize=11)
        finite = [v for v in vals if np.isfinite(v).any()]
        if not finite:
            _no_data(ax)
            continue
        plot_vals = [v if np.isfinite(v).any() else np.array([]) for v in vals]
        bp = ax.boxplot(plot_vals, positions=pos, whis=(5, 95), showfliers=False, showmeans=True,
                        patch_artist=True, widths=0.55,
                        meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "0.2",
                                   "markersize": 5},
                        medianprops={"color": "0.1", "lw": 1.5})
        for patch, c in zip(bp["boxes"], colors, strict=False):
            patch.set_facecolor(c)
            patch.set_alpha(0.55)
            patch.set_edgecolor(c)
        ax.axhline(0.0, color="#d62728", ls="--", lw=1.0, label=r"$\rho_k = 0$")
        if k == 0:
            ax.legend(handles=[Line2D([], [], color="#d62728", ls="--", lw=1.0,
                                      label=r"$\rho_k = 0$ (below: the level is not reached)"),
                               Line2D([], [], ls="none", marker="o", mfc="white", mec="0.2", label="mean")],
                      fontsize=8, loc="best", framealpha=0.85)
        ax.set_xticks(pos)
        ax.set_xticklabels(ticks, fontsize=8.5)
        ax.set_ylabel(r"sparse local radius $\rho_k$ (units of $z^k$)")
        ax.grid(axis="y", alpha=0.3, lw=0.5)
    fig.suptitle(title or f"Sparse local radius at the grid level {level_label} "
                          "(box: quartiles, whiskers: 5-95%)", fontsize=11)
    return _save(fig, path)


# ----- certificate figures (reproduce report) ------------------------------------------
def _get(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def certificates_vs_width(rows: Sequence[Mapping[str, Any]], path: _PathLike, *,
                          title: str = "Risk certificates vs hidden width") -> Path:
    """Unclipped certificates of every method against the hidden width (log y).

    Args:
        rows: dicts with ``width`` (int), ``method`` (str), ``unclipped`` (float,
            may be >> 1 or inf), ``test_error`` and ``test_set_bound`` (floats,
            the same for every method of one width; the first finite value per
            width is used).  Missing or None values are skipped.
        path: PNG to write.
        title: figure title.

    One line per method; the test error (black dashed, x) and the test-set bound
    (grey dotted, +) as references; a horizontal line at 1 labelled "vacuous
    above".  Values off the log scale are drawn as edge triangles.

    Returns:
        ``Path(path)``.
    """
    fig, axes = _figure(1, panel=(6.4, 4.4))
    ax = axes[0]
    rows = [r for r in rows if r.get("width") is not None]
    if not rows:
        _no_data(ax)
        ax.set_title(title, fontsize=12)
        return _save(fig, path)
    widths = sorted({int(r["width"]) for r in rows})
    methods: list[str] = []
    for r in rows:
        m = str(r.get("method", "?"))
        if m not in methods:
            methods.append(m)
    x = np.asarray(widths, dtype=np.float64)
    curves = {}
    for m in methods:
        y = np.full(len(widths), np.nan)
        for r in rows:
            if str(r.get("method", "?")) == m:
                y[widths.index(int(r["width"]))] = _get(r, "unclipped")
        curves[m] = y

    def ref(key: str) -> np.ndarray:
        y = np.full(len(widths), np.nan)
        for r in rows:
            i = widths.index(int(r["width"]))
            v = _get(r, key)
            if np.isnan(y[i]) and not np.isnan(v):
                y[i] = v
        return y

    test_err, test_bound = ref("test_error"), ref("test_set_bound")
    lo, hi = _log_range([*curves.values(), test_err, test_bound], always=(1.0,))
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    top = bottom = False
    for i, (m, y) in enumerate(curves.items()):
        t, b = _log_series(ax, x, y, lo, hi, color=_color(i), label=m, marker="o", lw=1.8, ms=5)
        top, bottom = top or t, bottom or b
    t1, b1 = _log_series(ax, x, test_bound, lo, hi, color="0.45", label="test-set bound", ls=":", marker="+",
                         lw=1.6, ms=9)
    t2, b2 = _log_series(ax, x, test_err, lo, hi, color="black", label="test error", ls="--", marker="x",
                         lw=1.4, ms=7)
    top, bottom = top or t1 or t2, bottom or b1 or b2
    _vacuous_line(ax, hi)
    if len(widths) > 1 and widths[-1] / max(widths[0], 1) >= 4:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(x)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    if len(widths) == 1:
        ax.set_xlim(x[0] * 0.8, x[0] * 1.2)
    ax.set_xlabel("hidden width")
    ax.set_ylabel("risk certificate (unclipped, log scale)")
    ax.grid(alpha=0.3, lw=0.5, which="major")
    handles, labels = ax.get_legend_handles_labels()
    for h in _edge_handles(top, bottom):
        handles.append(h)
        labels.append(h.get_label())
    fig.legend(handles, labels, loc="outside right upper", fontsize=8.5, frameon=False)
    ax.set_title(title, fontsize=12)
    return _save(fig, path)


#: the informative window of docs/theory.md section 9 (``certification.INFORMATIVE_WINDOW``;
#: repeated here so that drawing needs no torch import; a test checks they agree).
INFORMATIVE_WINDOW = 0.1


def tradeoff_best_index(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the trade-off level to quote (docs/theory.md section 9), or None when no row
    carries a finite bound.

    Rows written with one common informative level (they carry ``certifiable``): the smallest
    bound among the certifiable rows.  Older rows (one level per active fraction): the smallest
    bound where one is non-vacuous; otherwise the smallest among the levels whose augmented loss
    is within ``INFORMATIVE_WINDOW`` of the smallest (the plain minimum would sit at a level
    where no sample is certified).  Ties go to the densest level (largest active fraction).
    """
    unc = [_get(r, "unclipped") for r in rows]
    ok = [i for i, u in enumerate(unc) if math.isfinite(u)]
    if all("certifiable" in r for r in rows):
        ok = [i for i in ok if rows[i]["certifiable"]]
    elif ok and min(unc[i] for i in ok) >= 1.0:
        aug = [_get(rows[i], "augmented_loss") for i in ok]
        if any(math.isfinite(a) for a in aug):
            lo = min(a for a in aug if math.isfinite(a))
            ok = [i for i, a in zip(ok, aug, strict=True) if a <= lo + INFORMATIVE_WINDOW]
    if not ok:
        return None
    return min(ok, key=lambda i: (unc[i], -_get(rows[i], "active_fraction")))


def tradeoff_curve(rows: Sequence[Mapping[str, Any]], path: _PathLike, *,
                   title: str = "Sparsity / generalization trade-off") -> Path:
    """Certificate and its two parts against the active fraction (log y).

    Args:
        rows: dicts with ``active_fraction`` (in (0, 1]), ``bound`` (clipped to
            [0, 1]; unused for drawing beyond the legend note), ``unclipped``
            (may be >> 1 or inf), ``augmented_loss`` (in [0, 1]) and
            ``complexity_term`` (>= 0, may be inf).
        path: PNG to write.
        title: figure title.

    Lower active fractions (more sparsity) shrink the complexity term but raise
    the augmented loss (fewer samples are certified with a margin); the best
    level is starred: the smallest unclipped certificate.  Rows that carry ``certifiable``
    are already at one common informative level (docs/theory.md section 9) and rows without a
    bound are skipped; for older rows, when all are vacuous, the star is among the levels whose
    augmented loss is within 0.1 of the smallest.

    Returns:
        ``Path(path)``.
    """
    fig, axes = _figure(1, panel=(6.4, 4.4))
    ax = axes[0]
    rows = sorted((r for r in rows if not math.isnan(_get(r, "active_fraction"))),
                  key=lambda r: _get(r, "active_fraction"))
    if not rows:
        _no_data(ax)
        ax.set_title(title, fontsize=12)
        return _save(fig, path)
    x = np.asarray([_get(r, "active_fraction") for r in rows])
    series = {
        "certificate (unclipped)": (np.asarray([_get(r, "unclipped") for r in rows]), "#1f77b4", "-", "o"),
        "augmented loss": (np.asarray([_get(r, "augmented_loss") for r in rows]), "#ff7f0e", "--", "s"),
        "complexity term": (np.asarray([_get(r, "complexity_term") for r in rows]), "#2ca02c", "-.", "^"),
    }
    lo, hi = _log_range([s[0] for s in series.values()], always=(1.0,))
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    top = bottom = False
    for label, (y, c, ls, mk) in series.items():
        t, b = _log_series(ax, x, y, lo, hi, color=c, label=label, ls=ls, marker=mk, lw=1.8, ms=5)
        top, bottom = top or t, bottom or b
    unc = series["certificate (unclipped)"][0]
    i = tradeoff_best_index(rows)  # the level the report quotes
    if i is not None and 0 < unc[i] <= hi:
        ax.plot([x[i]], [unc[i]], marker="*", ms=15, color="#1f77b4", mec="black", mew=0.8, ls="none",
                zorder=6, label=f"best: {unc[i]:.3g} at {x[i]:.2f} active")
    _vacuous_line(ax, hi)
    ax.set_xlabel(r"active fraction $a_k / d_k$ (smaller = sparser)")
    ax.set_ylabel("value (log scale)")
    span = float(x.max() - x.min())
    pad = 0.05 if span == 0 else 0.04 * span
    ax.set_xlim(float(x.min()) - pad, float(x.max()) + pad)
    ax.grid(alpha=0.3, lw=0.5)
    handles, labels = ax.get_legend_handles_labels()
    for h in _edge_handles(top, bottom):
        handles.append(h)
        labels.append(h.get_label())
    ax.legend(handles, labels, fontsize=8.5, loc="best", framealpha=0.85)
    ax.set_title(title, fontsize=12)
    return _save(fig, path)


def certified_fraction_vs_sigma(curves: Mapping[str, Mapping[str, Any]], path: _PathLike, *,
                                title: str = "Certified fraction vs noise level") -> Path:
    """``1 - augmented loss`` against sigma (log x), one line per curve.

    Args:
        curves: ``label -> {"sigma": [...], "augmented_loss": [...]}`` (equal
            lengths; sigma > 0; the augmented loss is the fraction of samples NOT
            certified at that sigma, in [0, 1]).  Non-positive or non-finite
            sigmas and NaN losses are skipped.
        path: PNG to write.
        title: figure title.

    Returns:
        ``Path(path)``.
    """
    fig, axes = _figure(1, panel=(6.2, 4.2))
    ax = axes[0]
    drawn = 0
    for i, (label, c) in enumerate(curves.items()):
        s = _floats(c.get("sigma"))
        a = _floats(c.get("augmented_loss"))
        n = min(s.size, a.size)
        s, a = s[:n], a[:n]
        ok = np.isfinite(s) & (s > 0) & np.isfinite(a)
        if not ok.any():
            continue
        order = np.argsort(s[ok])
        xs, ys = s[ok][order], 1.0 - a[ok][order]
        ax.plot(xs, ys, color=_color(i), marker="o" if xs.size < 30 else None, ms=4, lw=1.8, label=str(label))
        drawn += 1
    if drawn == 0:
        _no_data(ax)
    else:
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(r"noise level $\sigma$ (log scale)")
        ax.set_ylabel("certified fraction  1 - augmented loss")
        ax.grid(alpha=0.3, lw=0.5, which="both")
        ax.legend(fontsize=8.5, loc="best", framealpha=0.85)
    ax.set_title(title, fontsize=12)
    return _save(fig, path)


# ----- the figures of a study (``reproduce``) ---------------------------------------------
def _short_kind(kind: str) -> str:
    return {"init": "init prior", "ddp-standard": "data-dep. prior, standard",
            "ddp-proximal": "data-dep. prior, proximal"}.get(kind, kind)


def _nan_floats(x: Any) -> list[float]:
    out = []
    for v in x:
        try:
            out.append(float(v) if v is not None else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def study_figures(study: StudyResult, out: _PathLike) -> dict[str, Any]:
    """Draw every figure of a study into ``OUT/figures`` from its typed results.

    Reads the runs' records and the per-sample sparsity arrays beside the init-prior
    checkpoints (:meth:`RunRecord.sparsity_samples`); recomputes nothing.

    Returns:
        Paths relative to ``out``: ``certificates_vs_width`` (by run kind), ``tradeoff`` and
        ``certified_fraction`` (by width, first seed, init prior), ``activity_ratios``, ``radii``.
    """
    fdir = Path(out) / "figures"
    fdir.mkdir(parents=True, exist_ok=True)
    figs: dict[str, Any] = {"certificates_vs_width": {}, "tradeoff": {}, "certified_fraction": {}}
    methods = study.methods
    nseeds = len(study.seeds)
    for kind in study.kinds:
        rows = []
        for row in study.summary.groups[kind].per_width_mean_unclipped:
            for m in methods:
                if m == "test-set":
                    continue
                rows.append({"width": row["width"], "method": m, "unclipped": row.get(m),
                             "test_error": row["test_error"], "test_set_bound": row.get("test-set")})
        name = f"certificates_vs_width_{kind}.png"
        certificates_vs_width(rows, fdir / name, title=f"Certificates vs width ({_short_kind(kind)})"
                              + (f", mean of {nseeds} seeds" if nseeds > 1 else ""))
        figs["certificates_vs_width"][kind] = f"figures/{name}"
    first = _first_seed_init_runs(study)
    ratios, radii = {}, {}
    for r in first:
        ps = r.sparsity_samples()
        if ps is None:
            continue
        ratios[f"width {r.run.width}"] = np.asarray(ps["activity_ratios"], dtype=np.float64)
        radii[f"width {r.run.width}"] = [np.asarray(_nan_floats(x), dtype=np.float64) for x in ps["mid_radii"]]
    activity_histogram(ratios, fdir / "activity_ratios.png",
                       title="Effective activity ratio on the training set (prior = initialisation)")
    figs["activity_ratios"] = "figures/activity_ratios.png"
    mid = next((r.sparsity.get("mid_fraction") for r in study.runs if r.sparsity is not None), None)
    radius_distributions(radii, fdir / "radii.png",
                         level_label=f"{100 * mid:.0f}% active" if mid is not None else "mid level")
    figs["radii"] = "figures/radii.png"
    for r in first:
        w = r.run.width
        name = f"tradeoff_w{w}.png"
        tradeoff_curve(r.tradeoff, fdir / name, title=f"Sparsity trade-off, width {w} (prior = initialisation)")
        figs["tradeoff"][str(w)] = f"figures/{name}"
        curves = {m: r.results[m].details["curve"] for m in ("sparse", "uniform-sparse", "dense") if m in r.results}
        name = f"certified_fraction_w{w}.png"
        certified_fraction_vs_sigma(curves, fdir / name,
                                    title=f"Certified fraction vs sigma, width {w} (prior = initialisation)")
        figs["certified_fraction"][str(w)] = f"figures/{name}"
    return figs


def _first_seed_init_runs(study: StudyResult) -> list[RunRecord]:
    s0 = study.seeds[0]
    return sorted((r for r in study.runs if r.run.kind == "init" and r.run.seed == s0), key=lambda r: r.run.width)


def figure_paths(figures: Mapping[str, Any]) -> list[str]:
    """Every path of a study's figure record (nested by kind or width)."""
    out: list[str] = []
    for v in figures.values():
        if isinstance(v, Mapping):
            out.extend(str(x) for x in v.values())
        elif v:
            out.append(str(v))
    return out
