"""Bitwise regression guard of :func:`sparsebound.certify` (issue 14: the pipeline split and the
linear-operator seam must not change a single bit of any result).

``tests/data/certify_reference.json`` holds ``Certificate.to_dict(per_sample=True)`` (timings and
library versions left out) of a few small networks -- bias-free and with biases, depth 2 and 3,
every method, several method subsets (which change the rescaling search's starts), with and
without rescaling -- computed by the code before the refactor (commit ``REFERENCE_COMMIT``).  The
test recomputes them and compares every float exactly (JSON floats are the shortest repr, which
round-trips float64 exactly); a mismatch names the first differing field.

Floating-point results may differ on other CPUs or library versions (BLAS kernels, summation
order), so the comparison runs only where the reference was recorded (same torch, numpy and scipy
versions, CPU capability and machine type); elsewhere it is skipped with the command that
regenerates the reference from a checkout of the reference commit:

    git worktree add /tmp/sb-ref REFERENCE_COMMIT
    PYTHONPATH=/tmp/sb-ref/src python tests/test_certify_reference.py --write tests/data/certify_reference.json
"""

from __future__ import annotations

import json
import math
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

#: the commit whose ``certify`` produced the reference values (main before issue 14's refactor).
REFERENCE_COMMIT = "a41717c17f8dca08094ea398d7066dbb23ef5dba"
REFERENCE = Path(__file__).parent / "data" / "certify_reference.json"

ALL = ["sparse", "uniform-sparse", "dense", "sparse-mc", "neyshabur2018", "neyshabur2018-init", "bartlett2017",
       "test-set"]

#: (name, widths, bias, methods, extra certify options)
CASES: list[tuple[str, tuple[int, ...], bool, list[str], dict[str, Any]]] = [
    ("k3-nobias-all", (10, 24, 20, 3), False, ALL, {"prior_noise": 0.002}),
    ("k3-bias-all", (10, 24, 20, 3), True, ALL, {"prior_noise": 0.002}),
    ("k2-nobias-all", (10, 32, 3), False, ALL, {}),
    ("k2-bias-all-norescale", (10, 28, 3), True, ALL, {"rescale": False}),
    ("k3-nobias-norescale", (10, 24, 20, 3), False, ["sparse", "uniform-sparse", "dense", "sparse-mc"],
     {"rescale": False}),
    ("k3-nobias-sparse-alone", (10, 24, 20, 3), False, ["sparse"], {"prior_noise": 0.002}),
    ("k3-nobias-mc-alone", (10, 24, 20, 3), False, ["sparse-mc"], {"exact_rounds": 1}),
    ("k3-bias-dense-alone", (10, 24, 20, 3), True, ["dense"], {}),
    ("k3-nobias-uniform-dense-bartlett", (10, 24, 20, 3), False, ["uniform-sparse", "dense", "bartlett2017"],
     {"tradeoff": False}),
]
M_BOUND, M_TEST = 96, 160


def _case_inputs(widths: tuple[int, ...], bias: bool, seed: int, prior_noise: float) -> dict[str, Any]:
    """A network, a prior near it and data labelled mostly by it (deterministic, no training)."""
    from sparsebound.network import ReLUNetwork

    g = torch.Generator().manual_seed(1000 + seed)
    ws = [torch.randn(widths[k + 1], widths[k], generator=g, dtype=torch.float64) / math.sqrt(widths[k])
          for k in range(len(widths) - 1)]
    bs = [0.1 * torch.randn(widths[k + 1], generator=g, dtype=torch.float64) for k in range(len(widths) - 1)] \
        if bias else None
    net = ReLUNetwork(ws, bs)
    pw = [w + prior_noise * torch.randn(w.shape, generator=g, dtype=torch.float64) / math.sqrt(w.shape[1])
          for w in ws]
    pb = [b + prior_noise * torch.randn(b.shape, generator=g, dtype=torch.float64) for b in bs] \
        if bs is not None else None
    prior = ReLUNetwork(pw, pb)
    X = torch.randn(M_BOUND + M_TEST, widths[0], generator=g, dtype=torch.float64).float()
    y = net.forward(X).outputs.argmax(1)
    flip = torch.rand(y.shape[0], generator=g) < 0.05  # a few errors, so every term is exercised
    y = torch.where(flip, (y + 1) % widths[-1], y)
    return {"net": net, "prior": prior, "X": X[:M_BOUND], "y": y[:M_BOUND], "X_test": X[M_BOUND:],
            "y_test": y[M_BOUND:]}


def _strip(d: Any) -> Any:
    """The record without what legitimately differs between runs (timings, versions)."""
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in ("timings_s", "environment")}
    if isinstance(d, list | tuple):
        return [_strip(v) for v in d]
    return d


def compute_case(i: int) -> dict[str, Any]:
    from sparsebound import certify

    _, widths, bias, methods, extra = CASES[i]
    extra = dict(extra)
    inp = _case_inputs(widths, bias, i, extra.pop("prior_noise", 0.05))
    opts: dict[str, Any] = {"mc_draws": 40, "mc_batch": 32, "mc_seed": 5, "radius": 8.0, "progress": False}
    opts.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cert = certify(inp["net"], inp["X"], inp["y"], prior=inp["prior"], X_test=inp["X_test"],
                       y_test=inp["y_test"], methods=methods, **opts)
    # through JSON, as results files hold it (tuples become lists; floats round-trip exactly)
    return json.loads(json.dumps(_strip(cert.to_dict(per_sample=True))))


def fingerprint() -> dict[str, str]:
    import scipy

    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "cpu_capability": str(cap), "machine": platform.machine()}


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            d = _first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            d = _first_difference(u, v, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    if type(a) is not type(b) or a != b:
        return f"{path}: {a!r} != {b!r}"
    return None


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))
    here = fingerprint()
    if ref["fingerprint"] != here:
        pytest.skip(f"reference recorded with {ref['fingerprint']}, this is {here}; regenerate it from commit "
                    f"{ref['commit'][:12]} (see this module's docstring) to compare bit for bit")
    return ref


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[0] for c in CASES])
def test_certify_matches_the_reference_bit_for_bit(reference: dict[str, Any], i: int, one_torch_thread) -> None:
    name = CASES[i][0]
    got = compute_case(i)
    want = reference["cases"][name]
    assert set(got["results"]) == set(CASES[i][3]), name
    diff = _first_difference(got, want)
    assert diff is None, f"{name}: {diff}"


def test_reference_cases_exercise_every_method(reference: dict[str, Any]) -> None:
    """The reference is informative: certified samples, sparse below dense, sparse-mc present."""
    r = reference["cases"]["k3-nobias-all"]["results"]
    assert 0.0 < r["sparse"]["certified_fraction"] <= 1.0
    assert r["sparse"]["unclipped"] < r["dense"]["unclipped"]
    assert r["sparse-mc"]["n_draws"] == 40 and len(r["sparse-mc"]["losses"]) == 40
    for name, _, _, methods, _ in CASES:
        assert set(reference["cases"][name]["results"]) == set(methods)


def _write(path: Path) -> None:
    import subprocess

    import sparsebound

    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(sparsebound.__file__).parent).stdout.strip() or REFERENCE_COMMIT
    cases = {}
    for i, case in enumerate(CASES):
        cases[case[0]] = compute_case(i)
        print(case[0], {k: v.get("unclipped") for k, v in cases[case[0]]["results"].items()}, file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"commit": commit, "fingerprint": fingerprint(), "cases": cases}, indent=None)
    path.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        sys.exit("usage: python tests/test_certify_reference.py --write tests/data/certify_reference.json")
    _write(Path(sys.argv[2]))
