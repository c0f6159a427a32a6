"""Comparison studies and sweeps: many trials of the algorithms under Ray Tune, and an honest report.

- ``variants``: the registry of named variants (a preset plus overrides; the Table 2 ablations).
- ``jobs``: the settings every trial shares (equal generation budget, the held-out set) and the
  config of one trial.
- ``trials``: the Tune trainable, one variant and seed per trial; ``tuning``: runs and resumes them.
- ``comparison`` / ``sweep``: the two experiments (``ngrpo-rl compare``, ``ngrpo-rl sweep``).
- ``stats`` (t intervals, paired differences), ``analysis`` (from records to numbers),
  ``records`` (the JSON evidence), ``report`` and ``figures`` (``docs/results.md``).

The names below are imported lazily: ``import ngrpo_rl.study`` starts neither Ray nor matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_EXPORTS = {
    "ComparisonSpec": "ngrpo_rl.study.comparison",
    "run_comparison": "ngrpo_rl.study.comparison",
    "SweepSpec": "ngrpo_rl.study.sweep",
    "run_sweep": "ngrpo_rl.study.sweep",
    "Variant": "ngrpo_rl.study.variants",
    "study_job": "ngrpo_rl.study.jobs",
    "write_report": "ngrpo_rl.study.report",
    "TrialRecord": "ngrpo_rl.study.records",
}

__all__ = [
    "ComparisonSpec", "SweepSpec", "TrialRecord", "Variant", "run_comparison", "run_sweep", "study_job",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ngrpo_rl.study' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
