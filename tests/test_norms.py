"""Tests for sparsebound.norms: every bound must be >= the exact (brute-force) norm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsebound import norms
from sparsebound.norms import (
    NORM_SAFETY,
    UniformNormTable,
    brute_force_row_norm,
    brute_force_sparse_norm,
    exact_reduced_norms,
    exact_row_norms_restricted,
    spectral_norm,
    uniform_sparse_norms,
)

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def small_matrices(draw) -> np.ndarray:
    """rows, cols in 1..6: negatives, exact zeros, subnormals, duplicate columns,
    a single nonzero column, huge and tiny scales."""
    r = draw(st.integers(1, 6))
    c = draw(st.integers(1, 6))
    elem = st.one_of(
        st.just(0.0),
        st.sampled_from([1.0, -1.0, 2.5, -0.75, 1e-3]),
        st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False),
    )
    W = np.array(draw(st.lists(elem, min_size=r * c, max_size=r * c)), dtype=np.float64)
    W = W.reshape(r, c)
    kind = draw(st.sampled_from(["plain", "plain", "dup", "onecol", "scaled"]))
    if kind == "dup" and c >= 2:
        src = draw(st.integers(0, c - 1))
        dst = draw(st.integers(0, c - 1))
        W[:, dst] = W[:, src]
    elif kind == "onecol":
        keep = draw(st.integers(0, c - 1))
        W[:, np.arange(c) != keep] = 0.0
    elif kind == "scaled":
        W = W * draw(st.sampled_from([1e-300, 1e-160, 1e150, 2.0**-1060]))
    return W


def _t(W: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(W))


# ----- uniform bounds vs brute force ------------------------------------------------
@SETTINGS
@given(small_matrices())
def test_uniform_bounds_dominate_brute_force(W):
    R, C = W.shape
    tab = uniform_sparse_norms(_t(W), range(1, R + 1), range(1, C + 1))
    assert tab.row_sizes == tuple(range(1, R + 1))
    assert tab.col_sizes == tuple(range(1, C + 1))
    assert tab.bound.shape == tab.babel_bound.shape == tab.babel_function.shape == (R, C)
    assert tab.row_bound.shape == (C,)
    for ia, a in enumerate(tab.row_sizes):
        for ib, b in enumerate(tab.col_sizes):
            exact = brute_force_sparse_norm(_t(W), a, b)
            assert tab.bound[ia, ib] >= exact, (a, b)
            assert tab.babel_bound[ia, ib] >= exact, (a, b)
            assert tab.frobenius_bound[ia, ib] >= exact, (a, b)
            assert tab.spectral >= exact
            assert tab.bound_at(a, b) == tab.bound[ia, ib]
    for ib, b in enumerate(tab.col_sizes):
        exact_row = brute_force_row_norm(_t(W), b)
        assert tab.row_bound[ib] >= exact_row
        # the row bound is exact up to the safety factor (normal-range matrices)
        if np.abs(W).max() > 1e-100 or exact_row == 0:
            assert tab.row_bound[ib] <= exact_row * (1 + 3 * NORM_SAFETY) + 1e-300
    # the full-size entry is the spectral norm
    assert tab.bound[-1, -1] <= tab.spectral


@SETTINGS
@given(small_matrices(), st.data())
def test_uniform_bound_monotone_and_unsorted_sizes(W, data):
    R, C = W.shape
    rs = data.draw(st.lists(st.integers(1, R), min_size=1, max_size=8))
    cs = data.draw(st.lists(st.integers(1, C), min_size=1, max_size=8))
    tab = uniform_sparse_norms(_t(W), rs, cs)
    assert tab.row_sizes == tuple(sorted(set(rs)))
    assert tab.col_sizes == tuple(sorted(set(cs)))
    assert np.all(np.diff(tab.bound, axis=0) >= 0)
    assert np.all(np.diff(tab.bound, axis=1) >= 0)
    assert np.all(np.diff(tab.row_bound) >= 0)
    assert np.all(tab.bound <= tab.spectral)
    assert np.all(tab.bound <= tab.babel_bound)
    assert np.all(tab.bound <= tab.frobenius_bound)
    assert np.all(tab.babel_function >= 0)
    # lookups at sizes between grid points use the next larger grid point
    for a in range(1, max(tab.row_sizes) + 1):
        for b in range(1, max(tab.col_sizes) + 1):
            assert tab.bound_at(a, b) >= brute_force_sparse_norm(_t(W), a, b)


def test_babel_exact_for_one_nonzero_column():
    rng = np.random.default_rng(1)
    W = np.zeros((7, 5))
    W[:, 2] = rng.standard_normal(7)
    tab = uniform_sparse_norms(_t(W), range(1, 8), range(1, 6))
    col = np.sort(np.abs(W[:, 2]))[::-1]
    for ia, a in enumerate(tab.row_sizes):
        exact_col = math.sqrt(float(np.sum(col[:a] ** 2)))
        for ib, b in enumerate(tab.col_sizes):
            exact = brute_force_sparse_norm(_t(W), a, b)
            assert exact == pytest.approx(exact_col, rel=1e-14)
            assert exact <= tab.babel_bound[ia, ib] <= exact * (1 + 2 * NORM_SAFETY)
            assert tab.babel_function[ia, ib] == 0.0


def test_babel_function_zero_for_orthogonal_supports():
    W = np.diag([3.0, -1.0, 0.5, 2.0, 7.0])
    tab = uniform_sparse_norms(_t(W), [1, 2, 5], [1, 3, 5])
    assert np.all(tab.babel_function == 0.0)
    # then the babel bound is the largest column norm: exact (7)
    assert np.allclose(tab.babel_bound, 7.0 * (1 + NORM_SAFETY), rtol=1e-12)
    assert np.allclose(tab.bound, 7.0 * (1 + NORM_SAFETY), rtol=1e-12)


def _reference_tables(W: np.ndarray, rs, cs):
    """Straight-from-the-definition T_ij(a), mu and babel bound (no safety)."""
    C = W.shape[1]
    prods = np.abs(W[:, :, None] * W[:, None, :])  # (R, C, C)
    srt = -np.sort(-prods, axis=0)
    babel = np.zeros((len(rs), len(cs)))
    mu = np.zeros((len(rs), len(cs)))
    for ia, a in enumerate(rs):
        T = srt[:a].sum(axis=0)
        for ib, b in enumerate(cs):
            best_b, best_mu = 0.0, 0.0
            for j in range(C):
                off = np.sort(np.delete(T[j], j))[::-1][: b - 1].sum()
                best_mu = max(best_mu, off)
                best_b = max(best_b, T[j, j] + off)
            babel[ia, ib] = math.sqrt(best_b)
            mu[ia, ib] = best_mu
    return babel, mu


@pytest.mark.parametrize("shape", [(30, 25), (9, 40), (40, 3)])
def test_blocked_pair_computation_matches_definition(monkeypatch, shape):
    rng = np.random.default_rng(sum(shape))
    W = rng.standard_normal(shape) * (rng.random(shape) < 0.6)
    R, C = shape
    rs = sorted({1, 2, R // 3 + 1, R - 1, R})
    cs = sorted({1, 2, C // 2 + 1, C})
    ref_babel, ref_mu = _reference_tables(W, rs, cs)
    for block_bytes in (8 * R * 4, 8 * R * 49, norms._PAIR_BLOCK_BYTES):
        monkeypatch.setattr(norms, "_PAIR_BLOCK_BYTES", block_bytes)
        tab = uniform_sparse_norms(_t(W), rs, cs)
        np.testing.assert_allclose(tab.babel_bound / (1 + NORM_SAFETY), ref_babel, rtol=1e-12)
        np.testing.assert_allclose(tab.babel_function / (1 + NORM_SAFETY), ref_mu, rtol=1e-12)
        assert np.all(tab.babel_bound >= ref_babel)
    # a == rows only: the matrix-product path
    tab_full = uniform_sparse_norms(_t(W), [R], cs)
    np.testing.assert_allclose(tab_full.babel_bound[0], tab.babel_bound[-1], rtol=1e-12)


def test_medium_matrix_against_brute_force():
    rng = np.random.default_rng(7)
    W = rng.standard_normal((10, 9))
    W[:, 4] = W[:, 1]
    tab = uniform_sparse_norms(_t(W), [2, 3, 5], [2, 4])
    for ia, a in enumerate(tab.row_sizes):
        for ib, b in enumerate(tab.col_sizes):
            assert tab.bound[ia, ib] >= brute_force_sparse_norm(_t(W), a, b)


def test_uniform_rejects_bad_sizes():
    W = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        uniform_sparse_norms(W, [5], [1])
    with pytest.raises(ValueError):
        uniform_sparse_norms(W, [1], [4])
    with pytest.raises(ValueError):
        uniform_sparse_norms(W, [0], [1])
    with pytest.raises(ValueError):
        uniform_sparse_norms(W, [], [1])
    with pytest.raises(ValueError):
        uniform_sparse_norms(W, [1.5], [1])
    with pytest.raises(ValueError):
        uniform_sparse_norms(W.clone().fill_(math.nan), [1], [1])
    tab = uniform_sparse_norms(W, 2, 3)
    with pytest.raises(ValueError):
        tab.bound_at(3, 1)
    assert tab.bound_at(0, 3) == 0.0


def test_table_is_frozen_and_serialisable():
    import json

    W = torch.randn(5, 4, dtype=torch.float64)
    tab = uniform_sparse_norms(W, [1, 5], [2, 4])
    assert isinstance(tab, UniformNormTable)
    with pytest.raises(ValueError):
        tab.bound[0, 0] = 0.0
    d = json.loads(json.dumps(tab.to_dict()))
    assert d["row_sizes"] == [1, 5]
    assert d["col_sizes"] == [2, 4]
    assert np.allclose(np.array(d["bound"]), tab.bound)
    assert d["norm_safety"] == NORM_SAFETY


def test_uniform_extreme_scales_stay_upper_bounds():
    base = np.array([[1.0, -2.0, 0.0], [0.5, 0.25, 3.0]])
    for scale in (1e-310, 1e-200, 1e200, 1e300):
        W = base * scale
        tab = uniform_sparse_norms(_t(W), [1, 2], [1, 2, 3])
        for ia, a in enumerate(tab.row_sizes):
            for ib, b in enumerate(tab.col_sizes):
                exact = brute_force_sparse_norm(_t(W), a, b)
                assert tab.bound[ia, ib] >= exact > 0
                assert np.isfinite(tab.bound[ia, ib])


# ----- brute force oracles -----------------------------------------------------------
def test_brute_force_refuses_huge_inputs():
    W = torch.zeros(40, 40, dtype=torch.float64)
    with pytest.raises(ValueError):
        brute_force_sparse_norm(W, 20, 20)
    with pytest.raises(ValueError):
        brute_force_row_norm(torch.zeros(2, 40, dtype=torch.float64), 20)


def test_brute_force_known_values():
    W = np.array([[3.0, 0.0], [0.0, 4.0]])
    assert brute_force_sparse_norm(_t(W), 1, 1) == pytest.approx(4.0)
    assert brute_force_sparse_norm(_t(W), 2, 2) == pytest.approx(4.0)
    W = np.ones((3, 3))
    assert brute_force_sparse_norm(_t(W), 2, 2) == pytest.approx(2.0)
    assert brute_force_row_norm(_t(W), 2) == pytest.approx(math.sqrt(2.0))


# ----- spectral norm -------------------------------------------------------------------
@SETTINGS
@given(small_matrices())
def test_spectral_norm_upper_bounds_numpy(W):
    ref = float(np.linalg.norm(W, 2))
    got = spectral_norm(_t(W))
    assert got >= ref
    if ref > 1e-290:
        assert got <= ref * (1 + NORM_SAFETY) * (1 + 1e-12)


def test_spectral_norm_random_and_empty():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((60, 45))
    ref = float(np.linalg.norm(W, 2))
    got = spectral_norm(_t(W))
    assert ref <= got <= ref * (1 + NORM_SAFETY) * (1 + 1e-12)
    assert spectral_norm(torch.zeros(0, 3, dtype=torch.float64)) == 0.0
    assert spectral_norm(torch.zeros(3, 2, dtype=torch.float64)) == 0.0
    assert spectral_norm(torch.ones(2, 2, dtype=torch.float32)) >= 2.0


# ----- per-sample exact norms ---------------------------------------------------------
def _ref_norms(W, ri, ci):
    R, C = W.shape
    out = []
    for n in range(len(ri) if ri is not None else len(ci)):
        rows = np.arange(R) if ri is None else ri[n]
        cols = np.arange(C) if ci is None else ci[n]
        out.append(float(np.linalg.norm(W[np.ix_(rows, cols)], 2)))
    return np.array(out)


@pytest.mark.parametrize(
    ("shape", "a", "b"),
    [((12, 9), 4, 6), ((12, 9), 7, 3), ((20, 30), 10, 10), ((5, 5), 5, 5), ((8, 6), 1, 1)],
)
def test_exact_reduced_norms_match_numpy(shape, a, b):
    rng = np.random.default_rng(a * 100 + b)
    W = rng.standard_normal(shape)
    N = 25
    ri = np.stack([rng.choice(shape[0], a, replace=False) for _ in range(N)])
    ci = np.stack([rng.choice(shape[1], b, replace=False) for _ in range(N)])
    ref = _ref_norms(W, ri, ci)
    for chunk in (None, 1, 7):
        got = exact_reduced_norms(_t(W), torch.from_numpy(ri), torch.from_numpy(ci), chunk=chunk)
        assert got.dtype == torch.float64 and got.shape == (N,)
        got = got.numpy()
        assert np.all(got >= ref)
        np.testing.assert_allclose(got / (1 + NORM_SAFETY), ref, rtol=1e-9, atol=0)


def test_exact_reduced_norms_none_means_all():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((9, 7))
    ri = np.stack([rng.choice(9, 4, replace=False) for _ in range(6)])
    ci = np.stack([rng.choice(7, 3, replace=False) for _ in range(6)])
    got_r = exact_reduced_norms(_t(W), torch.from_numpy(ri), None, device="cpu").numpy()
    ref_r = _ref_norms(W, ri, None)
    assert np.all(got_r >= ref_r)
    np.testing.assert_allclose(got_r / (1 + NORM_SAFETY), ref_r, rtol=1e-9)
    got_c = exact_reduced_norms(_t(W), None, torch.from_numpy(ci)).numpy()
    ref_c = _ref_norms(W, None, ci)
    assert np.all(got_c >= ref_c)
    np.testing.assert_allclose(got_c / (1 + NORM_SAFETY), ref_c, rtol=1e-9)


def test_exact_reduced_norms_edge_cases():
    W = torch.randn(5, 4, dtype=torch.float64)
    empty, two = torch.zeros(3, 0, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64)
    z = exact_reduced_norms(W, empty, two)
    assert torch.equal(z, torch.zeros(3, dtype=torch.float64))
    z = exact_reduced_norms(W, None, torch.zeros(2, 0, dtype=torch.int64))
    assert torch.equal(z, torch.zeros(2, dtype=torch.float64))
    # zero submatrix gives exactly zero
    W0 = torch.zeros(3, 3, dtype=torch.float64)
    W0[0, 0] = 1.0
    got = exact_reduced_norms(W0, torch.tensor([[1, 2], [0, 1]]), torch.tensor([[1, 2], [0, 2]]))
    assert got[0] == 0.0 and got[1] >= 1.0
    with pytest.raises(ValueError):
        exact_reduced_norms(W, None, None)
    with pytest.raises(ValueError):
        exact_reduced_norms(W, torch.tensor([[5]]), None)
    with pytest.raises(ValueError):
        exact_reduced_norms(W, torch.tensor([[0]]), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError):
        exact_reduced_norms(W, torch.tensor([[0.0]]), None)
    with pytest.raises(ValueError):
        exact_reduced_norms(W, torch.tensor([[0]]), None, chunk=0)


@SETTINGS
@given(small_matrices(), st.data())
def test_exact_reduced_norms_hypothesis(W, data):
    R, C = W.shape
    a = data.draw(st.integers(1, R))
    b = data.draw(st.integers(1, C))
    N = 4
    ri = np.array([data.draw(st.permutations(range(R)))[:a] for _ in range(N)], dtype=np.int64)
    ci = np.array([data.draw(st.permutations(range(C)))[:b] for _ in range(N)], dtype=np.int64)
    got = exact_reduced_norms(_t(W), torch.from_numpy(ri), torch.from_numpy(ci)).numpy()
    ref = _ref_norms(W, ri, ci)
    assert np.all(got >= ref)
    big = ref > 1e-290
    np.testing.assert_allclose(got[big] / (1 + NORM_SAFETY), ref[big], rtol=1e-9)


def test_exact_reduced_norms_extreme_scales():
    # a tiny block next to a large one: per-sample scaling keeps it an upper bound
    W = np.diag([1.0, 1e-200, 3e-320, 1e300])
    ri = torch.tensor([[0], [1], [2], [3], [1]])
    ci = torch.tensor([[0], [1], [2], [3], [2]])
    got = exact_reduced_norms(_t(W), ri, ci).numpy()
    ref = np.array([1.0, 1e-200, 3e-320, 1e300, 0.0])
    assert np.all(got >= ref)
    assert got[4] == 0.0
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[:2] / (1 + NORM_SAFETY), ref[:2], rtol=1e-12)


def test_exact_row_norms_restricted_matches_loop():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((8, 11)) * (rng.random((8, 11)) < 0.7)
    mask = rng.random((13, 11)) < 0.5
    got = exact_row_norms_restricted(_t(W), torch.from_numpy(mask))
    assert got.shape == (13, 8) and got.dtype == torch.float64
    ref = np.zeros((13, 8))
    for n in range(13):
        for i in range(8):
            ref[n, i] = math.sqrt(sum(W[i, j] ** 2 for j in range(11) if mask[n, j]))
    got = got.numpy()
    assert np.all(got >= ref)
    np.testing.assert_allclose(got / (1 + NORM_SAFETY), ref, rtol=1e-12, atol=0)


def test_exact_row_norms_restricted_underflow_and_errors():
    W = np.array([[1.0, 1e-300], [0.0, 0.0], [1e-200, 2e-200]])
    mask = np.array([[False, True], [True, True]])
    got = exact_row_norms_restricted(_t(W), torch.from_numpy(mask)).numpy()
    assert got[0, 0] >= 1e-300
    assert got[1, 0] >= math.hypot(1.0, 1e-300)
    assert got[1, 2] >= math.hypot(1e-200, 2e-200)
    assert got[0, 2] >= 2e-200
    with pytest.raises(ValueError):
        exact_row_norms_restricted(_t(W), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError):
        exact_row_norms_restricted(_t(W), torch.ones(2, 2, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(40, 12), (64, 9)])
def test_partitioned_pair_sums_match_definition(shape):
    """Row sizes all at most half the rows: the products are partitioned, only the top part sorted."""
    rng = np.random.default_rng(sum(shape) + 1)
    W = rng.standard_normal(shape) * (rng.random(shape) < 0.7)
    R, C = shape
    rs = [1, 3, R // 4, R // 2]
    cs = [1, 2, C // 2, C]
    ref_babel, ref_mu = _reference_tables(W, rs, cs)
    tab = uniform_sparse_norms(_t(W), rs, cs)
    np.testing.assert_allclose(tab.babel_bound / (1 + NORM_SAFETY), ref_babel, rtol=1e-12)
    np.testing.assert_allclose(tab.babel_function / (1 + NORM_SAFETY), ref_mu, rtol=1e-12)


@pytest.mark.parametrize("kind", ["dense", "sparse-rows", "diagonal", "one-column"])
def test_pruned_tables_equal_full_tables(kind):
    """prune=True skips the babel bound only where it cannot be the minimum: ``bound`` and
    ``row_bound`` are those of the full computation (issue 11, item 17)."""
    rng = np.random.default_rng(11)
    if kind == "dense":
        W = np.abs(rng.standard_normal((30, 20)))
    elif kind == "sparse-rows":
        W = rng.standard_normal((30, 20)) * (rng.random((30, 20)) < 0.08)
    elif kind == "diagonal":
        W = np.diag(rng.standard_normal(20) + 3.0)
    else:
        W = np.zeros((30, 20))
        W[:, 3] = rng.standard_normal(30)
    R, C = W.shape
    rs = sorted({1, 2, R // 4, R // 2, R - 1, R})
    cs = sorted({1, 2, C // 3, C})
    full = uniform_sparse_norms(_t(W), rs, cs)
    pruned = uniform_sparse_norms(_t(W), rs, cs, prune=True, spectral=full.spectral)
    np.testing.assert_allclose(pruned.bound, full.bound, rtol=1e-12)
    np.testing.assert_array_equal(pruned.row_bound, full.row_bound)
    computed = np.isfinite(pruned.babel_bound)
    if pruned.col_sizes[0] == 1:  # b = 1 needs no T(a): always there
        assert computed[:, 0].all()
    # where computed, at least the exact value (the cheaper bound U of the second tier may be kept)
    assert np.all(pruned.babel_bound[computed] >= full.babel_bound[computed] * (1 - 1e-12))
    # wherever the babel bound is the strict minimum of the full computation, it was computed
    strict = full.babel_bound < np.minimum(full.frobenius_bound, full.spectral)
    assert np.all(computed[strict])
    if kind in ("diagonal", "one-column"):  # orthogonal supports: the babel bound is exact somewhere
        assert computed.any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_second_tier_babel_bound_is_valid_when_exact_tables_are_skipped(monkeypatch, seed):
    """Above the product limit the exact T(a) is never formed: the bound from
    U_ij = L_ij + w_j(a) s_i(a) must still be an upper bound (brute force, exact reference)."""
    monkeypatch.setattr(norms, "EXACT_BABEL_MAX_PRODUCTS", 0)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((9, 7)) * (rng.random((9, 7)) < 0.35)  # sparse: the babel bound matters
    rs, cs = [1, 2, 3, 4], [2, 3, 7]
    ref_babel, ref_mu = _reference_tables(W, rs, cs)
    tab = uniform_sparse_norms(_t(W), rs, cs, prune=True)
    done = np.isfinite(tab.babel_bound)
    assert np.all(tab.babel_bound[done] >= ref_babel[done])
    assert np.all(tab.babel_function[done] >= ref_mu[done] * (1 - 1e-12))
    for ia, a in enumerate(tab.row_sizes):
        for ib, b in enumerate(tab.col_sizes):
            assert tab.bound[ia, ib] >= brute_force_sparse_norm(_t(W), a, b)
