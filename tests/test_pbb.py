"""The stochastic reference ``pbb`` (THEORY.md 4.7; docs/theory.md section 14).

Oracles: the Gaussian KL against the general multivariate formula (explicit covariance
matrices, trace and log-determinant) and against mpmath; the two kl inversions against an
mpmath bisection; the local reparametrisation against explicit whole-network draws; and the
end-to-end obligation that the certificate is never below the lower confidence bound of the
Gibbs predictor's held-out error.
"""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
import torch

from sparsebound import certify
from sparsebound.certification import certificate_parts, derandomisation_cost
from sparsebound.data import load_dataset
from sparsebound.errors import ConfigError
from sparsebound.network import ReLUNetwork
from sparsebound.pacbayes import SigmaGrid, gaussian_kl, kl_inv_lower
from sparsebound.pbb import STOCHASTIC_LABEL, gaussian_kl_diag, gibbs_errors, pbb_certificate
from sparsebound.training import TrainConfig, init_network, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")
mpmath.mp.dps = 50


def _mp_kl_bern(q, p):
    q, p = mpmath.mpf(q), mpmath.mpf(p)
    t = mpmath.mpf(0)
    if q > 0:
        t += q * mpmath.log(q / p)
    if q < 1:
        t += (1 - q) * mpmath.log((1 - q) / (1 - p))
    return t


def _mp_kl_inv(q, c):
    lo, hi = mpmath.mpf(q), mpmath.mpf(1)
    for _ in range(200):
        mid = (lo + hi) / 2
        if _mp_kl_bern(q, mid) <= c:
            lo = mid
        else:
            hi = mid
    return lo


# ------------------------------------------------------------------ Gaussian KL


def _rand_layers(seed, shapes, std_lo=0.01, std_hi=0.2):
    g = torch.Generator().manual_seed(seed)
    mq = [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]
    mp = [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]
    sq = [std_lo + (std_hi - std_lo) * torch.rand(*s, generator=g, dtype=torch.float64) for s in shapes]
    sp = [std_lo + (std_hi - std_lo) * torch.rand(*s, generator=g, dtype=torch.float64) for s in shapes]
    return mq, sq, mp, sp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_kl_against_full_covariance_formula(seed):
    mq, sq, mp, sp = _rand_layers(seed, [(3, 4), (2, 3)])
    got = gaussian_kl_diag(mq, sq, mp, sp)
    # brute force: KL = 1/2 [tr(Sp^-1 Sq) + (mp-mq)^T Sp^-1 (mp-mq) - n + ln det Sp - ln det Sq]
    mu_q = np.concatenate([t.numpy().ravel() for t in mq])
    mu_p = np.concatenate([t.numpy().ravel() for t in mp])
    Sq = np.diag(np.concatenate([t.numpy().ravel() ** 2 for t in sq]))
    Sp = np.diag(np.concatenate([t.numpy().ravel() ** 2 for t in sp]))
    Spi = np.linalg.inv(Sp)
    d = mu_p - mu_q
    ref = 0.5 * (np.trace(Spi @ Sq) + d @ Spi @ d - mu_q.size + np.linalg.slogdet(Sp)[1] - np.linalg.slogdet(Sq)[1])
    assert got >= ref * (1 - 1e-12)
    assert got == pytest.approx(ref, rel=1e-8)


def test_gaussian_kl_against_mpmath_and_outward():
    mq, sq, mp, sp = _rand_layers(5, [(4, 5)], std_lo=0.049, std_hi=0.051)  # r near 1: cancellation-prone
    got = gaussian_kl_diag(mq, sq, mp, sp)
    ref = mpmath.mpf(0)
    for a, s, b, t in zip(mq[0].ravel().tolist(), sq[0].ravel().tolist(), mp[0].ravel().tolist(),
                          sp[0].ravel().tolist(), strict=True):
        a, s, b, t = (mpmath.mpf(v) for v in (a, s, b, t))
        ref += (s**2 / t**2 - 1 - mpmath.log(s**2 / t**2) + (a - b) ** 2 / t**2) / 2
    assert got >= float(ref)
    assert got <= float(ref) * (1 + 1e-7)


def test_gaussian_kl_equal_variances_is_the_certificate_kl():
    g = torch.Generator().manual_seed(3)
    mq = [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)]
    mp = [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)]
    sig = [0.1, 0.3]
    dsq = [float(((a - b) ** 2).sum()) for a, b in zip(mq, mp, strict=True)]
    assert gaussian_kl_diag(mq, sig, mp, sig) == pytest.approx(gaussian_kl(dsq, sig), rel=1e-8)
    # a posterior equal to the prior has KL 0
    assert 0.0 <= gaussian_kl_diag(mp, sig, mp, sig) < 1e-12


def test_gaussian_kl_zero_noise_layers():
    a = [torch.ones(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)]
    b = [torch.ones(2, 2, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)]
    # layer 1 without noise in both and unmoved: contributes 0; layer 2 Gaussian
    got = gaussian_kl_diag(a, [0.0, 0.5], b, [0.0, 0.5])
    assert got == pytest.approx(4 * 1.0 / (2 * 0.25), rel=3e-9)
    moved = [torch.full((2, 2), 2.0, dtype=torch.float64), a[1]]
    assert gaussian_kl_diag(moved, [0.0, 0.5], b, [0.0, 0.5]) == math.inf
    with pytest.raises(ConfigError, match="noise where the prior has none"):
        gaussian_kl_diag(a, [0.1, 0.5], b, [0.0, 0.5])
    with pytest.raises(ConfigError, match="finite and >= 0"):
        gaussian_kl_diag(a, [-0.1, 0.5], b, [0.1, 0.5])
    # a point mass against a Gaussian
    assert gaussian_kl_diag(a, [0.0, 0.5], b, [0.1, 0.5]) == math.inf


# ------------------------------------------------------------------ Monte-Carlo Gibbs error


def _net(widths, seed, bias=False, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) * scale / math.sqrt(widths[k])
          for k in range(len(widths) - 1)]
    bs = [torch.randn(widths[k + 1], generator=g, dtype=torch.float64) * 0.2 for k in range(len(widths) - 1)] \
        if bias else None
    return ReLUNetwork(ws, bs)


def test_gibbs_errors_without_noise_is_the_error_count():
    net = _net((6, 8, 7, 3), 0)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (300,), generator=g)
    counts = gibbs_errors(net, X, y, [0.0, 0.0, 0.0], passes=2, seed=0)
    acts = net.forward(X, y)
    assert counts[0] == counts[1]
    # the count is on the safe side: at least the sure errors, at most the possible ones
    assert round(acts.error_rate_lower(y) * 300) <= counts[0] <= round(acts.error_rate_upper(y) * 300)


@pytest.mark.parametrize("bias,per_param", [(False, False), (True, True)])
def test_local_reparametrisation_matches_whole_network_draws(bias, per_param):
    """Per-sample draws have the law of whole-network draws: the two Gibbs error estimates of
    every sample agree within binomial noise (many draws, a few samples)."""
    net = _net((4, 6, 5, 3), 2, bias=bias)
    g = torch.Generator().manual_seed(3)
    X = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = net.forward(X).outputs.argmax(1)
    if per_param:
        stds = [0.05 + 0.3 * torch.rand(*net.augmented_weight(k).shape, generator=g, dtype=torch.float64)
                for k in range(1, 4)]
    else:
        stds = [0.3, 0.2, 0.25]
    passes = 4000
    counts = np.zeros(X.shape[0])
    for i in range(X.shape[0]):  # one pass over 4000 copies of the sample: 4000 independent draws
        counts[i] = sum(gibbs_errors(net, X[i : i + 1].expand(passes, -1), y[i : i + 1].expand(passes), stds,
                                     passes=1, seed=7, stream=i, batch=passes))
    rate_local = counts / passes
    # whole-network draws
    n_net = 4000
    Ws = []
    for k in range(1, 4):
        W = net.augmented_weight(k)
        s = stds[k - 1] if isinstance(stds[k - 1], torch.Tensor) else torch.full(W.shape, stds[k - 1],
                                                                                  dtype=torch.float64)
        Ws.append(W[None] + s[None] * torch.randn(n_net, *W.shape, generator=g, dtype=torch.float64))
    h = X[None].expand(n_net, -1, -1)
    for k, V in enumerate(Ws):
        ha = torch.cat([h, torch.ones(*h.shape[:2], 1, dtype=h.dtype)], 2) if bias else h
        z = torch.einsum("dij,dnj->dni", V, ha)
        h = torch.relu(z) if k < 2 else z
    pred = h.argmax(2)
    rate_full = (pred != y[None]).double().mean(0).numpy()
    assert rate_local.max() > 0.05, "noise too small for a meaningful comparison"
    se = np.sqrt(0.25 / passes + 0.25 / n_net)
    assert np.all(np.abs(rate_local - rate_full) <= 5 * se), (rate_local, rate_full)


# ------------------------------------------------------------------ the certificate


@pytest.fixture(scope="module")
def task():
    return load_dataset("synthetic", n_train=1200, n_test=4000,
                        synthetic={"kind": "teacher", "dim": 10, "n_classes": 3, "hidden": 12, "seed": 5})


@pytest.fixture(scope="module")
def trained(task):
    tr = task.train
    init = init_network(tr.input_dim, [24, 24], tr.n_classes, seed=1)
    prior = train(init, tr.subset(np.arange(600)), TrainConfig(lr=0.05, max_epochs=10, seed=1), progress=False).network
    post = train(prior, tr, TrainConfig(lr=0.05, max_epochs=3, seed=1, proximal=1.0), progress=False).network
    pbb_res = train(prior, tr, TrainConfig(lr=0.02, max_epochs=2, seed=1, objective="pbb", objective_sigma=0.02,
                                           objective_m=600), progress=False)
    return prior, post, pbb_res


def _check_formula(r):
    """The two kl inversions, recomputed in high precision (never merged)."""
    N = r.n_draws
    logw_mc = 0.0 if r.posterior == "learned" else float(SigmaGrid().log_weight(r.grid_index, 1))
    mc = _mp_kl_inv(r.gibbs_error, (mpmath.log(2 / mpmath.mpf(r.delta_mc)) - logw_mc) / N)
    assert r.empirical_term >= float(mc)
    assert r.empirical_term <= float(mc) + 1e-8
    logw = float(SigmaGrid().log_weight(r.grid_index, 1))
    comp = (mpmath.mpf(r.kl) + mpmath.log(2 * mpmath.sqrt(r.m) / mpmath.mpf(r.delta)) - logw) / r.m
    assert r.complexity_term == pytest.approx(float(comp), rel=1e-12)
    if r.unclipped < 1:
        ref = _mp_kl_inv(mpmath.mpf(r.empirical_term), comp)
        assert r.unclipped >= float(ref)
        assert r.unclipped <= float(ref) + 1e-8


@pytest.mark.parametrize("kind", ["tied", "learned"])
def test_pbb_certificate_valid_against_held_out_gibbs_error(task, trained, kind):
    prior, post, pbb_res = trained
    tr, te = task.train, task.test
    Xb, yb = tr.X[600:], tr.y[600:]
    if kind == "tied":
        r = pbb_certificate(post, Xb, yb, prior=prior, passes=20, seed=3, X_test=te.X, y_test=te.y)
    else:
        r = pbb_certificate(pbb_res.network, Xb, yb, prior=prior, posterior_std=pbb_res.posterior_std, passes=20,
                            seed=3, X_test=te.X, y_test=te.y)
    assert r.posterior == kind
    assert r.label == STOCHASTIC_LABEL and "NOT" in r.label
    assert 0.0 <= r.certificate <= 1.0 and r.certificate == min(1.0, r.unclipped)
    assert not r.vacuous, "the reference should be informative on this easy task"
    _check_formula(r)
    # obligation: never below the lower confidence bound of the Gibbs predictor's held-out error
    # (the n_test_draws indicators are independent; kl lower inversion at delta = 0.05)
    lcb = float(kl_inv_lower(r.gibbs_test_error, math.log(1 / 0.05) / r.n_test_draws))
    assert r.certificate >= lcb
    json.dumps(r.to_dict())


def test_pbb_reproducible_with_seed_and_fresh_without(task, trained):
    prior, post, _ = trained
    tr = task.train
    a = pbb_certificate(post, tr.X[600:], tr.y[600:], prior=prior, passes=2, seed=11, max_evals=2)
    b = pbb_certificate(post, tr.X[600:], tr.y[600:], prior=prior, passes=2, seed=11, max_evals=2)
    assert a.unclipped == b.unclipped and a.seed == b.seed == 11
    c = pbb_certificate(post, tr.X[600:], tr.y[600:], prior=prior, passes=2, max_evals=2)
    d = pbb_certificate(post, tr.X[600:], tr.y[600:], prior=prior, passes=2, max_evals=2)
    assert c.seed != d.seed  # a fresh recorded seed per call


def test_pbb_in_certify_next_to_sparse(task, trained):
    prior, post, _ = trained
    tr, te = task.train, task.test
    cert = certify(post, tr.X[600:], tr.y[600:], prior=prior, methods=["sparse", "pbb"], X_test=te.X, y_test=te.y,
                   progress=False, tradeoff=False, pbb_passes=5, pbb_seed=4)
    r, s = cert.results["pbb"], cert.results["sparse"]
    assert r.posterior == "tied" and r.rescaling == s.rescaling and r.profile == s.profile
    cost = derandomisation_cost(s, r)
    assert cost["same_posterior"] and cost["difference"] == pytest.approx(s.unclipped - r.unclipped)
    parts = certificate_parts(r)
    assert parts["eta1"] == 0.0
    assert parts["empirical"] + parts["inversion_gap"] == pytest.approx(r.unclipped)
    assert r.delta + r.delta_mc == pytest.approx(cert.delta)
    assert "randomised (Gibbs) predictor, not f_W" in cert.table()
    json.dumps(cert.to_dict())
    only = certify(post, tr.X[600:], tr.y[600:], prior=prior, methods=["pbb"], progress=False, pbb_passes=2,
                   pbb_seed=4)
    assert set(only.results) == {"pbb"}


def test_pbb_bad_inputs(task, trained):
    prior, post, pbb_res = trained
    X, y = task.train.X[600:], task.train.y[600:]
    with pytest.raises(ConfigError, match="delta"):
        pbb_certificate(post, X, y, prior=prior, delta=1.5)
    with pytest.raises(ConfigError, match="delta_mc"):
        pbb_certificate(post, X, y, prior=prior, delta_mc=0.0)
    with pytest.raises(ConfigError, match="pass"):
        pbb_certificate(post, X, y, prior=prior, passes=0)
    with pytest.raises(ConfigError, match="seed"):
        pbb_certificate(post, X, y, prior=prior, seed=-1)
    with pytest.raises(ConfigError, match="m >= 8"):
        pbb_certificate(post, X[:5], y[:5], prior=prior)
    with pytest.raises(ConfigError, match="layers"):
        pbb_certificate(post, X, y, prior=prior, posterior_std=pbb_res.posterior_std[:2])
    bad = [s.clone() for s in pbb_res.posterior_std]
    bad[0] = bad[0][:, :-1]
    with pytest.raises(ConfigError, match="shape"):
        pbb_certificate(post, X, y, prior=prior, posterior_std=bad)
    neg = [s.clone() for s in pbb_res.posterior_std]
    neg[1][0, 0] = -1.0
    with pytest.raises(ConfigError, match=">= 0"):
        pbb_certificate(post, X, y, prior=prior, posterior_std=neg)
    with pytest.raises(ConfigError, match="rescaling"):
        pbb_certificate(post, X, y, prior=prior, rescaling=(1.0, 2.0))
