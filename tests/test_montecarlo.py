"""The Monte-Carlo training side, ``sparse-mc`` (THEORY.md 4.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparsebound import certify
from sparsebound.certificate import uniform_norm_tables
from sparsebound.certification import mid_loss_passes
from sparsebound.data import load_dataset, split_prior_bound
from sparsebound.montecarlo import MCTables, draw, draw_passes
from sparsebound.network import ReLUNetwork
from sparsebound.noise import NoiseConstants
from sparsebound.pacbayes import SigmaGrid, kl_inv_upper
from sparsebound.sparsity import SparsityGrid, SparsityTable
from sparsebound.training import TrainConfig, init_network, train


def _net(widths, bias, seed):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) * 1.6 / math.sqrt(widths[k])
          for k in range(len(widths) - 1)]
    bs = [torch.randn(widths[k + 1], generator=g, dtype=torch.float64) * 0.3 for k in range(len(widths) - 1)] \
        if bias else None
    return ReLUNetwork(ws, bs)


@pytest.mark.parametrize("bias", [False, True])
def test_bounded_mid_loss_never_below_exact(bias):
    """l_j from upper bounds >= the loss computed with V's exact quantities at the same sets."""
    net = _net((5, 10, 9, 3), bias, 3)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64).float()
    y = net.forward(X).outputs.argmax(1)
    grid = SparsityGrid.from_fractions(net.widths, [1.0, 0.7, 0.4])
    consts = NoiseConstants.build(net.widths, grid.active, has_bias=bias, eta1=0.2, eta2=0.2)
    acts = net.forward(X, y)
    table = SparsityTable.build(acts, grid)
    norms = uniform_norm_tables(net, grid)
    from sparsebound.certificate import ExactBetaCache, exact_omega_tables

    omega = exact_omega_tables(net, table)
    cache = ExactBetaCache(net, table, norms.uniform_beta)
    tabs = MCTables(table=table, beta_w=cache.beta, omega_w=omega, uniform_beta=norms.uniform_beta,
                    uniform_omega=norms.uniform_omega, consts=consts)
    K = net.depth
    n = X.shape[0]
    dr = [draw(net, 5, j, n, n) for j in range(6)]
    Zs = [torch.stack([d[0][k] for d in dr]) for k in range(K)]
    rows = torch.stack([d[1] for d in dr])
    assert torch.equal(rows[0], torch.arange(n))  # batch >= m: every sample, in order
    # exact spectral norms of the draws, so the bounded test's assumption holds
    znorm = [float(torch.linalg.matrix_norm(z, ord=2).max()) * (1 + 1e-6) for z in Zs]
    for sigma in (2e-3, 2e-2, 6e-2):
        ok_b = draw_passes(net, X, y, Zs, rows, sigma, (1.0,) * K, tabs, znorm)
        ls = (1.0 - ok_b.double().mean(dim=1)).tolist()
        if sigma == 2e-3:
            assert max(ls) < 0.5  # the bounded check certifies most samples at small sigma
        if sigma == 6e-2:
            assert min(ls) > 0.0  # and fails some at large sigma: the comparison below has power
        for j in range(len(dr)):
            Z = [z[j] for z in Zs]
            V = ReLUNetwork(
                [net.weights[k] + sigma * Z[k][:, : net.widths[k]] for k in range(K)],
                [net.biases[k] + sigma * Z[k][:, -1] for k in range(K)] if bias else None,
            )
            va = V.forward(X, y)
            exact_pass = torch.zeros(n, dtype=torch.bool)
            orders_v = [torch.sort(z, dim=1, stable=True).indices for z in va.pre_activations]
            for own in (False, True):
                orders = orders_v if own else list(table.order)
                for t1 in range(len(grid.active[0])):
                    for t2 in range(len(grid.active[1])):
                        lv = torch.tensor([t1, t2])
                        radii = torch.zeros(n, K - 1, dtype=torch.float64)
                        beta = torch.zeros(n, K, dtype=torch.float64)
                        omg = torch.zeros(n, K - 1, dtype=torch.float64)
                        for i in range(n):
                            sets = []
                            for k in range(1, K):
                                s_ = int(grid.sparsity(k)[int(lv[k - 1])])
                                o = orders[k - 1][i].numpy()
                                sets.append((o[:s_], o[s_:]))
                            sets.append((np.array([], dtype=int), np.arange(net.widths[K])))
                            for k in range(1, K + 1):
                                I, J = sets[k - 1]
                                cols = sets[k - 2][1] if k >= 2 else np.arange(net.widths[0])
                                if bias:
                                    cols = np.concatenate([cols, [net.widths[k - 1]]])
                                Va = V.augmented_weight(k).numpy()
                                beta[i, k - 1] = np.linalg.norm(Va[np.ix_(J, cols)], 2)
                                if k < K:
                                    z = va.pre_activations[k - 1][i]
                                    radii[i, k - 1] = -float(z[I].max()) if I.size else math.inf
                                    omg[i, k - 1] = np.linalg.norm(Va[np.ix_(I, cols)], axis=1).max() if I.size else 0
                        ok = mid_loss_passes(va.margins, va.hidden_norms, radii, beta, omg,
                                             lv[None].expand(n, -1), (sigma,) * K, consts)
                        exact_pass |= ok
            # every sample the bounded test passes also passes with V's exact quantities
            assert not bool((ok_b[j] & ~exact_pass).any())


def test_draws_are_reproducible_and_subsampled():
    net = _net((5, 10, 9, 3), False, 1)
    Z1, r1 = draw(net, 11, 3, 1000, 64)
    Z2, r2 = draw(net, 11, 3, 1000, 64)
    Z3, _ = draw(net, 11, 4, 1000, 64)
    assert all(torch.equal(a, b) for a, b in zip(Z1, Z2, strict=True)) and torch.equal(r1, r2)
    assert not torch.equal(Z1[0], Z3[0])
    assert r1.numel() == 64 and r1.unique().numel() == 64 and int(r1.max()) < 1000


def test_sparse_mc_bookkeeping_and_validity():
    splits = load_dataset("synthetic", n_train=1200, n_test=2000,
                          synthetic={"kind": "teacher", "dim": 10, "n_classes": 3, "hidden": 12, "seed": 4})
    tr, te = splits.train, splits.test
    prior_idx, bound_idx = split_prior_bound(len(tr), 0.5, 0)
    init = init_network(tr.input_dim, [24, 24], tr.n_classes, seed=0)
    prior = train(init, tr.subset(prior_idx), TrainConfig(max_epochs=20), progress=False).network
    post = train(prior, tr, TrainConfig(max_epochs=2, proximal=1.0), anchor=prior, progress=False).network
    bs = tr.subset(bound_idx)
    cert = certify(post, bs.X, bs.y, prior=prior, init=init, X_test=te.X, y_test=te.y, radius=tr.radius,
                   methods=["sparse", "sparse-mc", "test-set"], mc_draws=300, mc_batch=64, mc_seed=7, mc_max_evals=3,
                   delta=0.05, progress=False)
    r = cert.results["sparse-mc"]
    assert r.delta + r.delta_mc == pytest.approx(0.05)
    assert r.n_draws == 300 and r.seed == 7 and len(r.losses) == 300 and r.batch == 64
    assert r.q_hat == pytest.approx(float(np.mean(r.losses)))
    grid = SigmaGrid()
    logw = float(grid.log_weight(r.grid_index, 1))
    assert r.sigma == pytest.approx(float(grid.sigma(r.grid_index)))
    # the two kl inversions, never merged
    mc_up = float(kl_inv_upper(r.q_hat, (math.log(1 / r.delta_mc) - logw) / r.n_draws)) + r.gordon_eps
    assert r.gordon_eps == pytest.approx(post.depth * 1e-7)
    assert r.empirical_term == pytest.approx(mc_up)
    comp = (r.kl + math.log(2 * math.sqrt(r.m) / r.delta) - logw) / r.m
    assert r.complexity_term == pytest.approx(comp)
    klb = float(kl_inv_upper(mc_up, comp)) + r.eta1
    assert r.unclipped == pytest.approx(klb if klb < 1 else mc_up + math.sqrt(comp / 2) + r.eta1)
    # the KL of the certified network: sparse's rescaling of post (the same function; issue 11,
    # item 18: the search starts from canonical rescalings, so it need not be exactly 1)
    assert r.rescaling == cert.results["sparse"].rescaling
    certified = post.rescaled(r.rescaling)
    assert r.kl == pytest.approx(sum(d / (2 * r.sigma**2) for d in certified.frobenius_sq_distances(prior)))
    assert r.distance_to_prior == pytest.approx(certified.distance_to(prior), rel=1e-9)
    assert len(r.evaluated) <= 3
    # never below the lower confidence bound of the held-out error
    assert r.certificate >= cert.test_error_lower_confidence
    assert 0 <= r.certificate <= 1
    d = r.to_dict()
    assert d["delta_total"] == pytest.approx(0.05)


def test_sparse_mc_rejects_bad_split():
    from sparsebound.errors import ConfigError

    splits = load_dataset("synthetic", n_train=100, n_test=50)
    tr = splits.train
    init = init_network(tr.input_dim, [8, 8], tr.n_classes, seed=0)
    with pytest.raises(ConfigError):
        certify(init, tr.X, tr.y, prior=init, methods=["sparse-mc"], mc_delta_fraction=1.0, progress=False)


def _check_forward_exact(Ws, Zs, sk, X, y, bias):
    """_forward_f64 against rational arithmetic, with its inputs built as draw_passes builds them.
    Returns the outputs and the float64 reference pre-activations of the last layer."""
    from fractions import Fraction

    from sparsebound.montecarlo import TINY64, _forward_f64, _norm_up

    K, (D, b) = len(Ws), X.shape[:2]
    Vhat = [W[None] + sk * Z for W, Z in zip(Ws, Zs, strict=True)]
    ws = [V[:, :, :-1] if bias else V for V in Vhat]
    bs = [V[:, :, -1] for V in Vhat] if bias else None
    abs_rows = [_norm_up(W, 1)[None] + sk * _norm_up(Z, 2) * (1 + 1e-9) + TINY64 for W, Z in zip(Ws, Zs, strict=True)]
    uppers, norms, margins = _forward_f64(ws, bs, X, y, abs_rows)
    S = Fraction(sk)
    for d in range(D):
        for i in range(b):
            x = [Fraction(float(v)) for v in X[d, i]]
            for k in range(K):
                xa = [*x, Fraction(1)] if bias else x
                nb = Fraction(norms[d, i, k].item())
                assert nb >= 0 and nb * nb >= sum(v * v for v in xa), ("norm", d, i, k)
                W, Z = Ws[k].tolist(), Zs[k][d].tolist()
                z = [sum((Fraction(W[r][c]) + S * Fraction(Z[r][c])) * xa[c] for c in range(len(xa)))
                     for r in range(len(W))]
                if k < K - 1:
                    for r, zr in enumerate(z):
                        assert Fraction(uppers[k][d, i, r].item()) >= zr, ("upper", d, i, k, r)
                    x = [max(v, Fraction(0)) for v in z]
                else:
                    yi = int(y[d, i])
                    true = z[yi] - max(v for c, v in enumerate(z) if c != yi)
                    assert Fraction(margins[d, i].item()) <= true, ("margin", d, i)
    return Vhat, ws, bs, margins


@pytest.mark.parametrize("bias", [False, True])
def test_forward_rounding_bounds_hold_in_exact_arithmetic(bias):
    """The float64 forward of sparse-mc (docs/theory.md section 10): upper bounds of the exact
    pre-activations, norms and margins of V = W + s Z, checked against rational arithmetic on
    weights with large cancellation (entries of size 1e6 next to size 1)."""
    from sparsebound.network import margins_from_outputs

    g = torch.Generator().manual_seed(7)
    dims = (6, 5, 4, 3)
    K, D, b = len(dims) - 1, 2, 4
    Ws = []
    for k in range(K):
        W = torch.randn(dims[k + 1], dims[k] + (1 if bias else 0), generator=g, dtype=torch.float64)
        W[:, 0] *= 1e6  # big terms that cancel: rounding matters
        W[:, 1] = -W[:, 0] + torch.randn(dims[k + 1], generator=g, dtype=torch.float64)
        Ws.append(W)
    Zs = [torch.randn(D, *W.shape, generator=g, dtype=torch.float64) for W in Ws]
    sk = 3.3e-3
    X = torch.randn(D, b, dims[0], generator=g, dtype=torch.float64)
    X[:, :, 1] = X[:, :, 0] * (1 + 1e-7)
    y = torch.randint(0, dims[-1], (D, b), generator=g)
    Vhat, ws, bs, margins = _check_forward_exact(Ws, Zs, sk, X, y, bias)
    # and the bound is not vacuous: margins within 1e-10 of the Cauchy-Schwarz scale
    # prod_k ||V_k||_F ||x|| of the float64 values
    out, scale = [], []
    for d in range(D):
        x = X[d]
        for k in range(K):
            z = x @ ws[k][d].T + (bs[k][d] if bias else 0)
            x = torch.relu(z)
        out.append(margins_from_outputs(z, y[d]))
        scale.append(X[d].norm(dim=1) * math.prod(float(V[d].norm()) for V in Vhat))
    assert bool(((torch.stack(out) - margins).abs() <= 1e-10 * torch.stack(scale)).all())


def test_forward_rounding_bounds_hold_under_underflow():
    """Subnormal products, weight rows and activations whose squares underflow: the bounds
    carry absolute terms (docs/theory.md section 10) and stay on the right side."""
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    zeros = lambda W: torch.zeros(1, *W.shape, dtype=torch.float64)  # noqa: E731
    # products of size 1e-324 round to 0 in layer 1, then layer 2 amplifies by 1e150
    Ws = [t([[1e-164, 0.0], [3e-164, 0.0]]), t([[1e150, -1e149]]), t([[1.0], [-1.0]])]
    _check_forward_exact(Ws, [zeros(W) for W in Ws], 0.0, t([[[1e-160, 0.0]]]), torch.tensor([[0]]), False)
    # a weight row below 1e-154 (its squared norm underflows) with cancellation against 1e30 inputs
    Ws = [t([[1.2345678901e-170, -1.2345678901e-170 * (1 + 3e-8)], [1.0, 1.0]]), t([[1.0, 0.0], [0.0, 1.0]])]
    X = t([[[1e30, 1e30 * 1.0000001]]]).float().double()
    _check_forward_exact(Ws, [zeros(W) for W in Ws], 0.0, X, torch.tensor([[1]]), False)
    # hidden activations of size 1e-163 (their squares underflow), then 1e150 weights that cancel
    Ws = [t([[1e-163], [1.0000000000000008e-163]]), t([[1.761360228061676e150, -1.761360228061674e150], [0.0, 0.0]])]
    _check_forward_exact(Ws, [zeros(W) for W in Ws], 0.0, t([[[0.7]]]), torch.tensor([[1]]), False)
    # tiny noise scale on tiny weights, with a bias
    g = torch.Generator().manual_seed(3)
    Ws = [torch.randn(3, 4, generator=g, dtype=torch.float64) * 1e-160, torch.randn(2, 4, generator=g,
                                                                                  dtype=torch.float64) * 1e150]
    Zs = [torch.randn(2, *W.shape, generator=g, dtype=torch.float64) for W in Ws]
    X = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    _check_forward_exact(Ws, Zs, 1e-170, X, torch.randint(0, 2, (2, 3), generator=g), True)


def test_sparse_mc_is_invariant_under_power_of_two_scalings_of_samples_and_layers():
    """Breaker finding 5: each bound sample given at its own power-of-two scale (2^-900 .. 2^400) or the layers
    rescaled by 2^40 / 2^-40 (the same function) gives the same sparse-mc draws results; before the per-sample
    units, the tiny samples lost their margins to the absolute underflow terms (q_hat 0.39 instead of 0.19)."""
    from sparsebound.data import load_dataset
    from sparsebound.montecarlo import sample_units

    sp = load_dataset("digits")
    tr = sp.train
    init = init_network(tr.input_dim, [16], tr.n_classes, bias=False, seed=0)
    net = train(init, tr, TrainConfig(max_epochs=3, seed=0), progress=False).network
    X, y = tr.X[:300].double(), tr.y[:300]
    g = torch.Generator().manual_seed(0)
    e = torch.randint(-900, 400, (X.shape[0], 1), generator=g).double()
    Xs = X * torch.pow(2.0, e)
    assert torch.equal(sample_units(X)[0], sample_units(Xs)[0])  # bit for bit the same rows

    def mc(n: ReLUNetwork, XX: torch.Tensor):
        return certify(n, XX, y, prior=init, methods=["sparse", "sparse-mc"], progress=False, tradeoff=False,
                       mc_draws=50, mc_batch=64, mc_seed=3, mc_max_evals=2, exact_rounds=1).results["sparse-mc"]

    a, b, c = mc(net, X), mc(net, Xs), mc(net.rescaled([2.0**40, 2.0**-40]), X)
    assert a.losses == b.losses == c.losses and 0 < a.q_hat < 1
    assert b.unclipped == a.unclipped
    assert c.unclipped == pytest.approx(a.unclipped, rel=1e-12)  # the KL from the searched rescaling, to rounding
