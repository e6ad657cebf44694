"""One-line errors instead of tracebacks, empty output paths, exclusive --json (breaker findings 7, 8, 9)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebound import certify
from sparsebound._io import dump_json_new
from sparsebound.cli import main
from sparsebound.errors import ConfigError, DataError
from sparsebound.network import ReLUNetwork
from sparsebound.training import init_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: ")
    return err


def _npz(path: Path, X: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, X=X, y=y)
    return f"npz:{path}"


def test_empty_npz_and_huge_labels_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = _npz(tmp_path / "empty.npz", np.zeros((0, 5)), np.zeros(0, dtype=int))
    assert "no samples" in _one_line_error(capsys, ["train", "--dataset", empty, "--widths", "4", "--quiet",
                                                    "--out", str(tmp_path / "a")])
    r = np.random.default_rng(0)
    big = _npz(tmp_path / "big.npz", r.random((100, 5)), np.where(r.integers(0, 3, 100) == 2, 2**40, 0))
    assert "renumber the classes" in _one_line_error(capsys, ["train", "--dataset", big, "--widths", "4", "--quiet",
                                                              "--out", str(tmp_path / "b")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_too_wide_network_is_refused_before_allocating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = _npz(tmp_path / "ok.npz", np.random.default_rng(0).random((50, 5)), np.arange(50) % 3)
    err = _one_line_error(capsys, ["train", "--dataset", ok, "--widths", "100000", "100000", "--max-epochs", "1",
                                   "--quiet", "--out", str(tmp_path / "w")])
    assert "10,000,800,000 parameters" in err and "GiB" in err
    with pytest.raises(ConfigError, match="parameters"):
        init_network(5, [10**6, 10**6], 3)


def test_non_utf8_checkpoint_json_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = _npz(tmp_path / "ok.npz", np.random.default_rng(0).random((50, 5)), np.arange(50) % 3)
    ck = tmp_path / "ck"
    assert main(["train", "--dataset", ok, "--widths", "4", "--max-epochs", "1", "--quiet", "--out", str(ck)]) == 0
    (ck / "checkpoint.json").write_bytes(b"\xff\xfe{")
    capsys.readouterr()
    for argv in (["info", str(ck)], ["certify", str(ck), "--quiet"]):
        assert "damaged" in _one_line_error(capsys, argv)


@pytest.mark.parametrize("argv", [
    ["train", "--dataset", "digits", "--widths", "4", "--max-epochs", "1", "--quiet", "--out", ""],
    ["train", "--dataset", "digits", "--widths", "4", "--max-epochs", "1", "--quiet", "--out", "  "],
    ["certify", "CKPT", "--quiet", "--methods", "dense", "--json", ""],
])
def test_empty_output_paths_are_refused(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "is empty" in _one_line_error(capsys, argv)
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


def test_json_is_written_exclusively(tmp_path: Path) -> None:
    """Of concurrent writers of one new --json file exactly one succeeds; nothing is overwritten."""
    target = tmp_path / "c.json"
    results: list[str] = []

    def writer(i: int) -> None:
        try:
            dump_json_new(target, {"writer": i})
            results.append(f"ok{i}")
        except FileExistsError:
            results.append("exists")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("exists") == 7
    winner = int(next(r for r in results if r.startswith("ok"))[2:])
    assert json.loads(target.read_text()) == {"writer": winner}
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary files left


def test_certify_json_created_meanwhile_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ok = _npz(tmp_path / "ok.npz", np.random.default_rng(0).random((60, 5)), np.arange(60) % 3)
    ck = tmp_path / "ck"
    assert main(["train", "--dataset", ok, "--widths", "4", "--max-epochs", "1", "--quiet", "--out", str(ck)]) == 0
    js = tmp_path / "r.json"
    import sparsebound.certificate as certmod

    real = certmod.certify

    def racing(*a, **k):  # another process writes the same file while this one computes
        js.write_text("{\"other\": true}\n")
        return real(*a, **k)

    monkeypatch.setattr(certmod, "certify", racing)
    capsys.readouterr()
    assert "created by another process" in _one_line_error(capsys, ["certify", str(ck), "--quiet", "--methods",
                                                                   "dense", "--json", str(js)])
    assert json.loads(js.read_text()) == {"other": True}
    shutil.rmtree(ck)


@pytest.mark.parametrize("make", [lambda X: X.to("meta"), lambda X: X.to_sparse(), lambda X: X.to(torch.complex128)])
def test_unusual_tensors_as_x_are_data_errors(make) -> None:
    g = torch.Generator().manual_seed(0)
    net = ReLUNetwork([torch.randn(6, 4, generator=g, dtype=torch.float64),
                       torch.randn(3, 6, generator=g, dtype=torch.float64)])
    X = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = net.forward(X).outputs.argmax(1)
    with pytest.raises(DataError):
        certify(net, make(X), y, prior=net, methods=["dense"], progress=False)


def test_prior_checkpoints_of_related_or_path_data_may_overlap() -> None:
    """A --prior checkpoint trained on mnist5k overlaps --data mnist (mnist5k is a subset of MNIST's
    training set), and data given by path may be any dataset's files: refused; unrelated names pass."""
    from sparsebound.cli import _may_overlap

    assert _may_overlap("mnist5k", "mnist") and _may_overlap("mnist", "MNIST5K")
    assert _may_overlap("mnist5k", "idx:/data/mnist") and _may_overlap("npz:/x.npz", "digits")
    assert _may_overlap("digits", "digits")
    assert not _may_overlap("digits", "mnist") and not _may_overlap("fashion-mnist", "mnist5k")


def test_json_never_replaces_a_nested_checkpoint_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json --force may not overwrite the record of any checkpoint nested in the certified one (prior,
    robust-prior, ...): those are inputs of the run."""
    from sparsebound.cli import _check_json_target, _protected_files

    ck = tmp_path / "ck"
    for sub in (ck, ck / "prior", ck / "robust-prior"):
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "checkpoint.json").write_text("{}")
    with pytest.raises(ConfigError, match="an input of this run"):
        _check_json_target(str(ck / "robust-prior" / "checkpoint.json"), True, _protected_files(ck))
    _check_json_target(str(tmp_path / "certificate.json"), True, _protected_files(ck))


def test_proximal_with_all_layer_certificate_objective_is_refused(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    argv = ["train", "--dataset", "digits", "--widths", "4", "--max-epochs", "1", "--prior-fraction", "0.5",
            "--objective", "certificate", "--certificate-noise", "all", "--proximal", "3", "--quiet",
            "--out", str(tmp_path / "o")]
    assert "--proximal applies to" in _one_line_error(capsys, argv)
    assert not (tmp_path / "o").exists()
