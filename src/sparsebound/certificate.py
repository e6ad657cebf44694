"""The sparsity-aware risk certificate, end to end (THEORY.md 4.2-4.4, 6).

:func:`certify` takes a trained ReLU network, its prior mean (the recorded
initialisation, or a network trained on a disjoint prior split) and a bound
sample, and returns a :class:`Certificate` with one entry per method:

* ``sparse``: per-sample witnesses, exact omega, reduced norms beta refined by
  exact per-sample SVD/eigenvalue computations (cascade: uniform bounds first);
* ``uniform-sparse``: the same with the uniform reduced-norm bounds of
  THEORY.md 5.2 (reduced babel bound, row bound, spectral norm);
* ``dense``: s = 0 everywhere (the norm-based bound in the same machinery);
* ``sparse-mc``: ``sparse``'s network with a Monte-Carlo training side (THEORY.md 4.5);
* baselines (THEORY.md 6) when asked: ``neyshabur2018``, ``neyshabur2018-init``,
  ``bartlett2017``, and the held-out ``test-set`` reference.

Each method is a separate statement at the same failure probability delta.  The
search over sigma (a-priori grid with weights), over layer rescalings (the
function is unchanged, the theorem holds for every W) and over per-sample
sparsity vectors never changes validity (THEORY.md 4.3).

The pipeline (docs/architecture.md, "Inside certify"):

1. **validation** (:func:`_check_certify_options`, :func:`_certify_inputs`): every option and
   input checked before any work, one-line errors;
2. **plan** (:func:`sparsebound.methods.plan`): the methods asked for plus what they require,
   in order -- methods are data, a registry (:data:`sparsebound.methods.METHODS`) from name to
   the function computing it, its shared tables and its dependencies;
3. **shared per-sample tables** (:class:`sparsebound.methods.CertifyContext`): the certified
   parametrisation, the forward passes, the sparsity table, noise constants, spectral and
   reduced-norm tables (:mod:`sparsebound.tables`) -- each computed once, only those the
   planned methods declare;
4. **one function per method family**: :mod:`sparsebound.methods.analytic` (``sparse``,
   ``uniform-sparse``, ``dense`` and their rescaling search, :mod:`sparsebound.search`),
   :mod:`sparsebound.methods.sampling` (``sparse-mc``), :mod:`sparsebound.methods.baselines`
   (the baselines and ``test-set``);
5. **assembly** (:func:`_assemble`): the results asked for, in the registry's order, the
   records of the tables, timings, and the validity warnings.

To add a method, see :mod:`sparsebound.methods` (one registry entry).  Every question about
a layer's weights goes through its :class:`~sparsebound.operators.LinearOperator`.

Source: Muthukumar & Sulam, COLT 2023; THEORY.md sections 4 and 6;
docs/theory.md for the proofs.
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .certification import CERT_SLACK
from .errors import ConfigError
from .methods import METHODS, CertifyContext, CertifyInputs, CertifyOptions, names, plan
from .network import ReLUNetwork, as_labels
from .noise import DEFAULT_ACTIVE_FRACTIONS
from .pacbayes import SigmaGrid, check_delta

# moved to their own modules (issue 14); importable from here as before
from .records import Certificate, MethodCertificate, PriorValidityWarning
from .search import (
    RESCALING_BOX_OCTAVES,
    Evaluation,
    Objective,
    RecursionUnits,
    canonical_rescalings,
    continuous_sigma_star,
    pow2_rescaled,
    refinement_targets,
    search_rescaling,
)
from .sharding import Sharding, resolve_sharding
from .tables import ExactBetaCache, NormTables, exact_omega_tables, spectral_norms, uniform_norm_tables

#: every method's name, listed ones (the CLI's default list) in the registry's order
ALL_METHODS: tuple[str, ...] = names(listed_only=True)
#: the sparsity-aware methods (analytic and Monte-Carlo)
SPARSE_METHODS: tuple[str, ...] = names(listed_only=True, families=("analytic", "monte-carlo"))
#: the norm-based baselines and the held-out reference
BASELINE_METHODS: tuple[str, ...] = names(listed_only=True, families=("baseline", "held-out"))
#: the stochastic reference (THEORY.md 4.7): a bound on the Gibbs predictor, not on f_W; accepted
#: by :func:`certify` but not part of ALL_METHODS (the CLI's default list)
STOCHASTIC_METHODS: tuple[str, ...] = names(families=("stochastic",))
#: every name :func:`certify` accepts
CERTIFY_METHODS: tuple[str, ...] = names()
MIN_BOUND_SAMPLES = 8

# former private names (tests and notebooks import them)
_Objective = Objective
_Eval = Evaluation
_continuous = continuous_sigma_star
_refinement_targets = refinement_targets



def _as_network(obj: ReLUNetwork | nn.Module, what: str, example_inputs: torch.Tensor | None = None) -> ReLUNetwork:
    """A :class:`ReLUNetwork` from a network or any ``nn.Module`` computing a ReLU MLP
    (read and checked by :func:`sparsebound.models.network_from_module`)."""
    if isinstance(obj, ReLUNetwork):
        return obj
    if isinstance(obj, nn.Module):
        from .models import network_from_module

        return network_from_module(obj, example_inputs=example_inputs)
    raise ConfigError(
        f"{what} must be a ReLUNetwork or a torch.nn.Module computing a ReLU MLP, got {type(obj).__name__}; "
        "files load with sparsebound.models.load_model(path)"
    )


PRIOR_KINDS = ("init", "data-dependent", "zero", "user-given")


def _check_certify_options(*, delta: float, methods: Sequence[str], eta1: float, eta2: float, radius: float | None,
                           sigma_grid: SigmaGrid | None, active_fractions: Sequence[float], exact_rounds: int,
                           refine_window: float, exact_budget_s: float | None, mc_draws: int, mc_batch: int,
                           mc_seed: int | None, mc_delta_fraction: float, mc_max_evals: int, device: str | None,
                           prior_kind: str | None) -> tuple[float, int | None]:
    """Every option of :func:`certify` checked before any work (one-line errors).

    Returns ``(delta, mc_seed)`` normalised.

    Raises:
        ConfigError: the first option out of its range, named with the fix.
    """
    from .errors import check_seed
    from .network import resolve_device

    delta = check_delta(delta)
    for name, v in (("eta1", eta1), ("eta2", eta2), ("mc_delta_fraction", mc_delta_fraction)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not (0.0 < float(v) < 1.0):
            raise ConfigError(f"{name} must lie in (0, 1), got {v!r}")
    if isinstance(methods, str):
        raise ConfigError(f"methods must be a list of method names, e.g. [{methods!r}], not a string")
    known = names()
    unknown = [mth for mth in methods if mth not in known]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(known)}")
    if not methods:
        raise ConfigError("no method selected; choose from " + ", ".join(known))
    for name, v, lo in (("mc_draws", mc_draws, 1), ("mc_batch", mc_batch, 1), ("mc_max_evals", mc_max_evals, 1),
                        ("exact_rounds", exact_rounds, 0)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
    if mc_seed is not None:
        mc_seed = check_seed(mc_seed, "mc_seed (--mc-seed)")
    if isinstance(refine_window, bool) or not isinstance(refine_window, int | float) \
            or not (1.0 <= float(refine_window) < math.inf):
        raise ConfigError(f"refine_window must be a finite number >= 1, got {refine_window!r}")
    if exact_budget_s is not None and (isinstance(exact_budget_s, bool) or not isinstance(exact_budget_s, int | float)
                                       or not (0.0 <= float(exact_budget_s) < math.inf)):
        raise ConfigError(f"exact_budget_s must be None or a finite number of seconds >= 0, got {exact_budget_s!r}")
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int | float | np.floating)
                               or not (0.0 < float(radius) < math.inf)):
        raise ConfigError(f"radius must be a positive finite bound on ||x|| over the input domain, got {radius!r}")
    if sigma_grid is not None and not isinstance(sigma_grid, SigmaGrid):
        raise ConfigError(f"sigma_grid must be a sparsebound.pacbayes.SigmaGrid, got {type(sigma_grid).__name__}")
    try:
        fr = [float(f) for f in active_fractions]
    except (TypeError, ValueError):
        raise ConfigError(f"active_fractions must be numbers in (0, 1], got {active_fractions!r}") from None
    if not fr or any(not (0.0 < f <= 1.0) for f in fr):
        raise ConfigError(f"active_fractions must be a non-empty list of numbers in (0, 1], got {active_fractions!r}")
    if prior_kind is not None and prior_kind not in PRIOR_KINDS:
        raise ConfigError(f"prior_kind must be one of {', '.join(PRIOR_KINDS)} (or None: derived), got {prior_kind!r}")
    resolve_device(device)
    return delta, mc_seed


def _derive_prior_kind(given: str | None, net: ReLUNetwork, prior: ReLUNetwork, init: ReLUNetwork | None) -> str:
    """``prior_kind`` from what the prior is (never "init" for a prior that is not the initialisation).

    ``zero``: every weight 0; ``init``: equal to the given initialisation;
    ``data-dependent``: only when the caller says so; otherwise ``user-given``.

    Raises:
        ConfigError: a stated kind the prior contradicts (``init`` but not equal to
            ``init``, ``zero`` but not zero).
    """
    is_zero = all(not bool(w.any()) for w in prior.weights) and (
        prior.biases is None or all(not bool(b.any()) for b in prior.biases))
    is_init = init is not None and prior.widths == init.widths and prior.distance_to(init) == 0.0
    if given == "zero" and not is_zero:
        raise ConfigError("prior_kind='zero' but the prior has non-zero weights; pass the zero network or another kind")
    if given == "init":
        if init is not None and not is_init:
            raise ConfigError(
                "prior_kind='init' but the prior differs from init=; a prior that is not the saved initialisation "
                "is 'data-dependent' (trained on data disjoint from the bound sample) or 'user-given'"
            )
        return "init"
    if given is not None:
        return given
    if is_zero:
        return "zero"
    if is_init:
        return "init"
    return "user-given"


PRIOR_RULE = (
    "the prior must be fixed before the bound sample is seen (the initialisation saved before training, or a "
    "network trained on data disjoint from the bound sample)"
)


def _validity_warnings(cert: Certificate, net: ReLUNetwork, prior: ReLUNetwork) -> list[dict[str, Any]]:
    """Checks of the result that only a prior which saw the bound sample can fail.

    * a certificate below the lower confidence bound of the held-out error (at the
      same delta): impossible for a valid certificate except with probability about
      delta (THEORY.md 7.4); the value is then not a certificate;
    * a prior of kind ``init`` or ``user-given`` that equals the network or is a
      rescaled copy of it (:meth:`ReLUNetwork.same_function_as`): the trained network
      used as its own prior; recorded as invalidating (``valid: false``).  A
      ``data-dependent`` prior equal to the network is the expected case of a prior
      trained on S_prior kept as the posterior (e.g. a proximal lambda = inf run) and
      is valid exactly when every data-dependent prior is: no warning.
    """
    out: list[dict[str, Any]] = []
    lcb = cert.test_error_lower_confidence
    if lcb is not None:
        below = [name for name, r in cert.results.items()
                 if name != "test-set" and math.isfinite(r.certificate) and r.certificate < lcb]
        if below:
            vals = ", ".join(f"{name} {cert.results[name].certificate:.4g}" for name in below)
            out.append({
                "kind": "below-held-out-lower-bound", "methods": below,
                "message": (f"NOT A CERTIFICATE: {vals} lie(s) below {lcb:.4g}, the lower confidence bound of the "
                            "held-out error (with a valid prior that happens with probability below about "
                            f"2 delta): {PRIOR_RULE}, and the bound sample and the held-out data must come from "
                            "the same distribution. Do not report these values."),
            })
    if cert.prior_kind in ("init", "user-given") and net.same_function_as(prior):
        same = "equals" if net.distance_to(prior) == 0.0 else "is a rescaled copy of (computes the same function as)"
        out.append({
            "kind": "prior-equals-network", "methods": [], "invalidates": True,
            "message": (f"NOT A CERTIFICATE: the prior ({cert.prior_kind}) {same} the certified network. A "
                        "network trained on the bound sample is not a valid prior, and an initialisation or a "
                        "user-given prior cannot be told apart from one that saw the bound sample when it is the "
                        f"trained network itself; {PRIOR_RULE}. (A prior trained on S_prior only and kept as the "
                        "posterior is valid: pass prior_kind='data-dependent'.)"),
        })
    return out


def environment_record() -> dict[str, Any]:
    """Library versions and platform, for results files."""
    import scipy

    return {
        "sparsebound": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def certify(
    network: ReLUNetwork | nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    prior: ReLUNetwork | nn.Module,
    delta: float = 0.05,
    methods: Sequence[str] = ("sparse", "uniform-sparse", "dense"),
    prior_kind: str | None = None,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    radius: float | None = None,
    init: ReLUNetwork | nn.Module | None = None,
    eta1: float = 1e-4,
    eta2: float = 1e-3,
    sigma_grid: SigmaGrid | None = None,
    active_fractions: Sequence[float] = DEFAULT_ACTIVE_FRACTIONS,
    tight_constants: bool = True,
    rescale: bool = True,
    exact_rounds: int = 3,
    refine_window: float = 4.0,
    exact_budget_s: float | None = None,
    mc_draws: int = 2000,
    mc_batch: int = 256,
    mc_seed: int | None = None,
    mc_delta_fraction: float = 0.5,
    mc_max_evals: int = 4,
    pbb_passes: int = 10,
    pbb_seed: int | None = None,
    posterior_std: Sequence[torch.Tensor] | None = None,
    tradeoff: bool = True,
    device: str | None = None,
    progress: bool = True,
    executor: str | Sharding = "local",
    ray_address: str | None = None,
) -> Certificate:
    """Risk certificates for ``network`` on the bound sample ``(X, y)``.

    Args:
        network: the trained network W: a ``ReLUNetwork`` or any ``nn.Module`` computing a
            feed-forward ReLU MLP (``nn.Sequential``, a subclass calling its layers in
            ``forward``, TorchScript, ...; read by :func:`sparsebound.models.network_from_module`
            and checked against the model on ``X``).
        X: ``(m, d_0)`` float inputs of the bound sample (as the network sees them).
        y: ``(m,)`` int64 labels.
        prior: prior mean W0, fixed before the bound sample was seen: the recorded
            initialisation or a network trained on a disjoint prior split.
        delta: failure probability in (0, 1); every method holds with probability
            >= 1 - delta.
        methods: any of ``sparse``, ``uniform-sparse``, ``dense``, ``sparse-mc``,
            ``neyshabur2018``, ``neyshabur2018-init``, ``bartlett2017``, ``test-set``, ``pbb``
            (the stochastic reference, THEORY.md 4.7) (the registry
            :data:`sparsebound.methods.METHODS`); results are listed in its order.
        prior_kind: what the prior is: ``init`` (the initialisation saved before
            training), ``data-dependent`` (trained on data disjoint from the bound
            sample), ``zero`` or ``user-given``; ``None`` (default) derives it: ``zero``
            for the zero network, ``init`` when the prior equals ``init``, else
            ``user-given`` (never ``init`` for a prior that is not the initialisation).
        X_test, y_test: held-out data for the test error and the ``test-set`` bound.
        radius: input-domain radius B (needed by ``neyshabur2018``).
        init: the initialisation (reference matrices of the baselines; defaults to ``prior``).
        eta1, eta2: test-side and training-side noise failure levels (THEORY.md 3).
        sigma_grid: the a-priori sigma grid (default ``SigmaGrid()``).
        active_fractions: the a-priori sparsity grid (active fractions of each width).
        tight_constants: exact chi/normal quantiles in the noise constants
            (docs/theory.md) instead of THEORY.md's closed forms.
        rescale: certify the best layer rescaling ``lambda W`` (``prod lambda_k = 1``, the same
            function; docs/theory.md section 8). Bias-free networks: a pattern search within 8
            octaves of the prior-aligned rescaling, from it and from the balanced one (equal
            Frobenius norms); both depend on the function only, so every rescaled
            representative ``mu W`` of the network gets the same ``sparse``, ``uniform-sparse``
            and ``dense`` certificates (up to float64 rounding), relative to the fixed prior.
            Each later method also starts from the optima of the methods computed before it
            (dense, then uniform-sparse), which guarantees sparse <= uniform-sparse <= dense;
            the result of ``sparse`` can therefore depend on which other methods are asked
            for. With biases there is no search: the network is brought to its prior-aligned
            scaling rounded to whole octaves by exact powers of two, so the certificates are
            invariant under power-of-two layer rescalings but not under others. ``False``:
            the network is certified as given (not invariant). The reported ``rescaling`` is
            relative to the network as given. The baselines ``neyshabur2018-init`` and
            ``bartlett2017`` take the better of the given and the rebalanced parametrisation
            (not invariant).
        exact_rounds: rounds of exact per-sample reduced norms for ``sparse`` (cascade:
            each round refines the samples not certified at the chosen sigma whose
            sigma* is within a factor ``refine_window`` of it).
        refine_window: see ``exact_rounds``.
        exact_budget_s: stop refining after this many seconds of exact norms (None:
            no limit).  Any subset of refinements gives a valid certificate.
        mc_batch: bound samples evaluated per draw of ``sparse-mc`` (a fresh uniform subset per
            draw; all of them when larger than the bound sample; docs/theory.md section 10).
        mc_draws, mc_seed: number of posterior draws and their seed for ``sparse-mc``
            (THEORY.md 4.5); ``mc_seed=None`` draws a fresh seed from the operating
            system (recorded in the result).
        mc_delta_fraction: ``sparse-mc`` holds at the same overall level delta, split as
            ``delta' = mc_delta_fraction * delta`` for the draws and ``delta - delta'`` for
            the PAC-Bayes step.
        mc_max_evals: number of grid sigma values ``sparse-mc`` evaluates.
        pbb_passes, pbb_seed, posterior_std: the ``pbb`` reference (a bound on the Gibbs
            predictor, NOT on the network; :func:`sparsebound.pbb.pbb_certificate`; not in the
            default list): independent draws per bound sample, their seed (None: fresh,
            recorded), and the learned posterior standard deviations (None: the ``tied`` family
            of ``sparse``, with ``sparse``'s rescaling and grid point as the start).  Split of
            delta as for ``sparse-mc``.
        tradeoff: compute the global-sparsity trade-off curve.
        device: ``cpu`` or ``cuda`` for the forward pass and exact norms.
        progress: show progress bars.
        executor: where the per-sample work runs (the exact reduced norms of ``sparse``, the
            draw batches of ``sparse-mc``): ``"local"`` (this process) or ``"ray"`` (Ray tasks,
            on a local instance started for this call, or on ``ray_address``), or a
            :class:`sparsebound.sharding.Sharding` object (kept open).  The chunks are fixed by
            the work, not by the workers, so the certificate is the same bit for bit
            (:mod:`sparsebound.sharding`; needs ``pip install "sparsebound[ray]"``).
        ray_address: a Ray cluster for ``executor="ray"`` (None: ``RAY_ADDRESS`` when set,
            else a local instance).

    Returns:
        :class:`Certificate`.

    Returns also, in ``Certificate.warnings`` (and as a :class:`PriorValidityWarning`),
    any sign that the prior saw the bound sample: a certificate below the held-out
    error's lower confidence bound, or, for ``prior_kind`` ``init`` / ``user-given``, a
    prior equal to the network or a rescaled copy of it (either way the values are not
    certificates: ``Certificate.valid`` is False and ``to_dict()`` records
    ``"valid": False``; docs/theory.md section 8).  A data-dependent prior equal to the
    network (a prior kept as the posterior) is not flagged.

    Raises:
        ConfigError: any option out of range, checked before any work (delta, eta1,
            eta2, mc_delta_fraction outside (0, 1); mc_seed not an integer in
            [0, 2^63 - 1]; mc_draws, mc_batch, mc_max_evals < 1; exact_rounds < 0;
            refine_window < 1; a negative exact_budget_s or radius; active fractions
            outside (0, 1]; unknown device, method or prior_kind), fewer than 8 bound
            samples, ``test-set`` without test data, ``neyshabur2018`` without radius, a
            ``prior_kind`` the prior contradicts, ``executor`` unknown or ``"ray"`` without Ray
            installed (the message names the extra), ``ray_address`` without ``executor="ray"``.
        NetworkError / ShapeMismatchError / DataError: bad network, prior of a
            different architecture, data that does not fit, labels out of range.

    Source: THEORY.md 4.2 (theorem), 4.3 (search), 6 (baselines).
    """
    delta, mc_seed = _check_certify_options(
        delta=delta, methods=methods, eta1=eta1, eta2=eta2, radius=radius, sigma_grid=sigma_grid,
        active_fractions=active_fractions, exact_rounds=exact_rounds, refine_window=refine_window,
        exact_budget_s=exact_budget_s, mc_draws=mc_draws, mc_batch=mc_batch, mc_seed=mc_seed,
        mc_delta_fraction=mc_delta_fraction, mc_max_evals=mc_max_evals, device=device, prior_kind=prior_kind)
    pbb_seed = _check_pbb_options(pbb_passes, pbb_seed, posterior_std)
    inputs = _certify_inputs(network, X, y, prior=prior, init=init, prior_kind=prior_kind, X_test=X_test,
                             y_test=y_test, methods=methods)
    grid_s = sigma_grid or SigmaGrid()
    sharding, owned = resolve_sharding(executor, ray_address, device)
    try:
        return _run_pipeline(inputs, grid_s, sharding, delta=delta, eta1=eta1, eta2=eta2,
                             active_fractions=active_fractions, tight_constants=tight_constants, rescale=rescale,
                             exact_rounds=exact_rounds, refine_window=refine_window, exact_budget_s=exact_budget_s,
                             mc_draws=mc_draws, mc_batch=mc_batch, mc_seed=mc_seed,
                             mc_delta_fraction=mc_delta_fraction, mc_max_evals=mc_max_evals, tradeoff=tradeoff,
                             radius=radius, device=device, progress=progress, pbb_passes=int(pbb_passes),
                             pbb_seed=pbb_seed, posterior_std=posterior_std)
    finally:
        if owned:
            sharding.close()


def _run_pipeline(inputs: CertifyInputs, grid_s: SigmaGrid, sharding: Sharding, **opts: Any) -> Certificate:
    """Plan, shared tables, methods, assembly (see the module docstring)."""
    options = CertifyOptions(sigma_grid=grid_s, profiles=grid_s.resolved_profiles(inputs.network.depth),
                             sharding=sharding, **opts)
    for name in names():  # each method's own input checks, before any work
        check = METHODS[name].check
        if name in inputs.methods and check is not None:
            check(inputs, options)
    steps = plan(inputs.methods, options)
    _check_zero_noise_layers(inputs.network, inputs.prior, options.profiles,
                             [spec.name for spec in steps if spec.family in ("analytic", "monte-carlo")
                              or (spec.name == "pbb" and options.posterior_std is None)])
    ctx = CertifyContext(inputs, options)
    # shared per-sample tables: only what the planned methods declare, each computed once
    ctx.declare([t for spec in steps for t in spec.tables])
    ctx.build_tables(stage=("parametrisation",))  # the forward pass runs on the certified parametrisation
    ctx.forward()
    ctx.build_tables()
    for spec in steps:  # one function per method (requirements first)
        t0 = time.perf_counter()
        ctx.results[spec.name] = spec.compute(ctx)
        if spec.timing:
            ctx.timings[spec.timing] = ctx.timings.get(spec.timing, 0.0) + time.perf_counter() - t0
    return _assemble(ctx)


def _check_pbb_options(passes: Any, seed: Any, posterior_std: Any) -> int | None:
    """The ``pbb`` options checked before any work; returns the seed normalised."""
    from .errors import check_seed

    if isinstance(passes, bool) or not isinstance(passes, int | np.integer) or int(passes) < 1:
        raise ConfigError(f"pbb_passes must be an integer >= 1, got {passes!r}")
    if posterior_std is not None and (isinstance(posterior_std, torch.Tensor)
                                      or not all(isinstance(t, torch.Tensor) for t in posterior_std)):
        raise ConfigError("posterior_std must be a list with one tensor of standard deviations per layer "
                          "(augmented weight shapes), e.g. TrainResult.posterior_std")
    return None if seed is None else check_seed(seed, "pbb_seed")


def _check_zero_noise_layers(net: ReLUNetwork, w0: ReLUNetwork, profiles: Sequence[Sequence[float]],
                             methods: Sequence[str]) -> None:
    """Refuse when every profile gives a zero-noise layer (c_k = 0) that moved from the prior:
    the KL is then infinite for every grid point (docs/theory.md section 12)."""
    if not methods:
        return
    dist = net.frobenius_sq_distances(w0)
    moved = [[k + 1 for k, (c, d) in enumerate(zip(p, dist, strict=True)) if c == 0.0 and d != 0.0]
             for p in profiles]
    if all(moved):
        k = moved[0][0]
        raise ConfigError(
            f"layer {k} has no noise in the sigma profile {list(profiles[0])} but moved from the prior "
            f"(||W_{k} - W0_{k}||_F = {math.sqrt(dist[k - 1]):.3g}); the KL is infinite: train with that layer "
            "frozen at the prior or give it a positive profile entry"
        )


def _plain_tensor(X: Any, name: str) -> torch.Tensor:
    """``X`` as an ordinary (strided, real, materialised) tensor, else a one-line error.

    Raises:
        DataError: a sparse or other non-strided layout, a meta tensor (no values), a
            complex or non-numeric dtype, or something that is not array-like.
    """
    from .errors import DataError

    try:
        t = torch.as_tensor(X)
    except Exception as exc:
        raise DataError(f"{name} cannot be read as a tensor ({type(exc).__name__}); give an (N, d) array") from None
    if t.layout != torch.strided:
        raise DataError(f"{name} is a {str(t.layout).replace('torch.', '')} tensor; give a dense tensor "
                        f"({name}.to_dense())")
    if t.device.type == "meta":
        raise DataError(f"{name} is a meta tensor (it holds no values); give the data itself")
    if t.is_complex():
        raise DataError(f"{name} has dtype {str(t.dtype).replace('torch.', '')}; give real-valued inputs")
    return t


def _certify_inputs(network: ReLUNetwork | nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                    prior: ReLUNetwork | nn.Module, init: ReLUNetwork | nn.Module | None, prior_kind: str | None,
                    X_test: torch.Tensor | None, y_test: torch.Tensor | None,
                    methods: Sequence[str]) -> CertifyInputs:
    """The networks and data of :func:`certify`, read and checked (before any work).

    Raises:
        ConfigError / NetworkError / ShapeMismatchError / DataError: see :func:`certify`.
    """
    X = _plain_tensor(X, "X")
    if X_test is not None:
        X_test = _plain_tensor(X_test, "X_test")
    net = _as_network(network, "network", example_inputs=X)
    w0 = _as_network(prior, "prior", example_inputs=X)
    net.check_compatible(w0, "prior")
    ref = _as_network(init, "init", example_inputs=X) if init is not None else w0
    net.check_compatible(ref, "initialisation")
    prior_kind = _derive_prior_kind(prior_kind, net, w0, ref if init is not None else None)
    y = as_labels(y)
    X = X.reshape(X.shape[0], -1) if X.ndim > 2 else X
    net.check_data(X, y)
    m = int(X.shape[0])
    if m < MIN_BOUND_SAMPLES:
        raise ConfigError(
            f"the bound sample has {m} points; the PAC-Bayes-kl bound needs m >= {MIN_BOUND_SAMPLES} "
            "(use more bound samples or a smaller prior fraction)"
        )
    Xt = yt = None
    if X_test is not None and y_test is not None:
        Xt = torch.as_tensor(X_test)
        yt = as_labels(y_test)
        Xt = Xt.reshape(Xt.shape[0], -1) if Xt.ndim > 2 else Xt
        net.check_data(Xt, yt)
    return CertifyInputs(network=net, prior=w0, reference=ref, X=X, y=y, X_test=Xt, y_test=yt,
                         prior_kind=prior_kind, methods=tuple(methods))


def _assemble(ctx: CertifyContext) -> Certificate:
    """The :class:`Certificate`: the results asked for (registry order), records, warnings."""
    inp, opts = ctx.inputs, ctx.options
    if "analytic-search" in ctx.state:
        ctx.timings["search"] = ctx.state["analytic-search"].seconds
    net = inp.network
    cert = Certificate(
        network=net.describe(), widths=net.widths, prior_kind=inp.prior_kind, m=inp.m, delta=opts.delta,
        eta1=opts.eta1, eta2=opts.eta2, bound_sample_error=ctx.bound_error, test_error=ctx.test_error,
        m_test=ctx.m_test, test_error_lower_confidence=ctx.test_error_lower_confidence,
        results={name: r for name, r in ctx.results.items() if ctx.asked(name)}, tradeoff=ctx.tradeoff,
        grids=ctx.grids, timings=ctx.timings, environment=environment_record(),
    )
    cert.warnings = _validity_warnings(cert, net, inp.prior)
    for w in cert.warnings:
        warnings.warn(w["message"], PriorValidityWarning, stacklevel=3)
    return cert


__all__ = [
    "ALL_METHODS",
    "BASELINE_METHODS",
    "CERTIFY_METHODS",
    "CERT_SLACK",
    "MIN_BOUND_SAMPLES",
    "RESCALING_BOX_OCTAVES",
    "SPARSE_METHODS",
    "STOCHASTIC_METHODS",
    "Certificate",
    "ExactBetaCache",
    "MethodCertificate",
    "NormTables",
    "PriorValidityWarning",
    "RecursionUnits",
    "canonical_rescalings",
    "certify",
    "environment_record",
    "exact_omega_tables",
    "pow2_rescaled",
    "search_rescaling",
    "spectral_norms",
    "uniform_norm_tables",
]
