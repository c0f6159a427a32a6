"""Helpers several test modules share (not fixtures: plain functions)."""

from __future__ import annotations


def small(config, tmp_path, levels=(1, 2, 3), **training):
    """A config that trains in about a second per iteration on the bundled warm-started model."""
    settings = dict(group_size=4, prompts_per_step=4, lr=1e-3, micro_batch_size=8)
    settings.update(training)
    return (
        config.environment("ngrpo_rl/Arithmetic-v0", env_config={"levels": list(levels), "seed": 0})
        .training(**settings)
        .generation(max_new_tokens=6)
        .reporting(tensorboard_dir=str(tmp_path / "tb"), log_completions=2)
        .debugging(seed=0)
    )


class CrashOnceAtIteration:
    """An RLlib callback that kills its process once, at ``iteration``, the first time any
    process reaches it (a marker file remembers); the marker's path comes from the environment
    variable ``NGRPO_RL_CRASH_MARKER`` (set before ray.init, so Ray's workers inherit it)."""

    iteration = 2

    def __init__(self) -> None:
        from ray.rllib.callbacks.callbacks import RLlibCallback

        self._base = RLlibCallback()

    def __getattr__(self, name):  # every other callback: RLlib's no-op
        return getattr(self._base, name)

    def on_train_result(self, *, algorithm, result, **kwargs) -> None:
        import os
        from pathlib import Path

        marker = Path(os.environ["NGRPO_RL_CRASH_MARKER"])
        if result["training_iteration"] == self.iteration and not marker.exists():
            marker.write_text("crashed")
            os._exit(1)
