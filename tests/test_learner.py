"""The torch learner on a tiny untrained model: exact micro-batching, ratios, KL, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from ngrpo_rl import advantages
from ngrpo_rl.generation import SamplingParams, create_backend
from ngrpo_rl.learner import Learner, LearnerConfig, lr_schedules
from ngrpo_rl.models import build_tiny_model, char_tokenizer, save_model
from ngrpo_rl.rollouts import Rollouts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "model"
    tokenizer = char_tokenizer()
    save_model(build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=0), tokenizer, path)
    return str(path)


@pytest.fixture(scope="module")
def rollouts(model_dir):
    """Two groups of four sampled responses with made-up 0/1 rewards."""
    backend = create_backend("hf", model_dir, seed=0)
    output = backend.generate(["1+2=", "7*8="], SamplingParams(n=4, max_new_tokens=5, seed=1))
    correct = torch.tensor([1, 0, 0, 1, 0, 0, 0, 0], dtype=torch.bool)
    batch = Rollouts(
        problem_ids=["a"] * 4 + ["b"] * 4,
        golds=["3"] * 4 + ["56"] * 4,
        prompt_token_ids=output.prompt_token_ids,
        response_token_ids=output.response_token_ids,
        old_logprobs=output.response_logprobs,
        texts=output.texts,
        truncated=output.truncated,
        correct=correct,
        rewards=correct.float(),
        reasons=["correct" if c else "wrong" for c in correct],
        group_size=4,
    )
    batch.advantages = advantages.compute("ngrpo", batch.grouped(batch.rewards)).flatten()
    return batch


def make_learner(model_dir, **overrides) -> Learner:
    settings = dict(model_name_or_path=model_dir, lr=1e-2, max_new_tokens=5, seed=0)
    settings.update(overrides)
    return Learner(LearnerConfig(**settings))


def recorded_gradients(learner: Learner, rollouts: Rollouts) -> dict[str, torch.Tensor]:
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
def test_micro_batching_gives_the_gradient_of_the_whole_minibatch(model_dir, rollouts, mode):
    whole = recorded_gradients(make_learner(model_dir, micro_batch_size=8, loss_agg_mode=mode), rollouts)
    micro = recorded_gradients(make_learner(model_dir, micro_batch_size=3, loss_agg_mode=mode), rollouts)
    assert any(g.abs().sum() > 0 for g in whole.values())
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], atol=1e-7, rtol=1e-4, msg=name)


def test_first_pass_ratio_is_one_with_sampling_logprobs(model_dir, rollouts):
    learner = make_learner(model_dir, num_epochs=1)
    metrics = learner.update(rollouts)
    assert metrics["ratio/min"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["ratio/max"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["clip/upper_frac"] == 0.0 and metrics["clip/lower_frac"] == 0.0
    assert metrics["policy/kl"] == 0.0 and learner.reference_model is None


def test_kl_needs_and_uses_a_reference_model(model_dir, rollouts):
    learner = make_learner(model_dir, kl_coef=0.1, num_epochs=3, minibatch_size=4)
    assert learner.reference_model is not None
    metrics = learner.update(rollouts)
    assert metrics["policy/kl"] > 0  # the policy moved away from the frozen reference
    frozen = [p.requires_grad for p in learner.reference_model.parameters()]
    assert not any(frozen)


def test_mask_truncated_drops_truncated_responses(model_dir, rollouts):
    all_truncated = Rollouts(**{**rollouts.__dict__, "truncated": [True] * len(rollouts)})
    all_truncated.advantages = rollouts.advantages
    learner = make_learner(model_dir, mask_truncated=True)
    before = [p.detach().clone() for p in learner.model.parameters()]
    learner.update(all_truncated)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))


def test_save_and_load_restore_weights_optimizer_schedule_and_rng(model_dir, rollouts, tmp_path):
    learner = make_learner(model_dir, lr_schedule="cosine", warmup_steps=1, total_steps=10, minibatch_size=4)
    learner.update(rollouts)
    learner.save(tmp_path / "state")
    assert json.loads((tmp_path / "state" / "learner_state.json").read_text())["num_updates"] == 2
    expected_next = torch.randperm(8, generator=learner.generator)

    restored = make_learner(model_dir, lr_schedule="cosine", warmup_steps=1, total_steps=10, minibatch_size=4)
    restored.load(tmp_path / "state")
    for a, b in zip(learner.model.parameters(), restored.model.parameters()):
        torch.testing.assert_close(a, b)
    for index, state in learner.optimizer.state_dict()["state"].items():
        torch.testing.assert_close(restored.optimizer.state_dict()["state"][index]["exp_avg_sq"], state["exp_avg_sq"])
    assert restored.scheduler.get_last_lr() == learner.scheduler.get_last_lr()
    assert restored.num_updates == 2
    # The data order the restored learner draws next is the one the original drew.
    assert torch.equal(torch.randperm(8, generator=restored.generator), expected_next)


def test_unreadable_state_names_the_path(model_dir, tmp_path):
    learner = make_learner(model_dir)
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
