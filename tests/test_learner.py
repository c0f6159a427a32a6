"""The torch learner on a tiny untrained model: exact micro-batching, ratios, KL, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from ngrpo_rl import advantages
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.generation import SamplingParams, create_backend
from ngrpo_rl.learner import Learner, lr_schedules
from ngrpo_rl.models.forward import pad_batch, response_logprobs
from ngrpo_rl.settings import Settings


@pytest.fixture(scope="module")
def rollouts(tiny_model_dir):
    """Two groups of four sampled responses with made-up 0/1 rewards."""
    backend = create_backend("hf", tiny_model_dir, seed=0)
    output = backend.generate(["1+2=", "7*8="], SamplingParams(n=4, max_new_tokens=5, seed=1))
    correct = torch.tensor([1, 0, 0, 1, 0, 0, 0, 0], dtype=torch.bool)
    batch = TrainingBatch(
        problem_ids=["a"] * 4 + ["b"] * 4,
        golds=["3"] * 4 + ["56"] * 4,
        prompt_token_ids=output.prompt_token_ids,
        response_token_ids=output.response_token_ids,
        old_logprobs=output.response_logprobs,
        texts=output.texts,
        truncated=output.truncated,
        correct=correct,
        scores=correct.float(),
        rewards=correct.float(),
        reasons=["correct" if c else "wrong" for c in correct],
        group_size=4,
    )
    return batch.with_fields(
        advantages=advantages.compute("ngrpo", batch.grouped(batch.rewards)).flatten()
    )


def make_learner(tiny_model_dir, critic=None, **overrides) -> Learner:
    values = dict(lr=1e-2, max_new_tokens=5, seed=0)
    values.update(overrides)
    return Learner(dataclasses.replace(Settings(), **values), model_path=tiny_model_dir, critic=critic)


def recorded_gradients(learner: Learner, rollouts: TrainingBatch) -> dict[str, torch.Tensor]:
    """The gradient the optimizer step would apply (the step itself is skipped)."""
    grads: dict[str, torch.Tensor] = {}

    def record(*args, **kwargs):
        for name, parameter in learner.model.named_parameters():
            grads[name] = parameter.grad.detach().clone()

    learner.optimizer.step = record
    learner.update(rollouts)
    return grads


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
@pytest.mark.parametrize(
    "mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
)
def test_micro_batching_gives_the_gradient_of_the_whole_minibatch(tiny_model_dir, rollouts, mode):
    whole = recorded_gradients(make_learner(tiny_model_dir, micro_batch_size=8, loss_agg_mode=mode), rollouts)
    micro = recorded_gradients(make_learner(tiny_model_dir, micro_batch_size=3, loss_agg_mode=mode), rollouts)
    assert any(g.abs().sum() > 0 for g in whole.values())
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], atol=1e-7, rtol=1e-4, msg=name)


def test_first_pass_ratio_is_one_with_sampling_logprobs(tiny_model_dir, rollouts):
    learner = make_learner(tiny_model_dir, num_epochs=1)
    metrics = learner.update(rollouts)
    assert metrics["ratio/min"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["ratio/max"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["clip/upper_frac"] == 0.0 and metrics["clip/lower_frac"] == 0.0
    assert metrics["policy/kl"] == 0.0 and learner.reference_model is None


def test_kl_needs_and_uses_a_reference_model(tiny_model_dir, rollouts):
    learner = make_learner(tiny_model_dir, kl_coef=0.1, num_epochs=3, minibatch_size=4)
    assert learner.reference_model is not None
    metrics = learner.update(rollouts)
    assert metrics["policy/kl"] > 0  # the policy moved away from the frozen reference
    frozen = [p.requires_grad for p in learner.reference_model.parameters()]
    assert not any(frozen)


def test_mask_truncated_drops_truncated_responses(tiny_model_dir, rollouts):
    all_truncated = rollouts.with_fields(truncated=[True] * len(rollouts))
    learner = make_learner(tiny_model_dir, mask_truncated=True)
    before = [p.detach().clone() for p in learner.model.parameters()]
    learner.update(all_truncated)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))


def test_save_and_load_restore_weights_optimizer_schedule_and_rng(tiny_model_dir, rollouts, tmp_path):
    learner = make_learner(tiny_model_dir, lr_schedule="cosine", warmup_steps=1, total_steps=10, minibatch_size=4)
    learner.update(rollouts)
    learner.save(tmp_path / "state")
    assert json.loads((tmp_path / "state" / "learner_state.json").read_text())["num_updates"] == 2
    expected_next = torch.randperm(8, generator=learner.generator)

    restored = make_learner(tiny_model_dir, lr_schedule="cosine", warmup_steps=1, total_steps=10, minibatch_size=4)
    restored.load(tmp_path / "state")
    for a, b in zip(learner.model.parameters(), restored.model.parameters()):
        torch.testing.assert_close(a, b)
    for index, state in learner.optimizer.state_dict()["state"].items():
        torch.testing.assert_close(restored.optimizer.state_dict()["state"][index]["exp_avg_sq"], state["exp_avg_sq"])
    assert restored.scheduler.get_last_lr() == learner.scheduler.get_last_lr()
    assert restored.num_updates == 2
    # The data order the restored learner draws next is the one the original drew.
    assert torch.equal(torch.randperm(8, generator=restored.generator), expected_next)


def test_unreadable_state_names_the_path(tiny_model_dir, tmp_path):
    learner = make_learner(tiny_model_dir)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "learner_state.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken"):
        learner.load(tmp_path / "broken")


@pytest.mark.parametrize("name", lr_schedules.available())
def test_schedules_warm_up_then_stay_within_the_base_rate(name):
    schedule = lr_schedules.get(name)
    assert schedule(0, 4, 20) == pytest.approx(0.25)
    values = [schedule(step, 4, 20) for step in range(30)]
    assert all(0.0 <= v <= 1.0 for v in values)
    if name != "constant":
        assert values[-1] == pytest.approx(0.0)


def test_entropy_is_in_the_graph_only_when_it_is_a_loss_term(tiny_model_dir, rollouts):
    learner = make_learner(tiny_model_dir)
    padded = pad_batch(rollouts.prompt_token_ids, rollouts.response_token_ids, learner.tokenizer.pad_token_id)
    logp, metric_only = response_logprobs(learner.model, padded, return_entropy=True, entropy_grad=False)
    _, in_loss = response_logprobs(learner.model, padded, return_entropy=True, entropy_grad=True)
    assert logp.requires_grad and not metric_only.requires_grad and in_loss.requires_grad
    torch.testing.assert_close(metric_only, in_loss.detach())
    assert "entropy" not in make_learner(tiny_model_dir, entropy_coef=0.0).terms
    assert "entropy" in make_learner(tiny_model_dir, entropy_coef=0.01).terms


def test_kl_clamp_bounds_the_per_token_kl(tiny_model_dir, rollouts):
    clamped = make_learner(tiny_model_dir, kl_coef=0.1, kl_clamp=1e-6, num_epochs=2, minibatch_size=4)
    metrics = clamped.update(rollouts)
    assert 0 < metrics["policy/kl"] <= 1e-6 + 1e-9


def test_the_value_term_trains_only_the_critic(tiny_model_dir, rollouts):
    from ngrpo_rl.critic import Critic
    from ngrpo_rl.value import gae

    critic = Critic(tiny_model_dir, lr=1e-2)
    learner = make_learner(tiny_model_dir, critic=critic, value_clip=0.5)
    assert "value" in learner.terms
    batch = learner.annotate(rollouts)
    mask = batch.response_mask()
    token_rewards = torch.zeros_like(mask)
    token_rewards[torch.arange(len(batch)), batch.response_lengths().long() - 1] = batch.rewards
    token_advantages, returns = gae(token_rewards, batch.values, mask)
    batch = batch.with_fields(advantages=token_advantages, returns=returns)
    critic_before = [p.detach().clone() for p in critic.parameters()]
    metrics = learner.update(batch)
    assert metrics["critic/value_loss"] > 0 and metrics["critic/grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, critic.parameters()))
    # Policy and critic are separate models: no parameter is shared.
    assert not {id(p) for p in critic.parameters()} & {id(p) for p in learner.model.parameters()}


def test_restored_schedule_continues_where_it_stopped(tiny_model_dir, rollouts, tmp_path):
    """The next learning rate after a restore is the one the original run takes next (load must
    restore the scheduler's step, not only the optimizer's current rate)."""
    settings = dict(lr_schedule="linear", warmup_steps=0, total_steps=6, minibatch_size=4)
    learner = make_learner(tiny_model_dir, **settings)
    learner.update(rollouts)  # 2 optimizer steps
    learner.save(tmp_path / "state")
    restored = make_learner(tiny_model_dir, **settings)
    restored.load(tmp_path / "state")
    learner.scheduler.step()
    restored.scheduler.step()
    assert restored.scheduler.last_epoch == learner.scheduler.last_epoch == 3
    assert restored.optimizer.param_groups[0]["lr"] == pytest.approx(learner.optimizer.param_groups[0]["lr"])
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * (1 - 3 / 6))


def test_num_minibatches_splits_any_batch_and_minibatch_size_wins(tiny_model_dir, rollouts):
    assert make_learner(tiny_model_dir, num_minibatches=4).update(rollouts)["optim/num_updates"] == 4
    assert make_learner(tiny_model_dir, num_minibatches=3).update(rollouts)["optim/num_updates"] == 3  # 3+3+2
    both = make_learner(tiny_model_dir, num_minibatches=4, minibatch_size=8)
    assert both.update(rollouts)["optim/num_updates"] == 1


# ---- recomputed old log-probs and truncated importance sampling ---------------------------------


def with_sampler_shift(batch: TrainingBatch, shift: float) -> TrainingBatch:
    """The batch as a sampler would report it whose log-probs are off by ``shift`` per token."""
    shifted = [[value + shift for value in row] for row in batch.old_logprobs]
    return dataclasses.replace(batch, old_logprobs=shifted)


def test_recomputed_old_logprobs_start_the_ratio_at_one(tiny_model_dir, rollouts):
    metrics = make_learner(tiny_model_dir, recompute_old_logprobs=True, tis_cap=2.0).update(rollouts)
    assert metrics["ratio/first_step_min"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["ratio/first_step_max"] == pytest.approx(1.0, abs=1e-5)
    # The HF sampler and the learner compute the same log-probs: every weight is 1.
    assert metrics["is/raw_weight_max"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["is/weight_mean"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["is/logprob_gap_max"] < 1e-5
    assert metrics["is/capped_frac"] == 0.0


def test_a_mismatched_sampler_is_corrected_and_its_weights_capped(tiny_model_dir, rollouts):
    # The sampler reports every token 1 nat less likely than the learner: pi_learner / pi_sampler
    # = e, above the cap of 2, so every token's loss is weighted by exactly 2.
    mismatched = with_sampler_shift(rollouts, -1.0)
    metrics = make_learner(tiny_model_dir, recompute_old_logprobs=True, tis_cap=2.0).update(mismatched)
    assert metrics["is/raw_weight_max"] == pytest.approx(math.e, rel=1e-4)
    assert metrics["is/weight_max"] == 2.0 and metrics["is/weight_mean"] == pytest.approx(2.0)
    assert metrics["is/capped_frac"] == 1.0
    assert metrics["is/logprob_gap_mean"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["ratio/first_step_max"] == pytest.approx(1.0, abs=1e-5)  # recomputed, not e

    # Trusting that sampler instead starts the ratio at e, far outside the clip range.
    trusting = make_learner(tiny_model_dir, num_epochs=1).update(mismatched)
    assert trusting["ratio/first_step_min"] == pytest.approx(math.e, rel=1e-4)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_capped_weights_scale_the_policy_gradient(tiny_model_dir, rollouts):
    mismatched = with_sampler_shift(rollouts, -1.0)
    unclipped = dict(recompute_old_logprobs=True, grad_clip=None)
    plain = recorded_gradients(make_learner(tiny_model_dir, **unclipped), mismatched)
    weighted = recorded_gradients(make_learner(tiny_model_dir, tis_cap=2.0, **unclipped), mismatched)
    assert any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(weighted[name], 2.0 * plain[name], atol=1e-7, rtol=1e-5, msg=name)


def test_half_precision_trains_float32_master_weights(tiny_model_dir, rollouts):
    # At lr 1e-6 an AdamW step is ~1e-6 per weight: lost on most bfloat16 weights (8 bits of
    # mantissa), kept by float32 master weights; the forward computes in bfloat16.
    learner = make_learner(tiny_model_dir, dtype="bfloat16", lr=1e-6)
    assert all(p.dtype == torch.float32 for p in learner.model.parameters())
    with learner.autocast():
        assert learner.model.lm_head(torch.randn(1, 32)).dtype == torch.bfloat16
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.update(rollouts)
    matrices = [k for k, v in before.items() if v.dim() == 2]
    changed = sum(int((learner.model.state_dict()[k] != before[k]).sum()) for k in matrices)
    assert changed / sum(before[k].numel() for k in matrices) > 0.9
    assert all(v.dtype == torch.bfloat16 for v in learner.state_dict_for_generation().values())


def test_nonfinite_steps_are_skipped_counted_and_stop_training_when_repeated(tiny_model_dir, rollouts):
    from ngrpo_rl.learner import NonFiniteTrainingError

    poisoned = rollouts.with_fields(advantages=torch.full_like(rollouts.advantages, float("nan")))
    learner = make_learner(tiny_model_dir, max_nonfinite_steps=2)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    metrics = learner.update(poisoned)
    assert metrics["optim/skipped_steps"] == 1
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
    assert learner.update(rollouts)["optim/skipped_steps"] == 0  # a good step resets the count
    learner.update(poisoned)
    with pytest.raises(NonFiniteTrainingError, match="2 optimizer steps in a row.*max_nonfinite_steps=2"):
        learner.update(poisoned)
    assert all(torch.isfinite(v).all() for v in learner.model.state_dict().values())


# ---- statistics, schedules and plumbing (closing surviving mutants: docs/mutation_testing.md) ---


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_a_one_step_decay_reaches_zero_at_total_steps(name):
    schedule = lr_schedules.get(name)
    # No warm-up, total_steps 1: the base rate at step 0, 0 from step 1 on.
    assert [schedule(step, 0, 1) for step in range(3)] == pytest.approx([1.0, 0.0, 0.0])
    # Warm-up over 2 steps then one decay step: 1/2, 1, 1 (the last warm-up step), then 0.
    assert [schedule(step, 2, 3) for step in range(5)] == pytest.approx([0.5, 1.0, 1.0, 0.0, 0.0])


def test_decay_shapes_over_four_steps():
    # Progress t = step / 4 without warm-up: linear 1 - t, cosine (1 + cos(pi t)) / 2.
    steps = range(6)
    linear = [max(0.0, 1 - step / 4) for step in steps]
    cosine = [0.5 * (1 + math.cos(math.pi * min(1.0, step / 4))) for step in steps]
    assert [lr_schedules.get("linear")(step, 0, 4) for step in steps] == pytest.approx(linear)
    assert [lr_schedules.get("cosine")(step, 0, 4) for step in steps] == pytest.approx(cosine)
    assert cosine[2] == pytest.approx(0.5) and linear[1] == pytest.approx(0.75)
    # With warm-up the decay starts after it: warm-up 2, total 6 -> step 4 is half-way.
    assert lr_schedules.get("linear")(4, 2, 6) == pytest.approx(0.5)
    assert lr_schedules.get("cosine")(4, 2, 6) == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")
@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_gradient_checkpointing_gives_the_same_gradient(tiny_model_dir, rollouts):
    plain = recorded_gradients(make_learner(tiny_model_dir), rollouts)
    checkpointed = recorded_gradients(make_learner(tiny_model_dir, gradient_checkpointing=True), rollouts)
    assert any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-7, rtol=1e-5, msg=name)


def test_annotate_without_reference_or_critic_returns_the_batch(tiny_model_dir, rollouts):
    learner = make_learner(tiny_model_dir)
    assert learner.annotate(rollouts) is rollouts


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")
def test_gradient_checkpointing_follows_the_setting(tiny_model_dir):
    def checkpointing(model) -> bool:  # transformers 5 renamed the flag
        name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else "is_gradient_checkpointing"
        return bool(getattr(model, name))

    assert not checkpointing(make_learner(tiny_model_dir).model)
    assert checkpointing(make_learner(tiny_model_dir, gradient_checkpointing=True).model)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_one_step_loss_and_gradient_norm_by_hand(tiny_model_dir, rollouts):
    learner = make_learner(tiny_model_dir, minibatch_size=8, grad_clip=None)
    norms: list[float] = []
    step = learner.optimizer.step

    def measured_step(*args, **kwargs):
        norms.append(math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in learner.model.parameters()
                                   if p.grad is not None)))
        return step(*args, **kwargs)

    learner.optimizer.step = measured_step
    metrics = learner.update(rollouts)
    assert len(norms) == 1 and metrics["optim/num_updates"] == 1
    assert metrics["optim/grad_norm"] == pytest.approx(norms[0], rel=1e-5)
    # The ratio is 1 at the first step (sampler and learner agree), so the token-mean policy loss is
    # -sum_i A_i * len_i / sum_i len_i over the 8 responses.
    lengths = rollouts.response_lengths().double()
    expected = -float((rollouts.advantages.double() * lengths).sum() / lengths.sum())
    assert metrics["losses/total"] == pytest.approx(expected, abs=1e-4)
    assert metrics["timers/learn"] > 0


def test_generation_weights_are_the_policy_weights(tiny_model_dir):
    learner = make_learner(tiny_model_dir)
    state = learner.model.state_dict()
    for weights in (learner.state_dict_for_generation(), learner.weights_for_generation()):
        assert set(weights) == set(state)
        for name, value in state.items():
            assert weights[name].device.type == "cpu" and not weights[name].requires_grad
            assert torch.equal(weights[name], value), name


def test_master_weights_are_float32_only_for_half_precision():
    from ngrpo_rl.learner import master_dtype

    assert master_dtype("bfloat16") is torch.float32 and master_dtype(torch.float16) is torch.float32
    assert master_dtype("float64") is torch.float64 and master_dtype("float32") is torch.float32
    assert master_dtype(None) is None


def test_importance_sampling_sums_by_hand():
    from ngrpo_rl.learner import importance_sampling_sums

    # Learner log-probs against a sampler at 0: weights 0.5, 3 and 1.5 on the masked tokens (the
    # unmasked ones, one of them e^9, must not count). Cap 2: capped 0.5, 2, 1.5.
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    learner_logp = torch.tensor([[math.log(0.5), math.log(3.0), 9.0], [math.log(1.5), 0.0, 0.0]])
    sampler_logp = torch.zeros(2, 3)
    tensors = {"mask": mask, "old_logp": learner_logp, "sampler_logp": sampler_logp,
               "is_weights": torch.exp(learner_logp - sampler_logp)}
    sums, maxima = importance_sampling_sums(tensors, 2.0)
    gaps = [math.log(2.0), math.log(3.0), math.log(1.5)]
    assert sums == pytest.approx({"is/tokens": 3.0, "is/weight_sum": 4.0, "is/raw_weight_sum": 5.0,
                                  "is/capped_count": 1.0, "is/logprob_gap_sum": sum(gaps)}, rel=1e-6)
    assert maxima == pytest.approx({"is/weight_max": 2.0, "is/raw_weight_max": 3.0,
                                    "is/logprob_gap_max": math.log(3.0)}, rel=1e-6)
    # No response token at all: zero sums and maxima, no error.
    sums, maxima = importance_sampling_sums({**tensors, "mask": torch.zeros(2, 3)}, None)
    assert sums["is/tokens"] == 0.0 and sums["is/capped_count"] == 0.0
    assert maxima == {"is/weight_max": 0.0, "is/raw_weight_max": 0.0, "is/logprob_gap_max": 0.0}


def test_update_stats_merge_adds_shares_and_keeps_rank_zero_counters():
    from ngrpo_rl.learner import UpdateStats

    is_sums = {"is/tokens": 3.0, "is/weight_sum": 4.0, "is/raw_weight_sum": 5.0, "is/capped_count": 1.0,
               "is/logprob_gap_sum": 1.5}
    rank0 = UpdateStats(sums_list=[{"entropy": 2.0, "tokens": 4.0}, is_sums], step_losses=[1.0, 2.0],
                        grad_norms=[0.5, 0.25], maxima={"is/weight_max": 1.5}, skipped_steps=1, lr=0.1,
                        num_updates=2, seconds=3.0)
    rank1 = UpdateStats(sums_list=[{"entropy": 1.0, "tokens": 6.0}, is_sums], step_losses=[0.5, 0.25],
                        grad_norms=[9.0, 9.0], maxima={"is/weight_max": 2.5}, skipped_steps=7, lr=0.7,
                        num_updates=9, seconds=5.0)
    merged = UpdateStats.merge([rank0, rank1])
    assert merged.step_losses == [1.5, 2.25]  # each rank's loss is its share of the mini-batch loss
    assert (merged.grad_norms, merged.skipped_steps, merged.lr, merged.num_updates) == ([0.5, 0.25], 1, 0.1, 2)
    assert merged.maxima == {"is/weight_max": 2.5} and merged.seconds == 5.0
    metrics = merged.metrics()
    assert metrics["losses/total"] == pytest.approx((1.5 + 2.25) / 2)
    assert metrics["optim/grad_norm"] == pytest.approx(0.375)
    assert metrics["policy/entropy"] == pytest.approx(3.0 / 10.0)
    assert metrics["is/weight_mean"] == pytest.approx(8.0 / 6.0)
    assert metrics["is/raw_weight_mean"] == pytest.approx(10.0 / 6.0)
    assert metrics["is/capped_frac"] == pytest.approx(2.0 / 6.0)
    assert metrics["is/logprob_gap_mean"] == pytest.approx(3.0 / 6.0)
    assert metrics["is/weight_max"] == 2.5 and metrics["optim/lr"] == 0.1


def test_only_fsdp2_ranks_load_sharded_state(tiny_model_dir, tmp_path, monkeypatch):
    """A DDP rank holds the whole model and loads the whole checkpoint; an FSDP2 rank loads its shard."""
    import ngrpo_rl.learner as learner_module
    from ngrpo_rl.distributed import DistributedContext

    learner = make_learner(tiny_model_dir)
    learner.save(tmp_path / "state")
    calls = []
    monkeypatch.setattr(learner_module, "load_sharded", lambda *args: calls.append(args))
    learner.distributed = DistributedContext(rank=0, world_size=2, strategy="ddp")
    learner.load(tmp_path / "state")
    assert calls == []
    learner.distributed = DistributedContext(rank=0, world_size=2, strategy="fsdp2")
    learner.load(tmp_path / "state")
    assert len(calls) == 1


def test_saving_again_into_the_same_folder_overwrites_it(tiny_model_dir, rollouts, tmp_path):
    learner = make_learner(tiny_model_dir)
    learner.save(tmp_path / "state")
    learner.update(rollouts)
    learner.save(tmp_path / "state")  # periodic checkpoints reuse their folder
    restored = make_learner(tiny_model_dir)
    restored.load(tmp_path / "state")
    assert restored.num_updates == learner.num_updates == 1
    for a, b in zip(learner.model.parameters(), restored.model.parameters()):
        torch.testing.assert_close(a, b)


def test_every_fsdp2_rank_gathers_the_weights_and_only_rank_zero_writes(tiny_model_dir, tmp_path, monkeypatch):
    """Gathering FSDP2 shards is a collective: rank 1 must join it even though it writes nothing."""
    import ngrpo_rl.learner as learner_module
    from ngrpo_rl.distributed import DistributedContext

    learner = make_learner(tiny_model_dir)
    gathered = []
    monkeypatch.setattr(learner_module, "full_state_dict",
                        lambda model: gathered.append(model) or dict(model.state_dict()))
    learner.distributed = DistributedContext(rank=1, world_size=2, strategy="fsdp2")
    learner.save(tmp_path / "rank1")
    assert gathered == [learner.model] and not (tmp_path / "rank1").exists()
    learner.distributed = DistributedContext(rank=0, world_size=2, strategy="fsdp2")
    learner.save(tmp_path / "rank0")
    assert len(gathered) == 2 and (tmp_path / "rank0" / "learner_state.json").exists()


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_two_emulated_ranks_average_to_the_single_learner_gradient(tiny_model_dir, rollouts):
    """Each rank scales its share of the mini-batch loss by the group size, so DDP's average of the
    two ranks' gradients is the gradient of the whole mini-batch. Emulated in one process: the same
    learner as rank 0 and as rank 1 of 2 (mini-batches of 5 and 3 rows in micro-batches of 2: rank
    1 runs a dummy micro-batch of weight 0 in the first)."""
    from ngrpo_rl.distributed import DistributedContext

    def step_gradients(rank: int | None) -> list[dict[str, torch.Tensor]]:
        learner = make_learner(tiny_model_dir, minibatch_size=5, micro_batch_size=2, grad_clip=None)
        if rank is not None:
            learner.distributed = DistributedContext(rank=rank, world_size=2)
        steps: list[dict[str, torch.Tensor]] = []
        learner.optimizer.step = lambda *a, **k: steps.append(
            {n: p.grad.detach().clone() for n, p in learner.model.named_parameters()})
        metrics = learner.update(rollouts)
        assert metrics["optim/skipped_steps"] == 0
        return steps

    single, rank0, rank1 = step_gradients(None), step_gradients(0), step_gradients(1)
    assert len(single) == len(rank0) == len(rank1) == 2
    for whole, first, second in zip(single, rank0, rank1):
        for name in whole:
            torch.testing.assert_close((first[name] + second[name]) / 2, whole[name], atol=1e-7, rtol=1e-4, msg=name)


# ---- packed micro-batches (performance paths that must not change the update) ----------------


def trained_weights(tiny_model_dir, rollouts, share_prompts: bool, **overrides) -> dict[str, torch.Tensor]:
    learner = make_learner(tiny_model_dir, dtype="float64", minibatch_size=5, num_epochs=2, **overrides)
    learner.share_prompts = share_prompts
    learner.update(rollouts)
    return {k: v.clone() for k, v in learner.model.state_dict().items()}


PACKINGS = {
    "rows-of-3": {"micro_batch_size": 3, "micro_batch_max_tokens": None},
    "one-row": {"micro_batch_size": 1, "micro_batch_max_tokens": None},
    "tokens-16": {"micro_batch_size": 8, "micro_batch_max_tokens": 16},
    "tokens-1": {"micro_batch_size": 8, "micro_batch_max_tokens": 1},  # every row alone
}


@pytest.mark.parametrize("packing", list(PACKINGS))
@pytest.mark.parametrize(
    "mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
)
def test_packed_micro_batches_make_the_update_of_one_micro_batch(tiny_model_dir, rollouts, mode, packing):
    """Sorting rows by length, packing them by rows or tokens and cutting each micro-batch to its
    own width give the parameters one micro-batch per mini-batch gives (float64: two epochs of
    mini-batches of 5 and 3 rows, so AdamW steps on every packing's gradient sums)."""
    whole = trained_weights(tiny_model_dir, rollouts, False, loss_agg_mode=mode, micro_batch_size=8,
                            micro_batch_max_tokens=None)
    packed = trained_weights(tiny_model_dir, rollouts, False, loss_agg_mode=mode, **PACKINGS[packing])
    initial = make_learner(tiny_model_dir, dtype="float64").model.state_dict()
    assert max(float((whole[k] - initial[k]).abs().max()) for k in whole) > 1e-3  # it learned
    for name in whole:
        torch.testing.assert_close(packed[name], whole[name], atol=1e-12, rtol=0, msg=name)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_shared_prompt_passes_give_the_gradient_of_whole_rows(tiny_model_dir, rollouts):
    """A group's rows share one pass over their prompt. The gradient is the one of running every
    row whole, to float32 rounding: Qwen2's RMSNorm computes in float32 even in float64."""
    def gradient(share: bool) -> dict[str, torch.Tensor]:
        learner = make_learner(tiny_model_dir, dtype="float64", micro_batch_size=8)
        learner.share_prompts = share
        calls = []
        learner.model.register_forward_pre_hook(lambda *args: calls.append(1))
        grads = recorded_gradients(learner, rollouts)
        assert len(calls) == (2 if share else 1)  # the prompt pass, then the responses
        return grads

    whole, shared = gradient(False), gradient(True)
    for name in whole:
        scale = float(whole[name].abs().max())
        torch.testing.assert_close(shared[name], whole[name], atol=1e-6 * scale, rtol=0, msg=name)


@pytest.mark.parametrize("entropy_coef", [0.0, 0.01])
def test_the_entropy_metric_is_the_policy_entropy_with_or_without_its_gradient(tiny_model_dir, rollouts, entropy_coef):
    """The logged entropy (computed without a graph when it is no loss term, from the log-probs'
    normaliser either way) is the mean full-vocabulary entropy of the policy that sampled."""
    learner = make_learner(tiny_model_dir, dtype="float64", minibatch_size=8, entropy_coef=entropy_coef)
    expected = mean_policy_entropy(learner, rollouts)
    assert learner.update(rollouts)["policy/entropy"] == pytest.approx(expected, rel=1e-12)


def mean_policy_entropy(learner: Learner, batch: TrainingBatch) -> float:
    """The policy's full-vocabulary entropy averaged over the batch's response tokens, from its
    logits (not from the learner's log-prob path)."""
    from ngrpo_rl.losses import entropy_from_logits

    padded = pad_batch(batch.prompt_token_ids, batch.response_token_ids, learner.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = learner.model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                               position_ids=padded["position_ids"]).logits
    width = padded["response_mask"].shape[1]
    mask = padded["response_mask"].double()
    return float((entropy_from_logits(logits[:, -(width + 1) : -1]) * mask).sum() / mask.sum())


def test_rows_are_packed_by_length_within_both_limits():
    from ngrpo_rl.micro_batches import pack_rows

    prompts = torch.tensor([3, 5, 3, 3, 4, 9])
    responses = torch.tensor([1, 4, 2, 1, 4, 20])
    rows = torch.tensor([5, 0, 1, 2, 3, 4])
    packed = pack_rows(rows, prompts, responses, max_rows=3, max_tokens=20)
    # Sorted by length: rows 0, 3 (4 tokens), 2 (5), 4 (8), 1 (9), 5 (29, over the budget alone).
    assert [m.tolist() for m in packed] == [[0, 3, 2], [4, 1], [5]]
    for micro in packed[:-1]:
        assert len(micro) * int(prompts[micro].max() + responses[micro].max()) <= 20
    # Rows alone: the old behaviour of micro_batch_size with no token budget, in length order.
    assert [m.tolist() for m in pack_rows(rows, prompts, responses, max_rows=2, max_tokens=None)] == [
        [0, 3], [2, 4], [1, 5]
    ]
    # Among rows of one length, those with the same prompt come together (they share its pass).
    same = torch.full((4,), 3)
    by_prompt = pack_rows(torch.arange(4), same, same, max_rows=2, max_tokens=None,
                          prompt_groups=torch.tensor([0, 1, 0, 1]))
    assert [m.tolist() for m in by_prompt] == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="max_rows"):
        pack_rows(rows, prompts, responses, max_rows=0, max_tokens=None)


def test_a_few_long_responses_get_micro_batches_of_their_own():
    from ngrpo_rl.micro_batches import MICRO_BATCH_CALL_TOKENS, pack_rows

    # 64 groups of 8 rows with prompts of 7 tokens and responses of 3 or 4, and one of 40 tokens.
    groups = torch.arange(64).repeat_interleave(8)
    prompts = torch.full((512,), 7)
    responses = torch.tensor([3, 4] * 256)
    responses[100] = 40
    rows = torch.arange(512)
    shared = pack_rows(rows, prompts, responses, max_rows=1024, max_tokens=None, prompt_groups=groups)
    # Splitting 3 from 4 would run every prompt twice; the long row alone saves 36 x 511 tokens.
    assert [len(m) for m in shared] == [511, 1] and shared[1].tolist() == [100]
    assert sorted(torch.cat(shared).tolist()) == rows.tolist()
    # Without shared prompts, cutting responses of 3 from those of 5 saves 2 tokens per short row,
    # more than the cost of a call; of 3 from 4, 1 token per short row, no more than that cost.
    assert MICRO_BATCH_CALL_TOKENS == 256
    assert [len(m) for m in pack_rows(rows, prompts, responses, max_rows=1024, max_tokens=None)] == [511, 1]
    responses[responses == 4] = 5
    assert [len(m) for m in pack_rows(rows, prompts, responses, max_rows=1024, max_tokens=None)] == [255, 256, 1]


def test_every_rank_runs_as_many_micro_batches():
    from ngrpo_rl.distributed import DistributedContext
    from ngrpo_rl.micro_batches import micro_batch_plan

    prompts, responses = torch.full((5,), 2), torch.tensor([1, 1, 1, 9, 9])
    rows = torch.arange(5)
    plans = [micro_batch_plan(rows, prompts, responses, max_rows=8, max_tokens=12,
                              context=DistributedContext(rank, 2)) for rank in range(2)]
    # Rank 0 holds rows 0-2 (one micro-batch of 3 x 3 tokens), rank 1 rows 3-4 (11 tokens each:
    # one apiece), so rank 0 runs a dummy of weight 0 too.
    assert [(m.tolist(), w) for m, w in plans[0]] == [([0, 1, 2], 1.0), ([0], 0.0)]
    assert [(m.tolist(), w) for m, w in plans[1]] == [([3], 1.0), ([4], 1.0)]


def test_the_token_budget_is_checked():
    with pytest.raises(ValueError, match="micro_batch_max_tokens"):
        Settings(micro_batch_max_tokens=0)
    assert Settings(micro_batch_max_tokens=None).micro_batch_max_tokens is None


# -- responses of different lengths: padding inside a batch and micro-batches of other widths -----


@pytest.fixture(scope="module")
def ragged_rollouts(rollouts):
    """The rollouts with responses cut to 1-5 tokens (the sampled ones are all 5 long), so that rows
    are padded and micro-batches have different widths."""
    lengths = [5, 1, 3, 2, 4, 5, 2, 1]
    return rollouts.with_fields(
        response_token_ids=[list(r[:k]) for r, k in zip(rollouts.response_token_ids, lengths)],
        old_logprobs=[list(lp[:k]) for lp, k in zip(rollouts.old_logprobs, lengths)],
    )


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_micro_batches_of_different_widths_give_the_whole_minibatchs_gradient(tiny_model_dir, ragged_rollouts):
    assert len({len(r) for r in ragged_rollouts.response_token_ids}) == 5
    whole = recorded_gradients(make_learner(tiny_model_dir, micro_batch_size=8), ragged_rollouts)
    micro = recorded_gradients(make_learner(tiny_model_dir, micro_batch_size=2), ragged_rollouts)
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], atol=1e-7, rtol=1e-4, msg=name)


def test_padding_changes_no_metric_and_the_entropy_is_the_mean_over_real_tokens(tiny_model_dir, ragged_rollouts):
    learner = make_learner(tiny_model_dir, dtype="float64", minibatch_size=8, recompute_old_logprobs=True)
    expected = mean_policy_entropy(learner, ragged_rollouts)
    metrics = learner.update(ragged_rollouts)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["optim/skipped_steps"] == 0.0 and metrics["optim/grad_norm"] > 0
    assert metrics["policy/entropy"] == pytest.approx(expected, rel=1e-12)
    assert metrics["is/raw_weight_max"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["is/weight_mean"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["ratio/first_step_min"] == pytest.approx(1.0, abs=1e-6)


def test_annotate_adds_the_reference_models_logprobs(tiny_model_dir, ragged_rollouts):
    learner = make_learner(tiny_model_dir, kl_coef=0.1)
    annotated = learner.annotate(ragged_rollouts)
    padded = pad_batch(ragged_rollouts.prompt_token_ids, ragged_rollouts.response_token_ids,
                       learner.tokenizer.pad_token_id)
    with torch.no_grad():
        expected = response_logprobs(learner.reference_model, padded)
    mask = padded["response_mask"].bool()
    assert annotated.ref_logprobs is not None and annotated.ref_logprobs.shape == mask.shape
    torch.testing.assert_close(annotated.ref_logprobs[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_update_reports_the_schedules_rate_and_its_own_duration(tiny_model_dir, rollouts):
    learner = make_learner(tiny_model_dir, lr=3e-3, warmup_steps=0)
    metrics = learner.update(rollouts)
    assert metrics["optim/lr"] == pytest.approx(learner.scheduler.get_last_lr()[0]) and metrics["optim/lr"] > 0
    assert 0 < metrics["timers/learn"] < 60


def test_each_step_starts_from_a_zero_gradient(tiny_model_dir, rollouts):
    """With lr 1e-30 the weights do not move, so every update must see the same gradient norm; a
    gradient left over from the step before would add to it."""
    learner = make_learner(tiny_model_dir, lr=1e-30, minibatch_size=8, num_epochs=1, grad_clip=None)
    first = learner.update(rollouts)["optim/grad_norm"]
    second = learner.update(rollouts)["optim/grad_norm"]
    assert first > 0 and second == pytest.approx(first, rel=1e-6)


def test_an_entropy_bonus_changes_the_update(tiny_model_dir, rollouts):
    def weights_after(entropy_coef: float) -> list[torch.Tensor]:
        learner = make_learner(tiny_model_dir, entropy_coef=entropy_coef, minibatch_size=8, num_epochs=1)
        learner.update(rollouts)
        return [p.detach().clone() for p in learner.model.parameters()]

    without, with_bonus = weights_after(0.0), weights_after(0.5)
    assert any(not torch.equal(a, b) for a, b in zip(without, with_bonus))


def test_importance_sampling_counts_only_weights_above_the_cap_and_one_token_has_maxima():
    from ngrpo_rl.learner import importance_sampling_sums

    learner_logp = torch.tensor([[0.0, math.log(2.0), math.log(3.0)]])
    tensors = {"mask": torch.ones(1, 3), "old_logp": learner_logp, "sampler_logp": torch.zeros(1, 3),
               "is_weights": torch.exp(learner_logp)}
    sums, _ = importance_sampling_sums(tensors, 2.0)
    assert sums["is/capped_count"] == 1.0  # a weight of exactly the cap is not capped
    single = {**tensors, "mask": torch.tensor([[0.0, 0.0, 1.0]])}
    _, maxima = importance_sampling_sums(single, 2.0)
    assert maxima == pytest.approx({"is/weight_max": 2.0, "is/raw_weight_max": 3.0,
                                    "is/logprob_gap_max": math.log(3.0)}, rel=1e-6)


def test_load_restores_the_nonfinite_count_and_every_random_state(tiny_model_dir, tmp_path):
    import random

    learner = make_learner(tiny_model_dir)
    learner.nonfinite_in_a_row = 2
    learner.save(tmp_path / "state")
    expected = (torch.rand(3), random.random(), torch.rand(2, generator=learner.generator))
    other = make_learner(tiny_model_dir, seed=1)
    other.load(tmp_path / "state")
    assert other.nonfinite_in_a_row == 2
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert torch.equal(torch.rand(2, generator=other.generator), expected[2])
    # A checkpoint written before the count was saved loads with none.
    state_file = tmp_path / "state" / "learner_state.json"
    state = json.loads(state_file.read_text())
    del state["nonfinite_in_a_row"]
    state_file.write_text(json.dumps(state))
    other.load(tmp_path / "state")
    assert other.nonfinite_in_a_row == 0


def test_save_writes_into_an_existing_folder_and_creates_missing_ones(tiny_model_dir, tmp_path):
    learner = make_learner(tiny_model_dir)
    learner.save(tmp_path)  # exists already
    learner.save(tmp_path / "a" / "b")
    for folder in (tmp_path, tmp_path / "a" / "b"):
        assert (folder / "learner_state.json").is_file() and (folder / "policy").is_dir()


def test_critic_metrics_are_means_over_response_tokens(tiny_model_dir, rollouts):
    from ngrpo_rl.critic import Critic

    critic = Critic(tiny_model_dir, lr=1e-2)
    learner = make_learner(tiny_model_dir, critic=critic, minibatch_size=8, num_epochs=1)
    batch = learner.annotate(rollouts)
    mask = batch.response_mask()
    expected_values = float((batch.values * mask).sum() / mask.sum())
    returns = torch.ones_like(mask)  # every token's return 1: value loss = mean 0.5 (v - 1)^2
    expected_loss = float((0.5 * (batch.values - returns) ** 2 * mask).sum() / mask.sum())
    batch = batch.with_fields(advantages=torch.zeros_like(mask), returns=returns)
    metrics = learner.update(batch)
    assert metrics["critic/values_mean"] == pytest.approx(expected_values, rel=1e-4)
    assert metrics["critic/value_loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert 0.0 <= metrics["critic/clip_frac"] <= 1.0
    assert metrics["optim/skipped_steps"] == 0.0


def test_update_metrics_divide_sums_by_token_counts_even_for_a_single_token():
    from ngrpo_rl.learner import UpdateStats

    stats = UpdateStats(
        sums_list=[
            {"entropy": 0.5, "tokens": 1.0},
            {"is/tokens": 1.0, "is/weight_sum": 1.5, "is/raw_weight_sum": 3.0, "is/capped_count": 1.0,
             "is/logprob_gap_sum": 0.25},
            {"value_loss": 0.2, "value_clipped": 1.0, "values": 0.4},
        ],
        has_critic=True,
    )
    metrics = stats.metrics()
    assert metrics["policy/entropy"] == 0.5
    assert (metrics["is/weight_mean"], metrics["is/capped_frac"], metrics["is/logprob_gap_mean"]) == (1.5, 1.0, 0.25)
    assert (metrics["critic/value_loss"], metrics["critic/clip_frac"], metrics["critic/values_mean"]) == (0.2, 1.0, 0.4)
    four = UpdateStats(sums_list=[{"entropy": 2.0, "tokens": 4.0, "value_loss": 1.0, "value_clipped": 2.0, "values": 2.0}],
                       has_critic=True).metrics()
    assert (four["policy/entropy"], four["critic/clip_frac"], four["critic/values_mean"]) == (0.5, 0.5, 0.5)


def test_each_critic_step_starts_from_a_zero_gradient(tiny_model_dir, rollouts):
    from ngrpo_rl.critic import Critic

    critic = Critic(tiny_model_dir, lr=1e-30)
    learner = make_learner(tiny_model_dir, critic=critic, lr=1e-30, minibatch_size=8, num_epochs=1, grad_clip=None)
    batch = learner.annotate(rollouts)
    mask = batch.response_mask()
    batch = batch.with_fields(advantages=torch.zeros_like(mask), returns=torch.ones_like(mask))
    first = learner.update(batch)["critic/grad_norm"]
    second = learner.update(batch)["critic/grad_norm"]
    assert first > 0 and second == pytest.approx(first, rel=1e-6)
