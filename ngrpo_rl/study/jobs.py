"""The settings every trial of a study or sweep shares, and the config of one trial.

A trial's config is layered: the variant's algorithm preset, then the study's shared job (the main
job's settings with ``STUDY_SETTINGS`` on top), then the variant's own overrides, then the fields a
sweep varies. The shared job holds no field that tells the presets apart, so two variants differ
exactly where their presets and overrides do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ngrpo_rl import settings

# Keys of a job that configure the algorithm (``seed`` is among the fields); others (the main
# job's ``algorithm``, ``iterations``, ``checkpoint_every``...) drive a run and are dropped.
CONFIG_KEYS = frozenset(settings.FIELD_NAMES | {"env", "env_config"})

# What a study changes in the main job, and why:
STUDY_SETTINGS: dict[str, Any] = {
    # The main job's levels 3-4 (about half of all groups start all wrong), with 3,000 training
    # problems instead of 10,000: level 3 has only 1,440 distinct training problems, so 10,000
    # unique ones are 85% level 4 while the held-out set is about half level 3; 3,000 are 36% level
    # 3 (200 iterations x 32 prompts see each about twice). It also keeps the held-out split
    # (built with the same num_problems) quick: asking it for more test problems than the levels
    # hold costs ~10 s per trial.
    "env_config": {"levels": [3, 4], "seed": 0, "num_problems": 3000},
    # 32 prompts x 8 responses per iteration in 4 optimizer steps (the official scripts' 4
    # mini-batches, DESIGN.md section 3): from the second step on rho != 1, so the clip binds and
    # the asymmetric-clip ablation is more than a relabelling.
    "prompts_per_step": 32,
    "group_size": 8,
    "num_epochs": 1,
    "minibatch_size": None,
    "num_minibatches": 4,
    # Equal generation budget: one sampling round per iteration for every variant, so the group
    # filters of NGRPO (all-correct) and DAPO (homogeneous) drop groups instead of generating more.
    "max_sampling_rounds": 1,
    # The held-out set: the same 256 problems for every trial, 32 samples each at temperature 1.
    "evaluation_num_problems": 256,
    "evaluation_samples_per_problem": 32,
    "evaluation_ks": (1, 2, 4, 8, 16, 32),
    "evaluation_temperature": 1.0,
    "evaluation_top_p": 1.0,
    "evaluation_interval": 0,  # the trial evaluates when it should (trials.StudyTrial)
    # Tune's logger writes every trial's scalars; the algorithm's own writer would duplicate them.
    "tensorboard": False,
    "log_completions": 0,
}

# PPO's critic learns at 10x the policy's rate in the official script (1e-5 vs 1e-6); a study
# that changes lr keeps that ratio unless critic_lr is set explicitly.
CRITIC_LR_RATIO = 10.0

# Seconds on 2 CPU cores, measured with one NGRPO trial of 150 iterations of this setup (the trial
# alone, on a machine shared with other jobs, load average 2-7): 7 s from its start to its first
# result, 0.24 s per iteration of 256 responses (0.33 s under heavier load), 4 s for the final
# evaluation of 256 x 32 samples. PPO's critic adds about half to its training time.
SECONDS_STARTUP = 7.0
SECONDS_PER_TRAINING_RESPONSE = 0.95e-3
SECONDS_PER_EVALUATION_SAMPLE = 0.5e-3
CRITIC_FACTOR = 1.5


def study_job(base_job: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config fields every trial shares: ``base_job``'s (e.g. ``ngrpo_rl.cli.MAIN_JOB``; its run
    keys are dropped), then ``STUDY_SETTINGS``, then ``overrides``; ``critic_lr`` follows ``lr``
    (``CRITIC_LR_RATIO``) unless given."""
    job = {key: value for key, value in base_job.items() if key in CONFIG_KEYS}
    job.update(STUDY_SETTINGS)
    job.update(overrides or {})
    unknown = sorted(set(job) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; the fields are listed in docs/CONFIG.md")
    if "lr" in job and "critic_lr" not in (overrides or {}):
        job["critic_lr"] = CRITIC_LR_RATIO * float(job["lr"])
    return job


# Keys that are no field of ngrpo_rl.settings, and how each reaches the config (RLlib's builders).
_RLLIB_SETTERS: dict[str, Callable[[Any, Any], Any]] = {
    "env": lambda config, value: config.environment(env=value),
    "env_config": lambda config, value: config.environment(env_config=dict(value)),
    "seed": lambda config, value: config.debugging(seed=int(value)),
}


def build_config(algorithm: str, values: Mapping[str, Any]):
    """The validated config of preset ``algorithm`` (a name in ``ngrpo_rl.algorithms.ALGORITHMS``)
    with ``values`` set through their builder methods (each read by its declared type)."""
    from ngrpo_rl.algorithms import ALGORITHMS

    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {sorted(ALGORITHMS)}")
    config = ALGORITHMS[algorithm][1]()
    for key, value in values.items():
        if key in _RLLIB_SETTERS:
            _RLLIB_SETTERS[key](config, value)
        else:
            setting = settings.get(key)  # KeyError naming close matches
            getattr(config, setting.section)(**{key: settings.coerce_value(key, value)})
    config.validate()
    return config


def generation_budget(job: Mapping[str, Any], iterations: int) -> int:
    """Responses one trial generates for training: prompts_per_step x group_size x iterations (one
    sampling round per iteration, ``STUDY_SETTINGS``)."""
    return int(job["prompts_per_step"]) * int(job["group_size"]) * int(iterations)


def evaluation_samples(job: Mapping[str, Any]) -> int:
    """Responses one held-out evaluation generates."""
    return int(job["evaluation_num_problems"]) * int(job["evaluation_samples_per_problem"])


def trial_seconds(job: Mapping[str, Any], iterations: int, evaluations: int = 1, *, critic: bool = False) -> float:
    """Expected seconds of one trial on this machine's kind of CPU (the constants above): start-up,
    ``iterations`` of training (``CRITIC_FACTOR`` longer with PPO's critic) and ``evaluations``."""
    training = SECONDS_PER_TRAINING_RESPONSE * generation_budget(job, iterations)
    return (SECONDS_STARTUP + training * (CRITIC_FACTOR if critic else 1.0)
            + SECONDS_PER_EVALUATION_SAMPLE * evaluation_samples(job) * evaluations)


def wall_seconds(trials: Sequence[float], concurrency: int) -> float:
    """Expected wall time of trials taking ``trials`` seconds each, ``concurrency`` at a time."""
    if not trials:
        return 0.0
    return max(max(trials), math.fsum(trials) / max(1, concurrency))


def format_duration(seconds: float) -> str:
    """``1 h 02 min``, ``25 min 10 s``, ``42 s``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
