"""The examples run as written (in a subprocess, from the repository root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_runs_as_written(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "pass@k after training" in completed.stdout
    assert (tmp_path / "runs" / "quickstart" / "checkpoint" / "learner" / "policy").is_dir()

