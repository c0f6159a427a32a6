"""What one trial leaves behind, as JSON: its final held-out evaluation with every problem's correct
count, the evaluations on the way, and its per-iteration training metrics.

These files are the evidence a report is computed from (``docs/results/*/trials/*.json``), so they
hold raw counts rather than summaries: pass@k, Pass@k AUC and the mechanism metric are all
recomputed from ``correct_counts``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ngrpo_rl.evaluation import PassAtKResult

# Per-iteration metrics a trial keeps (keys of the result dict, nested by their first part).
HISTORY_METRICS: tuple[str, ...] = (
    "groups/frac_all_incorrect",
    "groups/frac_all_correct",
    "groups/sampled",
    "groups/kept",
    "clip/upper_frac",
    "clip/lower_frac",
    "advantages/frac_zero",
    "reward/sampled_accuracy",
    "policy/entropy",
)


def evaluation_to_dict(result: PassAtKResult) -> dict[str, Any]:
    """A ``PassAtKResult`` as JSON-ready data (ks and group labels keep their types as pairs)."""
    return {
        "ks": list(result.ks),
        "overall": [[k, v] for k, v in result.overall.items()],
        "by_group": [[group, [[k, v] for k, v in row.items()]] for group, row in result.by_group.items()],
        "num_problems": result.num_problems,
        "samples_per_problem": result.samples_per_problem,
        "correct_counts": list(result.correct_counts),
        "problem_ids": list(result.problem_ids),
        "auc": result.auc,
    }


def evaluation_from_dict(data: Mapping[str, Any]) -> PassAtKResult:
    """The ``PassAtKResult`` that :func:`evaluation_to_dict` wrote."""
    return PassAtKResult(
        ks=tuple(int(k) for k in data["ks"]),
        overall={int(k): float(v) for k, v in data["overall"]},
        by_group={group: {int(k): float(v) for k, v in row} for group, row in data["by_group"]},
        num_problems=int(data["num_problems"]),
        samples_per_problem=int(data["samples_per_problem"]),
        correct_counts=tuple(int(c) for c in data.get("correct_counts", ())),
        problem_ids=tuple(data.get("problem_ids", ())),
    )


@dataclass
class TrialRecord:
    """One trial of a study or sweep.

    Attributes:
        variant: the variant's name (``ngrpo_rl.study.variants``).
        seed: the trial's seed (data order, sampling, initial shuffles).
        params: the fields a sweep set on top of the variant (empty in a comparison study).
        iterations: the iterations the trial was asked to train.
        iterations_done: the iterations it trained (fewer when a scheduler stopped it early).
        evaluation: the latest held-out evaluation, with every problem's correct count (after the
            last iteration once the trial finished; None before the first).
        evaluations: ``{"iteration", "overall", "auc"}`` of every evaluation, in order.
        history: metric -> one value per iteration (``HISTORY_METRICS``).
        time_total_s: seconds the trial trained and evaluated (Tune's ``time_total_s``).
    """

    variant: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    iterations: int = 0
    iterations_done: int = 0
    evaluation: PassAtKResult | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    time_total_s: float = 0.0

    @property
    def finished(self) -> bool:
        """Trained every iteration and evaluated after the last."""
        return self.evaluation is not None and self.iterations_done >= self.iterations

    @property
    def label(self) -> str:
        """``ngrpo_seed0``, ``ngrpo_epsilon_pos-0.2_epsilon_neg-0.16_seed0``: a file name."""
        parts = [self.variant] + [f"{key}-{value}" for key, value in sorted(self.params.items())]
        return _safe("_".join(parts) + f"_seed{self.seed}")

    def add_iteration(self, result: Mapping[str, Any]) -> None:
        """Appends one ``train()`` result's ``HISTORY_METRICS`` (NaN where absent)."""
        for key in HISTORY_METRICS:
            self.history.setdefault(key, []).append(_lookup(result, key))
        self.iterations_done += 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["evaluation"] = evaluation_to_dict(self.evaluation) if self.evaluation is not None else None
        data["history"] = {k: [_rounded(v) for v in values] for k, values in self.history.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        values = dict(data)
        if values.get("evaluation") is not None:
            values["evaluation"] = evaluation_from_dict(values["evaluation"])
        values["history"] = {k: [_float(v) for v in vs] for k, vs in values.get("history", {}).items()}
        return cls(**values)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the record as JSON (NaN as null) and returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrialRecord:
        return cls.from_dict(json.loads(Path(path).read_text()))


def save_evaluation(result: PassAtKResult, path: str | os.PathLike[str], **metadata: Any) -> Path:
    """Writes one evaluation (and ``metadata``, e.g. the policy it measured) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**metadata, "evaluation": evaluation_to_dict(result)}, indent=1) + "\n")
    return path


def load_evaluation(path: str | os.PathLike[str]) -> PassAtKResult:
    return evaluation_from_dict(json.loads(Path(path).read_text())["evaluation"])


def load_records(folder: str | os.PathLike[str]) -> list[TrialRecord]:
    """Every ``*.json`` record in ``folder``, sorted by label."""
    return sorted((TrialRecord.load(p) for p in Path(folder).glob("*.json")), key=lambda r: r.label)


def _lookup(result: Mapping[str, Any], key: str) -> float:
    value: Any = result
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            return math.nan
        value = value[part]
    return float(value)


def _rounded(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+._=-]", "-", text)

