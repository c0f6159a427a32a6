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
