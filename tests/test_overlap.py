"""overlap_generation: the next batch is generated while the learner trains on this one, from the
weights before this update (one step off policy), and a checkpoint carries that batch across a
resume exactly."""

from __future__ import annotations

import torch

from ngrpo_rl import GRPOConfig, NGRPOConfig
from tests.support import small


def old_vs_reference_gap(batch) -> float:
    """Largest |sampler log-prob - reference (initial policy) log-prob| over the batch's tokens."""
    gap = 0.0
    for row, old in enumerate(batch.old_logprobs):
        ref = batch.ref_logprobs[row, : len(old)]
        gap = max(gap, float((torch.tensor(old, dtype=ref.dtype) - ref).abs().max()))
    return gap


def run_grpo(tmp_path, overlap: bool, iterations: int = 3):
    # GRPO's KL term makes the learner annotate each batch with the initial policy's log-probs.
    config = small(GRPOConfig(), tmp_path, lr=3e-3).training(kl_coef=0.01).generation(overlap_generation=overlap)
    algo = config.build_algo()
    try:
        gaps, off_policy = [], []
        for _ in range(iterations):
            result = algo.train()
            gaps.append(old_vs_reference_gap(algo.last_batch))
            off_policy.append(result["generation"]["off_policy"])
    finally:
        algo.stop()
    return gaps, off_policy


def test_with_overlap_the_second_batch_is_sampled_from_the_weights_before_the_first_update(tmp_path):
    gaps, off_policy = run_grpo(tmp_path, overlap=True)
    assert off_policy == [0.0, 1.0, 1.0]
    # Iteration 1 samples from the initial policy; so does iteration 2 (generated during
    # iteration 1's update); iteration 3's batch comes from the weights after update 1.
    assert gaps[0] < 1e-4 and gaps[1] < 1e-4, gaps
    assert gaps[2] > 1e-3, gaps


def test_without_overlap_each_batch_is_sampled_from_the_latest_weights(tmp_path):
    gaps, off_policy = run_grpo(tmp_path, overlap=False, iterations=2)
    assert off_policy == [0.0, 0.0]
    assert gaps[0] < 1e-4 and gaps[1] > 1e-3, gaps


def parameters(algo) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in algo.learner.model.named_parameters()}


def test_a_checkpoint_carries_the_batch_generated_ahead_and_resumes_exactly(tmp_path):
    # NGRPO drops all-correct groups (level 1 has many), so the carry-over crosses the checkpoint too.
    config = small(NGRPOConfig(), tmp_path).generation(overlap_generation=True)
    straight = config.build_algo()
    try:
        results = [straight.train() for _ in range(3)]
        expected = parameters(straight)
    finally:
        straight.stop()

    first = config.build_algo()
    try:
        first.train(), first.train()
        checkpoint = first.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        first.stop()
    resumed = config.build_algo()
    try:
        resumed.restore_from_path(checkpoint)
        result = resumed.train()
        got = parameters(resumed)
    finally:
        resumed.stop()
    assert result["generation"]["off_policy"] == 1.0  # the saved next batch, not a new one
    assert result["reward"]["mean"] == results[2]["reward"]["mean"]
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
