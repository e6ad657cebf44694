"""The shared seed rule and the output-folder lock (used by train, certify, reproduce)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sparsebound._io import LOCK_FILE, output_lock
from sparsebound.errors import SEED_MAX, ConfigError, check_seed


@pytest.mark.parametrize("value, expected", [(0, 0), ("17", 17), (3.0, 3), (SEED_MAX, SEED_MAX)])
def test_check_seed_accepts_non_negative_integers(value: object, expected: int) -> None:
    assert check_seed(value) == expected


@pytest.mark.parametrize("value", [-1, -3, 1.5, True, "x", "", None, SEED_MAX + 1, float("nan")])
def test_check_seed_refuses_everything_else(value: object) -> None:
    with pytest.raises(ConfigError, match="--seed must be an integer"):
        check_seed(value, "--seed")


def test_output_lock_refuses_a_second_holder(tmp_path) -> None:
    with output_lock(tmp_path, "train"):
        assert (tmp_path / LOCK_FILE).exists()
        with pytest.raises(ConfigError, match="in use by another sparsebound run"), output_lock(tmp_path):
            pass
    with output_lock(tmp_path):  # released after the first run
        pass


def test_output_lock_holds_across_processes(tmp_path) -> None:
    code = (
        "import sys\nfrom sparsebound._io import output_lock\nfrom sparsebound.errors import ConfigError\n"
        f"try:\n    with output_lock({str(tmp_path)!r}):\n        sys.exit(0)\n"
        "except ConfigError:\n    sys.exit(3)\n"
    )
    with output_lock(tmp_path):
        assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
