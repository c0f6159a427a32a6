"""Where a study and a sweep keep their evidence inside a results folder (``docs/results/``):

    study/study.json                what was run: command, wall time, variants, seeds, the shared job
    study/warm_start.json           the starting policy's held-out evaluation (and a second draw,
    study/warm_start_control.json   warm_start_control.json, for the mechanism metric's chance level)
    study/trials/<label>.json       one TrialRecord per variant and seed
    study/*.png                     the figures
    sweep/sweep.json, sweep/trials/<label>.json, sweep/heatmap.png
"""

from __future__ import annotations

from pathlib import Path

STUDY = "study"
SWEEP = "sweep"
TRIALS = "trials"
STUDY_FILE = "study.json"
SWEEP_FILE = "sweep.json"
WARM_START = "warm_start.json"
WARM_START_CONTROL = "warm_start_control.json"
PASS_AT_K_FIGURE = "pass_at_k.png"
TRAINING_FIGURE = "training.png"
HEATMAP_FIGURE = "heatmap.png"


def study_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / STUDY


def sweep_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / SWEEP
