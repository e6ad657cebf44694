"""``report.md`` of a study, from its typed results only.

:func:`build_report` reads a :class:`~sparsebound.study.results.StudyResult`
(its runs and its :class:`~sparsebound.study.summary.Summary`) and writes
markdown: the settings and confidence levels, the networks and certificates
tables, the vacuity lines, the tightness-levers section (with the exact
union-bound level of picking the best network), the figures and a
plain-language reading under each.  Every number printed is a value stored in
``results.json`` (``tests/test_reproduce.py`` checks this token by token).

Numbers: :func:`sig` (significant digits) and :func:`fixed` (decimals) switch to
scientific notation outside a moderate range, so a cell never grows with the
magnitude (``2.9e+100``, not a 100-digit number); :func:`md_table` pads every
column to one width, so the markdown source stays aligned too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..study.config import LEVER_METHODS, SPARSE_METHODS
from ..study.results import RunRecord, StudyResult, num
from ..study.summary import AlphaEffect, LambdaEffect, LeverBlock, Pick, UnionLevel, trend

__all__ = ["build_report", "fixed", "md_table", "sig"]


# ======================================================================================
# numbers and tables
# ======================================================================================


def sig(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (``inf``, ``n/a``); Python's ``g`` format, so
    scientific notation once the exponent is below -4 or at least ``digits`` (bounded width)."""
    x = num(v)
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


#: :func:`fixed` prints magnitudes from here on in scientific notation.
FIXED_LIMIT = 1e4


def fixed(v: Any, decimals: int = 4) -> str:
    """A number with ``decimals`` decimals (errors, certificates, fractions); values of magnitude
    at least :data:`FIXED_LIMIT` in scientific notation with as many significant digits."""
    x = num(v)
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= FIXED_LIMIT:
        return f"{x:.{decimals}e}"
    return f"{x:.{decimals}f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table with every column padded to its widest cell (aligned source)."""
    cols = len(header)
    width = [max(3, len(header[i]), *(len(r[i]) for r in rows)) for i in range(cols)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(width[i]) for i, c in enumerate(cells)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in width) + "|", *(line(r) for r in rows)]


def _cell(m: Any) -> str:
    """'certificate / unclipped' with a dagger when vacuous."""
    if m is None:
        return "n/a"
    return f"{fixed(m.certificate)} / {sig(m.unclipped)}" + (" †" if m.vacuous else "")


def _range_text(lo: float | None, hi: float | None, digits: int = 3) -> str:
    if lo is None or hi is None:
        return "an infinite factor"
    if sig(lo, digits) == sig(hi, digits):
        return f"{sig(lo, digits)} times"
    return f"between {sig(lo, digits)} and {sig(hi, digits)} times"


def _list_text(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _run_label(r: RunRecord) -> str:
    k = r.run.kind
    return {"init": "init", "ddp-standard": "data-dep. (standard)", "ddp-proximal": "data-dep. (proximal)"}.get(k, k)


def _lam_text(v: Any) -> str:
    x = num(v)
    return "n/a" if x is None else sig(x)


# ======================================================================================
# the report
# ======================================================================================


def build_report(study: StudyResult) -> str:
    """``report.md`` from a study's typed results (every number printed is stored in ``results.json``)."""
    c = study.config
    runs = study.ordered_runs()
    summ = study.summary
    L: list[str] = []
    data = study.data
    alphas = study.prior_fractions
    lams = study.proximal
    L.append("# sparsebound reproduce: sparsity-aware certificates vs width")
    L.append("")
    has_ddp = any(r.run.prior_kind == "data-dependent" for r in runs)
    L.append(f"Dataset `{c.dataset}` ({data.get('n_train')} training / {data.get('n_test')} test points), "
             f"depth K = {study.depth} (hidden layers of equal width), widths "
             f"{', '.join(str(w) for w in study.widths)}, seeds {', '.join(str(s) for s in study.seeds)}"
             + ((f"; data-dependent prior trained on a fraction alpha = {', '.join(sig(a) for a in alphas)} of the "
                 "training set (one prior per alpha, shared by its posteriors)") if has_ddp else "")
             + (f", proximal posterior with lambda = {', '.join(sig(x) for x in lams)}" if lams and has_ddp else "")
             + ". Training: SGD with learning rate "
             f"{c.lr}, momentum {c.momentum}, batch size {c.batch_size}, at most {c.max_epochs} epochs"
             + (" (scaled down by the time budget where stated below)" if study.budget else "")
             + f", stopping at training error {c.target_error}.")
    L.append("")
    if study.failed_runs:
        L.extend(_failed_section(study))
    L.extend(_warnings_section(runs))
    ms = sorted({(r.run.prior_kind, r.m) for r in runs})
    m_text = "; ".join(f"m = {m} ({'whole training set' if pk == 'init' else 'S_bound'}, {pk} prior)"
                       for pk, m in ms)
    L.append(f"**Confidence:** delta = {study.delta} (every method is a separate statement holding with "
             f"probability at least 1 - delta); noise failure levels eta1 = {study.eta1} (test side) and "
             f"eta2 = {study.eta2} (training side). Bound-sample sizes: {m_text}.")
    L.append("")
    mc = summ.mc
    if mc:
        per_w = "; ".join(f"width {x['width']}: N = {', '.join(str(n) for n in x['n_draws'])}"
                          for x in mc.n_draws_per_width)
        L.append(f"**sparse-mc** (Monte-Carlo training side, docs/theory.md section 10) holds at the same overall "
                 f"level delta = {mc.delta_total}, split into delta = {', '.join(sig(x) for x in mc.delta)} "
                 f"for its PAC-Bayes step and delta' = {', '.join(sig(x) for x in mc.delta_mc)} for its N "
                 f"posterior draws (the two add up to the overall level); N = "
                 f"{', '.join(str(n) for n in mc.n_draws)} ({per_w}), {_seed_text(mc)}, at most {mc.max_evals} "
                 f"grid sigma values evaluated, eta1 = {study.eta1}.")
        L.append("")
    profs = study.sigma_profiles
    if profs:
        L.append("**Sigma profiles** (per-layer multipliers fixed a priori; they share the grid weight): "
                 + "; ".join("(" + ", ".join(sig(x) for x in p_) + ")" for p_ in profs) + ".")
        L.append("")
    bud = study.budget
    if bud:
        blocks = "; ".join(
            f"{b['block']}: at most {b['max_epochs']} epochs"
            + (f", N = {b['mc_draws']} draws" if b.get("mc_draws") is not None else "")
            for b in bud["blocks"])
        skipped = study.timings.get("runs_skipped", 0)
        L.append(f"**Time budget:** {sig(bud['budget_minutes'])} minutes requested; this invocation took "
                 f"{sig(bud['wall_minutes'], 3)} minutes before the figures"
                 + (f" ({skipped} runs loaded from disk)" if skipped else "")
                 + (f", {sig(bud['calibration_s'], 3)} s of it calibrating the costs" if bud.get("calibration_s")
                    else "")
                 + ". Values per width block (requested: "
                 f"{bud['max_epochs_requested']} epochs"
                 + (f", N = {bud['mc_draws_requested']} draws" if bud.get("mc_draws_requested") is not None else "")
                 + f"): {blocks}. Each run records the values it used (`settings` in results.json).")
        L.append("")
    L.append("**Reading the values:** each cell is `certificate / unclipped`. The certificate is "
             "min(1, unclipped). A value marked † is **vacuous**: its unclipped bound is at least one, so "
             "it says nothing about the risk; it is reported unclipped so that methods can still be compared. "
             "The `test-set` column is the held-out reference bound kl_inv(test error, ln(1/delta)/m_test). "
             "Library versions, grids and per-run timings are in `results.json`.")
    L.append("")
    L.extend(_summary_tables(study, runs))
    L.extend(_objectives_section(study))
    L.extend(_decomposition_section(runs))
    if summ.levers:
        L.extend(_levers_section(study))
    L.extend(_figures_section(study))
    return "\n".join(L)


def _objectives_section(study: StudyResult) -> list[str]:
    """The runs trained with --objectives other than erm, against their prior and the erm run."""
    rows = study.summary.objectives
    if not rows:
        return []
    L = ["## Certificate-aware training (--objectives)", ""]
    objs = sorted({x.objective for x in rows if x.objective})
    if "certificate" in objs:
        L.append("**certificate** (sparsebound.recipes): from the erm prior (trained on S_prior), s0 = median "
                 "sigma*(x) of that prior over S_prior and sigma_t = factor x s0 (factor fixed a priori); the "
                 "*robust prior* is the erm prior trained further on S_prior only with the certificate objective at "
                 "sigma_t, and it is the prior of the certificate (it never saw the bound sample) unless it fits "
                 "S_prior worse than the erm prior by more than an a-priori margin (then the erm prior is the prior; "
                 "the rules below say which). The posterior keeps the hidden layers of that prior bit for bit and "
                 "trains only the output layer on all of S; the certificate puts noise on the output layer only "
                 "(profile (0, ..., 0, 1), docs/theory.md 12.2). It covers the whole network, but only the output "
                 "layer learned from the bound sample.")
        L.append("")
    if "pbb" in objs:
        L.append("**pbb**: the posterior is trained from the erm prior with the PAC-Bayes objective of the "
                 "randomised (Gibbs) predictor (learned per-parameter variances); its `pbb` value bounds that "
                 "randomised predictor, **not the deployed network**; `sparse` bounds the deployed network.")
        L.append("")
    L.append("`pbb` in every objective run is the stochastic reference (a bound on the Gibbs predictor that draws "
             "new weights for every input, not on the deployed network): `learned` = the variances learned in "
             "training, `tied` = N(W, (sigma c)^2 I) on the sigma grid. Values are unclipped; † = vacuous.")
    L.append("")

    def v(x: Any) -> str:
        return "n/a" if x is None else (sig(x) + (" †" if x >= 1 else ""))

    table = []
    for x in rows:
        table.append([x.run, ", ".join(str(k) for k in x.noise_layers) or "none",
                      fixed(x.prior_test_error), fixed(x.test_error),
                      "n/a" if x.beats_prior is None else ("yes" if x.beats_prior else "no"),
                      v(x.sparse), v(x.sparse_mc), v(x.pbb) + (f" ({x.pbb_posterior})" if x.pbb_posterior else ""),
                      sig(x.median_sigma_star, 3),
                      "n/a" if x.sigma_star_ratio is None else f"{sig(x.sigma_star_ratio, 3)}x",
                      v(x.erm_sparse)])
    L += md_table(["run", "noise layers", "prior test err", "test err", "beats prior", "sparse", "sparse-mc",
                   "pbb (Gibbs)", "median sigma*", "sigma* vs erm", "erm sparse"], table)
    L.append("")
    notes = []
    for x in rows:
        if x.s0 is not None and x.sigma_t is None:
            notes.append(f"{x.run}: s0 = 0 (the erm prior certifies at most half of S_prior), so no robust prior was "
                         "trained and the erm prior is the prior")
        elif x.s0 is not None:
            notes.append(f"{x.run}: s0 = {sig(x.s0, 3)}, sigma_t = {sig(x.sigma_t, 3)}, erm prior test error "
                         f"{fixed(x.erm_prior_test_error)}; robust prior "
                         + ("accepted" if x.robust_prior_accepted else
                            "REJECTED on S_prior (it fit S_prior worse than the erm prior by more than the a-priori "
                            "margin), so the erm prior is the prior"))
    if notes:
        L.append("Rules (computed on S_prior only): " + "; ".join(notes) + ".")
        L.append("")
    L.append("`sigma* vs erm` is the median per-sample sigma* of `sparse` over that of the erm posterior "
             "(`ddp-standard`) of the same width, seed and alpha; for a run whose noise layers are not all layers "
             "(the certificate recipe: the output layer only) it compares two different noise models, since the "
             "certified network's hidden layers carry no noise at all, so it is not a like-for-like robustness gain. "
             "`beats prior` compares the test errors of the "
             "posterior and of the prior of its certificate. The objective runs are other priors (the robust prior) "
             "and other posteriors: the union-bound levels of the levers below count them.")
    L.append("")
    return L


def _decomposition_section(runs: list[RunRecord]) -> list[str]:
    """Per run: the parts of each PAC-Bayes-kl certificate and what sets sigma*(x) (docs/theory.md 15)."""
    rows = [r for r in runs if r.decomposition]
    if not rows:
        return []
    L = ["## Decomposition of the certificates", "",
         "Per run and PAC-Bayes-kl method: the empirical term (first argument of kl_inv), KL/m, the confidence "
         "term ln(2 sqrt(m)/(pi delta))/m, and what the kl inversion adds (`inversion`); `derand.` is the cost of "
         "derandomisation, `sparse` minus `pbb` on the same posterior mean (they bound different predictors). "
         "`binding` gives the shares of bound samples whose sigma*(x) is set by the output margin, by a hidden "
         "layer's witness radius, or that are misclassified (docs/theory.md 15; cheap tables, at `sparse`'s "
         "profile and rescaling); `noise` the layers that carry noise.", ""]
    table = []
    for r in rows:
        b = r.binding or {}
        kinds = b.get("kinds") or {}
        rad = "; ".join(f"L{k.rsplit('_', 1)[-1]} {fixed(v.get('share'), 2)}"
                        for k, v in (b.get("radius_by_layer") or {}).items()
                        if isinstance(v, dict) and (v.get("share") or 0) > 0)
        bind = (f"margin {fixed(kinds.get('margin'), 2)}, radius {fixed(kinds.get('radius'), 2)}"
                + (f" ({rad})" if rad else "") + f", miscl. {fixed(kinds.get('misclassified'), 2)}") if kinds else "n/a"
        der = (r.decomposition.get("derandomisation") or {}).get("difference")
        for m in ("sparse", "sparse-mc", "pbb"):
            p = r.decomposition.get(m)
            if not p:
                continue
            table.append([r.run.id, m, fixed(p.get("empirical")), sig(p.get("kl_over_m"), 3),
                          fixed(p.get("confidence")), fixed(p.get("inversion_gap")), sig(p.get("unclipped"), 4),
                          sig(der, 3) if m == "sparse" and der is not None else "",
                          bind if m == "sparse" else "",
                          ", ".join(str(k) for k in r.noise_layers) if m == "sparse" else ""])
    L += md_table(["run", "method", "empirical", "KL/m", "confidence", "inversion", "unclipped", "derand.",
                   "binding (sparse)", "noise"], table)
    L.append("")
    return L


def _warnings_section(runs: list[RunRecord]) -> list[str]:
    """The runs whose certificates carry validity warnings (``Certificate.warnings``), first and in bold:
    a value below the held-out lower confidence bound is not a certificate."""
    flagged = [(r, r.warnings) for r in runs if r.warnings]
    if not flagged:
        return []
    items = []
    for r, ws in flagged:
        for w in ws:
            head = "**NOT A CERTIFICATE**" if (w.get("invalidates") or w.get("kind") in (
                "below-held-out-lower-bound", "prior-equals-network")) else "warning"
            msg = " ".join(str(w.get("message", "")).split()).replace("|", "/")
            items.append(f"- {head} `{r.run.id}` ({w.get('kind')}"
                         + (f"; methods {', '.join(w.get('methods') or [])}" if w.get("methods") else "")
                         + f"): {msg}")
    n = len(flagged)
    return [f"**Validity warnings: {n} run{'s' if n != 1 else ''}** carr{'y' if n != 1 else 'ies'} warnings "
            "from `certify` (`warnings` and `valid` in results.json). Values marked NOT A CERTIFICATE must not be "
            "reported as risk certificates; the tables below still show them:", "", *items, ""]


def _failed_section(study: StudyResult) -> list[str]:
    """The runs that failed on their workers: missing from every table, figure and reading below."""
    n = len(study.failed_runs)
    items = [f"- `{f.get('run')}` ({f.get('kind')}): {str(f.get('error', '')).replace('|', '/')}"
             for f in study.failed_runs]
    return [f"**Failed runs:** {n} run{'s' if n != 1 else ''} of this study failed and "
            f"{'are' if n != 1 else 'is'} missing from every table, figure and reading below "
            "(`failed_runs` in results.json); run the same command again to retry "
            f"{'them' if n != 1 else 'it'} (finished runs are kept):", "", *items, ""]


def _seed_text(mc: Any) -> str:
    if mc.seed_rule == "fresh":
        return ("a fresh draw seed per network from the operating system, recorded before drawing "
                "(`seed` of each sparse-mc result)")
    if mc.seed_rule == "derived":
        return (f"draw seeds derived from --mc-seed {mc.seed} and each run's name, recorded before drawing "
                "(`seed` of each sparse-mc result)")
    if mc.seed_rule == "fixed":
        return (f"draw seed {mc.seed} fixed before drawing and shared by every network (results format 1; "
                "newer studies draw a fresh seed per network)")
    return "draw seeds recorded before drawing (`seed` of each sparse-mc result)"


def _summary_tables(study: StudyResult, runs: list[RunRecord]) -> list[str]:
    L = ["## Summary", "", "### Networks", ""]
    rows = []
    for r in runs:
        sp = r.results.get("sparse")
        rows.append([str(r.run.width), _run_label(r), str(r.run.seed), str(r.m), fixed(r.train_error),
                     fixed(r.test_error), fixed(r.test_error_lower_confidence), sig(r.distance_to_prior_fro),
                     sig(sp.median_sigma_star if sp else None), sig(sp.kl_over_m if sp else None)])
    L.extend(md_table(["width", "prior", "seed", "m", "train error", "test error", "test error LCB",
                       "\\|\\|W-W0\\|\\|_F", "median sigma* (sparse)", "KL/m (sparse)"], rows))
    L.append("")
    L.append("W0 is the prior mean of the row (the initialisation, or the data-dependent prior); the test error "
             "LCB is the lower (1 - delta)-confidence bound of the certified network's test error, below which "
             "no valid certificate can lie; median sigma* is the median over bound samples of the largest "
             "noise level at which the sample is certified (sparse method).")
    L.append("")
    L.append("### Certificates")
    L.append("")
    methods = study.methods
    rat_cols = [k for k in ("sparse/neyshabur2018", "sparse/dense")
                if k.split("/")[1] in methods and "sparse" in methods]
    rows = []
    for r in runs:
        cells = [_cell(r.results.get(m)) for m in methods]
        cells += [sig(r.ratios.get(k), 3) for k in rat_cols]
        rows.append([str(r.run.width), _run_label(r), str(r.run.seed), *cells])
    L.extend(md_table(["width", "prior", "seed", *methods, *rat_cols], rows))
    L.append("")
    L.append("Ratios are of the unclipped values (below one favours the sparse certificate).")
    L.append("")
    L.append("**Vacuous values** (unclipped at least one, marked †):")
    L.append("")
    for g in study.summary.groups.values():
        allv = [m for m, v in g.vacuous.items() if v == "all"]
        some = [m for m, v in g.vacuous.items() if v == "some"]
        none = [m for m, v in g.vacuous.items() if v == "none"]
        parts = []
        if allv:
            parts.append(f"vacuous in every run: {_list_text(allv)}")
        if some:
            parts.append(f"vacuous in some runs: {_list_text(some)}")
        if none:
            parts.append(f"never vacuous: {_list_text(none)}")
        L.append(f"- {g.label}: " + "; ".join(parts) + ".")
    L.append("")
    return L


def _figures_section(study: StudyResult) -> list[str]:
    figs = study.figures
    L = ["## Figures", ""]
    for kind, path in figs.get("certificates_vs_width", {}).items():
        g = study.summary.groups[kind]
        L += [f"### Certificates vs width ({g.label})", "", f"![certificates vs width, {g.label}]({path})", "",
              _reading_width(study, kind), ""]
    L += ["### Effective activity ratio", "", f"![effective activity ratio]({figs.get('activity_ratios')})", "",
          _reading_sparsity(study), ""]
    L += ["### Sparse local radius", "", f"![sparse local radius]({figs.get('radii')})", "", _reading_radii(study), ""]
    L += ["### Sparsity trade-off", ""]
    for w, path in figs.get("tradeoff", {}).items():
        L += [f"![trade-off, width {w}]({path})", ""]
    L += [_reading_tradeoff(study), ""]
    L += ["### Certified fraction vs sigma", ""]
    for w, path in figs.get("certified_fraction", {}).items():
        L += [f"![certified fraction, width {w}]({path})", ""]
    L += [_reading_certified(study), ""]
    return L


# ======================================================================================
# tightness levers
# ======================================================================================


def _levers_section(study: StudyResult) -> list[str]:
    """The "levers" section: every posterior per width and a reading of the best setting."""
    L: list[str] = ["## Tightness levers", ""]
    meths = [m for m in LEVER_METHODS if m in study.methods]
    L.append("Every network of a width: the prior (initialisation, or data-dependent with prior fraction alpha), "
             "the posterior (standard: trained on; proximal: penalty lambda ||W - W0||_F^2, lambda = inf keeps "
             "the prior), its errors, its distance to the prior mean, and its certificates "
             "(`certificate / unclipped`, † = vacuous).")
    L.append("")
    blocks = study.summary.levers
    for w in study.widths:
        if not any(b.width == w for b in blocks):
            continue
        L.append(f"### Levers, width {w}")
        L.append("")
        rows = []
        for r in study.ordered_runs():
            if r.run.width != w:
                continue
            sp = r.results.get("sparse")
            dd = r.run.prior_kind == "data-dependent"
            rows.append([str(r.run.seed), r.run.kind, r.run.prior_kind, r.run.posterior or "-",
                         sig(r.run.alpha) if dd else "-", _lam_text(r.run.lam) if r.run.lam is not None else "-",
                         fixed(r.train_error), fixed(r.test_error), sig(r.distance_to_prior_fro),
                         sig(sp.median_sigma_star if sp else None), sig(sp.kl_over_m if sp else None),
                         *(_cell(r.results.get(m)) for m in meths)])
        L.extend(md_table(["seed", "run", "prior", "posterior", "alpha", "lambda", "train error", "test error",
                           "\\|\\|W-W0\\|\\|_F", "median sigma* (sparse)", "KL/m (sparse)", *meths], rows))
        L.append("")
        for b in blocks:
            if b.width == w:
                L.append(_reading_levers(study, b))
                L.append("")
    return L


def _setting_text(x: Pick) -> str:
    if x.prior_kind == "init":
        return "the initialisation prior"
    if x.posterior == "certificate":
        return (f"the certificate-aware recipe with alpha {sig(x.alpha)} (a prior trained on S_prior only, "
                "robust unless rejected by the rule on S_prior; only the output layer learned from the bound sample "
                "and noisy)")
    if x.posterior == "pbb":
        return f"the pbb-objective posterior of the data-dependent prior with alpha {sig(x.alpha)}"
    post = ("the standard posterior" if x.posterior == "standard"
            else f"the proximal posterior with lambda {_lam_text(x.lam)}")
    return f"the data-dependent prior with alpha {sig(x.alpha)} and {post}"


def _effect_values(e: AlphaEffect | LambdaEffect, key: str) -> str:
    parts = []
    for v in e.values:
        if key == "alpha":
            parts.append(f"{sig(v['unclipped'])} at alpha {sig(v['alpha'])}")
        elif v["posterior"] == "standard":
            parts.append(f"{sig(v['unclipped'])} for the standard posterior")
        else:
            parts.append(f"{sig(v['unclipped'])} at lambda {_lam_text(v['lambda'])}")
    return ", ".join(parts)


def _effect_tail(e: AlphaEffect | LambdaEffect) -> str:
    t = {"increases": "it increases", "decreases": "it decreases", "constant": "it does not change",
         "non-monotone": "it is not monotone"}.get(e.trend, "")
    fac = e.factor
    f_txt = f"; the largest is {sig(fac, 3)} times the smallest" if fac is not None and sig(fac, 3) != "1" else ""
    return f" ({t}{f_txt})" if t else (f" ({f_txt[2:]})" if f_txt else "")


def _levels_text(groups: list[dict[str, Any]]) -> str:
    return " + ".join(f"{g['count']} x {sig(g['level'])}" for g in groups)


def union_text(u: UnionLevel) -> str:
    """The union-bound level of picking among a block's sparse and sparse-mc certificates, with its
    derivation in one sentence (docs/theory.md section 9)."""
    terms = _levels_text(u.prior_levels) + (f" + {_levels_text(u.mc_levels)}" if u.mc_levels else "")
    mc_part = (f", plus the draws of each of the {u.n_mc} sparse-mc certificates at their level delta'"
               if u.n_mc else "")
    return (f"{sig(u.level)} = {terms}: one PAC-Bayes event for each of the {u.n_priors} "
            f"prior{'s' if u.n_priors != 1 else ''}, at the largest "
            "level used with it (it holds for every posterior of that prior at once and implies the same event "
            "at any smaller level, such as the (1 - f) delta of sparse-mc's PAC-Bayes step)"
            f"{mc_part}; docs/theory.md section 9")


def _reading_levers(study: StudyResult, b: LeverBlock) -> str:
    s: list[str] = []
    seed = f" (seed {b.seed})" if len(study.seeds) > 1 else ""
    best = b.best
    if best:
        if best.rule == "fitted":
            pool = f"Among the networks with training error at most {sig(b.threshold)}"
        else:
            pool = (f"No network reaches training error {sig(b.threshold)}; among those with the lowest "
                    f"training error reached ({fixed(best.lowest_train_error)})")
        verdict = ("it is non-vacuous" if not best.vacuous
                   else "it is vacuous, so none of these networks gets a risk guarantee")
        s.append(f"Width {b.width}{seed}: {pool}, the lowest sparsity-aware certificate is "
                 f"{fixed(best.certificate)} ({best.method}, unclipped {sig(best.unclipped)}) for "
                 f"{_setting_text(best)} (training error {fixed(best.train_error)}, test error "
                 f"{fixed(best.test_error)}); {verdict}. (Each certificate holds at its own level for its own "
                 f"network; a setting picked after seeing all {b.n_networks} of them is covered by a union "
                 f"bound at level {union_text(b.union)}.)")
        ov = b.best_overall
        if ov and ov.run != best.run:
            s.append(f"Over all networks of this width the lowest is {fixed(ov.certificate)} ({ov.method}, "
                     f"unclipped {sig(ov.unclipped)}, {'non-vacuous' if not ov.vacuous else 'vacuous'}) for "
                     f"{_setting_text(ov)}, whose training error is {fixed(ov.train_error)} (test error "
                     f"{fixed(ov.test_error)}): a tighter bound on a network that fits the data worse.")
    for e in b.alpha_effect:
        fixed_post = ("the standard posterior" if e.posterior == "standard"
                      else f"the proximal posterior with lambda {_lam_text(e.lam)}")
        s.append(f"Prior fraction, with {fixed_post}: the unclipped sparse certificate is "
                 f"{_effect_values(e, 'alpha')}{_effect_tail(e)}.")
    for le in b.lambda_effect:
        d = [v["distance_to_prior_fro"] for v in le.values]
        s.append(f"Proximal lambda, at alpha {sig(le.alpha)}: the unclipped sparse certificate is "
                 f"{_effect_values(le, 'lambda')}{_effect_tail(le)}; ||W-W0||_F goes from {sig(d[0])} to "
                 f"{sig(d[-1])}.")
    iv = b.init_vs_data_dependent
    if iv:
        among = (f"among the data-dependent networks with training error at most {fixed(iv.fit_limit)} (that of "
                 f"the init-prior network, or {sig(b.threshold)} if larger)" if iv.comparable_fit else
                 f"no data-dependent network fits the training set as well as the init-prior one (training "
                 f"error {fixed(iv.init_train_error)}); among all of them")
        if iv.factor is not None and iv.factor > 1:
            s.append(f"Prior: {among}, the lowest unclipped sparse certificate is {sig(iv.best)} "
                     f"({iv.best_run}, training error {fixed(iv.best_train_error)}), against {sig(iv.init)} "
                     f"with the initialisation prior ({sig(iv.factor, 3)} times lower).")
        else:
            s.append(f"Prior: {among}, none improves on the initialisation prior for the sparse certificate "
                     f"({sig(iv.init)}; best data-dependent {sig(iv.best)}, {iv.best_run}).")
    if not s:
        return (f"Width {b.width}{seed}: no sparsity-aware certificate (sparse, sparse-mc) was computed, so "
                "there is no lever reading.")
    mv = b.mc_vs_sparse
    if mv:
        s.append(f"sparse-mc against sparse on the same network: the ratio sparse-mc/sparse of the unclipped "
                 f"values lies between {sig(mv.ratio_min, 3)} and {sig(mv.ratio_max, 3)}; sparse-mc is lower "
                 f"for {mv.n_lower} of {mv.n_runs} networks.")
    return " ".join(s)


# ======================================================================================
# readings under the figures
# ======================================================================================


def _reading_width(study: StudyResult, kind: str) -> str:
    g = study.summary.groups[kind]
    comp = g.sparse_vs
    n = g.n_runs
    every = "at every width" + (" and seed" if len(study.seeds) > 1 else "") if n > 1 else "in this run"
    s: list[str] = []
    for other in ("neyshabur2018", "neyshabur2018-init", "bartlett2017", "dense"):
        cv = comp.get(other)
        if cv is None:
            continue
        if cv.sparse_below_all and cv.factor_max is not None and sig(cv.factor_max, 3) == "1":
            s.append(f"The sparse and {other} certificates agree to 3 significant digits {every} "
                     f"(sparse is never above {other}).")
        elif cv.sparse_below_all:
            s.append(f"The sparse certificate (unclipped) is {_range_text(cv.factor_min, cv.factor_max)} "
                     f"below {other} {every}.")
        elif cv.sparse_above_all:
            s.append(f"The sparse certificate (unclipped) is above {other} {every} (the ratio {other}/sparse "
                     f"lies between {sig(cv.factor_min, 3)} and {sig(cv.factor_max, 3)}).")
        elif cv.sparse_equal_all:
            s.append(f"The sparse and {other} certificates are equal {every}.")
        else:
            s.append(f"The ratio {other}/sparse of the unclipped values ranges from {sig(cv.factor_min, 3)} to "
                     f"{sig(cv.factor_max, 3)}: sparse is not below {other} {every}.")
    pw = g.per_width_mean_unclipped
    if len(pw) > 1:
        tr = g.trend_with_width
        first, last = pw[0], pw[-1]
        mean = " (means over seeds)" if len(study.seeds) > 1 else ""
        for m in ("sparse", "neyshabur2018", "bartlett2017"):
            t = tr.get(m)
            if first.get(m) is None or last.get(m) is None:
                continue
            if t in ("increases", "decreases"):
                s.append(f"From width {first['width']} to {last['width']} the unclipped {m} value {t} "
                         f"monotonically{mean}, from {sig(first[m])} to {sig(last[m])}.")
            elif t == "non-monotone":
                s.append(f"The unclipped {m} value does not change monotonically with width{mean} "
                         f"({sig(first[m])} at width {first['width']}, {sig(last[m])} at width {last['width']}).")
        s.append(f"The test error goes from {fixed(first['test_error'])} (width {first['width']}) to "
                 f"{fixed(last['test_error'])} (width {last['width']})"
                 + (f" and the test-set bound from {fixed(first['test-set'])} to {fixed(last['test-set'])}."
                    if first.get("test-set") is not None and last.get("test-set") is not None else "."))
    nv = g.non_vacuous
    if nv:
        s.append("Non-vacuous certificates: " + "; ".join(
            f"{x.method} {fixed(x.certificate)} at width {x.width}" for x in nv) + ".")
    else:
        s.append("No certificate other than the held-out test-set bound is non-vacuous here, so the comparison "
                 "is between unclipped values, not risk guarantees.")
    return " ".join(s)


def _reading_sparsity(study: StudyResult) -> str:
    s0 = study.seeds[0]
    rows = [x for x in study.summary.sparsity if x.seed == s0]
    if not rows:
        return "No sparsity analysis is available."
    layers = sorted({x.layer for x in rows})
    out = ["The effective activity ratio is the active fraction of the greedy sparse vector of each training "
           "sample (smaller means sparser)."]
    for k in layers:
        rk = sorted((x for x in rows if x.layer == k), key=lambda x: x.width)
        vals = [x.effective_activity_ratio_mean for x in rk]
        parts = ", ".join(f"{fixed(x.effective_activity_ratio_mean, 3)} at width {x.width}" for x in rk)
        t = trend(vals)
        tail = {"increases": "it increases with width", "decreases": "it decreases with width",
                "constant": "it does not change with width",
                "non-monotone": "it does not change monotonically with width"}.get(t, "")
        raw = ", ".join(f"{fixed(x.active_fraction_raw_mean, 3)}" for x in rk)
        out.append(f"Hidden layer {k}: mean effective activity ratio {parts}"
                   + (f"; {tail}" if tail else "") + f" (mean raw active fraction {raw}, same widths).")
    return " ".join(out)


def _reading_radii(study: StudyResult) -> str:
    s0 = study.seeds[0]
    rows = [x for x in study.summary.sparsity if x.seed == s0 and x.radius_share_positive is not None]
    if not rows:
        return "No radius statistics are available."
    mid = rows[0].mid_fraction
    parts = "; ".join(f"hidden layer {x.layer} at width {x.width}: {fixed(x.radius_share_positive, 3)}"
                      for x in sorted(rows, key=lambda x: (x.layer, x.width)))
    return (f"Share of training samples whose sparse local radius is positive at the grid level with active "
            f"fraction {mid} (every unit of the witness strictly inactive): {parts}.")


def _reading_tradeoff(study: StudyResult) -> str:
    g = study.summary.groups.get("init")
    if not g or not g.tradeoff_best:
        return "No trade-off curve is available."
    s0 = study.seeds[0]
    out = []
    for t in sorted((x for x in g.tradeoff_best if x.seed == s0), key=lambda x: x.width):
        b_u, f_u = num(t.best_unclipped), num(t.full_unclipped)
        same = f_u is not None and sig(b_u) == sig(f_u)
        better = f_u is None or (b_u < f_u and not same)  # type: ignore[operator]
        if f_u is None:
            why = (": the densest level certifies nothing at the common level, so a global sparsity level "
                   "is what makes a bound comparable at all.")
        elif same:
            why = ": at the printed precision a global sparsity level does not change the bound."
        elif better and (f_u - b_u) < 0.01 * f_u:  # type: ignore[operator]
            why = ": a global sparsity level lowers the bound by less than one percent."
        elif better:
            cx = num(t.best_complexity_term) < num(t.full_complexity_term)  # type: ignore[operator]
            al = num(t.best_augmented_loss) > num(t.full_augmented_loss)  # type: ignore[operator]
            why = (": the sparser level trades a smaller complexity term for a larger augmented loss."
                   if cx and al else ": assuming sparsity lowers the bound.")
        else:
            why = ": assuming a global sparsity level does not lower the bound here."
        rule = ("each level at one informative level common to all of them: grid points whose empirical "
                f"term is within {t.window} of the smallest over every level and sigma, or its smallest "
                "bound where one is non-vacuous"
                if t.common_level else
                f"among the levels whose augmented loss is within {t.window} of the smallest, when all are "
                "vacuous")
        full = (f"{sig(t.full_unclipped)} at active fraction {sig(t.full_active_fraction, 3)} (augmented "
                f"loss {fixed(t.full_augmented_loss)}, complexity term {sig(t.full_complexity_term)})"
                if f_u is not None else
                f"no bound at active fraction {sig(t.full_active_fraction, 3)} (smallest augmented loss "
                f"{fixed(t.full_augmented_loss)})")
        out.append(
            f"Width {t.width}: the smallest unclipped bound over global active fractions ({rule}) is "
            f"{sig(t.best_unclipped)} at active fraction {sig(t.best_active_fraction, 3)} (augmented loss "
            f"{fixed(t.best_augmented_loss)}, complexity term {sig(t.best_complexity_term)}), against "
            f"{full}" + why
        )
        unc = t.uncertified_active_fractions or []
        if unc:
            out.append("Active fractions with no grid point at the common level (no bound reported): "
                       + ", ".join(sig(x, 3) for x in unc) + ".")
        sp = next((r.unclipped("sparse") for r in study.runs
                   if r.run.kind == "init" and r.run.seed == s0 and r.run.width == t.width
                   and "sparse" in r.results), None)
        if sp is not None:
            out.append(f"For comparison, the sparse certificate, which chooses the level per sample, is {sig(sp)}.")
        if num(t.plain_min_active_fraction) != num(t.best_active_fraction):
            out.append(f"(The plain minimum over all levels, {sig(t.plain_min_unclipped)} at active "
                       f"fraction {sig(t.plain_min_active_fraction, 3)}, sits where the augmented loss is "
                       f"{fixed(t.plain_min_augmented_loss)}: it certifies too few samples to compare.)")
    out.append("Each curve forces every sample to the same active fraction at every hidden layer and uses the "
               "rescaling and sigma profile of the sparse certificate; the sparse certificate itself chooses the "
               "level per sample.")
    return " ".join(out)


def _reading_certified(study: StudyResult) -> str:
    out = []
    s0 = study.seeds[0]
    for r in sorted((r for r in study.runs if r.run.kind == "init" and r.run.seed == s0), key=lambda r: r.run.width):
        parts = []
        for m in SPARSE_METHODS:
            mr = r.results.get(m)
            if mr is None:
                continue
            parts.append(f"{m} {fixed(mr.certified_fraction, 3)} at sigma {sig(mr.sigma, 3)}")
        if parts:
            out.append(f"Width {r.run.width}: certified fraction at the chosen sigma: {'; '.join(parts)}.")
    if not out:
        return "No certified-fraction curve is available (none of sparse, uniform-sparse, dense was computed)."
    out.append("No curve rises with sigma (more noise must be absorbed by the margins); a curve further to the "
               "right certifies the same share of samples at a larger noise level, which lowers the KL term.")
    return " ".join(out)
