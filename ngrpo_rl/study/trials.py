"""The Tune trainable of studies and sweeps: one variant, one seed, trained and evaluated.

A trial's Tune config (``TrialConfig.to_param_space``) names the variant, the seed, the shared job,
the iterations and how often to evaluate; any other key is a config field a sweep varies (e.g.
``epsilon_pos``). ``StudyTrial`` builds that variant's algorithm in its own process, trains one
iteration per ``step()``, evaluates on the held-out problems every ``evaluation_every`` iterations
and after the last, and checkpoints the algorithm with its ``TrialRecord`` (``record.json``), so a
trial that dies and a study that is interrupted both resume from the last checkpoint
(``FailureConfig`` / ``Tuner.restore``). The record in a trial's last checkpoint is what the driver
collects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from ngrpo_rl.study import variants
from ngrpo_rl.study.records import TrialRecord

RECORD_FILE = "record.json"
ALGORITHM_FOLDER = "algorithm"
# What every iteration reports to Tune (and so to its TensorBoard logger): the result dict's
# subjects that explain a run.
REPORTED_SUBJECTS = ("reward", "groups", "advantages", "clip", "ratio", "policy", "losses", "optim", "timers")
# The metric a scheduler or search chooses by: the Pass@k AUC of the trial's latest evaluation.
SCORE = "evaluation/pass_at_k_auc"


@dataclass(frozen=True)
class TrialConfig:
    """What one trial trains.

    Attributes:
        variant: a registered variant's name.
        seed: the trial's seed.
        job: the config fields every trial shares (``ngrpo_rl.study.jobs.study_job``).
        iterations: ``train()`` calls before the final evaluation.
        evaluation_every: also evaluate every this many iterations (0: only after the last), for
            a scheduler that stops poor trials early.
        params: the fields a sweep sets on top of the variant.
    """

    variant: str
    seed: int
    job: Mapping[str, Any]
    iterations: int
    evaluation_every: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)

    CONTROL_KEYS = ("variant", "seed", "job", "iterations", "evaluation_every")

    @classmethod
    def from_param_space(cls, config: Mapping[str, Any]) -> TrialConfig:
        """From a resolved Tune config: the control keys, and every other key as a param."""
        return cls(
            variant=config["variant"],
            seed=int(config["seed"]),
            job=dict(config["job"]),
            iterations=int(config["iterations"]),
            evaluation_every=int(config.get("evaluation_every", 0)),
            params={k: v for k, v in config.items() if k not in cls.CONTROL_KEYS},
        )

    def to_param_space(self) -> dict[str, Any]:
        """The Tune param space; ``seed`` and any param may be a Tune search space."""
        return {"variant": self.variant, "seed": self.seed, "job": dict(self.job),
                "iterations": self.iterations, "evaluation_every": self.evaluation_every, **self.params}

    def algorithm_config(self):
        """The validated algorithm config: the variant's preset, the job, its overrides, the params
        and the seed."""
        return variants.get(self.variant).config({**self.job, "seed": self.seed}, self.params)

    def evaluation_due(self, iteration: int) -> bool:
        last = iteration >= self.iterations
        return last or (self.evaluation_every > 0 and iteration % self.evaluation_every == 0)


class StudyTrial(tune.Trainable):
    """One variant and seed under Tune: ``step()`` is one training iteration (plus an evaluation
    when due); the checkpoint is the algorithm's own folder and the trial's record."""

    def setup(self, config: dict[str, Any]) -> None:
        self.trial = TrialConfig.from_param_space(config)
        algo_config = self.trial.algorithm_config()
        # The trial's storage gives the algorithm this trial's folder as its log directory instead
        # of a fresh one under ~/ray_results.
        self.algo = algo_config.algo_class(config=algo_config, storage=self._storage)
        self.record = TrialRecord(
            variant=self.trial.variant, seed=self.trial.seed, params=dict(self.trial.params),
            iterations=self.trial.iterations,
        )

    def step(self) -> dict[str, Any]:
        result = self.algo.train()
        self.record.add_iteration(result)
        iteration = self.algo.iteration
        out: dict[str, Any] = {key: result[key] for key in REPORTED_SUBJECTS if key in result}
        if self.trial.evaluation_due(iteration):
            evaluation = self.algo.evaluate_pass_at_k()
            self.record.evaluations.append({
                "iteration": iteration,
                "overall": [[k, v] for k, v in evaluation.overall.items()],
                "auc": evaluation.auc,
            })
            self.record.evaluation = evaluation
            self.record.time_total_s = self._time_total
        out["evaluation"] = self._latest_evaluation()
        out["done"] = iteration >= self.trial.iterations
        return out

    def _latest_evaluation(self) -> dict[str, float]:
        """The latest evaluation's pass@k and AUC (NaN before the first): every result carries the
        metric a scheduler or searcher reads, as Tune requires."""
        if not self.record.evaluations:
            return {"pass_at_k_auc": math.nan}
        latest = self.record.evaluations[-1]
        auc = latest["auc"]
        return {
            "pass_at_k_auc": math.nan if auc is None else float(auc),
            "iteration": float(latest["iteration"]),
            **{f"pass_at_{k}": float(v) for k, v in latest["overall"]},
        }

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.save_to_path(os.path.join(checkpoint_dir, ALGORITHM_FOLDER))
        self.record.time_total_s = self._time_total
        self.record.save(Path(checkpoint_dir) / RECORD_FILE)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.restore_from_path(os.path.join(checkpoint_dir, ALGORITHM_FOLDER))
        self.record = TrialRecord.load(Path(checkpoint_dir) / RECORD_FILE)

    def cleanup(self) -> None:
        if getattr(self, "algo", None) is not None:
            self.algo.stop()

    @classmethod
    def default_resource_request(cls, config: dict[str, Any]):
        """The trial's algorithm's own request (its driver, learners and generation workers)."""
        trial = TrialConfig.from_param_space(config)
        algo_config = trial.algorithm_config()
        return algo_config.algo_class.default_resource_request(algo_config)


def record_of(result) -> TrialRecord | None:
    """The ``TrialRecord`` in a Tune ``Result``'s checkpoint (None without one)."""
    checkpoint = getattr(result, "checkpoint", None)
    if checkpoint is None:
        return None
    path = Path(checkpoint.path) / RECORD_FILE
    return TrialRecord.load(path) if path.is_file() else None
