"""The result records of :func:`sparsebound.certify` (THEORY.md 4.2, 6).

:class:`Certificate` holds one network's certificates, one entry per method
(``results[method]``): a :class:`MethodCertificate` for the analytic sparsity-aware
methods (``sparse``, ``uniform-sparse``, ``dense``), a
:class:`~sparsebound.montecarlo.MCResult` for ``sparse-mc`` and a
:class:`~sparsebound.baselines.BaselineResult` for the baselines; each has
``certificate``, ``unclipped``, ``vacuous`` and ``to_dict()``.  ``Certificate.to_dict()``
is what results files store and the study and the report read.

Source: THEORY.md sections 4.2 and 6; docs/architecture.md (where these records go).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Certificate", "MethodCertificate", "PriorValidityWarning"]



class PriorValidityWarning(UserWarning):
    """A result that only a prior which saw the bound sample can give (see ``Certificate.warnings``)."""


@dataclass(frozen=True)
class MethodCertificate:
    """One sparsity-aware method's risk certificate (THEORY.md 4.2).

    Attributes:
        method: ``sparse``, ``uniform-sparse`` or ``dense``.
        certificate: ``min(1, unclipped)``, an upper bound of the 0-1 risk of the
            certified network with probability >= 1 - delta.
        unclipped: the bound before clipping (kl form where below 1, else the
            Pinsker form ``empirical + sqrt(C/2) + eta1``).
        vacuous: ``unclipped >= 1``.
        augmented_loss: L_aug at the chosen sigma (fraction of bound samples not
            certified).
        empirical_term: ``L_aug + eta2 (1 - L_aug)``.
        kl: ``sum_k ||W_k - W0_k||_F^2 / (2 sigma_k^2)`` (rescaled W).
        complexity_term: ``(KL + ln(2 sqrt(m) / (pi delta))) / m``.
        sigma: chosen scalar grid value; ``sigma_per_layer`` its per-layer values.
        grid_index: j of the chosen sigma; ``profile``: c.
        rescaling: layer factors lambda_k (prod = 1) of the certified parametrisation.
        distance_to_prior: ``||lambda W - W0||_F`` (bias columns included).
        certified_fraction: ``1 - L_aug``.
        sigma_star: ``(m,)`` float64 per-sample largest certifiable sigma (for the
            chosen profile and rescaling).
        levels: ``(m, K-1)`` per-sample sparsity levels (grid positions) at sigma*.
        curve: ``{"sigma", "augmented_loss", "bound"}`` lists over the grid
            points evaluated (for the certified-fraction-vs-sigma figure).
    """

    method: str
    certificate: float
    unclipped: float
    vacuous: bool
    augmented_loss: float
    empirical_term: float
    kl: float
    complexity_term: float
    sigma: float
    sigma_per_layer: tuple[float, ...]
    grid_index: int
    profile: tuple[float, ...]
    rescaling: tuple[float, ...]
    distance_to_prior: float
    certified_fraction: float
    sigma_star: np.ndarray
    levels: np.ndarray
    active_fraction_mean: list[float]
    curve: dict[str, list[float]]
    m: int
    delta: float
    eta1: float
    eta2: float

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        s = self.sigma_star
        pos = s[s > 0]
        d: dict[str, Any] = {
            "method": self.method,
            "certificate": self.certificate,
            "unclipped": self.unclipped,
            "log10_unclipped": math.log10(self.unclipped) if self.unclipped > 0 else None,
            "vacuous": self.vacuous,
            "augmented_loss": self.augmented_loss,
            "empirical_term": self.empirical_term,
            "kl": self.kl,
            "kl_over_m": self.kl / self.m,
            "complexity_term": self.complexity_term,
            "sigma": self.sigma,
            "sigma_per_layer": list(self.sigma_per_layer),
            "grid_index": self.grid_index,
            "profile": list(self.profile),
            "rescaling": list(self.rescaling),
            "distance_to_prior": self.distance_to_prior,
            "certified_fraction": self.certified_fraction,
            "sigma_star_summary": {
                "median": float(np.median(s)),
                "quantiles": {str(q): float(np.quantile(s, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
                "fraction_zero": float((s <= 0).mean()),
                "median_positive": float(np.median(pos)) if pos.size else 0.0,
            },
            "active_fraction_mean": self.active_fraction_mean,
            "curve": self.curve,
            "m": self.m,
            "delta": self.delta,
            "eta1": self.eta1,
            "eta2": self.eta2,
        }
        if per_sample:
            d["sigma_star"] = self.sigma_star.tolist()
            d["levels"] = self.levels.tolist()
        return d


@dataclass
class Certificate:
    """All methods' certificates for one network, prior and bound sample.

    ``results[method]`` is a :class:`MethodCertificate` for the sparsity-aware
    methods and a ``BaselineResult`` for the baselines (both have
    ``certificate``, ``unclipped``, ``vacuous`` and ``to_dict()``).
    """

    network: str
    widths: tuple[int, ...]
    prior_kind: str
    m: int
    delta: float
    eta1: float
    eta2: float
    bound_sample_error: float
    test_error: float | None
    m_test: int | None
    test_error_lower_confidence: float | None
    results: dict[str, Any]
    tradeoff: list[dict[str, Any]]
    grids: dict[str, Any]
    timings: dict[str, float]
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    #: warning kinds that make the values not certificates (``valid: false``)
    INVALIDATING = ("below-held-out-lower-bound", "prior-equals-network")

    @property
    def valid(self) -> bool:
        """False when a warning says the values are not certificates (a certificate
        below the held-out lower confidence bound, or the trained network as its own
        prior); recorded as ``valid`` in :meth:`to_dict`."""
        return not any(w.get("invalidates") or w.get("kind") in self.INVALIDATING for w in self.warnings)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        res = {}
        for k, v in self.results.items():
            res[k] = v.to_dict(per_sample=per_sample) if isinstance(v, MethodCertificate) else v.to_dict()
        return {
            "network": self.network,
            "widths": list(self.widths),
            "prior": self.prior_kind,
            "m": self.m,
            "delta": self.delta,
            "delta_note": "every method is a separate statement at confidence 1 - delta",
            "eta1": self.eta1,
            "eta2": self.eta2,
            "bound_sample_error": self.bound_sample_error,
            "test_error": self.test_error,
            "m_test": self.m_test,
            "test_error_lower_confidence": self.test_error_lower_confidence,
            "results": res,
            "ratios": self.ratios(),
            "tradeoff": self.tradeoff,
            "grids": self.grids,
            "timings_s": self.timings,
            "environment": self.environment,
            "warnings": self.warnings,
            "valid": self.valid,
        }

    def ratios(self) -> dict[str, float]:
        """``sparse / X`` ratios of the unclipped values (values below 1 favour sparse)."""
        out: dict[str, float] = {}
        if "sparse" not in self.results:
            return out
        s = self.results["sparse"].unclipped
        for other in ("dense", "uniform-sparse", "neyshabur2018", "neyshabur2018-init", "bartlett2017"):
            if other in self.results:
                o = self.results[other].unclipped
                out[f"sparse/{other}"] = s / o if (o > 0 and math.isfinite(o)) else 0.0
        return out

    def table(self) -> str:
        """A readable fixed-width table of every method.

        Every numeric column is printed with a fixed width and a format that fits any
        magnitude (``.4g``: at most 11 characters, e.g. ``-2.901e+100``), so the columns stay
        aligned whatever the values."""
        lines = [
            f"network: {self.network}   prior: {self.prior_kind}   m = {self.m} bound samples   "
            f"delta = {self.delta:g} (each bound holds with probability >= {1 - self.delta:g})   "
            f"eta1 = {self.eta1:g}   eta2 = {self.eta2:g}",
        ]
        if self.test_error is not None:
            lines.append(
                f"bound-sample error {self.bound_sample_error:.4f}   test error {self.test_error:.4f} "
                f"(m_test = {self.m_test}; with probability >= {1 - self.delta:g} the true error is at least "
                f"{self.test_error_lower_confidence:.4f}, so no valid certificate can be below that)"
            )
        cols = ("certificate", "unclipped", "log10", "empirical", "complexity", "sigma", "cert.frac", "||W-W0||")
        hdr = f"{'method':<20}" + "".join(f"{c:>{_CELL}}" for c in cols) + "  note"
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for name, r in self.results.items():
            unc = r.unclipped
            lg = math.log10(unc) if unc > 0 and math.isfinite(unc) else (math.inf if unc > 0 else None)
            if isinstance(r, MethodCertificate):
                extra = (r.empirical_term, r.complexity_term, r.sigma, r.certified_fraction, r.distance_to_prior)
            elif hasattr(r, "q_hat"):  # sparse-mc
                extra = (r.empirical_term, r.complexity_term, r.sigma, 1 - r.q_hat, r.distance_to_prior)
            else:
                extra = (r.empirical_term, r.complexity_term, None, None, None)
            note = "VACUOUS" if r.vacuous else ""
            if getattr(r, "stochastic", False):
                note = (note + " randomised (Gibbs) predictor, not f_W").strip()
            cells = "".join(_cell(v) for v in (r.certificate, unc, lg, *extra))
            lines.append(f"{name:<20}{cells}  {note}")
        rat = self.ratios()
        if rat:
            lines.append("ratios of unclipped values: " + ", ".join(f"{k} = {v:.3g}" for k, v in rat.items()))
        lines.append(
            "columns: certificate = min(1, unclipped); VACUOUS = unclipped >= 1 (it says nothing about the "
            "risk). sparse/uniform-sparse/dense: empirical = L_aug + eta2 (1 - L_aug), L_aug = share "
            "of bound samples NOT certified at the chosen sigma; sparse-mc: empirical = kl upper confidence "
            "bound of q_hat (the Monte-Carlo share not certified, over the N draws) + eps_G (docs/theory.md "
            "section 10); all four: complexity "
            "= (KL + ln(2 sqrt(m)/(pi delta)))/m; unclipped = kl_inv(empirical, complexity) + eta1, or "
            "empirical + sqrt(complexity/2) + eta1 when that is >= 1; ||W-W0|| of the certified network (after "
            "the layer rescaling, which computes the same function). Baselines: empirical = margin (neyshabur) "
            "or ramp (bartlett) loss, unclipped = empirical + complexity. test-set: unclipped = kl_inv(test "
            "error, ln(1/delta)/m_test); its complexity column is unclipped - test error."
        )
        why = self.vacuous_reason()
        if why:
            lines.append(why)
        lines.extend(f"WARNING: {w['message']}" for w in self.warnings)
        return "\n".join(lines)

    def vacuous_reason(self) -> str:
        """One paragraph on why the sparse certificate is vacuous (empty when it is not).

        Every statement is read off the result: whether any bound sample is certified at any
        grid sigma (the curve of L_aug over the whole grid), the share certified and the two
        terms at the chosen sigma, the per-sample sigma*, the distance to the prior."""
        r = self.results.get("sparse")
        if not isinstance(r, MethodCertificate) or not r.vacuous:
            return ""
        star = np.asarray(r.sigma_star, dtype=np.float64)
        laug = np.asarray(r.curve.get("augmented_loss", []), dtype=np.float64)
        sig_grid = r.curve.get("sigma", [])
        dist = (f"the certified network is ||W-W0||_F = {r.distance_to_prior:.3g} from the prior "
                f"(KL/m = {r.kl / r.m:.3g} at the chosen sigma)")
        if laug.size and float(laug.min()) >= 1.0:
            return (
                f"why vacuous: no bound sample is certified at any grid sigma (the largest per-sample sigma* is "
                f"{float(star.max()) if star.size else 0.0:.3g}; the smallest grid sigma is "
                f"{float(sig_grid[0]) if sig_grid else r.sigma:.3g}), so the empirical term is about 1 whatever "
                f"the prior; {dist}. What is missing is margin relative to the network's noise sensitivity "
                "(larger margins, sparser activations, or a smaller network), not a closer prior."
            )
        parts = [
            f"why vacuous: at the chosen grid sigma {r.sigma:.3g}, {r.certified_fraction:.1%} of the bound samples "
            f"are certified (empirical term {r.empirical_term:.3g}; median per-sample sigma* "
            f"{float(np.median(star)) if star.size else 0.0:.3g}) and the complexity term is "
            f"{r.complexity_term:.3g}; {dist}. A larger sigma shrinks the KL term but certifies fewer samples."
        ]
        if r.complexity_term >= r.empirical_term:
            parts.append("The complexity term dominates: a closer prior (data-dependent, proximal posterior) or "
                         "more bound samples shrink it.")
        else:
            parts.append("The empirical term dominates: more samples must tolerate the noise (larger margins, "
                         "sparser activations).")
        return " ".join(parts)


_CELL = 12


def _cell(v: float | None) -> str:
    """A fixed-width table cell: ``.4g`` (at most 11 characters for any float), right-aligned."""
    if v is None:
        return f"{'-':>{_CELL}}"
    return f"{float(v):>{_CELL}.4g}"
