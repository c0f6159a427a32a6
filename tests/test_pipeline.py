"""The training pipeline without Ray: collection with oversampling and carry-over, reward shaping,
group filters, the estimate and drop stages, and one whole iteration on a tiny model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
import torch

from ngrpo_rl import advantages
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.pipeline.collect import Collector, ProblemStream, Sampler
from ngrpo_rl.pipeline.shaping import shape_rewards
from ngrpo_rl.pipeline.stages import (
    drop_zero_advantage_stage,
    estimate_stage,
    filter_stage,
    sampling_metrics,
)
from ngrpo_rl.settings import Settings

G = 4


@dataclass(frozen=True)
class FakeProblem:
    id: str
    answer: str


@dataclass(frozen=True)
class FakeVerdict:
    correct: bool
    reward: float
    reason: str


def fake_batch(problems, scores_per_problem, lengths=None) -> TrainingBatch:
    """One group of G rows per problem; ``scores_per_problem[p.id]`` gives the G scores."""
    rows = [(p, s) for p in problems for s in scores_per_problem[p.id]]
    lengths = lengths or [3] * len(rows)
    scores = torch.tensor([s for _, s in rows], dtype=torch.float32)
    return TrainingBatch(
        problem_ids=[p.id for p, _ in rows],
        golds=[p.answer for p, _ in rows],
        prompt_token_ids=[[1, 2]] * len(rows),
        response_token_ids=[[5] * n for n in lengths],
        old_logprobs=[[-1.0] * n for n in lengths],
        texts=["x"] * len(rows),
        truncated=[False] * len(rows),
        correct=scores >= 1.0,
        scores=scores,
        rewards=scores.clone(),
        reasons=["correct" if s >= 1 else "wrong" for _, s in rows],
        group_size=G,
    )


class ScriptedSampler:
    """In every round, the first half (rounded up) of the problems is solved by half the group (mixed groups),
    the second half by nobody (all-wrong groups)."""

    def __init__(self, solved_per_round=None):
        self.calls: list[tuple[list[str], int]] = []
        self.solved: set[str] = set()
        self.solved_per_round = solved_per_round

    def __call__(self, problems, seed):
        self.calls.append(([p.id for p in problems], seed))
        half = self.solved_per_round if self.solved_per_round is not None else (len(problems) + 1) // 2
        self.solved |= {p.id for p in problems[:half]}
        scores = {p.id: ([1.0, 1.0, 0.0, 0.0] if i < half else [0.0] * G) for i, p in enumerate(problems)}
        return fake_batch(problems, scores), {"timers/generate": 0.5, "timers/score": 0.25}


def make_collector(sampler, *, prompts_per_step=4, max_sampling_rounds=4, group_filter="none", problems=20):
    stream = ProblemStream([FakeProblem(str(i), "1") for i in range(problems)], seed=0)
    return Collector(
        sampler,
        stream,
        prompts_per_step=prompts_per_step,
        max_sampling_rounds=max_sampling_rounds,
        shape=lambda batch: batch,
        filter_groups=filter_stage(group_filter),
        seed=0,
    )


def test_without_a_filter_one_round_gives_prompts_per_step_groups():
    sampler = ScriptedSampler()
    collected = make_collector(sampler).collect(iteration=0)
    assert collected.rounds == 1 and len(sampler.calls) == 1
    assert collected.batch.num_groups == 4 and collected.carried_over == 0
    assert collected.timers == {"timers/generate": 0.5, "timers/score": 0.25}


def test_filter_oversamples_and_carries_the_surplus_over():
    sampler = ScriptedSampler()
    collector = make_collector(sampler, group_filter="drop_all_incorrect")
    first = collector.collect(iteration=0)
    # Each round of 4 problems keeps the 2 mixed groups: two rounds for 4 groups, no surplus.
    assert first.rounds == 2 and first.batch.num_groups == 4 and first.carried_over == 0
    assert set(first.batch.problem_ids) <= sampler.solved
    assert first.sampled.num_groups == 8
    assert first.timers["timers/generate"] == pytest.approx(1.0)
    # Rounds draw fresh problems and fresh seeds.
    (ids_a, seed_a), (ids_b, seed_b) = sampler.calls
    assert not set(ids_a) & set(ids_b) and seed_a != seed_b


def test_surplus_groups_are_trained_on_first_next_iteration():
    sampler = ScriptedSampler()
    collector = make_collector(sampler, prompts_per_step=3, group_filter="drop_all_incorrect")
    first = collector.collect(iteration=0)
    assert first.batch.num_groups == 3 and first.carried_over == 1
    surplus_id = collector.carry_over.problem_ids[0]
    second = collector.collect(iteration=1)
    assert second.batch.problem_ids[0] == surplus_id
    assert second.batch.num_groups == 3


def test_max_sampling_rounds_caps_collection_with_a_warning(caplog):
    sampler = ScriptedSampler(solved_per_round=1)
    collector = make_collector(sampler, max_sampling_rounds=2, group_filter="drop_homogeneous")
    with caplog.at_level(logging.WARNING):
        collected = collector.collect(iteration=0)
    assert collected.rounds == 2 and collected.batch.num_groups == 2
    assert any("max_sampling_rounds" in r.getMessage() for r in caplog.records)
    metrics = sampling_metrics(collected)
    assert metrics["groups/sampled"] == 8 and metrics["groups/kept"] == 2
    assert metrics["groups/frac_all_incorrect"] == pytest.approx(0.75)


def test_a_filter_that_keeps_nothing_returns_an_empty_batch():
    collector = make_collector(ScriptedSampler(), max_sampling_rounds=1)
    collector.filter_groups = lambda batch: batch.select_groups(torch.zeros(batch.num_groups, dtype=torch.bool))
    collected = collector.collect(iteration=0)
    assert len(collected.batch) == 0 and collected.sampled.num_groups == 4


def test_a_users_group_filter_gets_its_own_parameter_from_the_config():
    from ngrpo_rl import group_filters
    from ngrpo_rl.settings import Param

    @group_filters.register("test_min_correct", params={"min_correct": Param(int, 1, "fewest correct kept")})
    def min_correct(rewards, correct, *, min_correct=1):
        return correct.sum(dim=1) >= min_correct

    settings = Settings(group_filter="test_min_correct", component_kwargs={"min_correct": 2})
    stage = filter_stage(settings.group_filter, settings.component_params("group_filter"))
    batch = fake_batch([FakeProblem("0", "1"), FakeProblem("1", "1")],
                       {"0": [1.0, 0.0, 0.0, 0.0], "1": [1.0, 1.0, 0.0, 0.0]})
    assert stage(batch).problem_ids == ["1"] * G


def test_partial_credit_from_the_env_reaches_the_estimator():
    problems = [FakeProblem("0", "1")]
    batch = fake_batch(problems, {"0": [0.5, 0.25, 0.0, 0.0]})
    estimated = estimate_stage("grpo")(shape_rewards(batch, ()))
    expected = advantages.compute("grpo", torch.tensor([[0.5, 0.25, 0.0, 0.0]]))
    torch.testing.assert_close(estimated.advantages, expected.flatten())
    assert estimated.advantages[0] > estimated.advantages[1] > 0  # the half-right answer ranks first


def test_overlong_penalty_is_a_shaper_and_filters_see_the_unshaped_scores():
    problems = [FakeProblem("0", "1")]
    batch = fake_batch(problems, {"0": [1.0, 1.0, 1.0, 1.0]}, lengths=[4, 7, 8, 8])
    params = {"overlong_penalty": {"max_new_tokens": 8, "overlong_buffer": 4, "overlong_penalty_factor": 1.0}}
    shaped = shape_rewards(batch, ("overlong_penalty",), params)
    assert shaped.rewards.tolist() == pytest.approx([1.0, 0.25, 0.0, 0.0])
    assert torch.equal(shaped.scores, batch.scores)
    # All four are correct: DAPO's dynamic sampling drops the group although the rewards differ.
    assert len(filter_stage("drop_homogeneous")(shaped)) == 0


def test_the_default_overlong_buffer_is_a_third_of_max_new_tokens():
    batch = fake_batch([FakeProblem("0", "1")], {"0": [1.0] * 4}, lengths=[20, 21, 25, 30])
    params = {"overlong_penalty": Settings(max_new_tokens=30).component_params("reward_shaping", "overlong_penalty")}
    assert params["overlong_penalty"]["overlong_buffer"] is None
    shaped = shape_rewards(batch, ("overlong_penalty",), params)
    # Free up to 30 - 10 = 20 tokens, then -1/10 per token, -1 at 30.
    assert shaped.rewards.tolist() == pytest.approx([1.0, 0.9, 0.5, 0.0])


def test_unknown_shaper_lists_the_registered_ones():
    batch = fake_batch([FakeProblem("0", "1")], {"0": [1.0, 0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="overlong_penalty"):
        shape_rewards(batch, ("nope",))


@pytest.mark.parametrize("name, kept_correct", [("psr", True), ("nsr", False)])
def test_psr_and_nsr_drop_the_other_samples(name, kept_correct):
    problems = [FakeProblem("0", "1"), FakeProblem("1", "1")]
    batch = fake_batch(problems, {"0": [1.0, 0.0, 0.0, 0.0], "1": [1.0, 1.0, 0.0, 0.0]})
    assert advantages.estimators.metadata(name)["drop_zero_advantage_samples"]
    assert Settings(advantage_estimator=name).drops_zero_advantage_samples()
    estimated = estimate_stage(name)(batch)
    dropped = drop_zero_advantage_stage()(estimated)
    assert len(dropped) == (3 if kept_correct else 5)
    assert bool((dropped.correct == kept_correct).all())
    assert bool((dropped.advantages != 0).all())


def test_w_reinforce_keeps_every_sample_and_the_drop_is_one_field():
    assert not Settings(advantage_estimator="w_reinforce").drops_zero_advantage_samples()
    assert not Settings(advantage_estimator="psr", drop_zero_advantage_samples=False).drops_zero_advantage_samples()


class FakeEnv:
    def prompt(self, problem):
        return f"{problem.id}+0="

    def score_batch(self, problems, completions):
        return [FakeVerdict(c.strip() == p.answer, 1.0 if c.strip() == p.answer else 0.0, "x")
                for p, c in zip(problems, completions)]


def test_sampler_scores_with_the_env_and_keeps_sampling_logprobs():
    from ngrpo_rl.generation.types import GenerationOutput

    def generate(prompts, params):
        rows = len(prompts) * params.n
        return GenerationOutput(
            prompt_token_ids=[[1]] * rows,
            response_token_ids=[[7, 2]] * rows,
            response_logprobs=[[-0.5, -0.1]] * rows,
            texts=["1", "2"] * (rows // 2),
            truncated=[False] * rows,
        )

    sampler = Sampler(generate, FakeEnv(), group_size=2, max_new_tokens=4)
    batch, timers = sampler([FakeProblem("a", "1"), FakeProblem("b", "2")], seed=3)
    assert batch.scores.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert torch.equal(batch.rewards, batch.scores)
    assert batch.problem_ids == ["a", "a", "b", "b"]
    torch.testing.assert_close(batch.padded_old_logprobs(), torch.tensor([[-0.5, -0.1]] * 4))
    assert set(timers) == {"timers/generate", "timers/score"}


def test_sampler_reports_what_the_envs_verifier_did_for_this_batch_only():
    from ngrpo_rl.envs.arithmetic import ArithmeticTask
    from ngrpo_rl.envs.text_env import ArithmeticEnv
    from ngrpo_rl.envs.verifier import Verifier
    from ngrpo_rl.generation.types import GenerationOutput

    problems = ArithmeticTask(levels=[1]).problems("train", 2)
    texts = [problems[0].answer, "no answer here", f"\\boxed{{{problems[1].answer}}}", "\\boxed{\\pi}"]

    def generate(prompts, params):
        rows = len(prompts) * params.n
        return GenerationOutput([[1]] * rows, [[7]] * rows, [[-0.5]] * rows, texts, [False] * rows)

    verifier = Verifier(num_workers=1)
    try:
        env = ArithmeticEnv(levels=[1], num_problems=20, verifier=verifier)
        verifier.verify_batch(["3"], ["3"])  # earlier work must not be counted
        sampler = Sampler(generate, env, group_size=2, max_new_tokens=4)
        first = sampler(problems, seed=0)[1]
        second = sampler(problems, seed=1)[1]
    finally:
        verifier.close()
    # Two integer answers settle on the fast path, pi goes to math-verify (once: then the memo).
    assert (first["verifier/fast_path"], first["verifier/comparisons"], first["verifier/memo_hits"]) == (2, 1, 0)
    assert (second["verifier/fast_path"], second["verifier/comparisons"], second["verifier/memo_hits"]) == (2, 0, 1)


def run_one_iteration(model_dir, critic=None, env=None, **values):
    from ngrpo_rl.envs import ArithmeticEnv

    from ngrpo_rl.generation import create_backend
    from ngrpo_rl.learner import Learner
    from ngrpo_rl.pipeline.engine import build_pipeline

    settings = Settings(**{
        "group_size": 4, "prompts_per_step": 2, "max_new_tokens": 4, "micro_batch_size": 3,
        "minibatch_size": 4, "lr": 1e-2, "group_filter": "none", **values,
    })
    learner = Learner(settings, model_path=model_dir, critic=critic)
    env = env or ArithmeticEnv(levels=[5], seed=0)  # an untrained model gets these all wrong
    pipeline = build_pipeline(
        settings,
        generate=create_backend("hf", model_dir, seed=0).generate,
        env=env,
        problems=ProblemStream(env.problems, seed=0),
        learner=learner,
    )
    return pipeline.step(0)


def test_one_ngrpo_iteration_without_ray(tiny_model_dir):
    batch, metrics = run_one_iteration(tiny_model_dir, advantage_estimator="ngrpo")
    assert metrics["groups/frac_all_incorrect"] == 1.0
    # GRPO would give these groups zero advantage; NGRPO gives each response -1/sqrt(G + 1).
    torch.testing.assert_close(batch.advantages, torch.full((8,), -1 / 5 ** 0.5), atol=1e-5, rtol=0)
    assert metrics["advantages/frac_zero"] == 0.0
    assert metrics["optim/num_updates"] == 2  # 8 responses in mini-batches of 4
    assert metrics["ratio/max"] > 1.0 or metrics["ratio/min"] < 1.0  # the second step is off-policy


def test_one_ppo_iteration_without_ray(tiny_model_dir):
    from ngrpo_rl.critic import Critic

    batch, metrics = run_one_iteration(
        tiny_model_dir, critic=Critic(tiny_model_dir, lr=1e-3), advantage_estimator="gae",
        whiten_advantages=True, kl_coef=0.01, kl_in_reward=True, kl_estimator="k1",
    )
    mask = batch.response_mask().bool()
    assert batch.advantages.shape == mask.shape and batch.returns.shape == mask.shape
    assert batch.advantages[mask].mean().abs() < 1e-5  # whitened over the batch's tokens
    assert batch.ref_logprobs is not None and batch.values is not None
    assert metrics["critic/value_loss"] > 0
    assert metrics["policy/kl"] == 0.0


def test_the_configured_group_filter_decides_what_is_trained_on(tiny_model_dir, caplog):
    """An untrained model gets every level-5 group wrong: drop_all_incorrect keeps none of them,
    so the pipeline samples max_sampling_rounds times and skips the update."""
    with caplog.at_level(logging.WARNING):
        batch, metrics = run_one_iteration(
            tiny_model_dir, advantage_estimator="ngrpo", group_filter="drop_all_incorrect", max_sampling_rounds=2
        )
    assert len(batch) == 0 and metrics["groups/kept"] == 0 and metrics["groups/sampling_rounds"] == 2
    assert metrics["groups/sampled"] == 4 and "optim/num_updates" not in metrics
    assert any("max_sampling_rounds" in r.getMessage() for r in caplog.records)


def test_batch_state_round_trips_exactly_through_json():
    import json

    batch = fake_batch([FakeProblem("0", "1")], {"0": [0.3, 1.0, 0.0, 0.7]}, lengths=[1, 2, 3, 2])
    batch = batch.with_fields(values=torch.rand(4, 3), advantages=torch.randn(4))
    restored = TrainingBatch.from_state(json.loads(json.dumps(batch.to_state())))
    for name in ("correct", "scores", "rewards", "values", "advantages"):
        assert torch.equal(getattr(restored, name), getattr(batch, name)), name
    assert restored.correct.dtype == torch.bool and restored.ref_logprobs is None
    assert restored.old_logprobs == batch.old_logprobs and restored.problem_ids == batch.problem_ids


def test_a_restored_collector_trains_on_the_surplus_it_carried():
    sampler = ScriptedSampler()
    collector = make_collector(sampler, prompts_per_step=3, group_filter="drop_all_incorrect")
    collector.collect(iteration=0)
    assert collector.carry_over is not None
    state, stream = collector.get_state(), collector.problems.get_state()
    expected = collector.collect(iteration=1)

    restored = make_collector(ScriptedSampler(), prompts_per_step=3, group_filter="drop_all_incorrect")
    restored.set_state(state)
    restored.problems.set_state(stream)
    again = restored.collect(iteration=1)
    assert again.batch.problem_ids == expected.batch.problem_ids
    assert torch.equal(again.batch.rewards, expected.batch.rewards)


@pytest.mark.parametrize("timed_out, trained", [(5, False), (4, True)])
def test_an_iteration_the_verifier_mostly_timed_out_on_is_not_trained_on(tiny_model_dir, timed_out, trained):
    import dataclasses as dc

    from ngrpo_rl.envs import ArithmeticEnv

    class TimingOutEnv(ArithmeticEnv):
        """The first ``timed_out`` responses of every call time out in the verifier."""

        def score_batch(self, problems, completions):
            verdicts = super().score_batch(problems, completions)
            return [dc.replace(v, correct=False, reason="timeout") if i < timed_out else v
                    for i, v in enumerate(verdicts)]

    env = TimingOutEnv(levels=[5], seed=0)
    _, metrics = run_one_iteration(tiny_model_dir, env=env, advantage_estimator="ngrpo")
    assert metrics["verifier/timeout_frac"] == timed_out / 8  # 2 prompts x 4 responses, one call
    assert metrics["verifier/update_skipped"] == float(not trained)
    assert ("optim/num_updates" in metrics) == trained
