"""Atomic file output and JSON helpers (no numerics here).

Every file the project writes goes through :func:`atomic_write_bytes` (write a
temporary file in the same folder, fsync, then ``os.replace``) so that a run
that fails halfway never leaves a truncated result behind and earlier results
stay intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError


def _default_mode() -> int:
    """File mode an ordinary ``open()`` would give (0666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_output_path(path: str | os.PathLike[str] | None, option: str = "--out") -> None:
    """Refuse an empty (or blank) output path: ``Path("")`` is the current folder, so
    ``--out ""`` would silently write there.

    Raises:
        ConfigError: ``path`` is empty or only whitespace.
    """
    if path is not None and not str(os.fspath(path)).strip():
        raise ConfigError(f"{option} is empty; give a folder or file name (an empty path would write into the "
                          "current folder)")


def ensure_writable_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Create ``path`` (and parents) and check that files can be written in it.

    ``option`` names the command-line option the message tells the user to change.

    Raises:
        ConfigError: the folder cannot be created or is not writable.
    """
    check_output_path(path, option)
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"output folder {str(p)!r} is not writable ({exc.strerror or exc}); "
            f"choose another folder with {option}"
        ) from None
    return p


LOCK_FILE = ".sparsebound.lock"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str], command: str = "this command") -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for the duration of a run.

    A second run into the same folder (another process, or the same one) fails at
    once instead of interleaving its files with the first one's.  The lock is an
    advisory ``fcntl.flock`` on ``folder/.sparsebound.lock``; the operating system
    releases it when the process ends, so a killed run never leaves a stale lock.
    The folder must exist.

    Raises:
        ConfigError: another run holds the folder.
    """
    import fcntl

    p = Path(folder)
    path = p / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"output folder {str(p)!r} is in use by another sparsebound run; wait for it to finish "
                f"or give {command} another --out folder"
            ) from None
        try:
            yield p
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write_with(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Let ``writer(tmp_path)`` produce a file, then rename it onto ``path``.

    For libraries that insist on writing to a file name themselves (matplotlib,
    safetensors).  The temporary file keeps the final suffix so writers that
    infer the format from the name still work.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=p.suffix)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.chmod(tmp, _default_mode())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, dataclasses with ``to_dict`` and
    non-finite floats into plain JSON values (``inf`` -> "inf", ``nan`` -> null)."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            return to_jsonable(obj.detach().cpu().numpy())
    except ImportError:  # pragma: no cover
        pass
    return obj


def dump_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def dump_json_new(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path``, which must not exist, atomically and
    exclusively: the complete file is written under a temporary name and then hard-linked
    to ``path`` (``link`` fails if ``path`` exists, so of two concurrent writers exactly
    one succeeds and nothing is overwritten).  On file systems without hard links the
    file is created with ``O_CREAT | O_EXCL`` and written in place.

    Raises:
        FileExistsError: ``path`` exists (possibly created meanwhile by another process).
    """
    p = Path(path)
    data = (json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.stem}.", suffix=p.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        try:
            os.link(tmp, p)
        except FileExistsError:
            raise
        except OSError:  # no hard links here: exclusive create
            fd2 = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _default_mode())
            with os.fdopen(fd2, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return p


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
