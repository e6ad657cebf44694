"""The stochastic reference ``pbb``: a PAC-Bayes certificate of the Gibbs (randomised) predictor.

Not a bound on the deployed network f_W: it bounds the expected error of a network drawn
from the posterior ``N(W, Sigma_Q)`` (Perez-Ortiz et al., JMLR 2021; THEORY.md 4.7;
docs/theory.md section 14).  Printed next to ``sparse`` so the cost of derandomisation is
visible (docs/theory.md section 15).
"""

from __future__ import annotations

from typing import Any

from .context import CertifyContext


def certify_pbb(ctx: CertifyContext) -> Any:
    """``pbb`` of the network: with learned ``posterior_std`` as given, else the ``tied`` family
    started from ``sparse``'s rescaling, grid point and profile (delta split as ``sparse-mc``'s)."""
    from ..pbb import pbb_certificate
    from ..records import MethodCertificate

    opts, inp = ctx.options, ctx.inputs
    sp = ctx.results.get("sparse")
    tied = opts.posterior_std is None and isinstance(sp, MethodCertificate)
    profiles = list(opts.profiles)
    return pbb_certificate(
        inp.network, inp.X, inp.y, prior=inp.prior, posterior_std=opts.posterior_std,
        delta=opts.delta * (1.0 - opts.mc_delta_fraction), delta_mc=opts.delta * opts.mc_delta_fraction,
        sigma_grid=opts.sigma_grid, passes=opts.pbb_passes, seed=opts.pbb_seed,
        rescaling=sp.rescaling if tied else None, start_j=sp.grid_index if tied else None,
        profile_index=profiles.index(tuple(sp.profile)) if tied else 0,
        X_test=inp.X_test, y_test=inp.y_test)


def pbb_requires(options: Any) -> tuple[str, ...]:
    """``pbb`` without learned variances starts from ``sparse``'s optimum."""
    return ("sparse",) if getattr(options, "posterior_std", None) is None else ()
