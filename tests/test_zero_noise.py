"""Zero-noise layers (profile entries c_k = 0; docs/theory.md section 12) and the per-sample
decomposition of sigma* (certification.binding_analysis, noise_contributions)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sparsebound import certify
from sparsebound.certificate import exact_omega_tables, uniform_norm_tables
from sparsebound.certification import (
    BINDING_KINDS,
    PerSampleInputs,
    binding_analysis,
    certificate_parts,
    greedy_certify,
    max_certifiable_sigma,
    mid_loss_passes,
    noise_contributions,
)
from sparsebound.data import load_dataset
from sparsebound.errors import ConfigError
from sparsebound.network import ReLUNetwork
from sparsebound.noise import NoiseConstants
from sparsebound.pacbayes import SigmaGrid, profile_kl, profile_kl_grid
from sparsebound.sparsity import SparsityGrid, SparsityTable
from sparsebound.training import TrainConfig, init_network, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_profile_kl_semantics():
    d = [4.0, 0.0, 9.0]
    assert float(profile_kl(d, 0.5, (1.0, 0.0, 3.0))) == pytest.approx(4 / (2 * 0.25) + 9 / (2 * 0.25 * 9))
    assert float(profile_kl(d, 0.5, (0.0, 1.0, 1.0))) == math.inf
    sig = np.array([0.1, 1.0])
    assert np.allclose(profile_kl_grid([1.0, 0.0], sig, (1.0, 0.0)), 1.0 / (2 * sig**2))
    SigmaGrid(profiles=((0.0, 0.0, 1.0),))
    with pytest.raises(ConfigError, match="at least one of them positive"):
        SigmaGrid(profiles=((0.0, 0.0, 0.0),))
    with pytest.raises(ConfigError, match=">= 0"):
        SigmaGrid(profiles=((1.0, -1.0, 1.0),))


def _net(widths, seed, bias=False, scale=1.6):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) * scale / math.sqrt(widths[k])
          for k in range(len(widths) - 1)]
    bs = [torch.randn(widths[k + 1], generator=g, dtype=torch.float64) * 0.3 for k in range(len(widths) - 1)] \
        if bias else None
    return ReLUNetwork(ws, bs)


def _inputs(net, X, y, fractions, eta1=1e-4, eta2=1e-3):
    acts = net.forward(X, y)
    grid = SparsityGrid.from_fractions(net.widths, fractions)
    table = SparsityTable.build(acts, grid)
    consts = NoiseConstants.build(net.widths, grid.active, has_bias=net.has_bias, eta1=eta1, eta2=eta2)
    norms = uniform_norm_tables(net, grid)
    omega = exact_omega_tables(net, table)
    inp = PerSampleInputs(margins_lower=acts.margins_lower, norms=acts.hidden_norms, radii=table.radii,
                          omega=tuple(omega), beta=tuple(norms.uniform_beta), constants=consts)
    return inp, table, acts, grid, consts


@pytest.mark.parametrize("profile,bias", [((0.0, 0.0, 1.0), False), ((0.0, 1.0, 1.0), True),
                                          ((1.0, 0.0, 1.0), False)])
def test_zero_noise_layers_perturbation_monte_carlo(profile, bias):
    """Layers with c_k = 0 get U_k = 0: their injections vanish (D, E, L, R get nothing from
    them), and on the draws where the noisy layers' training-side events hold, W + U moves by at
    most D_k, keeps the units of I_k off, keeps its prediction and passes L_mid with W's sets."""
    eta1, eta2 = 0.3, 0.3
    widths = (5, 12, 10, 3)
    net = _net(widths, 4, bias=bias)
    g = torch.Generator().manual_seed(5)
    X = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = net.forward(X).outputs.argmax(1)
    inp, table, acts, grid, consts = _inputs(net, X, y, [1.0, 0.75, 0.5], eta1, eta2)
    K = net.depth
    star = max_certifiable_sigma(inp, profile)
    full = max_certifiable_sigma(inp, (1.0,) * K)
    pos = star.sigma_star > 0
    assert int(pos.sum()) >= 5
    # removing noise from layers can only enlarge the certified noise level of the others
    assert bool((star.sigma_star >= full.sigma_star * (1 - 1e-9)).all())
    n_draws, fails, total = 400, 0, 0
    for n in torch.nonzero(pos).flatten().tolist()[:8]:
        sig = 0.7 * float(star.sigma_star[n])
        sub = inp.subset(torch.tensor([n]))
        ok, lv, parts = greedy_certify(sub, torch.tensor([sig]), profile)
        assert bool(ok[0])
        contrib, tot = noise_contributions(sub, torch.tensor([sig]), profile, lv)
        for k in range(K):
            if profile[k] == 0:
                assert float(contrib[0, k]) == 0.0
        assert float(tot[0]) == pytest.approx(float(parts["D"][0] + parts["E"][0]), rel=1e-12)
        levels = lv[0].tolist()
        sets = []
        for k in range(1, K):
            s = int(grid.sparsity(k)[levels[k - 1]])
            o = table.order[k - 1][n].numpy()
            sets.append((o[:s], o[s:]))
        # forward recursion (training side) for the deviations
        D = [0.0]
        for k in range(1, K + 1):
            lc = consts.layers[k - 1]
            t = levels[k - 1] if k < K else 0
            tp = levels[k - 2] if k >= 2 else 0
            b = float(inp.beta[k - 1][n if inp.beta[k - 1].shape[0] > 1 else 0, t, tp])
            D.append(b * D[-1] + sig * profile[k - 1] * lc.g[t] * (float(acts.hidden_norms[n, k - 1]) + D[-1]))
        for _d in range(n_draws):
            Us = [torch.randn(*net.augmented_weight(k).shape, generator=g, dtype=torch.float64) * sig * profile[k - 1]
                  for k in range(1, K + 1)]
            V = ReLUNetwork([net.weights[k] + Us[k][:, : net.widths[k]] for k in range(K)],
                            [net.biases[k] + Us[k][:, -1] for k in range(K)] if bias else None)
            hW, hV = X[n], X[n]
            event = True
            zs_w, zs_v = [], []
            for k in range(K):
                aW = torch.cat([hW, torch.ones(1, dtype=hW.dtype)]) if bias else hW
                aV = torch.cat([hV, torch.ones(1, dtype=hV.dtype)]) if bias else hV
                zW, zV = net.augmented_weight(k + 1) @ aW, V.augmented_weight(k + 1) @ aV
                lc = consts.layers[k]
                t = levels[k] if k < K - 1 else 0
                J = sets[k][1] if k < K - 1 else np.arange(net.widths[K])
                I = sets[k][0] if k < K - 1 else np.array([], dtype=int)
                Uv = Us[k] @ aV
                tp = levels[k - 1] if k >= 1 else 0
                Jp = (np.concatenate([sets[k - 1][1], [net.widths[k]]]) if bias else sets[k - 1][1]) if k >= 1 \
                    else np.arange(aV.numel())
                if profile[k] > 0:
                    sk = sig * profile[k]
                    event &= bool(Uv[J].norm() <= sk * lc.g[t] * aV.norm())
                    event &= bool(torch.linalg.matrix_norm(Us[k][J][:, Jp], ord=2) <= sk * lc.mu[t, tp])
                    if I.size:
                        event &= bool(Uv[I].abs().max() <= sk * lc.h[t] * aV.norm())
                        event &= bool(Us[k][I][:, Jp].norm(dim=1).max() <= sk * lc.muinf[t, tp])
                else:
                    assert bool((Us[k] == 0).all())
                    if k == 0:
                        assert torch.equal(zW, zV)
                zs_w.append(zW)
                zs_v.append(zV)
                hW, hV = (torch.relu(zW), torch.relu(zV)) if k < K - 1 else (zW, zV)
                if not event:
                    break
            total += 1
            if not event:
                fails += 1
                continue
            for k in range(K):
                dev = (torch.relu(zs_v[k]) - torch.relu(zs_w[k])).norm() if k < K - 1 else (zs_v[k] - zs_w[k]).norm()
                assert float(dev) <= D[k + 1] * (1 + 1e-9) + 1e-12
                if k < K - 1 and sets[k][0].size:
                    assert bool((zs_v[k][sets[k][0]] <= 0).all())
            assert int(zs_v[-1].argmax()) == int(y[n])
            # Lemma 4.3: V passes L_mid with W's sets, V's exact quantities at those sets
            rad = torch.zeros(1, K - 1, dtype=torch.float64)
            bet = torch.zeros(1, K, dtype=torch.float64)
            om = torch.zeros(1, K - 1, dtype=torch.float64)
            nv = torch.zeros(1, K, dtype=torch.float64)
            h = X[n]
            for k in range(K):
                a = torch.cat([h, torch.ones(1, dtype=h.dtype)]) if bias else h
                nv[0, k] = a.norm() * (1 + 1e-12)
                Va = V.augmented_weight(k + 1)
                J = sets[k][1] if k < K - 1 else np.arange(net.widths[K])
                Jp = (np.concatenate([sets[k - 1][1], [net.widths[k]]]) if bias else sets[k - 1][1]) if k >= 1 \
                    else np.arange(a.numel())
                bet[0, k] = torch.linalg.matrix_norm(Va[J][:, Jp], ord=2) * (1 + 1e-9)
                if k < K - 1:
                    I = sets[k][0]
                    rad[0, k] = -zs_v[k][I].max() if I.size else math.inf
                    om[0, k] = Va[I][:, Jp].norm(dim=1).max() * (1 + 1e-9) if I.size else 0.0
                h = torch.relu(zs_v[k])
            out = zs_v[-1]
            mV = out[int(y[n])] - torch.cat([out[: int(y[n])], out[int(y[n]) + 1 :]]).max()
            lvt = torch.tensor([levels], dtype=torch.int64)
            assert bool(mid_loss_passes(mV[None], nv, rad, bet, om, lvt, [sig * c for c in profile], consts)[0])
    assert fails / total <= eta2 + 3 * math.sqrt(eta2 / total)


@pytest.fixture(scope="module")
def task():
    return load_dataset("synthetic", n_train=1000, n_test=1500,
                        synthetic={"kind": "teacher", "dim": 10, "n_classes": 3, "hidden": 12, "seed": 7})


@pytest.fixture(scope="module")
def nets(task):
    tr = task.train
    init = init_network(tr.input_dim, [20, 20], tr.n_classes, seed=2)
    prior = train(init, tr.subset(np.arange(500)), TrainConfig(lr=0.05, max_epochs=12, seed=2), progress=False).network
    last = train(prior, tr, TrainConfig(lr=0.05, max_epochs=5, seed=2, frozen_layers=(1, 2), proximal=1.0),
                 progress=False).network
    full = train(prior, tr, TrainConfig(lr=0.05, max_epochs=2, seed=2, proximal=1.0), progress=False).network
    return prior, last, full


def test_certify_with_zero_noise_profile_valid_and_refusal(task, nets):
    prior, last, full = nets
    tr, te = task.train, task.test
    Xb, yb = tr.X[500:], tr.y[500:]
    grid = SigmaGrid(profiles=((0.0, 0.0, 1.0),))
    cert = certify(last, Xb, yb, prior=prior, methods=["sparse", "sparse-mc", "pbb"], sigma_grid=grid, X_test=te.X,
                   y_test=te.y, progress=False, mc_draws=50, mc_seed=1, pbb_passes=3, pbb_seed=1)
    lcb = cert.test_error_lower_confidence
    for name, r in cert.results.items():
        assert math.isfinite(r.unclipped) and r.certificate >= lcb, name
        assert r.kl > 0
    s = cert.results["sparse"]
    assert s.rescaling == (1.0, 1.0, 1.0)  # any other rescaling moves a zero-noise layer
    assert s.sigma_per_layer[0] == 0.0 and s.sigma_per_layer[1] == 0.0
    json.dumps(cert.to_dict())
    parts = certificate_parts(s)
    assert parts["empirical"] + parts["eta1"] + parts["inversion_gap"] == pytest.approx(s.unclipped)
    assert parts["kl_over_m"] + parts["confidence"] == pytest.approx(s.complexity_term)
    # the same profile for a network whose hidden layers moved: infinite KL, refused
    with pytest.raises(ConfigError, match="no noise in the sigma profile"):
        certify(full, Xb, yb, prior=prior, methods=["sparse"], sigma_grid=grid, progress=False)
    # with a second, all-ones profile in the grid the moved network is certified by that one
    two = SigmaGrid(profiles=((0.0, 0.0, 1.0), (1.0, 1.0, 1.0)))
    c2 = certify(full, Xb, yb, prior=prior, methods=["sparse"], sigma_grid=two, progress=False, tradeoff=False)
    assert c2.results["sparse"].profile == (1.0, 1.0, 1.0)


def test_binding_analysis(task, nets):
    _, _, full = nets
    tr = task.train
    X, y = tr.X[500:], tr.y[500:]
    inp, *_ = _inputs(full, X, y, [1.0, 0.9, 0.75, 0.5, 0.25])
    prof = (1.0, 1.0, 1.0)
    star = max_certifiable_sigma(inp, prof)
    ba = binding_analysis(inp, star)
    N = X.shape[0]
    kinds = ba.kind
    assert set(np.unique(kinds)) <= set(range(len(BINDING_KINDS)))
    mis = inp.margins_lower.numpy() <= 0
    assert np.all(kinds[mis] == BINDING_KINDS.index("misclassified"))
    pos = ba.sigma_star > 0
    assert np.allclose(ba.noise_share[pos].sum(1), 1.0)
    margin = kinds == BINDING_KINDS.index("margin")
    radius = kinds == BINDING_KINDS.index("radius")
    assert margin.sum() + radius.sum() > 0.5 * N
    # margin-bound samples: the output condition is (nearly) tight at sigma*
    assert np.all(np.abs(ba.margin_ratio[margin] - 1.0) < 1e-3)
    # radius-bound samples: just above sigma* the greedy level at the binding layer drops
    s = torch.as_tensor(ba.sigma_star)
    _, lv_hi, _ = greedy_certify(inp, s * (1 + 1e-6), prof)
    for i in np.flatnonzero(radius):
        k = int(ba.layer[i])
        assert int(lv_hi[i, k - 1]) < int(ba.levels[i, k - 1])
        assert not np.isnan(ba.binding_fraction[i])
    # and above sigma* nothing is certified, at sigma* everything with sigma* > 0 is
    ok_hi, _, _ = greedy_certify(inp, s * (1 + 1e-6), prof)
    ok_lo, _, _ = greedy_certify(inp, torch.where(s > 0, s, torch.full_like(s, 1e-12)), prof)
    assert not bool(ok_hi[torch.as_tensor(pos)].any())
    assert bool(ok_lo[torch.as_tensor(pos)].all())
    summ = ba.summary()
    assert sum(summ["kinds"].values()) == pytest.approx(1.0)
    json.dumps(summ)
