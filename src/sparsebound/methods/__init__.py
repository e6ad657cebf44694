"""The methods of :func:`sparsebound.certify`, as data: a registry from method name to what computes it.

Each :class:`MethodSpec` says how a method is computed (``compute(ctx)`` returns its result
record), which shared per-sample tables it reads (``tables``; see
:mod:`sparsebound.methods.context`), which other methods it needs first (``requires``:
computed even when not asked for, their results dropped afterwards; ``after``: computed
first only when they are asked for too), its input checks (``check``, run before any work)
and where its compute time is recorded (``timing``).  :func:`plan` turns the methods asked
for into the order they are computed: requirements first, otherwise the registry's order.

Adding a method
---------------
1. Write ``compute(ctx: CertifyContext) -> result`` in a module of this package (or reuse
   one): read ``ctx.inputs``, ``ctx.options``, the tables you declare (``ctx.table(name)``),
   and ``ctx.results[...]`` / ``ctx.state[...]`` of the methods you require; return a record
   with ``certificate``, ``unclipped``, ``vacuous`` and ``to_dict()`` (e.g.
   :class:`~sparsebound.records.MethodCertificate`).  A new option goes into
   :class:`~sparsebound.methods.context.CertifyOptions` and :func:`sparsebound.certify`'s
   signature (validated in ``certificate._check_certify_options``).
2. Add one :class:`MethodSpec` to :data:`METHODS` at the place its result should appear.
   ``listed=False`` keeps it out of ``ALL_METHODS`` (the CLI's default list) while
   ``certify`` still accepts it.  ``requires`` may be a function of the options (e.g. a
   method that starts from ``sparse``'s posterior only when no posterior is given).
3. Prove the bound in docs/theory.md and map it in its section 11; test it (a
   brute-force or Monte-Carlo check, and validity: never below the held-out error's lower
   confidence bound).

Example (a stochastic reference that starts from ``sparse``'s optimum)::

    MethodSpec("pbb", certify_pbb, family="stochastic", tables=(),
               requires=lambda o: ("sparse",) if o.posterior_std is None else (),
               timing="pbb", listed=False)

A new kind of layer (``Conv2d``, pooling) is not a method: it is a
:class:`~sparsebound.operators.LinearOperator`.

Source: THEORY.md sections 4 and 6; docs/architecture.md ("Inside certify").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .analytic import DENSE_TABLES, SPARSE_TABLES, UNIFORM_TABLES, certify_dense, certify_sparse, certify_uniform_sparse
from .baselines import bartlett2017, check_radius, check_test_data, neyshabur2018, neyshabur2018_init, test_set
from .context import TABLES, CertifyContext, CertifyInputs, CertifyOptions
from .sampling import SPARSE_MC_TABLES, certify_sparse_mc
from .stochastic import certify_pbb, pbb_requires

__all__ = ["METHODS", "TABLES", "CertifyContext", "CertifyInputs", "CertifyOptions", "MethodSpec", "names", "plan"]


@dataclass(frozen=True)
class MethodSpec:
    """One method of :func:`sparsebound.certify`.

    Attributes:
        name: the method's name (``methods=[...]``, ``--methods``, ``Certificate.results`` key).
        compute: ``compute(ctx) -> result``.
        family: ``analytic``, ``monte-carlo``, ``baseline``, ``held-out``, ``stochastic`` (for grouping only).
        tables: the shared tables it reads (:data:`~sparsebound.methods.context.TABLES`).
        requires: methods whose results or state it reads (tuple, or a function of the
            :class:`~sparsebound.methods.context.CertifyOptions` giving one).
        after: methods computed before it when they are asked for too (their results feed
            its search, e.g. the starts of the rescaling search).
        timing: key of ``Certificate.timings`` its compute time is added to (None: it records
            its own).
        check: ``check(inputs, options)`` raising ConfigError before any work.
        listed: part of ``ALL_METHODS`` (the CLI's default list).
        summary: one line for help texts.
    """

    name: str
    compute: Callable[[CertifyContext], Any]
    family: str
    tables: tuple[str, ...] = ()
    requires: tuple[str, ...] | Callable[[CertifyOptions], tuple[str, ...]] = ()
    after: tuple[str, ...] = ()
    timing: str | None = None
    check: Callable[[CertifyInputs, CertifyOptions], None] | None = None
    listed: bool = True
    summary: str = ""

    def required(self, options: CertifyOptions | None) -> tuple[str, ...]:
        """The methods it requires (all that it may require when ``options`` is None)."""
        if callable(self.requires):
            return self.requires(options) if options is not None else ()
        return self.requires


#: Every method, in the order results are listed (and computed, requirements aside).
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("sparse", certify_sparse, "analytic", SPARSE_TABLES, requires=("uniform-sparse",),
               after=("dense",), summary="per-sample sets and exact reduced norms (THEORY.md 4.2, 5.1)"),
    MethodSpec("uniform-sparse", certify_uniform_sparse, "analytic", UNIFORM_TABLES, after=("dense",),
               summary="per-sample sets, uniform reduced-norm bounds (THEORY.md 5.2)"),
    MethodSpec("dense", certify_dense, "analytic", DENSE_TABLES,
               summary="s = 0 everywhere: the norm-based bound in the same machinery"),
    MethodSpec("sparse-mc", certify_sparse_mc, "monte-carlo", SPARSE_MC_TABLES, requires=("sparse",),
               timing="sparse_mc", summary="sparse with a Monte-Carlo training side (THEORY.md 4.5)"),
    MethodSpec("neyshabur2018", neyshabur2018, "baseline", timing="baselines", check=check_radius,
               summary="Neyshabur et al. 2018, distances from the origin (THEORY.md 6)"),
    MethodSpec("neyshabur2018-init", neyshabur2018_init, "baseline", timing="baselines", check=check_radius,
               summary="Neyshabur et al. 2018, distances from the initialisation"),
    MethodSpec("bartlett2017", bartlett2017, "baseline", timing="baselines",
               summary="Bartlett et al. 2017, spectrally normalised margins"),
    MethodSpec("test-set", test_set, "held-out", timing="baselines", check=check_test_data,
               summary="binomial upper confidence bound of the held-out error"),
    MethodSpec("pbb", certify_pbb, "stochastic", requires=pbb_requires, timing="pbb", listed=False,
               summary="PAC-Bayes bound of the randomised (Gibbs) predictor, not f_W (THEORY.md 4.7)"),
)}


def names(*, listed_only: bool = False, families: Sequence[str] | None = None) -> tuple[str, ...]:
    """Method names in registry order (only listed ones / only these families when asked)."""
    return tuple(n for n, s in METHODS.items()
                 if (s.listed or not listed_only) and (families is None or s.family in families))


def plan(methods: Sequence[str], options: CertifyOptions | None = None) -> list[MethodSpec]:
    """The methods to compute for ``methods``, in order.

    Every method ``methods`` names, plus what they require (recursively); ordered so that a
    method comes after what it requires and after the methods in its ``after`` that are
    planned, ties broken by the registry's order.

    Raises:
        KeyError: an unknown method (``certify`` validates names before planning).
        RuntimeError: a cycle in ``requires``/``after``.
    """
    todo = [METHODS[n].name for n in methods]
    planned: set[str] = set()
    while todo:
        n = todo.pop()
        if n not in planned:
            planned.add(n)
            todo.extend(METHODS[n].required(options))
    order: list[MethodSpec] = []
    done: set[str] = set()
    while len(order) < len(planned):
        for n, spec in METHODS.items():
            if n in planned and n not in done:
                before = set(spec.required(options)) | (set(spec.after) & planned)
                if before <= done:
                    order.append(spec)
                    done.add(n)
                    break
        else:
            raise RuntimeError(f"the methods {sorted(planned - done)} require each other in a cycle")
    return order
