"""Methods as data (issue 14): the registry's order and dependencies, a new method as one entry, the
shared tables built only when declared, and the linear-operator seam of the dense layers."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from sparsebound import certify
from sparsebound.certificate import ALL_METHODS, BASELINE_METHODS, SPARSE_METHODS
from sparsebound.methods import METHODS, MethodSpec, plan
from sparsebound.methods.context import CertifyContext
from sparsebound.network import ReLUNetwork
from sparsebound.norms import exact_reduced_norms, spectral_norm
from sparsebound.operators import DenseLinear
from sparsebound.rounding import frobenius_sq_distance_upper


def _names(methods: list[str]) -> list[str]:
    return [s.name for s in plan(methods)]


def test_public_method_lists_are_unchanged() -> None:
    assert ALL_METHODS == ("sparse", "uniform-sparse", "dense", "sparse-mc", "neyshabur2018", "neyshabur2018-init",
                           "bartlett2017", "test-set")
    assert SPARSE_METHODS == ("sparse", "uniform-sparse", "dense", "sparse-mc")
    assert BASELINE_METHODS == ("neyshabur2018", "neyshabur2018-init", "bartlett2017", "test-set")


def test_plan_puts_requirements_and_earlier_methods_first() -> None:
    # dense, then uniform-sparse: their optima seed sparse's search (sparse <= uniform-sparse <= dense)
    assert _names(list(ALL_METHODS)) == ["dense", "uniform-sparse", "sparse", "sparse-mc", "neyshabur2018",
                                         "neyshabur2018-init", "bartlett2017", "test-set"]
    assert _names(["sparse-mc"]) == ["uniform-sparse", "sparse", "sparse-mc"]  # required, dropped afterwards
    assert _names(["test-set", "sparse"]) == ["uniform-sparse", "sparse", "test-set"]
    assert _names(["dense", "bartlett2017"]) == ["dense", "bartlett2017"]


def _task() -> dict:
    g = torch.Generator().manual_seed(3)
    ws = [torch.randn(12, 6, generator=g, dtype=torch.float64) / math.sqrt(6),
          torch.randn(3, 12, generator=g, dtype=torch.float64) / math.sqrt(12)]
    net = ReLUNetwork(ws)
    X = torch.randn(64, 6, generator=g, dtype=torch.float64)
    return {"net": net, "prior": ReLUNetwork([w * 0.99 for w in ws]), "X": X, "y": net.forward(X).outputs.argmax(1)}


def test_a_new_method_is_one_registry_entry(monkeypatch) -> None:
    """A toy method requiring ``dense`` and reading the spectral norms: one MethodSpec; only the tables
    the planned methods declare are built; ``dense`` is computed for it and dropped from the results."""
    seen = {}

    def toy(ctx: CertifyContext):
        seen["dense"] = ctx.results["dense"].unclipped
        seen["spectral"] = list(ctx.table("spectral"))
        with pytest.raises(RuntimeError, match="not declared"):
            ctx.table("uniform_norms")
        return ctx.results["dense"]

    monkeypatch.setitem(METHODS, "toy", MethodSpec("toy", toy, "analytic", tables=("spectral",),
                                                   requires=("dense",), timing="toy", listed=False))
    t = _task()
    cert = certify(t["net"], t["X"], t["y"], prior=t["prior"], methods=["toy"], progress=False)
    assert list(cert.results) == ["toy"]
    assert cert.results["toy"].unclipped == seen["dense"]
    assert seen["spectral"] == [spectral_norm(w) for w in t["net"].weights]
    assert "toy" in cert.timings and "uniform_norms" not in cert.timings and "exact_omega" not in cert.timings
    alone = certify(t["net"], t["X"], t["y"], prior=t["prior"], methods=["dense"], progress=False)
    assert alone.results["dense"].unclipped == seen["dense"]


@pytest.mark.parametrize("bias", [False, True])
def test_dense_operator_answers_as_the_augmented_matrix(bias: bool) -> None:
    """Every answer of DenseLinear is the norms/rounding function applied to [W | b] (the bias column
    added to input sets), and apply's bound covers the exact product."""
    g = torch.Generator().manual_seed(1)
    W = torch.randn(7, 5, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64) if bias else None
    op = DenseLinear(W, b)
    A = torch.cat([W, b[:, None]], dim=1) if bias else W
    assert torch.equal(op.augmented, A)
    assert op.noise_shape == tuple(A.shape)
    assert op.columns(torch.tensor([5, 2]).numpy()).tolist() == [5 + bias, 2 + bias]
    assert op.spectral_norm_upper() == spectral_norm(A)
    rows = torch.tensor([[0, 3], [1, 6]])
    cols = torch.tensor([[1, 4, 2], [0, 3, 4]])
    full = torch.cat([cols, torch.full((2, 1), 5)], dim=1) if bias else cols
    assert torch.equal(op.exact_reduced_norms(rows, cols), exact_reduced_norms(A, rows, full))
    for n in range(2):
        exact = torch.linalg.matrix_norm(A[rows[n]][:, full[n]], ord=2)
        assert exact <= op.exact_reduced_norms(rows, cols)[n] <= exact * (1 + 1e-5)
    W0 = W + 0.1
    prior = DenseLinear(W0, b)
    A0 = torch.cat([W0, b[:, None]], dim=1) if bias else W0
    assert op.frobenius_sq_distance_upper(prior, 1.5) == frobenius_sq_distance_upper(A, A0, 1.5)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    z, err = op.apply(x)
    for i in range(4):  # the exact real product, in rational arithmetic
        for r in range(7):
            e = sum(Fraction(float(x[i, c])) * Fraction(float(W[r, c])) for c in range(5))
            e += Fraction(float(b[r])) if b is not None else 0
            assert abs(Fraction(float(z[i, r])) - e) <= Fraction(float(err[i, r]))
    assert bool((op.input_norm_upper(x) >= torch.linalg.vector_norm(
        torch.cat([x, torch.ones(4, 1, dtype=torch.float64)], 1) if bias else x, dim=1)).all())
