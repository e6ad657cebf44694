"""README promises: exactly two set-up commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [c.strip() for c in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_has_exactly_two_setup_commands():
    cmds = _setup_commands()
    assert len(cmds) == 2
    main_job, tests = cmds
    assert all("\n" not in c for c in cmds)  # each one line, copy-paste ready
    for c in cmds:
        assert c.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0")
    assert "sparsebound reproduce" in main_job
    assert tests.endswith("pytest -q")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _setup_commands()[1] in ci.splitlines()
    assert "no tests" in ci  # 'no tests collected' is turned into a failure


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python API example runs as written and prints a table with every method."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    example = next(b for b in blocks if "sparsebound.certify(" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    for method in ("sparse", "dense", "neyshabur2018", "test-set"):
        assert method in out
