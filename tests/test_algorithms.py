"""End to end on the CPU: every algorithm builds, trains, checkpoints and reports (Ray, tiny model)."""

from __future__ import annotations

import glob
import os

import pytest
import torch

ray = pytest.importorskip("ray")

from ngrpo_rl.algorithms import ALGORITHMS, NGRPO, GRPOConfig, NGRPOConfig
from ray.rllib.algorithms.algorithm import Algorithm

from ngrpo_rl import advantages, logged_metrics
from support import small

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def parameters(algo) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in algo.learner.model.named_parameters()}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_each_algorithm_trains_two_iterations_and_changes_the_policy(name, tmp_path):
    algo_class, config_class = ALGORITHMS[name]
    algo = small(config_class(), tmp_path).build()
    try:
        assert isinstance(algo, Algorithm) and isinstance(algo, algo_class)
        before = parameters(algo)
        for _ in range(2):
            result = algo.train()
        assert result["training_iteration"] == 2
        after = parameters(algo)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert changed, f"{name}: no parameter changed after two iterations"
    finally:
        algo.stop()


def test_ngrpo_advantages_in_the_batch_match_the_component(tmp_path):
    algo = small(NGRPOConfig(), tmp_path, levels=(4, 5), group_filter="none").build_algo()
    try:
        algo.train()
        rollouts = algo.last_batch
        expected = advantages.compute("ngrpo", rollouts.grouped(rollouts.rewards), virtual_reward=1.0)
        torch.testing.assert_close(rollouts.advantages, expected.flatten())
        # All-wrong groups get NGRPO's calibrated -1/sqrt(G+1), never GRPO's zero (levels 4-5 of
        # the warm start are mostly wrong, so such groups occur).
        grouped = rollouts.grouped(rollouts.advantages)
        all_wrong = ~rollouts.grouped(rollouts.correct).any(dim=1)
        assert all_wrong.any(), "no all-wrong group: pick harder levels"
        torch.testing.assert_close(
            grouped[all_wrong], torch.full_like(grouped[all_wrong], -1 / 5 ** 0.5), atol=1e-4, rtol=0
        )
    finally:
        algo.stop()


def test_two_epochs_produce_asymmetric_clipping(tmp_path):
    # Levels 2-4: correct answers are not yet likely there, so their ratios have room to pass
    # 1 + 0.24 (a token sampled with probability p can reach a ratio of at most 1 / p).
    config = small(NGRPOConfig(), tmp_path, levels=(2, 3, 4), num_epochs=4, minibatch_size=8,
                   lr=3e-4, group_filter="none", prompts_per_step=8, group_size=8)
    algo = config.build_algo()
    try:
        upper = lower = 0.0
        for _ in range(3):
            result = algo.train()
            upper += result["clip"]["upper_frac"]
            lower += result["clip"]["lower_frac"]
        assert upper > 0 and lower > 0
    finally:
        algo.stop()


def test_checkpoint_round_trip_restores_weights_optimizer_and_data(tmp_path):
    from transformers import AutoModelForCausalLM

    algo = small(NGRPOConfig(), tmp_path).build_algo()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
        weights = parameters(algo)
        data_state = algo.train_problems.get_state()
        optimizer_state = algo.learner.optimizer.state_dict()["state"]
    finally:
        algo.stop()

    policy_dir = os.path.join(path, "learner", "policy")
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    assert glob.glob(os.path.join(policy_dir, "*.safetensors"))
    assert not glob.glob(os.path.join(path, "**", "*.bin"), recursive=True)
    assert not glob.glob(os.path.join(path, "**", "*.pt"), recursive=True)
    for name, tensor in model.named_parameters():
        torch.testing.assert_close(tensor, weights[name])

    restored = NGRPO.from_checkpoint(path)
    try:
        assert restored.iteration == 1
        assert restored.train_problems.get_state() == data_state
        for name, tensor in parameters(restored).items():
            torch.testing.assert_close(tensor, weights[name])
        restored_state = restored.learner.optimizer.state_dict()["state"]
        for index, state in optimizer_state.items():
            torch.testing.assert_close(restored_state[index]["exp_avg"], state["exp_avg"])
        result = restored.train()
        assert result["training_iteration"] == 2
    finally:
        restored.stop()


def test_unreadable_checkpoint_is_refused_with_its_path(tmp_path):
    algo = small(NGRPOConfig(), tmp_path).build_algo()
    try:
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
        os.remove(os.path.join(path, "learner", "optimizer.safetensors"))
        with pytest.raises(ValueError, match="optimizer.safetensors|learner checkpoint"):
            algo.restore_from_path(path)
    finally:
        algo.stop()


def test_result_dict_and_tensorboard_hold_the_explanatory_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    algo = small(NGRPOConfig(), tmp_path).evaluation(
        evaluation_interval=1, evaluation_num_problems=4, evaluation_samples_per_problem=2,
        evaluation_ks=(1, 2),
    ).build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    wanted = ["groups/frac_all_incorrect", "groups/frac_all_correct", "groups/frac_mixed",
              "clip/upper_frac", "clip/lower_frac", "policy/entropy", "reward/mean",
              "evaluation/pass_at_1", "evaluation/pass_at_k_auc"]
    for key in wanted:
        head, tail = key.split("/", 1)
        assert tail in result[head], key
    fractions = result["groups"]
    assert fractions["frac_all_incorrect"] + fractions["frac_all_correct"] + fractions["frac_mixed"] == pytest.approx(1.0)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert set(wanted) <= tags
    flat = {f"{h}/{t}" for h, v in result.items() if isinstance(v, dict) for t in v}
    ours = {k for k in flat if k.split("/")[0] in {m.split("/")[0] for m in logged_metrics.METRICS} | {"evaluation"}}
    undefined = sorted(k for k in ours if not logged_metrics.is_defined(k))
    assert not undefined, f"metrics reported but not defined in logged_metrics: {undefined}"


def test_validate_names_the_field():
    with pytest.raises(ValueError, match="epsilon_neg"):
        NGRPOConfig().training(epsilon_neg=-0.1).validate()
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig().training(group_size=1).validate()
    with pytest.raises(ValueError, match="advantage_estimator.*ngrpo"):
        NGRPOConfig().training(advantage_estimator="nrgpo").validate()
    with pytest.raises(ValueError, match="group_filter"):
        NGRPOConfig().training(group_filter="drop_everything").validate()
    with pytest.raises(TypeError, match="num_workers"):
        NGRPOConfig().generation(num_workers=2)
    with pytest.raises(ValueError, match="virtual_reward.*nan"):
        NGRPOConfig().training(virtual_reward=float("nan")).validate()
    with pytest.raises(ValueError, match="dtype.*float7"):
        NGRPOConfig().generation(dtype="float7").validate()


def test_one_field_ablations():
    ablated = NGRPOConfig().training(advantage_estimator="grpo", advantage_epsilon=1e-4)
    assert (ablated.epsilon_pos, ablated.epsilon_neg) == (0.24, 0.16)
    assert ablated.component_params("advantage_estimator") == {"std_normalize": True, "epsilon": 1e-4}
    asymmetric_grpo = GRPOConfig().training(epsilon_pos=0.24, epsilon_neg=0.16)
    assert asymmetric_grpo.component_params("policy_loss") == {
        "epsilon_pos": 0.24, "epsilon_neg": 0.16, "dual_clip_c": asymmetric_grpo.dual_clip_c
    }


def test_settings_carry_every_training_field():
    config = NGRPOConfig().training(lr=3e-4, num_epochs=2, kl_coef=0.1, loss_agg_mode="seq-mean-token-mean")
    settings = config.debugging(seed=5).settings()
    assert (settings.lr, settings.num_epochs, settings.kl_coef) == (3e-4, 2, 0.1)
    assert settings.loss_agg_mode == "seq-mean-token-mean" and settings.seed == 5
    assert settings.component_params("policy_loss") == {
        "epsilon_pos": 0.24, "epsilon_neg": 0.16, "dual_clip_c": config.dual_clip_c
    }
    assert settings.entropy_coef == config.entropy_coef


def test_tune_grid_over_epsilon_pos_records_hparams(tmp_path):
    from ray import tune
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = small(NGRPOConfig(), tmp_path).training(epsilon_pos=tune.grid_search([0.2, 0.3]))
    tuner = tune.Tuner(
        NGRPO,
        param_space=config,
        run_config=tune.RunConfig(
            stop={"training_iteration": 1}, storage_path=str(tmp_path / "tune"), verbose=0
        ),
    )
    results = tuner.fit()
    assert len(results) == 2 and not results.errors
    seen = set()
    for result in results:
        hparams = {}
        for path in glob.glob(os.path.join(result.path, "events.out.tfevents.*")):
            for event in EventFileLoader(path).Load():
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name != "hparams":
                        continue
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    for key, hp in data.session_start_info.hparams.items():
                        hparams[key] = hp.number_value
        assert "epsilon_pos" in hparams, f"no epsilon_pos HParam in {result.path}"
        seen.add(round(hparams["epsilon_pos"], 6))
    assert seen == {0.2, 0.3}


def test_dynamic_sampling_cap_warns_instead_of_crashing(tmp_path, caplog):
    """An untrained model gets every group wrong, so DAPO's filter keeps none of them."""
    from ngrpo_rl.algorithms import DAPOConfig

    from ngrpo_rl.models import build_tiny_model, char_tokenizer, save_model

    tokenizer = char_tokenizer()
    save_model(build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2), tokenizer,
               tmp_path / "untrained")
    config = small(DAPOConfig(), tmp_path, max_sampling_rounds=2, overlong_buffer=1).generation(
        model_name_or_path=str(tmp_path / "untrained"), max_new_tokens=4
    )
    algo = config.build_algo()
    try:
        with caplog.at_level("WARNING"):
            result = algo.train()
        assert result["groups"]["sampling_rounds"] == 2
        assert result["groups"]["sampled"] == 8 and result["groups"]["kept"] == 0
        assert any("max_sampling_rounds" in record.getMessage() for record in caplog.records)
    finally:
        algo.stop()


def test_policy_loss_params_follow_the_chosen_loss_signature():
    from ngrpo_rl import losses

    @losses.register_policy_loss("test_only_upper_clip")
    def only_upper(logp, old_logp, advantages, mask, *, epsilon_pos=0.2):
        return losses.ppo_clip(logp, old_logp, advantages, mask, epsilon_pos=epsilon_pos)

    config = NGRPOConfig().training(policy_loss="test_only_upper_clip")
    config.validate()
    assert config.component_params("policy_loss") == {"epsilon_pos": 0.24}


def test_ngrpo_preset_clips_at_the_main_jobs_learning_rate(tmp_path):
    """The preset's 4 mini-batch steps per batch move the ratio off 1, so the clip binds."""
    config = (
        NGRPOConfig()
        .environment("ngrpo_rl/Arithmetic-v0", env_config={"levels": [3, 4], "seed": 0})
        .training(lr=1e-4)
        .generation(max_new_tokens=6)
        .reporting(tensorboard_dir=str(tmp_path / "tb"))
        .debugging(seed=0)
    )
    assert config.num_minibatches == 4 and config.minibatch_size is None
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(3)]
    finally:
        algo.stop()
    assert all(r["optim"]["num_updates"] == 4 * (i + 1) for i, r in enumerate(results))
    clipped = sum(r["clip"]["upper_frac"] + r["clip"]["lower_frac"] for r in results)
    assert clipped > 0
    assert any(r["ratio"]["min"] != pytest.approx(1.0, abs=1e-6) for r in results)


def test_ppo_trains_end_to_end_and_resumes_policy_and_critic(tmp_path):
    from ngrpo_rl.algorithms import PPO, PPOConfig
    from transformers import AutoModelForTokenClassification

    algo = small(PPOConfig(), tmp_path, lr=1e-3, minibatch_size=8).build_algo()
    try:
        critic_before = {k: v.detach().clone() for k, v in algo.critic.model.named_parameters()}
        for _ in range(2):
            result = algo.train()
        assert result["critic"]["value_loss"] > 0
        assert result["advantages"]["std"] > 0
        assert algo.last_batch.advantages.dim() == 2  # GAE: per-token advantages
        changed = [k for k, v in algo.critic.model.named_parameters() if not torch.equal(v, critic_before[k])]
        assert changed
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
        policy = parameters(algo)
        critic = {k: v.detach().clone() for k, v in algo.critic.model.named_parameters()}
    finally:
        algo.stop()
    opened = AutoModelForTokenClassification.from_pretrained(os.path.join(path, "critic"))
    for name, tensor in opened.named_parameters():
        torch.testing.assert_close(tensor, critic[name])
    restored = PPO.from_checkpoint(path)
    try:
        for name, tensor in parameters(restored).items():
            torch.testing.assert_close(tensor, policy[name])
        for name, tensor in restored.critic.model.named_parameters():
            torch.testing.assert_close(tensor, critic[name])
        assert restored.train()["training_iteration"] == 3
    finally:
        restored.stop()


def test_presets_follow_the_official_scripts():
    from ngrpo_rl.algorithms import DAPOConfig, PPOConfig, PSRNSRConfig

    for config_class in (NGRPOConfig, GRPOConfig, DAPOConfig, PSRNSRConfig, PPOConfig):
        config = config_class()
        assert config.num_minibatches == 4 and config.minibatch_size is None
        assert (config.entropy_coef, config.weight_decay, config.lr) == (0.001, 0.01, 1e-6)
        assert config.loss_agg_mode == "token-mean"
        config.validate()
    grpo = GRPOConfig()
    assert (grpo.kl_coef, grpo.kl_estimator, grpo.kl_clamp, grpo.kl_in_reward) == (0.001, "k3", 10.0, False)
    ppo = PPOConfig()
    assert (ppo.advantage_estimator, ppo.kl_in_reward, ppo.kl_estimator, ppo.critic_lr) == ("gae", True, "k1", 1e-5)
    assert (ppo.gamma, ppo.gae_lambda, ppo.value_clip, ppo.whiten_advantages) == (1.0, 1.0, 0.5, True)


def test_resume_under_a_group_filter_is_exact(tmp_path):
    """3 iterations straight equal 2 + checkpoint + restore + 1, bit for bit, with NGRPO's filter
    carrying surplus groups across the checkpoint."""
    def config():
        return small(NGRPOConfig(), tmp_path, levels=(2,), prompts_per_step=4)

    straight = config().build_algo()
    try:
        results = [straight.train() for _ in range(3)]
        expected = parameters(straight)
    finally:
        straight.stop()
    assert results[1]["groups"]["carried_over"] > 0, "no surplus at the checkpoint: pick easier levels"

    first = config().build_algo()
    try:
        for _ in range(2):
            first.train()
        path = first.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        first.stop()
    resumed = NGRPO.from_checkpoint(path)
    try:
        last = resumed.train()
        for name, tensor in parameters(resumed).items():
            assert torch.equal(tensor, expected[name]), name
        assert last["reward"]["mean"] == results[2]["reward"]["mean"]
        assert last["groups"]["sampling_rounds"] == results[2]["groups"]["sampling_rounds"]
    finally:
        resumed.stop()
