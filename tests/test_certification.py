"""Perturbation lemmas and the per-sample certification (THEORY.md 4.1, 4.2, 7.3).

For random small networks (with and without biases, zero inputs included) and
certified samples, many Gaussian perturbations U are drawn.  Whenever the noise
events of section 3 hold for a draw, the claims of the proofs are checked on the
actual perturbed network: deviations never exceed D_k (resp. D^V_k), units of I_k
stay off, W+U passes L_mid with the same sets, the prediction does not change.
The frequency of draws where the events fail stays within the budgets.  An
independent brute-force oracle (numpy SVDs of every submatrix) builds the tables.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from sparsebound.certification import (
    CERT_SLACK,
    PerSampleInputs,
    greedy_certify,
    max_certifiable_sigma,
    mid_loss_passes,
)
from sparsebound.network import ReLUNetwork
from sparsebound.noise import NoiseConstants
from sparsebound.sparsity import SparsityGrid, SparsityTable

SQ2 = math.sqrt(2.0)


def _net(widths, bias, seed, scale=1.6):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) * scale / math.sqrt(widths[k])
          for k in range(len(widths) - 1)]
    bs = [torch.randn(widths[k + 1], generator=g, dtype=torch.float64) * 0.3 for k in range(len(widths) - 1)] \
        if bias else None
    return ReLUNetwork(ws, bs)


def _data(net, n, seed, zero=True):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, net.input_dim, generator=g, dtype=torch.float64)
    if zero:
        X[0] = 0.0
    out = net.forward(X).outputs
    y = out.argmax(dim=1)  # labels = the network's own predictions: margins >= 0
    return X, y


def _aug_cols(net, k, J_prev):
    """Column index set of layer k: J_{k-1} plus the bias column."""
    if net.has_bias:
        return np.concatenate([J_prev, [net.widths[k - 1]]])
    return J_prev


def _brute_inputs(net, X, y, grid, consts):
    """Every table by brute force (numpy SVD per submatrix), independent of sparsebound.norms."""
    acts = net.forward(X, y)
    table = SparsityTable.build(acts, grid)
    K = net.depth
    N = X.shape[0]
    beta, omega = [], []
    for k in range(1, K + 1):
        W = net.augmented_weight(k).numpy()
        T = len(grid.active[k - 1]) if k < K else 1
        Tp = len(grid.active[k - 2]) if k >= 2 else 1
        b = np.zeros((N, T, Tp))
        o = np.zeros((N, T, Tp))
        for n in range(N):
            for t in range(T):
                if k < K:
                    order = table.order[k - 1][n].numpy()
                    s = int(grid.sparsity(k)[t])
                    I, J = order[:s], order[s:]
                else:
                    I, J = np.array([], dtype=int), np.arange(net.widths[K])
                for tp in range(Tp):
                    if k >= 2:
                        op = table.order[k - 2][n].numpy()
                        sp = int(grid.sparsity(k - 1)[tp])
                        Jp = _aug_cols(net, k, op[sp:])
                    else:
                        Jp = np.arange(W.shape[1])
                    sub = W[np.ix_(J, Jp)]
                    b[n, t, tp] = np.linalg.norm(sub, 2) * (1 + 1e-6) if sub.size else 0.0
                    if I.size:
                        o[n, t, tp] = np.linalg.norm(W[np.ix_(I, Jp)], axis=1).max() * (1 + 1e-6)
        beta.append(torch.as_tensor(b))
        if k < K:
            omega.append(torch.as_tensor(o))
    inp = PerSampleInputs(margins_lower=acts.margins_lower, norms=acts.hidden_norms, radii=table.radii,
                          omega=tuple(omega), beta=tuple(beta), constants=consts)
    return inp, table, acts


def _forward_all(Ws, Bs, x):
    """Batched forward of D networks on one input: Ws[k] (D, d_k, d_{k-1}); returns z list."""
    zs = []
    h = x.expand(Ws[0].shape[0], -1)
    for k, Wk in enumerate(Ws):
        z = torch.einsum("dij,dj->di", Wk, h)
        if Bs is not None:
            z = z + Bs[k]
        zs.append(z)
        h = torch.relu(z)
    return zs


def _margin(out, yv):
    o = out.clone()
    true = o[:, yv].clone()
    o[:, yv] = -math.inf
    return true - o.max(dim=1).values


CASES = [((5, 12, 10, 3), False, 0), ((5, 12, 10, 3), True, 1), ((4, 9, 8, 7, 3), True, 2)]


@pytest.mark.parametrize("widths,bias,seed", CASES)
def test_perturbation_lemmas_monte_carlo(widths, bias, seed):
    eta1, eta2 = 0.3, 0.3
    net = _net(widths, bias, seed)
    X, y = _data(net, 14, seed + 10)
    grid = SparsityGrid.from_fractions(net.widths, [1.0, 0.75, 0.5, 0.3])
    consts = NoiseConstants.build(net.widths, grid.active, has_bias=bias, eta1=eta1, eta2=eta2)
    inp, table, acts = _brute_inputs(net, X, y, grid, consts)
    K = net.depth
    prof = (1.0,) * K
    star = max_certifiable_sigma(inp, prof)
    cert = torch.nonzero(star.sigma_star > 0).flatten()
    assert cert.numel() >= 5, "too few certified samples for a meaningful test"
    n_draws = 600
    gen = torch.Generator().manual_seed(seed + 99)
    tr_fail = te_fail = total = 0
    n_checked_tr = n_checked_te = 0
    n_sparse_used = 0
    for n in cert.tolist():
        sig = 0.6 * float(star.sigma_star[n])
        sub = inp.subset(torch.tensor([n]))
        ok, lv, _ = greedy_certify(sub, torch.tensor([sig]), prof)
        assert bool(ok[0])
        levels = lv[0].tolist()
        n_sparse_used += sum(1 for t in levels if t > 0)
        x = X[n]
        yv = int(y[n])
        # ---- W's witness sets and the forward/reverse recursions (independent re-implementation)
        sets = []
        for k in range(1, K):
            s = int(grid.sparsity(k)[levels[k - 1]])
            order = table.order[k - 1][n].numpy()
            sets.append((order[:s], order[s:]))
        sets.append((np.array([], dtype=int), np.arange(net.widths[K])))
        D = [0.0]
        E = [0.0]
        Lk, Rk = [], []
        for k in range(1, K + 1):
            lc = consts.layers[k - 1]
            t = levels[k - 1] if k < K else 0
            tp = levels[k - 2] if k >= 2 else 0
            nk = float(acts.hidden_norms[n, k - 1])
            b = float(inp.beta[k - 1][n, t, tp])
            if k < K:
                o = float(inp.omega[k - 1][n, t, tp])
                Lk.append(o * D[-1] + sig * lc.h[t] * (nk + D[-1]))
                Rk.append((o + sig * lc.muinf[t, tp]) * E[-1] + sig * lc.hp * (nk + D[-1] + E[-1]))
            Dn = b * D[-1] + sig * lc.g[t] * (nk + D[-1])
            En = (b + sig * lc.mu[t, tp]) * E[-1] + sig * lc.gp[t] * (nk + D[-1] + E[-1])
            D.append(Dn)
            E.append(En)
        for k in range(1, K):
            if levels[k - 1] > 0:
                assert float(inp.radii[k - 1][n, levels[k - 1]]) >= Lk[k - 1] + Rk[k - 1]
        assert float(acts.margins_lower[n]) > SQ2 * (D[K] + E[K])
        # ---- draws
        Us = [torch.randn(n_draws, *net.augmented_weight(k).shape, generator=gen, dtype=torch.float64) * sig
              for k in range(1, K + 1)]
        Vw = [net.weights[k][None] + Us[k][:, :, : net.widths[k]] for k in range(K)]
        Vb = [net.biases[k][None] + Us[k][:, :, -1] for k in range(K)] if bias else None
        zV = _forward_all(Vw, Vb, x)
        zW = _forward_all([w[None] for w in net.weights], [b[None] for b in net.biases] if bias else None, x)
        xW = [x[None]] + [torch.relu(z) for z in zW[:-1]]
        xV = [x[None].expand(n_draws, -1)] + [torch.relu(z) for z in zV[:-1]]

        def aug(v):
            return torch.cat([v, torch.ones(v.shape[0], 1, dtype=v.dtype)], 1) if bias else v

        # training-side events at W's (fixed) sets, with v = V's own activation
        ev_tr = torch.ones(n_draws, dtype=torch.bool)
        # test-side events with v = W's activation (deterministic)
        ev_te = torch.ones(n_draws, dtype=torch.bool)
        for k in range(1, K + 1):
            lc = consts.layers[k - 1]
            t = levels[k - 1] if k < K else 0
            tp = levels[k - 2] if k >= 2 else 0
            I, J = sets[k - 1]
            Jp = _aug_cols(net, k, sets[k - 2][1]) if k >= 2 else np.arange(net.augmented_weight(k).shape[1])
            vV = aug(xV[k - 1])
            UvV = torch.einsum("dij,dj->di", Us[k - 1], vV)
            nvV = vV.norm(dim=1)
            ev_tr &= UvV[:, J].norm(dim=1) <= sig * lc.g[t] * nvV
            ev_tr &= torch.linalg.matrix_norm(Us[k - 1][:, J][:, :, Jp], ord=2) <= sig * lc.mu[t, tp]
            if I.size:
                ev_tr &= UvV[:, I].abs().max(dim=1).values <= sig * lc.h[t] * nvV
                ev_tr &= Us[k - 1][:, I][:, :, Jp].norm(dim=2).max(dim=1).values <= sig * lc.muinf[t, tp]
            vW = aug(xW[k - 1])[0]
            UvW = torch.einsum("dij,j->di", Us[k - 1], vW)
            nvW = float(vW.norm())
            top = torch.sort(UvW**2, dim=1, descending=True).values.cumsum(dim=1).sqrt()
            for tt, a in enumerate(lc.active):
                ev_te &= top[:, int(a) - 1] <= sig * lc.gp[tt] * nvW
            if k < K:
                ev_te &= UvW.abs().max(dim=1).values <= sig * lc.hp * nvW
        total += n_draws
        tr_fail += int((~ev_tr).sum())
        te_fail += int((~ev_te).sum())
        # ---- Lemma 4.3 (training side) on the draws where its events hold
        for k in range(1, K + 1):
            dev = (torch.relu(zV[k - 1]) - torch.relu(zW[k - 1])).norm(dim=1) if k < K else \
                (zV[k - 1] - zW[k - 1]).norm(dim=1)
            assert torch.all(dev[ev_tr] <= D[k] * (1 + 1e-9) + 1e-12), f"forward deviation exceeds D_{k}"
            I, _ = sets[k - 1]
            if k < K and I.size:
                assert torch.all(zV[k - 1][ev_tr][:, I] <= 0), "a unit of I_k switched on"
        # V passes L_mid with the same sets (V's exact quantities at those sets)
        radii_v = torch.zeros(n_draws, K - 1, dtype=torch.float64)
        beta_v = torch.zeros(n_draws, K, dtype=torch.float64)
        omega_v = torch.zeros(n_draws, K - 1, dtype=torch.float64)
        norms_v = torch.zeros(n_draws, K, dtype=torch.float64)
        for k in range(1, K + 1):
            I, J = sets[k - 1]
            Jp = _aug_cols(net, k, sets[k - 2][1]) if k >= 2 else np.arange(net.augmented_weight(k).shape[1])
            Vaug = torch.cat([Vw[k - 1], Vb[k - 1][:, :, None]], 2) if bias else Vw[k - 1]
            beta_v[:, k - 1] = torch.linalg.matrix_norm(Vaug[:, J][:, :, Jp], ord=2) * (1 + 1e-9)
            norms_v[:, k - 1] = aug(xV[k - 1]).norm(dim=1) * (1 + 1e-12)
            if k < K:
                radii_v[:, k - 1] = -zV[k - 1][:, I].max(dim=1).values if I.size else math.inf
                omega_v[:, k - 1] = Vaug[:, I][:, :, Jp].norm(dim=2).max(dim=1).values * (1 + 1e-9) if I.size \
                    else 0.0
        M_V = _margin(zV[-1], yv)
        lv_t = torch.tensor(levels, dtype=torch.int64)[None].expand(n_draws, -1)
        passes = mid_loss_passes(M_V, norms_v, radii_v, beta_v, omega_v, lv_t, (sig,) * K, consts)
        assert torch.all(passes[ev_tr]), "W+U fails L_mid although the training-side events hold"
        assert torch.all(zV[-1][ev_tr].argmax(dim=1) == yv), "prediction changed"
        n_checked_tr += int(ev_tr.sum())
        # ---- Lemma 4.1 (test side): V = W + U judged with V's OWN witness at the same sizes
        for d in range(n_draws):
            if not bool(ev_te[d]):
                continue
            setsV = []
            for k in range(1, K):
                s = int(grid.sparsity(k)[levels[k - 1]])
                o = torch.sort(zV[k - 1][d], stable=True).indices.numpy()
                setsV.append((o[:s], o[s:]))
            setsV.append((np.array([], dtype=int), np.arange(net.widths[K])))
            r_, b_, o_, n_ = (torch.zeros(1, K - 1, dtype=torch.float64), torch.zeros(1, K, dtype=torch.float64),
                              torch.zeros(1, K - 1, dtype=torch.float64), torch.zeros(1, K, dtype=torch.float64))
            for k in range(1, K + 1):
                I, J = setsV[k - 1]
                Jp = _aug_cols(net, k, setsV[k - 2][1]) if k >= 2 else np.arange(net.augmented_weight(k).shape[1])
                Vaug = (torch.cat([Vw[k - 1][d], Vb[k - 1][d][:, None]], 1) if bias else Vw[k - 1][d]).numpy()
                b_[0, k - 1] = np.linalg.norm(Vaug[np.ix_(J, Jp)], 2) * (1 + 1e-9)
                n_[0, k - 1] = float(aug(xV[k - 1][d : d + 1]).norm()) * (1 + 1e-12)
                if k < K:
                    r_[0, k - 1] = -float(zV[k - 1][d, I].max()) if I.size else math.inf
                    o_[0, k - 1] = np.linalg.norm(Vaug[np.ix_(I, Jp)], axis=1).max() * (1 + 1e-9) if I.size else 0.0
            ok_v = mid_loss_passes(_margin(zV[-1][d : d + 1], yv), n_, r_, b_, o_, lv_t[:1], (sig,) * K, consts)
            if not bool(ok_v[0]):
                continue
            n_checked_te += 1
            DV = 0.0
            for k in range(1, K + 1):
                lc = consts.layers[k - 1]
                t = levels[k - 1] if k < K else 0
                DV = float(b_[0, k - 1]) * DV + sig * lc.gp[t] * (float(n_[0, k - 1]) + DV)
                zw = zW[k - 1][0]
                dev = (torch.relu(zw) - torch.relu(zV[k - 1][d])).norm() if k < K else (zw - zV[k - 1][d]).norm()
                assert float(dev) <= DV * (1 + 1e-9) + 1e-12
                I, _ = setsV[k - 1]
                if k < K and I.size:
                    assert torch.all(zw[I] <= 0), "a unit of V's I_k is on in W"
            assert float(_margin(zW[-1], yv)[0]) > 0
    assert n_sparse_used > 0, "the test never exercised a sparse level"
    assert n_checked_tr > 0.5 * total and n_checked_te > 50
    slack = 4 * math.sqrt(0.3 * 0.7 / total)
    assert tr_fail / total <= eta2 + slack
    assert te_fail / total <= eta1 + slack


def test_rho_must_be_measured_on_the_sets():
    """Arbitrary sets with rho read as V's own s-th smallest entry would pass L_mid
    although units of those sets are on: the implementation measures rho on the sets."""
    net = _net((5, 12, 10, 3), False, 7)
    X, y = _data(net, 10, 3, zero=False)
    grid = SparsityGrid.from_fractions(net.widths, [1.0, 0.75, 0.5])
    consts = NoiseConstants.build(net.widths, grid.active, eta1=0.3, eta2=0.3)
    acts = net.forward(X, y)
    K = net.depth
    found = False
    for n in range(X.shape[0]):
        z = [acts.pre_activations[k][n] for k in range(K - 1)]
        lv = torch.tensor([[1, 0]])
        s = int(grid.sparsity(1)[1])
        wrong_rho = -float(torch.sort(z[0]).values[s - 1])
        I_bad = torch.argsort(z[0], descending=True)[:s]  # the most ACTIVE units
        rho_at_sets = -float(z[0][I_bad].max())
        if wrong_rho <= 0 or rho_at_sets >= 0:
            continue
        found = True
        norms = acts.hidden_norms[n : n + 1]
        beta = torch.full((1, K), 10.0, dtype=torch.float64)
        omega = torch.full((1, K - 1), 10.0, dtype=torch.float64)
        tiny = (1e-9,) * K
        ok_right = mid_loss_passes(acts.margins[n : n + 1], norms, torch.tensor([[rho_at_sets, 0.0]]), beta, omega,
                                  lv, tiny, consts)
        ok_wrong = mid_loss_passes(acts.margins[n : n + 1], norms, torch.tensor([[wrong_rho, 0.0]]), beta, omega,
                                  lv, tiny, consts)
        assert not bool(ok_right[0])  # rejected when measured on the sets
        assert bool(ok_wrong[0])  # the wrong reading would accept ...
        assert bool((z[0][I_bad] > 0).any())  # ... although units of I are on: Lemma 4.1 would fail
    assert found


@pytest.mark.parametrize("bias", [False, True])
def test_greedy_equals_brute_force_over_all_sparsity_vectors(bias):
    net = _net((4, 9, 8, 3), bias, 11)
    X, y = _data(net, 12, 5)
    grid = SparsityGrid.from_fractions(net.widths, [1.0, 0.8, 0.6, 0.4, 0.2])
    consts = NoiseConstants.build(net.widths, grid.active, has_bias=bias)
    inp, _, _ = _brute_inputs(net, X, y, grid, consts)
    N = X.shape[0]
    T1, T2 = len(grid.active[0]), len(grid.active[1])
    star = max_certifiable_sigma(inp, (1.0, 1.0, 1.0))
    for factor in (0.3, 0.7, 0.95, 1.2, 2.0):
        sig = star.sigma_star.clamp(min=1e-6) * factor
        ok, lv, _ = greedy_certify(inp, sig, (1.0, 1.0, 1.0))
        any_ok = torch.zeros(N, dtype=torch.bool)
        for t1, t2 in itertools.product(range(T1), range(T2)):
            fixed = torch.tensor([[t1, t2]]).expand(N, -1)
            okf, _, _ = greedy_certify(inp, sig, (1.0, 1.0, 1.0), fixed_levels=fixed)
            any_ok |= okf
        assert torch.equal(ok, any_ok)
        # greedy levels certify on their own
        okg, _, _ = greedy_certify(inp, sig, (1.0, 1.0, 1.0), fixed_levels=lv)
        assert torch.equal(okg, ok)


def test_sigma_star_interval_and_grid_search_consistent():
    net = _net((5, 12, 10, 3), True, 4)
    X, y = _data(net, 20, 6)
    grid = SparsityGrid.from_fractions(net.widths, [1.0, 0.75, 0.5, 0.25])
    consts = NoiseConstants.build(net.widths, grid.active, has_bias=True)
    inp, _, _ = _brute_inputs(net, X, y, grid, consts)
    prof = (1.0, 0.5, 2.0)
    star = max_certifiable_sigma(inp, prof)
    s = star.sigma_star
    pos = s > 0
    assert pos.sum() >= 5
    ok_lo, _, _ = greedy_certify(inp, torch.where(pos, s, torch.ones_like(s)), prof)
    assert torch.all(ok_lo[pos])  # the reported end is certified
    ok_hi, _, _ = greedy_certify(inp, torch.where(pos, s * (1 + 1e-6), torch.ones_like(s)), prof)
    assert not torch.any(ok_hi[pos & (s < 10.0)])  # and it is the end (bisection precision)
    ok_half, _, _ = greedy_certify(inp, s * 0.5, prof)
    assert torch.all(ok_half[pos])  # interval
    sig_grid = 1e-2 * 2.0 ** (np.arange(-160, 41) / 8)
    gs = max_certifiable_sigma(inp, prof, grid_sigmas=sig_grid)
    for j in range(0, len(sig_grid), 7):
        a = gs.certified_at(float(sig_grid[j]))
        b = star.certified_at(float(sig_grid[j]))
        assert torch.equal(a, b | (a & ~b))  # grid-certified => check passes at sigma_j/(1-slack)
        ok_chk, _, _ = greedy_certify(inp, torch.full_like(s, sig_grid[j] / (1 - CERT_SLACK)), prof)
        assert torch.equal(a, ok_chk)
    # samples with M <= 0 are never certified
    inp_neg = PerSampleInputs(margins_lower=-inp.margins_lower.abs(), norms=inp.norms, radii=inp.radii,
                              omega=inp.omega, beta=inp.beta, constants=consts)
    assert torch.all(max_certifiable_sigma(inp_neg, prof).sigma_star == 0)
