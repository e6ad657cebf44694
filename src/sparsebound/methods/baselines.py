"""The baselines (THEORY.md 6) and the held-out ``test-set`` reference, as methods of
:func:`sparsebound.certify`.

They certify the network as given (never the rescaled parametrisation of the analytic
methods) and read no shared table: :mod:`sparsebound.baselines` computes them from the
network, the bound sample and the reference matrices (the initialisation ``init``, or the
prior).  ``test-set`` is the held-out error's binomial upper confidence bound.

Source: THEORY.md section 6; Neyshabur et al. 2018 (ICLR), Bartlett et al. 2017 (NeurIPS).
"""

from __future__ import annotations

from .. import baselines as bl
from ..errors import ConfigError
from .context import CertifyContext, CertifyInputs, CertifyOptions

__all__ = ["bartlett2017", "check_radius", "check_test_data", "neyshabur2018", "neyshabur2018_init", "test_set"]


def check_radius(inputs: CertifyInputs, options: CertifyOptions) -> None:
    """Raises ConfigError when the input-domain radius B is missing (Neyshabur et al.'s bound needs it)."""
    del inputs
    if options.radius is None:
        raise ConfigError("neyshabur2018 needs the input-domain radius B: pass radius= (e.g. 28 for MNIST)")


def check_test_data(inputs: CertifyInputs, options: CertifyOptions) -> None:
    """Raises ConfigError when there is no held-out data."""
    del options
    if inputs.X_test is None or inputs.y_test is None:
        raise ConfigError("method 'test-set' needs held-out data: pass X_test and y_test")


def neyshabur2018(ctx: CertifyContext) -> bl.BaselineResult:
    """Neyshabur et al. 2018, Theorem 1 (distances from the origin)."""
    opts, inp = ctx.options, ctx.inputs
    assert opts.radius is not None
    return bl.neyshabur2018_bound(inp.network, inp.X, inp.y, radius=float(opts.radius), delta=opts.delta, prior=None,
                                  device=opts.device)


def neyshabur2018_init(ctx: CertifyContext) -> bl.BaselineResult:
    """Neyshabur et al. 2018 with distances from the initialisation (the reference)."""
    opts, inp = ctx.options, ctx.inputs
    assert opts.radius is not None
    return bl.neyshabur2018_bound(inp.network, inp.X, inp.y, radius=float(opts.radius), delta=opts.delta,
                                  prior=inp.reference, device=opts.device)


def bartlett2017(ctx: CertifyContext) -> bl.BaselineResult:
    """Bartlett et al. 2017 (spectrally normalised margin bound, reference matrices: the initialisation)."""
    opts, inp = ctx.options, ctx.inputs
    return bl.bartlett2017_bound(inp.network, inp.X, inp.y, delta=opts.delta, reference=inp.reference,
                                 device=opts.device)


def test_set(ctx: CertifyContext) -> bl.BaselineResult:
    """The held-out error's upper confidence bound (rounded up: possible errors counted)."""
    assert ctx.test_error_upper is not None and ctx.m_test is not None
    return bl.test_set_result(ctx.test_error_upper, ctx.m_test, ctx.options.delta)
