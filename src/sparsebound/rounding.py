"""Floating-point bounds shared by every path (docs/theory.md section 7).

Every number a certificate consumes must sit on the safe side of its exact
real-arithmetic value for ANY finite scale of the inputs and weights: an upper
bound of a norm must never underflow to 0, overflow must give ``inf`` (which
certifies nothing), never a small number.  The helpers here are the one place
where that is done; the analytic forward pass (``network``), the norm tables
(``norms``), the certificate (``certificate``), the baselines and the
Monte-Carlo path (``montecarlo``) all use them.

Model: IEEE 754 binary64, round to nearest, gradual underflow.  ``u = 2^-53``,
``eta = 2^-1074`` (the smallest positive subnormal).  Every operation obeys
``fl(a op b) = (a op b)(1 + d) + e`` with ``|d| <= u``, ``|e| <= eta/2``, and
``e = 0`` for additions and subtractions (a sum that underflows is exact).
Round to nearest also gives: ``nextafter(fl(x), +inf) >= x`` and
``nextafter(fl(x), -inf) <= x`` for the exact result ``x`` of one operation.

Source: Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed. (2002),
sections 2.1-2.2 (model with underflow) and 3.1 (dot products, eq. (3.5)).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from .errors import NetworkError

U64 = 2.0**-53
"""Unit roundoff of float64."""
TINY64 = 2.0**-1074
"""The smallest positive float64 (the subnormal spacing eta)."""
MIN_NORMAL64 = 2.0**-1022
"""The smallest positive normal float64."""
MAX_FLOAT64 = 1.7976931348623157e308
MAX_SHIFT = 1020
"""Largest power-of-two exponent used to normalise a vector (keeps the factor exact)."""
_EXACT_CHECK_MAX = 1 << 16  # sums of squares checked for exactness up to this many nonzero terms


def gamma_n(n: int, u: float = U64) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error bound of an n-term sum or dot product.

    Raises:
        NetworkError: ``n u >= 0.5`` (a layer far too wide for the float64 analysis).
    """
    nu = n * u
    if nu >= 0.5:
        raise NetworkError(f"layer too wide ({n}) for the float64 rounding analysis")
    return nu / (1.0 - nu)


# ----- scalars ----------------------------------------------------------------------


def up(x: float) -> float:
    """The next float64 above ``x``: an upper bound of the exact result of the one
    operation whose rounded value is ``x`` (round to nearest)."""
    return math.nextafter(float(x), math.inf)


def down(x: float) -> float:
    """The next float64 below ``x`` (see :func:`up`)."""
    return math.nextafter(float(x), -math.inf)


def float_up(q: Fraction) -> float:
    """The smallest float64 ``>= q`` for an exact rational ``q`` (``inf`` beyond the range)."""
    try:
        f = float(q)
    except OverflowError:
        return math.inf if q > 0 else -MAX_FLOAT64
    return f if Fraction(f) >= q else up(f)


def sqrt_up(x: float) -> float:
    """An upper bound of ``sqrt(x)`` for a float ``x >= 0`` (exact where the root is a float)."""
    r = math.sqrt(x)
    if math.isinf(r) or Fraction(r) ** 2 == Fraction(x):
        return r
    return up(r)


def sum_up(values: list[float]) -> float:
    """An upper bound of the exact sum of a few floats (exact rational sum, rounded up)."""
    if any(math.isinf(v) for v in values):
        return math.inf
    return float_up(sum((Fraction(v) for v in values), Fraction(0)))


def prod_up(values: list[float]) -> float:
    """An upper bound of the exact product of a few non-negative floats: the product is
    formed exactly (rationals, no intermediate overflow or underflow) and rounded up once
    (``inf`` beyond the float64 range)."""
    q = Fraction(1)
    for v in values:
        v = float(v)
        if v < 0 or math.isnan(v):
            raise ValueError("prod_up needs non-negative numbers")
        if v == 0.0:
            return 0.0
        if math.isinf(v):
            return math.inf
        q *= Fraction(v)
    return float_up(q)


# ----- tensors: exact power-of-two scaling ------------------------------------------


def pow2(k: torch.Tensor) -> torch.Tensor:
    """Exact ``2.0**k`` (float64) for int64 ``k`` in [-1022, 1023], built bitwise."""
    return ((k + 1023) << 52).view(torch.float64)


def shift_for(maxabs: torch.Tensor) -> torch.Tensor:
    """Elementwise int64 ``s``, ``|s| <= MAX_SHIFT``, with ``maxabs * 2^s`` in [0.5, 1)
    where the clamp allows; 0 where ``maxabs`` is 0 or not finite."""
    _, e = torch.frexp(maxabs)
    s = (-e.to(torch.int64)).clamp(-MAX_SHIFT, MAX_SHIFT)
    ok = (maxabs > 0) & torch.isfinite(maxabs)
    return torch.where(ok, s, torch.zeros_like(s))


def scale_pow2(t: torch.Tensor, e: torch.Tensor | int, direction: str) -> torch.Tensor:
    """``t * 2^e`` for int64 exponents ``e`` (broadcast with ``t``), rounded outward.

    The product is exact whenever it is a normal float64.  Where it is subnormal it
    may be off by less than one subnormal spacing (the factor is applied in three
    exact same-signed parts; each rounding in the subnormal range errs by at most half a
    spacing and later parts only shrink it), so it is moved one spacing outward: up for
    ``direction="up"`` (upper bounds), down for ``"down"`` (lower bounds).  Overflow gives
    ``+-inf`` for upper bounds; for lower bounds ``+inf`` is replaced by the largest finite float64 (still a lower bound
    of a finite value).  Non-finite inputs stay as they are.
    """
    if direction not in ("up", "down"):
        raise ValueError("direction must be 'up' or 'down'")
    if isinstance(e, int | np.integer) and abs(int(e)) <= MAX_SHIFT:
        e = int(e)
        if e == 0:
            return t
        r = t * math.ldexp(1.0, e)  # one exact factor
        may_sub, may_over = e < 0, e > 0  # scaling up is exact unless it overflows
    else:
        # |t * 2^e| lies outside the float64 range for |e| > 2098, so clamping to 2100 changes
        # nothing; three same-signed parts of at most 700 keep every factor an exact power of
        # two and every intermediate between the start and the end magnitude
        e = torch.as_tensor(e, dtype=torch.int64, device=t.device).clamp(-2100, 2100)
        e1 = torch.div(e, 3, rounding_mode="floor")
        e2 = torch.div(e - e1, 2, rounding_mode="floor")
        e3 = e - e1 - e2
        r = t * pow2(e1) * pow2(e2) * pow2(e3)
        may_sub = may_over = True
    if may_sub:
        sub = (r.abs() < MIN_NORMAL64) & (t != 0)  # (t = +-inf gives +-inf, never subnormal)
        if bool(sub.any()):
            step = next_up(r) if direction == "up" else next_down(r)
            r = torch.where(sub, step, r)
    if may_over and direction == "down":
        over = (r == math.inf) & (t != math.inf)
        if bool(over.any()):
            r = torch.where(over, torch.full_like(r, MAX_FLOAT64), r)
    return r


def next_up(t: torch.Tensor) -> torch.Tensor:
    """Elementwise next float64 above ``t``."""
    return torch.nextafter(t, torch.full_like(t, math.inf))


def next_down(t: torch.Tensor) -> torch.Tensor:
    """Elementwise next float64 below ``t``."""
    return torch.nextafter(t, torch.full_like(t, -math.inf))


# ----- norms ------------------------------------------------------------------------


def norm_upper(v: torch.Tensor, dim: int) -> torch.Tensor:
    """An upper bound of the Euclidean norm along ``dim``, valid at any finite scale.

    Each slice is multiplied by an exact power of two ``2^s`` so that its largest
    absolute entry lies in [0.5, 1) (``|s| <= 1020``; for slices whose largest entry is
    subnormal it lies in [2^-54, 0.5)), the squares are summed, and
    ``sqrt(sum) * (1 + gamma_{n+6})`` is scaled back by ``2^-s``, rounded up where
    the result is subnormal.  ``inf`` where a slice holds a non-finite value; 0 for a
    zero slice.  Proof (docs/theory.md Lemma 7.1): the scaled entries err by at most
    ``eta/2``, the dot product ``w . w`` by ``gamma_n`` relative plus ``n eta/2``, the square
    root by ``u``; the scaled sum is at least ``2^-109``, so the absolute terms are below
    ``n 2^-960`` relatively, and all of it is covered by ``1 + gamma_{n+6}`` together with
    the rounding of that product.

    Args:
        v: real float64 tensor; ``dim`` the dimension reduced.

    Returns:
        float64 tensor of ``v``'s shape without ``dim``.
    """
    n = int(v.shape[dim])
    if n == 0:
        return torch.zeros(v.sum(dim).shape, dtype=torch.float64, device=v.device)
    v = v.to(torch.float64)
    mx = torch.linalg.vector_norm(v, ord=math.inf, dim=dim, keepdim=True)  # max |v_i|: exact
    s = shift_for(mx)
    w = v * pow2(s)  # exact where the result is normal (signs do not matter for squares)
    r = torch.sqrt(torch.linalg.vecdot(w, w, dim=dim)) * up(1.0 + gamma_n(n + 6))
    s = s.squeeze(dim)
    out = r * pow2(-s)  # |s| <= 1020: one exact factor; rounded only where subnormal
    out = torch.where((out < MIN_NORMAL64) & (r > 0), next_up(out), out)
    return torch.where(torch.isfinite(mx.squeeze(dim)), out, torch.full_like(out, math.inf))


def norm_upper_fast(v: torch.Tensor, dim: int) -> torch.Tensor:
    """A cheaper upper bound of the Euclidean norm along ``dim`` (no rescaling): each
    computed square errs by at most ``u`` relative plus ``2^-1075`` absolute, so
    ``||v|| <= (1 + 1e-9) sqrt(sum fl(v_i^2)) + sqrt(n) 2^-537`` (``n < 1e6`` terms).
    Valid at any scale (overflow gives ``inf``), but loose for norms below ``~2^-500``:
    the Monte-Carlo path uses it on perturbed weights and activations of moderate scale."""
    n = v.shape[dim]
    return v.pow(2).sum(dim).sqrt() * (1 + 1e-9) + math.sqrt(n) * 2.0**-537


def sum_sq_upper(d: torch.Tensor, exact: bool = False) -> float:
    """An upper bound of ``sum d_i^2`` over every entry of ``d`` (a float64 tensor).

    With ``exact=True`` (the caller knows ``d`` holds the exact values) the result is 0 for
    an all-zero ``d``, and (up to 65,536 nonzero terms) the computed sum unchanged when it
    is provably exact: every nonzero ``|d_i|`` is ``k_i 2^e`` with integers ``k_i < 2^b``,
    ``2b + ceil(log2 n) <= 53`` and ``2e >= -1074``; then every square and partial sum is
    an integer multiple of ``2^(2e)`` below ``2^53 2^(2e)``, hence exact in any order.
    Otherwise the square of :func:`norm_upper`, rounded up.
    """
    flat = d.reshape(-1).to(torch.float64)
    if flat.numel() == 0:
        return 0.0
    if not bool(torch.isfinite(flat).all()):
        return math.inf
    if exact:
        nz = flat[flat != 0]
        if nz.numel() == 0:
            return 0.0
    if exact and nz.numel() <= _EXACT_CHECK_MAX:
        m, ex = torch.frexp(nz.abs())
        k = (m * 2.0**53).to(torch.int64)  # exact integer significand
        low = (k & -k).to(torch.float64)  # lowest set bit, a power of two
        _, lz = torch.frexp(low)  # low = 2^(lz - 1)
        e_low = ex.to(torch.int64) - 53 + (lz.to(torch.int64) - 1)
        e_min = int(e_low.min())
        bits = int(ex.max()) - e_min
        fits = 2 * bits + math.ceil(math.log2(max(2, nz.numel()))) <= 53
        if fits and 2 * e_min >= -1074 and 2 * int(ex.max()) <= 1020:
            return float((nz * nz).sum())
    r = float(norm_upper(flat, 0))
    return up(r * r) if math.isfinite(r) else math.inf


def frobenius_sq_distance_upper(
    a: torch.Tensor, b: torch.Tensor, lam: float = 1.0, *, a_norm: float | None = None
) -> float:
    """An upper bound of ``||lam a - b||_F^2`` (exact real ``lam > 0``; float64 tensors of one shape).

    ``d = fl(fl(lam a) - b)`` is computed entrywise.  With ``lam = 1`` (or a power of two whose
    products are checked exact: ``fl(lam a) / lam == a``), Knuth's TwoSum checks
    whether every difference is exact; then ``d`` is the exact difference and
    :func:`sum_sq_upper` may return an exact sum.  Otherwise, per entry,
    ``|lam a - b| <= |d|/(1 - u) + u |lam a| + eta/2`` (the last two only when ``lam != 1``;
    one rounding in the product, one in the difference, which is exact on underflow), so
    ``||lam a - b|| <= N(d)/(1 - u) + u lam N(a) + sqrt(n) eta/2`` with ``N`` :func:`norm_upper`;
    it is evaluated with every step rounded up and squared upward.  ``a_norm``: an upper
    bound of ``||a||_F`` already computed (saves a pass over ``a`` when ``lam != 1``).

    Source: docs/theory.md section 7 ("Distances to the prior").
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    lam = float(lam)
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be positive and finite, got {lam!r}")
    exact_product = lam == 1.0
    la = a
    if not exact_product and math.frexp(lam)[0] == 0.5:  # a power of two: exact unless under/overflow
        la = a * lam
        exact_product = bool(torch.isfinite(la).all()) and torch.equal(la * (1.0 / lam), a)
    if exact_product:
        d = la - b
        bb = d - la
        err = (la - (d - bb)) + (-b - bb)  # TwoSum: la - b = d + err exactly (no overflow)
        if bool(torch.isfinite(d).all()) and bool((err == 0).all()):
            return sum_sq_upper(d, exact=True)
        nd = float(norm_upper(d.reshape(-1), 0))
        r = up(nd / (1.0 - U64))
    else:
        d = a * lam - b
        nd = float(norm_upper(d.reshape(-1), 0))
        na = float(norm_upper(a.reshape(-1), 0)) if a_norm is None else float(a_norm)
        t1 = up(nd / (1.0 - U64))
        t2 = up(up(U64 * lam) * na)
        t3 = up(up(math.sqrt(d.numel())) * (TINY64 / 2))
        r = up(up(t1 + t2) + t3)
    if not math.isfinite(r):
        return math.inf
    return up(r * r)
