"""The core modules import without Ray, transformers or gymnasium."""

from __future__ import annotations

import subprocess
import sys

CHECK = (
    "import ngrpo_rl, ngrpo_rl.advantages, ngrpo_rl.losses, ngrpo_rl.metrics, ngrpo_rl.group_filters, "
    "ngrpo_rl.reward_shaping, ngrpo_rl.component_table, sys; "
    "heavy = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') "
    "or m.startswith('transformers') or m.startswith('gymnasium')); "
    "assert not heavy, heavy"
)


def test_core_modules_import_without_heavy_dependencies() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
