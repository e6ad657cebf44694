"""Tests for the command-line interface (in-process via sparsebound.cli.main, plus one subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sparsebound.checkpoint import META_FILE, TENSOR_FILE, load_checkpoint
from sparsebound.cli import main
from sparsebound.data import write_idx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


IDX_BASES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _no_network(*args, **kwargs):
    raise AssertionError("no download expected: all four IDX files are present")


def _expect_one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``main(argv)``; it must return 2 with exactly one ``error: ...`` line on stderr."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# --------------------------------------------------------------------------- train + info


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("cli") / "ck"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", "--dataset", "synthetic", "--widths", "16", "16", "--max-epochs", "5", "--out",
                   str(out), "--quiet"])
    assert rc == 0
    return out, buf.getvalue()


def test_train_writes_checkpoint(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    assert (out / META_FILE).is_file()
    assert (out / TENSOR_FILE).is_file()
    ck = load_checkpoint(out)
    assert ck.network.widths == (20, 16, 16, 3)
    assert not ck.network.has_bias
    assert ck.prior is None
    assert 1 <= ck.meta["training"]["epochs"] <= 5
    assert ck.meta["training"]["config"]["max_epochs"] == 5
    assert ck.meta["data"]["dataset"] == "synthetic"
    assert "trained 20-16-16-3 ReLU network, K=3, no biases on synthetic (500 train / 200 test)" in stdout
    assert f"checkpoint written to {out}" in stdout


def test_info_reads_checkpoint(trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = trained
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    meta = json.loads((out / META_FILE).read_text())
    assert f"checkpoint {out}" in text
    assert "20-16-16-3 ReLU network, K=3, no biases" in text
    assert f"({16 * 20 + 16 * 16 + 3 * 16} parameters)" in text
    assert "synthetic  train 500  test 200" in text
    assert "prior       init" in text
    assert f"training    {meta['training']['epochs']} epochs, lr 0.05, momentum 0.9, batch 64, seed 0" in text
    assert f"errors      train {meta['train_error']:.4f}  test {meta['test_error']:.4f}" in text
    ck = load_checkpoint(out)
    assert f"||W - W_init||_F = {ck.network.distance_to(ck.init):.4f}" in text


def test_info_json(trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = trained
    assert main(["info", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / META_FILE).read_text())
    assert printed["architecture"]["widths"] == [20, 16, 16, 3]
    assert printed["format"].startswith("sparsebound-checkpoint/")


def test_train_with_prior_fraction_and_bias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ck"
    rc = main(["train", "--dataset", "synthetic", "--n-train", "100", "--n-test", "30", "--widths", "8", "--bias",
               "--max-epochs", "2", "--prior-fraction", "0.5", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "data-dependent prior (fraction 0.5)" in text
    assert "||W - W0||_F" in text
    ck = load_checkpoint(out)
    assert ck.network.has_bias
    assert ck.prior is not None
    assert (out / "prior" / META_FILE).is_file()
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "with biases" in info
    assert "bound set   50 points (prior fraction 0.5, seed 0)" in info
    assert "||W - W_prior||_F" in info


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("cmd", [[], ["train"], ["info"], ["sparsity"], ["certify"]])
def test_help_exits_zero(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sparsebound")
    if cmd:
        assert f"sparsebound {cmd[0]}" in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: sparsebound" in capsys.readouterr().out


def test_module_entry_point(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    r = subprocess.run([sys.executable, "-m", "sparsebound", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: sparsebound")
    for cmd in ("train", "info", "sparsity", "certify"):
        assert cmd in r.stdout


# --------------------------------------------------------------------------- bad inputs


def test_unknown_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _expect_one_line_error(capsys, ["train", "--dataset", "nosuchdata", "--widths", "4", "--out",
                                           str(tmp_path / "o"), "--quiet"])
    assert "nosuchdata" in line


def test_mnist_empty_folder_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("SPARSEBOUND_DATA", str(tmp_path / "datahome"))
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _expect_one_line_error(capsys, ["train", "--dataset", "mnist", "--data-dir", str(empty), "--widths", "4",
                                           "--out", str(tmp_path / "o"), "--quiet"])
    assert str(empty) in line
    assert "--data-dir" in line
    assert list(empty.iterdir()) == []


def test_corrupt_idx_header(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    folder = tmp_path / "fake-mnist"
    rng = np.random.default_rng(0)
    write_idx(folder / IDX_BASES[0], rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
    write_idx(folder / IDX_BASES[1], (np.arange(20) % 10).astype(np.uint8))
    write_idx(folder / IDX_BASES[3], (np.arange(10) % 10).astype(np.uint8))
    bad = folder / IDX_BASES[2]
    bad.write_bytes(b"\x07\x00\x08\x03" + b"\x00" * 100)  # bad magic number
    line = _expect_one_line_error(capsys, ["train", "--dataset", "mnist", "--data-dir", str(folder), "--widths", "4",
                                           "--out", str(tmp_path / "o"), "--quiet"])
    assert str(bad) in line
    assert "corrupt" in line


def test_truncated_idx_data(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    folder = tmp_path / "fake-mnist"
    rng = np.random.default_rng(0)
    for base, n in zip(IDX_BASES, (20, 20, 10, 10), strict=True):
        shape = (n, 28, 28) if "images" in base else (n,)
        write_idx(folder / base, rng.integers(0, 10, shape, dtype=np.uint8))
    p = folder / IDX_BASES[0]
    p.write_bytes(p.read_bytes()[:-5])
    line = _expect_one_line_error(capsys, ["train", "--dataset", "mnist", "--data-dir", str(folder), "--widths", "4",
                                           "--out", str(tmp_path / "o"), "--quiet"])
    assert str(p) in line


def test_prior_fraction_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    line = _expect_one_line_error(capsys, ["train", "--dataset", "synthetic", "--widths", "4", "--prior-fraction",
                                           "1.5", "--out", str(out), "--quiet"])
    assert "--prior-fraction" in line
    assert not (out / META_FILE).exists()


@pytest.mark.parametrize(("opt", "value"), [("--max-epochs", "-1"), ("--lr", "0"), ("--momentum", "1.0")])
def test_bad_training_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], opt: str, value: str) -> None:
    _expect_one_line_error(capsys, ["train", "--dataset", "synthetic", "--widths", "4", opt, value, "--out",
                                    str(tmp_path / "o"), "--quiet"])


def test_widths_zero_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse rejects it: exit status 2, no traceback, the error names the option.
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "synthetic", "--widths", "0", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: argument --widths" in err.splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_widths_zero_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["train", "--dataset", "synthetic", "--widths", "0", "--out", str(tmp_path / "o")])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")


def test_info_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing-here"
    line = _expect_one_line_error(capsys, ["info", str(missing)])
    assert str(missing) in line


def test_info_corrupt_json(trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / TENSOR_FILE).write_bytes((src / TENSOR_FILE).read_bytes())
    (ck / META_FILE).write_text('{"format": "sparsebound-checkpoint/1", "architecture": ')
    line = _expect_one_line_error(capsys, ["info", str(ck)])
    assert META_FILE in line


def test_info_tampered_tensors(trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / META_FILE).write_text((src / META_FILE).read_text())
    raw = bytearray((src / TENSOR_FILE).read_bytes())
    raw[-1] ^= 0xFF
    (ck / TENSOR_FILE).write_bytes(bytes(raw))
    line = _expect_one_line_error(capsys, ["info", str(ck)])
    assert "hash" in line


def test_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    line = _expect_one_line_error(capsys, ["train", "--dataset", "synthetic", "--widths", "4", "--max-epochs", "1",
                                           "--out", str(out), "--quiet"])
    assert str(out) in line
    assert "--out" in line
    assert blocker.read_text() == "not a folder"


def test_bad_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _expect_one_line_error(capsys, ["train", "--dataset", "synthetic", "--widths", "4", "--max-epochs", "1",
                                           "--device", "nonsense", "--out", str(tmp_path / "o"), "--quiet"])
    assert "nonsense" in line


def test_bad_split_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _expect_one_line_error(capsys, ["train", "--dataset", "synthetic", "--widths", "4", "--split-seed", "-1",
                                           "--out", str(tmp_path / "o"), "--quiet"])
    assert "--split-seed" in line and "[0, 2^63 - 1]" in line
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- regressions (bugs found by these tests)


def test_info_json_not_an_object(trained: tuple[Path, str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / TENSOR_FILE).write_bytes((src / TENSOR_FILE).read_bytes())
    (ck / META_FILE).write_text("[]")
    _expect_one_line_error(capsys, ["info", str(ck)])


def test_info_minimal_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sparsebound.checkpoint import save_checkpoint
    from sparsebound.training import init_network

    out = save_checkpoint(tmp_path / "ck", init_network(4, (5,), 3, seed=0), init_network(4, (5,), 3, seed=1), {})
    assert main(["info", str(out)]) == 0
    assert "4-5-3 ReLU network" in capsys.readouterr().out


# --------------------------------------------------------------------------- certify misuse


def test_certify_refuses_a_prior_that_saw_the_bound_sample(trained: tuple[Path, str], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    # the network itself (trained on the whole training set) is not a valid prior
    line = _expect_one_line_error(capsys, ["certify", str(src), "--prior", str(src), "--methods", "dense",
                                           "--quiet"])
    assert "prior" in line and "bound sample" in line


def test_certify_json_path_that_is_a_folder(trained: tuple[Path, str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    line = _expect_one_line_error(capsys, ["certify", str(src), "--json", str(tmp_path), "--quiet"])
    assert "folder" in line


def test_certify_with_a_prior_folder_uses_its_bound_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ddp"
    assert main(["train", "--dataset", "synthetic", "--widths", "12", "12", "--max-epochs", "3", "--prior-fraction",
                 "0.5", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    js = tmp_path / "c.json"
    assert main(["certify", str(out), "--prior", str(out / "prior"), "--methods", "dense", "test-set",
                 "--json", str(js), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "S_bound" in text
    rec = json.loads(js.read_text())
    assert rec["m"] < rec["m_test"] + 10_000 and "S_bound" in rec["bound_sample"]


# --------------------------------------------------------------------------- issue #11: validation first, safe outputs


@pytest.mark.parametrize("edit", [
    {"data": "mnist5k"},
    {"training": "x"},
    {"bound_sample": {"kind": "bound-split", "prior_fraction": 0.5}},
    {"bound_sample": "train"},
    {"prior": ["init"]},
    {"data": {"dataset": "synthetic", "split_seed": -4}},
    {"seed": "zero"},
    # the objective record (info printed tracebacks; a profile of the wrong length blamed --sigma-profiles)
    {"objective": {"rules": {"s0": "x"}}},
    {"objective": {"robust_prior": [1]}},
    {"objective": {"certificate_profile": [0, 0, 0, 1]}},
])
@pytest.mark.parametrize("command", ["info", "certify", "sparsity"])
def test_hand_edited_checkpoint_is_reported_damaged(trained: tuple[Path, str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], edit: dict,
                                                    command: str) -> None:
    src, _ = trained
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / TENSOR_FILE).write_bytes((src / TENSOR_FILE).read_bytes())
    meta = json.loads((src / META_FILE).read_text())
    meta.update(edit)
    (ck / META_FILE).write_text(json.dumps(meta))
    line = _expect_one_line_error(capsys, [command, str(ck), "--quiet"] if command != "info" else [command, str(ck)])
    assert "damaged" in line and next(iter(edit)) in line


def test_second_train_into_a_folder_in_use_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sparsebound._io import output_lock

    out = tmp_path / "busy"
    out.mkdir()
    with output_lock(out, "train"):  # a first run holds the folder
        line = _expect_one_line_error(capsys, ["train", "--dataset", "synthetic", "--widths", "4", "--max-epochs",
                                               "1", "--out", str(out), "--quiet"])
    assert "in use by another sparsebound run" in line
    assert not (out / META_FILE).exists() and not (out / TENSOR_FILE).exists()
    assert out.is_dir()  # the first run's folder is left alone


@pytest.mark.parametrize(("extra", "needle"), [
    (["--dataset", "nosuchdata"], "nosuchdata"),
    (["--device", "nonsense"], "nonsense"),
    (["--split-seed", "-3"], "--split-seed"),
    (["--seed", "-1"], "--seed"),
    (["--dataset", "digits", "--n-train", "5000"], "n_train"),
    (["--lr", "1e30"], "diverged"),
    (["--posterior", "proximal", "--proximal", "1"], "--prior-fraction"),
    (["--posterior", "proximal", "--prior-fraction", "0.5"], "--proximal"),
    (["--proximal", "0.5"], "--posterior proximal"),
    (["--prior-fraction", "0.999", "--n-train", "50"], "empty"),
])
def test_failed_train_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                            needle: str) -> None:
    base = ["train", "--dataset", "synthetic", "--widths", "4", "--max-epochs", "2", "--quiet"]
    new = tmp_path / "a" / "b"
    line = _expect_one_line_error(capsys, [*base, *extra, "--out", str(new)])
    assert needle in line
    assert not (tmp_path / "a").exists()  # every folder this run would have created is gone
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("mine")
    _expect_one_line_error(capsys, [*base, *extra, "--out", str(old)])
    assert sorted(p.name for p in old.iterdir()) == ["keep.txt"]  # a folder that existed keeps what it had


def test_seed_rule_is_the_same_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--dataset", "synthetic", "--widths", "4", "--out", str(tmp_path / "o"), "--quiet"]
    a = _expect_one_line_error(capsys, [*base, "--seed", "-1"])
    b = _expect_one_line_error(capsys, [*base, "--split-seed", "-1"])
    assert a.replace("--seed", "X") == b.replace("--split-seed", "X")
    for bad in ("1.5", "abc", str(2**63)):
        assert "[0, 2^63 - 1]" in _expect_one_line_error(capsys, [*base, "--seed", bad])
    c = _expect_one_line_error(capsys, ["sparsity", str(tmp_path / "nothing"), "--dataset", "synthetic",
                                        "--split-seed", "-1"])
    assert c == b


def test_train_config_and_data_spec_use_the_seed_rule() -> None:
    from sparsebound.errors import ConfigError
    from sparsebound.experiments import DataSpec
    from sparsebound.training import TrainConfig

    with pytest.raises(ConfigError, match=r"\[0, 2\^63 - 1\]"):
        TrainConfig(seed=-1)
    with pytest.raises(ConfigError, match=r"\[0, 2\^63 - 1\]"):
        DataSpec(split_seed=-3)
    assert TrainConfig(seed=2**63 - 1).seed == 2**63 - 1


def test_certify_mc_seed_refused_before_any_work(trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    line = _expect_one_line_error(capsys, ["certify", str(src), "--methods", "sparse", "sparse-mc", "--mc-seed", "-1",
                                           "--quiet"])
    assert "--mc-seed" in line


def test_certify_refuses_bad_options_before_loading(trained: tuple[Path, str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    for extra, needle in ((["--delta", "2"], "delta"), (["--eta1", "0"], "--eta1"), (["--device", "tpu"], "tpu"),
                          (["--init", str(src)], "--init applies with --model"),
                          (["--split-seed", "1"], "--split-seed applies with --model")):
        assert needle in _expect_one_line_error(capsys, ["certify", str(src), *extra, "--quiet"])


def test_certify_json_never_overwrites_the_checkpoint(trained: tuple[Path, str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = trained
    meta_before = (src / META_FILE).read_bytes()
    for target in (src / META_FILE, src / TENSOR_FILE):
        line = _expect_one_line_error(capsys, ["certify", str(src), "--methods", "dense", "--json", str(target),
                                               "--force", "--quiet"])
        assert "an input of this run" in line
    assert (src / META_FILE).read_bytes() == meta_before
    load_checkpoint(src)
    js = tmp_path / "c.json"
    js.write_text("earlier results")
    line = _expect_one_line_error(capsys, ["certify", str(src), "--methods", "dense", "--json", str(js), "--quiet"])
    assert "--force" in line and js.read_text() == "earlier results"
    assert main(["certify", str(src), "--methods", "dense", "--json", str(js), "--force", "--quiet"]) == 0
    assert json.loads(js.read_text())["results"]["dense"]["method"] == "dense"


def test_certify_checkpoint_without_dataset_names_the_real_option(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from sparsebound.checkpoint import save_checkpoint
    from sparsebound.training import init_network

    ck = save_checkpoint(tmp_path / "ck", init_network(64, (6,), 10, seed=0), init_network(64, (6,), 10, seed=1), {})
    line = _expect_one_line_error(capsys, ["certify", str(ck), "--methods", "dense", "--quiet"])
    assert "--data (certify)" in line
    assert main(["certify", str(ck), "--data", "digits", "--methods", "dense", "--quiet"]) == 0
    assert "1437" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["info", "certify", "sparsity"])
def test_threads_option_on_every_command(trained: tuple[Path, str], capsys: pytest.CaptureFixture[str],
                                         command: str) -> None:
    import torch

    src, _ = trained
    before = torch.get_num_threads()
    extra = {"info": [], "certify": ["--methods", "dense", "--quiet"], "sparsity": ["--quiet"]}[command]
    assert main([command, str(src), "--threads", "1", *extra]) == 0
    assert torch.get_num_threads() == before
    with pytest.raises(SystemExit) as exc:
        main([command, str(src), "--threads", "0"])
    assert exc.value.code == 2
