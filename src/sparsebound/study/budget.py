"""The time budget (``--budget-minutes``): scale epochs and draws so that a study fits.

Cost model per width (seconds): a training of E epochs on n points costs
``E n epoch + (n + n_test) train_fixed``; a certification on m bound points
``certify_fixed + m certify + N (mc_fixed + b mc)`` (N sparse-mc draws of b
samples each); the sparsity analysis ``n sparsity``.  The rates are calibrated
before the first block with a throwaway network of every width (one epoch on a
subset; certifications on two subset sizes, whose difference separates the
per-sample from the fixed cost), then the per-sample rates are replaced by what
the runs measure (for widths not measured yet, the calibrated rate times the
median measured/calibrated ratio of the other widths when that ratio is above
one, at most four).  At the start of every (seed, width) block one scale s in
[0, 1] is chosen, the largest for which the estimated cost of all remaining
runs fits in the time left, and ``max_epochs = round(s E)``,
``mc_draws = round(s N)`` (at least :data:`MIN_EPOCHS` / :data:`MIN_DRAWS`, at
most the requested values) are fixed for the whole block, saved in
``budget.json`` of the block (so that a resumed run uses the same values) and
recorded in every run.

The number of draws of a block is fixed before any of its draws (from earlier
blocks' timings only); the draws' seeds never depend on it (THEORY.md 4.5).

**Parallel workers** (``--executor ray``): ``--budget-minutes`` is still the
wall-clock time of the whole study on the client.  A block is planned when the
executor starts it, from the timings of the runs finished so far; with P blocks
running at once the remaining work may take ``P`` times the wall-clock time left in
worker-seconds, less the estimated rest of the blocks already running (see
:meth:`Budget.plan_block`).  The calibration runs on the client before the first
block starts (nothing else runs then); the per-sample rates are replaced by those
the runs measure on the workers (which include the slow-down of sharing a machine),
so a cluster of other machines is planned from its own timings after its first
runs.  Blocks started at the same time are planned from the same timings, so the
first P blocks lean on the calibration alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import dump_json, load_json, to_jsonable
from .config import MC_MAX_EVALS, StudyConfig
from .plan import Job, Settings

__all__ = ["COSTS", "MIN_DRAWS", "MIN_EPOCHS", "Budget", "CertifyTiming", "TrainingTiming"]

#: the smallest values ``--budget-minutes`` scales to (or the requested value when smaller).
MIN_EPOCHS = 3
MIN_DRAWS = 20
#: cost components of the budget model (seconds per sample, per width).
COSTS = ("epoch", "train_fixed", "certify", "certify_fixed", "mc", "mc_fixed", "sparsity")


@dataclass(frozen=True)
class TrainingTiming:
    """One training as the budget measures it: ``epochs`` on ``n_points`` took
    ``train_s`` seconds inside the optimiser and ``wall_s`` in all (with evaluation)."""

    width: int
    epochs: int
    train_s: float
    wall_s: float
    n_points: int


@dataclass(frozen=True)
class CertifyTiming:
    """One certification: ``seconds`` in all, ``mc_s`` of it in sparse-mc, on ``m`` bound points."""

    width: int
    seconds: float
    mc_s: float
    m: int
    mc_draws: int | None


class Budget:
    """Plans the settings of each block so that the study fits in ``budget_minutes``."""

    def __init__(self, config: StudyConfig, splits: Any, jobs: list[Job], t_start: float,
                 say: Callable[[str], Any]) -> None:
        self.c, self.splits, self.jobs, self.t_start, self.say = config, splits, jobs, t_start, say
        assert config.budget_minutes is not None
        self.seconds = float(config.budget_minutes) * 60.0
        self.mc = config.uses_mc
        self.calibrated: dict[str, dict[int, float]] = {k: {} for k in COSTS}
        self.measured: dict[str, dict[int, float]] = {k: {} for k in COSTS}
        self.calibration_s: float | None = None
        self.blocks: list[dict[str, Any]] = []
        self.n_train, self.n_test = len(splits.train), len(splits.test)

    # ---- measurements -------------------------------------------------------------
    def observe(self, what: str, width: int, rate: float) -> None:
        if rate >= 0 and math.isfinite(rate):
            self.measured[what][width] = rate

    def observe_training(self, t: TrainingTiming) -> None:
        n = t.n_points or self.n_train
        if t.epochs > 0:
            self.observe("epoch", t.width, t.train_s / (t.epochs * n))
        self.observe("train_fixed", t.width, max(0.0, t.wall_s - t.train_s) / (n + self.n_test))

    def observe_certify(self, t: CertifyTiming) -> None:
        fixed = self.rate("certify_fixed", t.width)
        self.observe("certify", t.width, max(0.0, t.seconds - fixed - t.mc_s) / t.m)
        if self.mc and t.mc_draws:
            per_draw = min(t.m, self.c.mc_batch)  # samples evaluated per draw
            self.observe("mc", t.width, max(0.0, t.mc_s / t.mc_draws - self.rate("mc_fixed", t.width)) / per_draw)

    def observe_all(self, measurements: list[Any]) -> None:
        """Feed the measurements of one run (in the order they were taken)."""
        for m in measurements:
            if isinstance(m, TrainingTiming):
                self.observe_training(m)
            elif isinstance(m, CertifyTiming):
                self.observe_certify(m)
            else:
                what, width, rate = m
                self.observe(what, width, rate)

    def rate(self, what: str, width: int) -> float:
        if width in self.measured[what]:
            return self.measured[what][width]
        cal = self.calibrated[what].get(width, 0.0)
        ratios = [v / self.calibrated[what][w] for w, v in self.measured[what].items()
                  if self.calibrated[what].get(w, 0.0) > 0]
        if ratios:
            ratios.sort()
            # upward only (and at most 4x): a budget is better under-used than overrun
            cal *= min(4.0, max(1.0, ratios[len(ratios) // 2]))
        return cal

    # ---- calibration ---------------------------------------------------------------
    def calibrate(self) -> None:
        """Time a short training, a certification and the sparsity analysis of a throwaway
        network of every width on a small subset (nothing is saved)."""
        import numpy as np

        from ..analysis import analyse_sparsity
        from ..training import init_network, train

        t_cal = time.perf_counter()
        c, tr, te = self.c, self.splits.train, self.splits.test
        n_c, m_c = min(len(tr), 2000), min(len(tr), 1000)
        sub = tr.subset(np.arange(n_c))
        # the per-epoch test evaluation, in proportion
        sub_te = te.subset(np.arange(max(1, min(len(te), round(n_c * len(te) / len(tr))))))
        bsub = tr.subset(np.arange(m_c))
        tsub = te.subset(np.arange(min(len(te), m_c)))
        draws = min(c.mc_draws, 3)
        widths = sorted({j.width for j in self.jobs})
        # warm-up (first-call overheads must not enter any rate)
        net = init_network(tr.input_dim, [widths[0]] * (c.depth - 1), tr.n_classes, seed=0)
        warm = train(net, tr.subset(np.arange(min(len(tr), 64))), c.train_config(0, 1), progress=False)
        analyse_sparsity(warm.network, bsub.X[:16], device=c.device, progress=False)
        self._certify_once(warm.network, net, tr.subset(np.arange(min(len(tr), 16))), te.subset(np.arange(
            min(len(te), 16))), min(draws, 1))
        for w in widths:
            net = init_network(tr.input_dim, [w] * (c.depth - 1), tr.n_classes, seed=0)
            res = train(net, sub, c.train_config(0, 1), test=sub_te, progress=False)
            self.calibrated["epoch"][w] = float(res.curve[-1]["seconds"]) / n_c if res.curve else 0.0
            t0 = time.perf_counter()
            res.network.error_rate(bsub.X, bsub.y)
            self.calibrated["train_fixed"][w] = (time.perf_counter() - t0) / m_c
            t0 = time.perf_counter()
            analyse_sparsity(res.network, bsub.X, device=c.device, progress=False)
            self.calibrated["sparsity"][w] = (time.perf_counter() - t0) / m_c
            # two sizes: the difference is the per-sample cost, the rest is fixed (the larger size
            # first, so that first-call overheads inflate the per-sample estimate, not the fixed one)
            pts = []
            for m_k in sorted({max(8, m_c // 4), m_c}, reverse=True):
                sec, mc = self._certify_once(res.network, net, tr.subset(np.arange(m_k)), tsub, draws)
                pts.append((m_k, sec - mc, mc / max(1, draws)))
            (m2, c2, d2), (m1, c1, d1) = pts[0], pts[-1]
            slope = max(0.0, (c2 - c1) / (m2 - m1)) if m2 > m1 else c2 / m2
            self.calibrated["certify"][w] = slope
            self.calibrated["certify_fixed"][w] = max(0.0, c2 - slope * m2)
            mslope = max(0.0, (d2 - d1) / (m2 - m1)) if m2 > m1 else d2 / m2
            self.calibrated["mc"][w] = mslope if self.mc else 0.0
            self.calibrated["mc_fixed"][w] = max(0.0, d2 - mslope * m2) if self.mc else 0.0
        self.calibration_s = time.perf_counter() - t_cal

    def _certify_once(self, net: Any, prior: Any, bs: Any, ts: Any, draws: int) -> tuple[float, float]:
        """(seconds, sparse-mc seconds) of one certification as the runs do it (throwaway network,
        seed 0: these draws certify nothing)."""
        from ..certificate import certify
        from ..pacbayes import SigmaGrid

        c = self.c
        t0 = time.perf_counter()
        cert = certify(net, bs.X, bs.y, prior=prior, init=prior, delta=c.delta, methods=list(c.methods),
                       X_test=ts.X, y_test=ts.y, radius=bs.radius, eta1=c.eta1, eta2=c.eta2,
                       sigma_grid=SigmaGrid(profiles=c.sigma_profiles), rescale=not c.no_rescale,
                       exact_rounds=c.exact_rounds, mc_draws=draws, mc_seed=0, mc_batch=c.mc_batch,
                       mc_delta_fraction=c.mc_delta_fraction, mc_max_evals=MC_MAX_EVALS, device=c.device,
                       progress=False)
        return time.perf_counter() - t0, float(cert.timings.get("sparse_mc", 0.0))

    # ---- planning ------------------------------------------------------------------
    def _values(self, s: float) -> Settings:
        e0, n0 = self.c.max_epochs, self.c.mc_draws
        e = min(e0, max(min(MIN_EPOCHS, e0), round(s * e0)))
        n = min(n0, max(min(MIN_DRAWS, n0), round(s * n0))) if self.mc else None
        return Settings(int(e), None if n is None else int(n))

    def estimate(self, jobs: list[Job], st: Settings) -> float:
        """Estimated seconds of ``jobs`` (priors counted once per (width, seed, alpha))."""
        n, nt = self.n_train, self.n_test
        total = 0.0
        priors: set[tuple[int, int, float]] = set()
        for j in jobs:
            w = j.width

            def training(n_pts: int, w: int = w) -> float:
                return st.max_epochs * n_pts * self.rate("epoch", w) + (n_pts + nt) * self.rate("train_fixed", w)

            if j.posterior is None:
                m = n
                total += training(n) + n * self.rate("sparsity", w)
            else:
                a = float(j.alpha)  # type: ignore[arg-type]
                n_prior = round(a * n)
                m = n - n_prior
                if (w, j.seed, a) not in priors:
                    priors.add((w, j.seed, a))
                    total += training(n_prior)
                if j.trains_posterior:
                    total += training(n)
            total += self.rate("certify_fixed", w) + m * self.rate("certify", w)
            if self.mc and st.mc_draws:
                total += st.mc_draws * (self.rate("mc_fixed", w) + min(m, self.c.mc_batch) * self.rate("mc", w))
        return total

    def _fingerprint(self, width: int, seed: int) -> dict[str, Any]:
        c = self.c
        data = {k: v for k, v in c.data_spec().to_dict().items() if k != "data_dir"}
        return to_jsonable({"data": data, "depth": c.depth,
                            "width": width, "seed": seed, "lr": c.lr, "momentum": c.momentum,
                            "batch_size": c.batch_size, "target_error": c.target_error,
                            "methods": list(c.methods), "budget_minutes": c.budget_minutes,
                            "max_epochs_requested": c.max_epochs, "mc_draws_requested": c.mc_draws})

    def plan_block(self, bdir: Path, remaining: list[Job], *, slots: int = 1,
                   in_flight_s: float = 0.0) -> tuple[Settings, dict[str, Any]]:
        """The settings of the block starting ``remaining`` (reused from ``bdir/budget.json``).

        Args:
            bdir: the block's folder.
            remaining: this block's jobs and those of the blocks not started yet.
            slots: blocks the executor runs at the same time (1: one after the other).
            in_flight_s: estimated seconds still to run in the blocks already started
                (with ``slots > 1``; their settings are fixed).

        With ``slots`` P > 1 the time left is shared by P workers: the block gets the
        largest scale s for which ``in_flight_s + estimate(remaining, s) <= P * left``
        (the remaining work, spread over the P workers, ends within the wall-clock
        time left); with P = 1 this is the sequential rule.
        """
        job = remaining[0]
        block = job.block
        fp = self._fingerprint(job.width, job.seed)
        path = bdir / "budget.json"
        try:
            old = load_json(path)
            if old.get("fingerprint") == fp:
                st = Settings(int(old["max_epochs"]), old.get("mc_draws"))
                plan = {**old, "reused_plan": True}
                self.blocks.append({k: v for k, v in plan.items() if k not in ("fingerprint", "rates")})
                self.say(f"budget: {block}: reusing the recorded plan: at most {st.max_epochs} epochs"
                         + (f", {st.mc_draws} sparse-mc draws" if st.mc_draws is not None else ""))
                return st, {k: v for k, v in plan.items() if k != "fingerprint"}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if self.calibration_s is None:
            self.calibrate()
            self.say(f"budget: calibrated the per-sample costs in {self.calibration_s:.0f}s")
        elapsed = time.perf_counter() - self.t_start
        left_wall = self.seconds - elapsed - (10.0 + 0.02 * self.seconds)  # reserve: figures and report
        slots = max(1, int(slots))
        # worker-seconds left for this block and the blocks after it (P = 1: the wall-clock time left)
        left = left_wall if slots == 1 else slots * left_wall - max(0.0, float(in_flight_s))
        full = self._values(1.0)
        est_full = self.estimate(remaining, full)
        if est_full <= left:
            s, st, est = 1.0, full, est_full
        else:
            lo, hi = 0.0, 1.0
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                if self.estimate(remaining, self._values(mid)) <= left:
                    lo = mid
                else:
                    hi = mid
            s = lo
            st = self._values(s)
            est = self.estimate(remaining, st)
        plan = {"block": block, "max_epochs": st.max_epochs, "mc_draws": st.mc_draws, "scale": s,
                "estimate_s": est, "estimate_full_s": est_full, "left_s": left, "elapsed_s": elapsed,
                "n_remaining_runs": len(remaining), "fits": est <= left, "reused_plan": False,
                **({"slots": slots, "in_flight_s": in_flight_s, "left_wall_s": left_wall} if slots > 1 else {}),
                "rates": {k: {str(w): self.rate(k, w) for w in sorted({j.width for j in remaining})}
                          for k in COSTS}}
        dump_json(path, {**plan, "fingerprint": fp})
        self.blocks.append({k: v for k, v in plan.items() if k != "rates"})
        on = f" on {slots} workers" if slots > 1 else ""
        req = f"{self.c.max_epochs} epochs" + (f", {self.c.mc_draws} draws" if self.mc else "")
        got = f"{st.max_epochs} epochs" + (f", {st.mc_draws} draws" if self.mc else "")
        if s >= 1.0:
            self.say(f"budget: {block}: no scaling needed ({req}; estimated {est:.0f}s for the {len(remaining)} "
                     f"remaining runs, {max(left, 0.0):.0f}s left{on})")
        elif est <= left:
            self.say(f"budget: {block}: scaled {req} -> {got} (estimated {est:.0f}s for the {len(remaining)} "
                     f"remaining runs instead of {est_full:.0f}s; {left:.0f}s left{on})")
        else:
            self.say(f"budget: {block}: cannot fit even at the minimums; using {got} (requested {req}; estimated "
                     f"{est:.0f}s for the {len(remaining)} remaining runs, {max(left, 0.0):.0f}s left{on})")
        return st, plan

    def record(self, wall_s: float) -> dict[str, Any]:
        """The ``budget`` entry of ``results.json``."""
        return {"budget_minutes": self.c.budget_minutes, "wall_s": wall_s, "wall_minutes": wall_s / 60.0,
                "max_epochs_requested": self.c.max_epochs,
                "mc_draws_requested": self.c.mc_draws if self.mc else None,
                "min_epochs": MIN_EPOCHS, "min_draws": MIN_DRAWS if self.mc else None,
                "calibration_s": self.calibration_s, "blocks": self.blocks,
                "model": "training E n epoch + (n + n_test) train_fixed; certify certify_fixed + m certify + "
                         "N (mc_fixed + m mc); sparsity n sparsity (seconds; rates per width: "
                         "runs[i].settings.budget_plan.rates)"}
