"""The output folder of a study: claim it safely, keep it consistent, undo a failed start.

``OUT`` holds ``config.json`` (the settings of the study it holds), ``runs/``
(one folder per block and run, plus the shared priors), ``results.json``,
``results.csv``, ``figures/`` and ``report.md``.  This module makes sure that

* the folder can be written *before* anything is created (:func:`check_writable`);
* one study at a time writes it (:func:`sparsebound._io.output_lock`; a second
  ``reproduce`` into the same folder fails at once with exit status 2);
* a folder holding a study with *other* settings is not silently mixed with a new
  one: without ``--force`` it is refused (:func:`check_same_study`); with
  ``--force`` the outputs the new report does not mention are removed at the end
  (:func:`prune_stale`);
* a study that fails before finishing any run leaves nothing new behind
  (:class:`Rollback`): a folder the command created is removed; a folder that
  existed keeps what it had (only the lock file ``.sparsebound.lock`` stays).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._io import LOCK_FILE, load_json
from ..errors import ConfigError
from .config import StudyConfig
from .plan import Job

__all__ = ["CONFIG_FILE", "Rollback", "check_same_study", "check_writable", "create_folder", "prune_stale"]

CONFIG_FILE = "config.json"


def check_writable(path: str | os.PathLike[str]) -> None:
    """Check, without creating anything, that ``path`` is (or can be made) a writable folder.

    Raises:
        ConfigError: ``path`` or an ancestor is a file, or the nearest existing ancestor
            is not writable.
    """
    p = Path(path)
    q = p
    while not q.exists():
        if q.parent == q:
            break
        q = q.parent
    if q.exists() and not q.is_dir():
        raise ConfigError(f"output folder {str(p)!r} cannot be created: {str(q)!r} is a file; choose another "
                          "folder with --out")
    if q == p and not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {str(p)!r} is not writable; choose another folder with --out")
    if q != p and not os.access(q, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {str(p)!r} cannot be created in {str(q)!r} (not writable); choose "
                          "another folder with --out")


def create_folder(path: str | os.PathLike[str]) -> Path | None:
    """Create ``path`` (and missing parents); return the topmost folder created, ``None`` if it existed.

    Raises:
        ConfigError: it cannot be created.
    """
    p = Path(path)
    if p.is_dir():
        return None
    top = p
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        p.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        return None  # created meanwhile by someone else: not ours
    except OSError as exc:
        raise ConfigError(f"output folder {str(p)!r} cannot be created ({exc.strerror or exc}); choose another "
                          "folder with --out") from None
    return top


def check_same_study(out: Path, config: StudyConfig, force: bool) -> dict[str, Any] | None:
    """Refuse (without ``force``) a folder that holds a study with other settings.

    Compares :meth:`StudyConfig.identity` with the one of ``OUT/config.json``.  The same
    settings resume the study (finished runs are loaded).  Returns the stored config
    record (``None`` when there is none).

    Raises:
        ConfigError: the settings differ (the message names the differing keys) or
            ``config.json`` cannot be read, and ``force`` is false.
    """
    path = out / CONFIG_FILE
    if not path.exists():
        return None
    try:
        old = load_json(path)
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
        old_identity = StudyConfig.from_dict(old).identity()
    except (OSError, ValueError, ConfigError) as exc:
        if force:
            return None
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{str(path)!r} cannot be read ({msg}); pass --force to replace the study in "
                          f"{str(out)!r}, or choose another --out") from None
    new_identity = config.identity()
    if old_identity == new_identity or force:
        return old
    keys = sorted(set(old_identity) | set(new_identity))
    diff = [k.replace("_", "-") for k in keys if old_identity.get(k) != new_identity.get(k)]
    raise ConfigError(f"{str(out)!r} holds a study with other settings (different {', '.join(diff)}); resume it "
                      "with the same options, choose another --out, or pass --force to replace it (stale runs "
                      "and figures are then removed)")


class Rollback:
    """Remembers what ``OUT`` held before a study started, to undo a start that failed.

    :meth:`undo` removes every file and folder that appeared since (or the whole folder
    when the command created it) and restores ``config.json``; the lock file stays.
    """

    def __init__(self, out: Path, created: Path | None) -> None:
        self.out, self.created = out, created
        self.before: set[Path] = set() if created is not None else set(self._walk())
        cfg = out / CONFIG_FILE
        self.config_bytes = cfg.read_bytes() if created is None and cfg.is_file() else None

    def _walk(self) -> Iterable[Path]:
        for root, dirs, files in os.walk(self.out):
            r = Path(root)
            for name in (*dirs, *files):
                yield r / name

    def undo(self) -> None:
        """Put the folder back as it was (best effort; never raises)."""
        try:
            if self.created is not None:
                shutil.rmtree(self.created, ignore_errors=True)
                return
            new = [p for p in self._walk() if p not in self.before and p.name != LOCK_FILE]
            for p in sorted(new, key=lambda q: len(q.parts), reverse=True):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            cfg = self.out / CONFIG_FILE
            if self.config_bytes is not None and (not cfg.is_file() or cfg.read_bytes() != self.config_bytes):
                from .._io import atomic_write_bytes

                atomic_write_bytes(cfg, self.config_bytes)
        except OSError:
            pass


def expected_outputs(jobs: Iterable[Job], budget: bool) -> dict[str, set[str]]:
    """The folders (and block files) a study's runs own: ``{block: {entries}}``."""
    out: dict[str, set[str]] = {}
    for j in jobs:
        names = out.setdefault(j.block, set())
        names.add(j.kind)
        if j.prior_folder is not None:
            names.add(j.prior_folder)
        if budget:
            names.add("budget.json")
    return out


def prune_stale(out: Path, jobs: Iterable[Job], figures: Iterable[str], budget: bool) -> list[str]:
    """Remove what the new study does not own: run folders and blocks of other settings,
    ``budget.json`` of an earlier budgeted study, and figures the new report does not embed.

    Returns the removed paths (relative to ``out``).
    """
    removed: list[str] = []
    own = expected_outputs(jobs, budget)
    runs = out / "runs"
    if runs.is_dir():
        for block in sorted(runs.iterdir()):
            if block.is_dir() and block.name not in own:
                shutil.rmtree(block)
                removed.append(f"runs/{block.name}")
                continue
            if not block.is_dir():
                continue
            for entry in sorted(block.iterdir()):
                stale = (entry.is_dir() and entry.name not in own[block.name]) or (
                    entry.name == "budget.json" and entry.name not in own[block.name])
                if stale:
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                    removed.append(f"runs/{block.name}/{entry.name}")
    keep = {Path(f).name for f in figures}
    fdir = out / "figures"
    if fdir.is_dir():
        for f in sorted(fdir.glob("*.png")):
            if f.name not in keep:
                f.unlink()
                removed.append(f"figures/{f.name}")
    return removed
