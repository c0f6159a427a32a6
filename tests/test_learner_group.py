"""The learner group: two learners over gloo make the update one learner makes on the same batch."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import pytest
import ray
import torch

from ngrpo_rl import advantages
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.distributed import DistributedContext, rowwise
from ngrpo_rl.generation import SamplingParams, create_backend
from ngrpo_rl.learner import Learner
from ngrpo_rl.learner_group import LearnerGroup
from ngrpo_rl.settings import Settings

MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=4, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def batch(tiny_model_dir) -> TrainingBatch:
    """Three groups of four sampled responses of different lengths, rewards strictly between
    0 and 1 in one group."""
    backend = create_backend("hf", tiny_model_dir, seed=0)
    output = backend.generate(["1+2=", "7*8=", "9-4="], SamplingParams(n=4, max_new_tokens=6, seed=3))
    rewards = torch.tensor([1, 0, 0, 1, 0, 0, 0, 0, 0.25, 0.75, 0.5, 0.0])
    batch = TrainingBatch(
        problem_ids=[p for p in "abc" for _ in range(4)],
        golds=["3"] * 4 + ["56"] * 4 + ["5"] * 4,
        prompt_token_ids=output.prompt_token_ids,
        response_token_ids=output.response_token_ids,
        old_logprobs=output.response_logprobs,
        texts=output.texts,
        truncated=output.truncated,
        correct=rewards > 0.5,
        scores=rewards,
        rewards=rewards,
        reasons=[""] * 12,
        group_size=4,
    )
    return batch.with_fields(advantages=advantages.compute("ngrpo", batch.grouped(batch.rewards)).flatten())


def settings(**overrides) -> Settings:
    # float64 keeps the summation-order differences between one and two learners far below 1e-6
    # even through AdamW, whose first step divides each gradient by its own magnitude.
    values = dict(
        lr=1e-2, max_new_tokens=6, seed=0, dtype="float64", minibatch_size=5, micro_batch_size=2,
        num_epochs=2, num_cpus_per_learner=1.0,
    )
    values.update(overrides)
    return dataclasses.replace(Settings(), **values)


CASES = {
    # Mini-batches of 5, 5 and 2 rows: shares of 3 and 2 rows, micro-batches of 2 (rank 1 runs a
    # dummy micro-batch to match rank 0's two), two epochs.
    **{mode: {"loss_agg_mode": mode} for mode in MODES},
    # One row per mini-batch: rank 1 has nothing to train on in every step; with a KL term the
    # reference log-probs are computed across the group too.
    "one-row-minibatches": {"minibatch_size": 1, "num_epochs": 1, "kl_coef": 0.1, "entropy_coef": 0.01},
    # Parameters, gradients and optimizer state sharded over the two learners.
    "fsdp2": {"learner_strategy": "fsdp2", "kl_coef": 0.1},
}


@pytest.fixture(scope="module")
def groups(ray_session, tiny_model_dir):
    """A group of two learners per case, started together (actor start-up dominates the time)."""
    with concurrent.futures.ThreadPoolExecutor(len(CASES)) as pool:
        futures = {
            name: pool.submit(
                LearnerGroup, settings(num_learners=2, num_cpus_per_learner=0.25, **overrides),
                model_path=tiny_model_dir,
            )
            for name, overrides in CASES.items()
        }
        started = {name: future.result() for name, future in futures.items()}
    yield started
    for group in started.values():
        group.shutdown()


@pytest.mark.parametrize("case", list(CASES))
def test_two_learners_make_the_update_of_one(groups, tiny_model_dir, batch, case):
    single = Learner(settings(**CASES[case]), model_path=tiny_model_dir)
    before = {k: v.clone() for k, v in single.state_dict_for_generation().items()}
    single_metrics = single.update(single.annotate(batch))
    group = groups[case]
    group_metrics = group.update(group.annotate(batch))
    group_weights = group.state_dict_for_generation()

    after = single.state_dict_for_generation()
    assert max(float((after[k] - before[k]).abs().max()) for k in after) > 1e-3  # it learned
    for name in after:
        torch.testing.assert_close(group_weights[name], after[name], atol=1e-6, rtol=0, msg=name)
    for key in ("losses/total", "policy/entropy", "policy/kl", "optim/grad_norm", "ratio/mean",
                "clip/upper_frac", "clip/lower_frac", "optim/num_updates"):
        assert group_metrics[key] == pytest.approx(single_metrics[key], rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("case", ["token-mean", "fsdp2"])
def test_a_group_checkpoint_restores_into_one_learner(groups, tiny_model_dir, batch, tmp_path, case):
    # Rank 0 writes whole weights and optimizer state (FSDP2 gathers its shards); one learner
    # restored from them continues exactly as the group does.
    group = groups[case]
    group.update(batch)  # whatever ran before, the optimizer has state to save
    group.save(str(tmp_path / "learner"))
    single = Learner(settings(**CASES[case]), model_path=tiny_model_dir)
    single.load(tmp_path / "learner")
    group.load(str(tmp_path / "learner"))  # every rank reads it back (FSDP2: its shard)
    single_metrics = single.update(batch)
    group_metrics = group.update(batch)
    assert group_metrics["optim/num_updates"] == single_metrics["optim/num_updates"] >= 12  # restored
    group_weights = group.state_dict_for_generation()
    for name, value in single.state_dict_for_generation().items():
        torch.testing.assert_close(group_weights[name], value, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shards_cover_every_row_once(world_size):
    rows = torch.arange(7)
    shards = [DistributedContext(rank, world_size).shard(rows) for rank in range(world_size)]
    assert torch.equal(torch.cat(shards), rows)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    counts = {
        len(list(DistributedContext(rank, world_size).micro_batches(rows, 2))) for rank in range(world_size)
    }
    assert len(counts) == 1  # every rank runs as many micro-batches


def test_rowwise_in_one_process_runs_every_row_in_order():
    out = rowwise(DistributedContext(), 7, 3, lambda rows: rows[:, None].float() * 2)
    assert torch.equal(out[:, 0], torch.arange(7).float() * 2)


def test_two_learners_train_the_critic_as_one(ray_session, tiny_model_dir, batch):
    """PPO's critic in a group: each learner's critic gradient is averaged with the other's, so
    one step of the group reports (and takes) the single learner's critic step."""
    from ngrpo_rl.critic import Critic
    from ngrpo_rl.value import gae

    critic_kwargs = {"model_name_or_path": tiny_model_dir, "lr": 1e-2}
    one_step = {"minibatch_size": 12, "num_epochs": 1}
    single = Learner(settings(**one_step), model_path=tiny_model_dir, critic=Critic(**critic_kwargs))
    group = LearnerGroup(settings(num_learners=2, num_cpus_per_learner=0.25, **one_step),
                         model_path=tiny_model_dir, critic_kwargs=critic_kwargs)

    def with_returns(annotated: TrainingBatch) -> TrainingBatch:
        mask = annotated.response_mask()
        token_rewards = torch.zeros_like(mask)
        token_rewards[torch.arange(len(annotated)), annotated.response_lengths().long() - 1] = annotated.rewards
        token_advantages, returns = gae(token_rewards, annotated.values, mask)
        return annotated.with_fields(advantages=token_advantages, returns=returns)

    try:
        single_metrics = single.update(with_returns(single.annotate(batch)))
        group_metrics = group.update(with_returns(group.annotate(batch)))
    finally:
        group.shutdown()
    assert single_metrics["critic/grad_norm"] > 0
    for key in ("critic/value_loss", "critic/values_mean", "critic/grad_norm"):
        assert group_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4), key
