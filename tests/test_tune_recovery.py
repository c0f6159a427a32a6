"""Tune recovery: a trial whose process dies resumes from its last checkpoint, an interrupted sweep
resumes with Tuner.restore, and both end where an uninterrupted run ends."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")

import support
from ngrpo_rl.algorithms import NGRPO, NGRPOConfig
from ray import tune
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

ITERATIONS = 3


@pytest.fixture
def ray_with_crash_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("NGRPO_RL_CRASH_MARKER", str(tmp_path / "crashed"))
    ray.cloudpickle.register_pickle_by_value(support)  # the callback travels to the trial process
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield tmp_path / "crashed"
    ray.shutdown()


def config(tmp_path, crash: bool):
    base = support.small(NGRPOConfig(), tmp_path).reporting(tensorboard=False)
    return base.callbacks(support.CrashOnceAtIteration) if crash else base


def fit(tmp_path, name: str, crash: bool, max_failures: int) -> tune.ResultGrid:
    tuner = tune.Tuner(
        NGRPO,
        param_space=config(tmp_path, crash),
        run_config=tune.RunConfig(
            name=name,
            stop={"training_iteration": ITERATIONS},
            storage_path=str(tmp_path / "tune"),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, checkpoint_at_end=True),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,
        ),
    )
    return tuner.fit()


def final_state(results: tune.ResultGrid) -> tuple[dict, dict]:
    result = results[0]
    weights = load_file(os.path.join(result.checkpoint.path, "learner", "policy", "model.safetensors"))
    metrics = {k: result.metrics[k] for k in ("reward", "losses", "optim", "advantages")}
    return weights, metrics


def assert_same_end(a: tune.ResultGrid, b: tune.ResultGrid) -> None:
    weights_a, metrics_a = final_state(a)
    weights_b, metrics_b = final_state(b)
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert (weights_a[name] == weights_b[name]).all(), name


def test_a_killed_trial_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(
    ray_with_crash_marker, tmp_path
):
    straight = fit(tmp_path, "straight", crash=False, max_failures=0)
    recovered = fit(tmp_path, "recovered", crash=True, max_failures=1)
    assert ray_with_crash_marker.exists()  # the trial process did die once
    assert not recovered.errors and recovered[0].metrics["training_iteration"] == ITERATIONS
    assert_same_end(straight, recovered)


def test_an_interrupted_sweep_resumes_with_tuner_restore(ray_with_crash_marker, tmp_path):
    straight = fit(tmp_path, "straight", crash=False, max_failures=0)
    interrupted = fit(tmp_path, "interrupted", crash=True, max_failures=0)
    assert interrupted.errors  # the sweep stopped with its trial errored
    restored = tune.Tuner.restore(
        str(tmp_path / "tune" / "interrupted"), trainable=NGRPO, resume_errored=True
    ).fit()
    assert not restored.errors and restored[0].metrics["training_iteration"] == ITERATIONS
    assert_same_end(straight, restored)
