"""What the methods of :func:`sparsebound.certify` share: validated inputs and options, the
per-sample tables (computed once, only those the planned methods declare), and the results.

Tables (``CertifyContext.table(name)``; :data:`TABLES` lists them in the order they are built):

* ``parametrisation``: the network the sparsity-aware methods certify (:class:`Parametrisation`;
  docs/theory.md section 8).  With rescaling, a bias-free network is certified as given and
  searched around its :func:`~sparsebound.search.canonical_rescalings`; a network with biases is
  brought to its prior-aligned scaling rounded to powers of two (an exact rescaling).  Without
  it the forward pass runs on the network as given;
* ``sparsity``: the sparsity grid, the per-sample :class:`~sparsebound.sparsity.SparsityTable`
  (THEORY.md 2), the :class:`~sparsebound.noise.NoiseConstants` (THEORY.md 3) and the
  :class:`~sparsebound.search.RecursionUnits` (:class:`SparsityTables`);
* ``spectral``: ``||[W_k | b_k]||`` per layer (:func:`~sparsebound.tables.spectral_norms`);
* ``uniform_norms``: the uniform reduced-norm tables (:func:`~sparsebound.tables.uniform_norm_tables`);
* ``exact_omega``: per-sample exact omega (:func:`~sparsebound.tables.exact_omega_tables`);
* ``exact_beta``: the per-sample beta tables that ``sparse`` refines with exact reduced norms
  (:class:`~sparsebound.tables.ExactBetaCache`; ``sparse-mc`` reads them after ``sparse``).

The forward pass of the bound sample (on the certified parametrisation) and of the held-out
data always runs: every certificate reports the bound-sample and test errors.

Source: THEORY.md sections 2-5; docs/architecture.md ("Inside certify").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..network import Activations, ReLUNetwork
from ..noise import NoiseConstants
from ..pacbayes import SigmaGrid
from ..search import RecursionUnits, canonical_rescalings, pow2_rescaled
from ..sharding import LocalSharding, Sharding
from ..sparsity import SparsityGrid, SparsityTable
from ..tables import ExactBetaCache, NormTables, exact_omega_tables, spectral_norms, uniform_norm_tables

__all__ = ["TABLES", "CertifyContext", "CertifyInputs", "CertifyOptions", "Parametrisation", "SparsityTables",
           "TableSpec"]


@dataclass(frozen=True)
class CertifyOptions:
    """Every option of :func:`sparsebound.certify`, validated (see its docstring for each).

    ``sigma_grid`` is resolved (the default grid when none was given) and ``profiles`` are its
    per-layer noise profiles for this depth; ``sharding`` runs the per-sample work (exact reduced
    norms, sparse-mc draws: :mod:`sparsebound.sharding`)."""

    delta: float
    eta1: float
    eta2: float
    sigma_grid: SigmaGrid
    profiles: tuple[tuple[float, ...], ...]
    active_fractions: Sequence[float]
    tight_constants: bool
    rescale: bool
    exact_rounds: int
    refine_window: float
    exact_budget_s: float | None
    mc_draws: int
    mc_batch: int
    mc_seed: int | None
    mc_delta_fraction: float
    mc_max_evals: int
    tradeoff: bool
    radius: float | None
    device: str | None
    progress: bool
    sharding: Sharding = field(default_factory=LocalSharding)
    pbb_passes: int = 10
    pbb_seed: int | None = None
    posterior_std: Sequence[torch.Tensor] | None = None


@dataclass(frozen=True)
class CertifyInputs:
    """The validated inputs of one certificate.

    Attributes:
        network: W as given; ``prior``: W0; ``reference``: the initialisation the baselines
            measure distances from (``init``, or the prior).
        X: ``(m, d_0)`` bound sample (flattened); ``y``: ``(m,)`` int64 labels.
        X_test, y_test: held-out data (flattened) or None.
        prior_kind: ``init``, ``data-dependent``, ``zero`` or ``user-given``.
        methods: the methods asked for, as given.
    """

    network: ReLUNetwork
    prior: ReLUNetwork
    reference: ReLUNetwork
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor | None
    y_test: torch.Tensor | None
    prior_kind: str
    methods: tuple[str, ...]

    @property
    def m(self) -> int:
        return int(self.X.shape[0])


@dataclass(frozen=True)
class Parametrisation:
    """The network the sparsity-aware methods certify (docs/theory.md section 8).

    Attributes:
        network: ``pi W`` (an exact power-of-two rescaling of W, W itself when none).
        base: the factors ``pi_k`` (reported rescalings are relative to the given network).
        canonical: the starts of the rescaling search (prior-aligned, balanced), empty when
            there is no search (biases, or ``rescale=False``).
    """

    network: ReLUNetwork
    base: tuple[float, ...]
    canonical: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class SparsityTables:
    """The sparsity grid and what is tabulated on it for every sample (THEORY.md 2-3)."""

    grid: SparsityGrid
    table: SparsityTable
    constants: NoiseConstants
    units: RecursionUnits


@dataclass(frozen=True)
class TableSpec:
    """A shared table: how it is built from the context, what it needs, where its time goes."""

    name: str
    build: Callable[[CertifyContext], Any]
    needs: tuple[str, ...] = ()
    timing: str | None = None


class CertifyContext:
    """Everything one call of :func:`sparsebound.certify` computes, shared by its methods.

    A method reads the inputs, the options and the tables it declared
    (:meth:`table`), may read the results and ``state`` of the methods it requires, and
    returns its result; it may add records to ``grids``, ``timings`` and ``tradeoff``.
    """

    def __init__(self, inputs: CertifyInputs, options: CertifyOptions) -> None:
        self.inputs = inputs
        self.options = options
        self.results: dict[str, Any] = {}
        #: what a method leaves for the methods that require it (e.g. ``sparse``'s objective)
        self.state: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.grids: dict[str, Any] = {"sigma": options.sigma_grid.to_dict()}
        self.tradeoff: list[dict[str, Any]] = []
        self.acts: Activations | None = None
        self.bound_error = math.nan
        self.test_error: float | None = None
        self.test_error_upper: float | None = None
        self.test_error_lower_confidence: float | None = None
        self.m_test: int | None = None
        self._tables: dict[str, Any] = {}
        self._declared: set[str] = set()

    # ---- inputs -------------------------------------------------------------
    @property
    def network(self) -> ReLUNetwork:
        """The network as given (W)."""
        return self.inputs.network

    @property
    def m(self) -> int:
        return self.inputs.m

    def asked(self, method: str) -> bool:
        """Whether ``method`` was asked for (not only computed because another method requires it)."""
        return method in self.inputs.methods

    # ---- tables -------------------------------------------------------------
    def declare(self, names: Sequence[str]) -> None:
        """The tables the planned methods need (with what those need)."""
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in TABLES:
                raise KeyError(f"unknown shared table {name!r}; known: {', '.join(TABLES)}")
            if name not in self._declared:
                self._declared.add(name)
                todo.extend(TABLES[name].needs)

    def build_tables(self, stage: Sequence[str] | None = None) -> None:
        """Build the declared tables (of ``stage`` only, when given) in :data:`TABLES` order."""
        for name, spec in TABLES.items():
            if name in self._declared and name not in self._tables and (stage is None or name in stage):
                t0 = time.perf_counter()
                self._tables[name] = spec.build(self)
                if spec.timing:
                    self.timings[spec.timing] = time.perf_counter() - t0

    def has_table(self, name: str) -> bool:
        return name in self._tables

    def table(self, name: str) -> Any:
        """A shared table; only those some planned method declared exist.

        Raises:
            RuntimeError: ``name`` was not declared (a method reads a table missing from its
                ``MethodSpec.tables``) or is not built yet.
        """
        if name not in self._tables:
            raise RuntimeError(f"shared table {name!r} was not declared by any planned method (add it to the "
                               "method's MethodSpec.tables)")
        return self._tables[name]

    @property
    def certified(self) -> Parametrisation:
        """The certified parametrisation (W itself when no method declared ``parametrisation``)."""
        if "parametrisation" in self._tables:
            return self._tables["parametrisation"]
        K = self.network.depth
        return Parametrisation(network=self.network, base=(1.0,) * K, canonical=())

    # ---- forward passes -----------------------------------------------------
    def forward(self) -> None:
        """The forward pass of the bound sample (certified parametrisation) and of the held-out data."""
        from ..pacbayes import error_lower_confidence

        opts, inp = self.options, self.inputs
        t0 = time.perf_counter()
        self.acts = self.certified.network.forward(inp.X, inp.y, device=opts.device)
        self.timings["forward"] = time.perf_counter() - t0
        self.bound_error = self.acts.error_rate(inp.y)
        if inp.X_test is not None and inp.y_test is not None:
            Xt, yt = inp.X_test, inp.y_test
            test_acts = self.network.forward(Xt, yt, device=opts.device, keep_pre_activations=False)
            self.test_error = test_acts.error_rate(yt)
            self.m_test = int(Xt.shape[0])
            # rounding on the safe side: the upper bound counts possible errors, the lower
            # confidence bound only sure ones (docs/theory.md section 7)
            self.test_error_upper = test_acts.error_rate_upper(yt)
            self.test_error_lower_confidence = error_lower_confidence(test_acts.error_rate_lower(yt), self.m_test,
                                                                      opts.delta)


# ---- table builders ------------------------------------------------------------


def _parametrisation(ctx: CertifyContext) -> Parametrisation:
    net, K = ctx.network, ctx.network.depth
    cert_net, base = net, (1.0,) * K
    canon: tuple[tuple[float, ...], ...] = ()
    # a zero-noise layer (a profile entry c_k = 0) has a finite KL only while it equals its prior
    # bit for bit, which only the network as given can do: keep it (biases) or add it as a start
    zero_noise = any(c == 0.0 for prof in ctx.options.profiles for c in prof)
    if ctx.options.rescale:
        aligned, balanced = canonical_rescalings(net, ctx.inputs.prior)
        if net.has_bias and zero_noise:
            pass
        elif net.has_bias:
            exps = [round(math.log2(v)) for v in aligned[:-1]]
            exps.append(-sum(exps))
            c_net = pow2_rescaled(net, exps)
            if c_net is not None:
                cert_net, base = c_net, tuple(math.ldexp(1.0, e) for e in exps)
        else:
            canon = (aligned, balanced, (1.0,) * K) if zero_noise else (aligned, balanced)
    return Parametrisation(network=cert_net, base=base, canonical=canon)


def _sparsity(ctx: CertifyContext) -> SparsityTables:
    opts, acts = ctx.options, ctx.acts
    assert acts is not None, "the forward pass runs before the tables"
    net = ctx.certified.network
    grid = SparsityGrid.from_fractions(net.widths, opts.active_fractions)
    ctx.grids["sparsity"] = grid.to_dict()
    table = SparsityTable.build(acts, grid)
    consts = NoiseConstants.for_operators(net.operators, grid.active, eta1=opts.eta1, eta2=opts.eta2,
                                          tight=opts.tight_constants)
    ctx.grids["noise"] = consts.to_dict()
    units = RecursionUnits.from_activations(acts.hidden_norms, acts.outputs)
    ctx.grids["recursion_units"] = {"layer_exponents": list(units.layer),
                                    "profile_factors": list(units.profile_factors())}
    return SparsityTables(grid=grid, table=table, constants=consts, units=units)


def _spectral(ctx: CertifyContext) -> list[float]:
    return spectral_norms(ctx.certified.network)


def _uniform_norms(ctx: CertifyContext) -> NormTables:
    return uniform_norm_tables(ctx.certified.network, ctx.table("sparsity").grid, progress=ctx.options.progress,
                               spectral=ctx.table("spectral"))


def _exact_omega(ctx: CertifyContext) -> list[torch.Tensor]:
    return exact_omega_tables(ctx.certified.network, ctx.table("sparsity").table, device=ctx.options.device)


def _exact_beta(ctx: CertifyContext) -> ExactBetaCache:
    return ExactBetaCache(ctx.certified.network, ctx.table("sparsity").table, ctx.table("uniform_norms").uniform_beta,
                          device=ctx.options.device, sharding=ctx.options.sharding)


#: The shared tables in the order they are built (``parametrisation`` before the forward pass,
#: the others after it).
TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (
    TableSpec("parametrisation", _parametrisation),
    TableSpec("sparsity", _sparsity, needs=("parametrisation",), timing="sparsity"),
    TableSpec("spectral", _spectral, needs=("parametrisation",), timing="spectral_norms"),
    TableSpec("uniform_norms", _uniform_norms, needs=("sparsity", "spectral"), timing="uniform_norms"),
    TableSpec("exact_omega", _exact_omega, needs=("sparsity",), timing="exact_omega"),
    TableSpec("exact_beta", _exact_beta, needs=("sparsity", "uniform_norms")),
)}
