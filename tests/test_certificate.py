"""End-to-end certificates on small real runs (THEORY.md 4.2-4.4, 7.4) and the API's errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sparsebound import certify
from sparsebound.certificate import _Objective
from sparsebound.data import load_dataset, split_prior_bound
from sparsebound.errors import ConfigError, DataError, NetworkError, ShapeMismatchError
from sparsebound.network import ReLUNetwork
from sparsebound.pacbayes import SigmaGrid
from sparsebound.training import TrainConfig, init_network, train

ALL = ["sparse", "uniform-sparse", "dense", "neyshabur2018", "neyshabur2018-init", "bartlett2017", "test-set"]


@pytest.fixture(scope="module")
def task():
    splits = load_dataset("synthetic", n_train=1500, n_test=1500,
                          synthetic={"kind": "teacher", "dim": 12, "n_classes": 3, "hidden": 16, "seed": 3})
    return splits


@pytest.fixture(scope="module")
def trained(task):
    tr = task.train
    init = init_network(tr.input_dim, [32, 32], tr.n_classes, seed=0)
    res = train(init, tr, TrainConfig(lr=0.05, max_epochs=25, seed=0), progress=False)
    return init, res.network


def _check_valid(cert):
    lcb = cert.test_error_lower_confidence
    assert lcb is not None
    for name, r in cert.results.items():
        assert 0.0 <= r.certificate <= 1.0
        assert r.certificate == pytest.approx(min(1.0, r.unclipped))
        assert r.vacuous == (r.unclipped >= 1.0)
        # obligation 7.4: never below the lower confidence bound of the held-out error
        assert r.certificate >= lcb, name
    return lcb


def test_init_prior_all_methods_ordered_and_valid(task, trained):
    init, net = trained
    tr, te = task.train, task.test
    cert = certify(net, tr.X, tr.y, prior=init, X_test=te.X, y_test=te.y, radius=tr.radius, methods=ALL,
                   progress=False)
    _check_valid(cert)
    r = cert.results
    assert set(r) == set(ALL)
    assert r["sparse"].unclipped <= r["uniform-sparse"].unclipped * (1 + 1e-12)
    assert r["uniform-sparse"].unclipped <= r["dense"].unclipped * (1 + 1e-12)
    assert r["sparse"].m == tr.X.shape[0]
    # what was certified is reported: distance to the prior of the (rescaled) network
    sp = r["sparse"]
    resc = net.rescaled(sp.rescaling)
    assert sp.distance_to_prior == pytest.approx(resc.distance_to(init), rel=1e-9)
    out0 = net.forward(te.X[:50]).outputs
    out1 = resc.forward(te.X[:50]).outputs
    assert torch.allclose(out0, out1, rtol=1e-9, atol=1e-9)  # same function
    # the chosen grid point's parts reproduce the reported bound
    from sparsebound.pacbayes import kl_inv_upper

    kl_b = float(kl_inv_upper(sp.empirical_term, sp.complexity_term)) + sp.eta1
    pins = (sp.empirical_term + math.sqrt(sp.complexity_term / 2) + sp.eta1) * (1 + 1e-12)  # rounding slack
    assert sp.unclipped == pytest.approx(kl_b if kl_b < 1 else pins, rel=1e-13)
    assert sp.kl == pytest.approx(sum(d / (2 * (sp.sigma * c) ** 2) for d, c in
                                      zip(resc.frobenius_sq_distances(init), sp.profile, strict=True)), rel=1e-9)
    assert sp.certified_fraction == pytest.approx(float((sp.sigma <= (1 - 1e-6) * sp.sigma_star).mean()))
    d = cert.to_dict(per_sample=True)
    json.dumps(d, allow_nan=False)
    # trade-off rows: one common informative level (docs/theory.md section 9); each row a valid bound
    rows = cert.tradeoff
    assert len(rows) >= 2 and all(isinstance(t["certifiable"], bool) for t in rows)
    ok = [t for t in rows if t["certifiable"]]
    assert ok
    level = rows[0]["informative_level"]
    assert all(t["informative_level"] == level for t in rows)
    assert min(t["empirical_term"] for t in rows) >= level - 0.1 - 1e-12
    # vacuous rows sit at or under the common level (non-vacuous rows: plain minimum)
    assert all(t["empirical_term"] <= level for t in ok if t["unclipped"] >= 1.0)
    for t in ok:
        assert t["bound"] == pytest.approx(min(1.0, t["unclipped"]))
        assert t["bound"] >= cert.test_error_lower_confidence
    for t in rows:
        if not t["certifiable"]:
            assert t["unclipped"] is None and t["kl"] is None
            assert t["empirical_term"] > level
    txt = cert.table()
    for name in ALL:
        assert name in txt
    assert cert.ratios()["sparse/dense"] <= 1.0 + 1e-12


def test_data_dependent_prior_non_vacuous_and_above_test_error(task):
    """Posterior = prior (KL = 0): the certificate is a held-out bound for the prior network;
    it must be non-vacuous here and never below the lower confidence bound of its test error."""
    tr, te = task.train, task.test
    prior_idx, bound_idx = split_prior_bound(len(tr), 0.5, 0)
    init = init_network(tr.input_dim, [32, 32], tr.n_classes, seed=1)
    prior = train(init, tr.subset(prior_idx), TrainConfig(max_epochs=25, seed=1), progress=False).network
    posterior = train(prior, tr, TrainConfig(proximal=math.inf), anchor=prior, progress=False).network
    assert posterior.distance_to(prior) == 0.0
    bs = tr.subset(bound_idx)
    cert = certify(posterior, bs.X, bs.y, prior=prior, init=init, prior_kind="data-dependent", X_test=te.X,
                   y_test=te.y, radius=tr.radius, methods=["sparse", "uniform-sparse", "dense", "test-set"],
                   progress=False)
    lcb = _check_valid(cert)
    sp = cert.results["sparse"]
    assert not sp.vacuous and sp.certificate < 0.5
    assert sp.certificate >= cert.test_error
    assert sp.kl == 0.0 and sp.distance_to_prior == 0.0
    assert lcb <= cert.test_error


def test_rescaled_distance_formula_matches_direct(trained):
    init, net = trained
    obj = _Objective.__new__(_Objective)
    _Objective.__init__(obj, None, net, init, ((1.0, 1.0, 1.0),), m=100, delta=0.05, grid=SigmaGrid(), eta1=1e-4,
                        eta2=1e-3)
    lam = (1.3, 0.8, 1 / (1.3 * 0.8))
    direct = net.rescaled(lam).frobenius_sq_distances(init)
    assert np.allclose(obj.dist_sq(lam), direct, rtol=1e-10)


def test_bias_network_certifies(task):
    tr, te = task.train, task.test
    init = init_network(tr.input_dim, [24, 24], tr.n_classes, bias=True, seed=2)
    net = train(init, tr, TrainConfig(max_epochs=10, seed=2), progress=False).network
    cert = certify(net, tr.X, tr.y, prior=init, X_test=te.X, y_test=te.y, radius=tr.radius, methods=ALL,
                   progress=False)
    _check_valid(cert)
    assert cert.results["sparse"].rescaling == (1.0, 1.0, 1.0)  # no rescaling with biases


def test_bad_inputs(task, trained):
    init, net = trained
    tr = task.train
    X, y = tr.X[:100], tr.y[:100]
    with pytest.raises(ConfigError, match="delta"):
        certify(net, X, y, prior=init, delta=1.5, progress=False)
    with pytest.raises(ConfigError, match="delta"):
        certify(net, X, y, prior=init, delta=0.0, progress=False)
    with pytest.raises(ConfigError, match="m >= 8"):
        certify(net, X[:5], y[:5], prior=init, progress=False)
    other = init_network(tr.input_dim, [16, 32], tr.n_classes, seed=0)
    with pytest.raises(ShapeMismatchError, match="prior"):
        certify(net, X, y, prior=other, progress=False)
    bad = [w.clone() for w in net.weights]
    bad[1][0, 0] = float("nan")
    with pytest.raises(NetworkError, match="NaN"):
        certify(ReLUNetwork(bad), X, y, prior=init, progress=False)
    with pytest.raises(ConfigError, match="unknown method"):
        certify(net, X, y, prior=init, methods=["sparse", "magic"], progress=False)
    with pytest.raises(ConfigError, match="test-set"):
        certify(net, X, y, prior=init, methods=["test-set"], progress=False)
    with pytest.raises(ConfigError, match="radius"):
        certify(net, X, y, prior=init, methods=["neyshabur2018"], progress=False)
    with pytest.raises(DataError, match="labels"):
        certify(net, X, y + 5, prior=init, progress=False)
    with pytest.raises(ShapeMismatchError):
        certify(net, X[:, :5], y, prior=init, progress=False)
    with pytest.raises(ConfigError, match="eta1"):
        certify(net, X, y, prior=init, eta1=2.0, progress=False)


# ------------------------------------------------------------------ issue 11: messages, table, work done


def test_vacuous_reason_when_nothing_is_certified_at_any_grid_sigma(task, trained):
    """Every per-sample sigma* below the smallest grid sigma: the message must not claim the
    samples tolerate noise up to the chosen grid sigma (where the certified fraction is 0)."""
    init, net = trained
    tr = task.train
    grid = SigmaGrid(sigma_ref=50.0, j_min=0, j_max=4)  # a-priori grid far above any sigma*
    cert = certify(net, tr.X[:300], tr.y[:300], prior=init, methods=["sparse"], sigma_grid=grid, progress=False,
                   tradeoff=False, exact_rounds=0)
    sp = cert.results["sparse"]
    assert sp.vacuous and sp.certified_fraction == 0.0
    assert max(sp.curve["augmented_loss"]) == min(sp.curve["augmented_loss"]) == 1.0
    assert float(sp.sigma_star.max()) * (1 - 1e-6) < float(grid.sigma(grid.j_min))
    why = cert.vacuous_reason()
    assert "no bound sample is certified at any grid sigma" in why
    assert "tolerate" not in why and "up to sigma" not in why
    assert f"{float(sp.sigma_star.max()):.3g}" in why and f"{float(grid.sigma(grid.j_min)):.3g}" in why
    assert why in cert.table()


def test_vacuous_reason_with_some_samples_certified(task, trained):
    init, net = trained
    tr = task.train
    cert = certify(net, tr.X[:300], tr.y[:300], prior=init, methods=["sparse"], progress=False, tradeoff=False,
                   exact_rounds=0)
    sp = cert.results["sparse"]
    if not sp.vacuous:
        pytest.skip("not vacuous here")
    assert sp.certified_fraction > 0
    why = cert.vacuous_reason()
    assert f"{sp.certified_fraction:.1%} of the bound samples are certified" in why
    assert f"complexity term is {sp.complexity_term:.3g}" in why
    assert "no bound sample" not in why
    dominant = "complexity term dominates" if sp.complexity_term >= sp.empirical_term else "empirical term dominates"
    assert dominant in why


def test_table_stays_aligned_for_any_magnitude(task, trained):
    """A distance to the prior of ~1e100 used to print as a 100-digit fixed-point number."""
    init, net = trained
    tr, te = task.train, task.test
    far = ReLUNetwork([w + 1e99 for w in init.weights])
    cert = certify(net, tr.X[:200], tr.y[:200], prior=far, init=init, X_test=te.X[:200], y_test=te.y[:200],
                   radius=tr.radius, methods=["sparse", "dense", "neyshabur2018", "bartlett2017", "test-set"],
                   progress=False, tradeoff=False, exact_rounds=0)
    dist = cert.results["dense"].distance_to_prior
    assert dist > 1e100
    lines = cert.table().splitlines()
    hdr = next(i for i, ln in enumerate(lines) if ln.startswith("method"))
    width = 20 + 8 * 12
    rows = lines[hdr + 2: hdr + 2 + len(cert.results)]
    assert [r.split()[0] for r in rows] == list(cert.results)
    for row in [lines[hdr], *rows]:
        assert len(row) >= width and row[width:width + 2] in ("  ", "") and row[width - 1] != " "
        cells = [row[20 + 12 * i: 20 + 12 * (i + 1)] for i in range(8)]
        assert all(c[0] == " " for c in cells), row  # no cell overflows into its neighbour
    dense_row = next(r for r in rows if r.startswith("dense"))
    assert f"{dist:.4g}" in dense_row and len(dense_row.split()) <= 10


def test_dense_alone_skips_the_sparse_norm_tables(task, trained):
    """Issue 11, item 17: `dense` needs only the spectral norms; its certificate is the same
    as when the other methods are asked for too."""
    init, net = trained
    tr = task.train
    X, y = tr.X[:400], tr.y[:400]
    alone = certify(net, X, y, prior=init, methods=["dense"], progress=False, tradeoff=False)
    both = certify(net, X, y, prior=init, methods=["sparse", "uniform-sparse", "dense"], progress=False,
                   tradeoff=False, exact_rounds=0)
    assert "uniform_norms" not in alone.timings and "exact_omega" not in alone.timings
    assert "uniform_norms" in both.timings
    assert alone.results["dense"].unclipped == both.results["dense"].unclipped
    assert alone.results["dense"].rescaling == both.results["dense"].rescaling
