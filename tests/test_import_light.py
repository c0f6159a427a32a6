"""The core modules import without Ray, transformers or gymnasium."""

from __future__ import annotations

import subprocess
import sys

CHECK = (
    "import ngrpo_rl, ngrpo_rl.advantages, ngrpo_rl.losses, ngrpo_rl.metrics, ngrpo_rl.group_filters, "
    "ngrpo_rl.pipeline.shaping, ngrpo_rl.component_table, sys; "
    "heavy = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') "
    "or m.startswith('transformers') or m.startswith('gymnasium')); "
    "assert not heavy, heavy"
)


def test_core_modules_import_without_heavy_dependencies() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_training_pipeline_and_learner_import_without_ray() -> None:
    check = (
        "import ngrpo_rl.pipeline.engine, ngrpo_rl.learner, ngrpo_rl.critic, ngrpo_rl.settings, sys; "
        "ray = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')); assert not ray, ray"
    )
    result = subprocess.run([sys.executable, "-c", check], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
