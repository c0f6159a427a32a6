"""Scaling out on Ray: a learner group inside the algorithm, under Tune, and on two nodes."""

from __future__ import annotations

import pytest
import torch

ray = pytest.importorskip("ray")

from ngrpo_rl.algorithms import NGRPO, NGRPOConfig
from ray import tune
from ray.cluster_utils import Cluster
from support import small

from ngrpo_rl.learner_group import LearnerGroup

pytestmark = pytest.mark.slow


def two_learners(tmp_path, **learners):
    return small(NGRPOConfig(), tmp_path).learners(
        num_learners=2, num_cpus_per_learner=0.5, **learners
    )


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_learners_train_checkpoint_and_restore(local_ray, tmp_path):
    algo = two_learners(tmp_path).build()
    try:
        assert isinstance(algo.learner, LearnerGroup)
        before = algo.learner.state_dict_for_generation()
        before = {k: v.clone() for k, v in before.items()}
        result = algo.train()
        after = algo.learner.state_dict_for_generation()
        assert any(not torch.equal(before[k], after[k]) for k in after)
        assert result["optim"]["num_updates"] > 0
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        algo.stop()
    restored = NGRPO.from_checkpoint(path)
    try:
        weights = restored.learner.state_dict_for_generation()
        for name in after:
            assert torch.equal(weights[name], after[name]), name
        assert restored.iteration == 1
        restored.train()
    finally:
        restored.stop()


def test_ppo_with_two_learners_trains_its_critic_and_restores_it(local_ray, tmp_path):
    from ngrpo_rl.algorithms import PPO, PPOConfig

    algo = small(PPOConfig(), tmp_path).learners(num_learners=2, num_cpus_per_learner=0.5).build()
    try:
        result = algo.train()
        assert result["critic"]["value_loss"] > 0 and result["critic"]["grad_norm"] > 0
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
        expected = algo.train()
    finally:
        algo.stop()
    restored = PPO.from_checkpoint(path)
    try:
        again = restored.train()
    finally:
        restored.stop()
    for key in ("value_loss", "values_mean", "grad_norm"):
        assert again["critic"][key] == pytest.approx(expected["critic"][key], rel=1e-6), key


def test_a_killed_learner_is_replaced_from_the_last_checkpoint_and_training_goes_on(local_ray, tmp_path):
    algo = two_learners(tmp_path).build()
    try:
        first = algo.train()
        steps = first["optim"]["num_updates"]
        algo.save_to_path(str(tmp_path / "checkpoint"))
        algo.train()
        ray.kill(algo.learner.workers[1])  # rank 0 would wait for it in the next all-reduce
        result = algo.train()
        assert result["training_iteration"] == 3
        assert result["learner"]["restarts"] == 1
        # The new group started from the checkpoint's optimizer state: one iteration's steps on top.
        assert result["optim"]["num_updates"] == 2 * steps
        assert algo.train()["learner"]["restarts"] == 1
    finally:
        algo.stop()


def test_a_killed_generation_worker_is_replaced_and_the_iteration_says_so(local_ray, tmp_path):
    algo = small(NGRPOConfig(), tmp_path).generation(num_generation_workers=1).build()
    try:
        assert algo.train()["generation"]["worker_restarts"] == 0
        ray.kill(algo.generation.actors[0])
        result = algo.train()  # the dead worker's chunk is rerun on a fresh one
        assert result["training_iteration"] == 2 and result["optim"]["num_updates"] > 0
        assert result["generation"]["worker_restarts"] == 1
    finally:
        algo.stop()


def test_resource_request_declares_every_learner_and_generation_bundle(tmp_path):
    config = two_learners(tmp_path, custom_resources_per_learner={"learner_node": 1}).generation(
        num_generation_workers=3, custom_resources_per_generation_worker={"rollout_node": 1}
    )
    bundles = NGRPO.default_resource_request(config).bundles
    assert bundles[0] == {"CPU": 1}
    assert bundles[1:3] == [{"CPU": 0.5, "learner_node": 1}] * 2
    assert bundles[3:] == [{"CPU": 1.0, "rollout_node": 1}] * 3


def test_a_tune_trial_with_two_learners_runs_to_completion(tmp_path):
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            NGRPO,
            param_space=two_learners(tmp_path),
            run_config=tune.RunConfig(
                stop={"training_iteration": 2}, storage_path=str(tmp_path / "tune"), verbose=0
            ),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert not results.errors
    result = results[0]
    assert result.metrics["training_iteration"] == 2
    assert result.metrics["optim"]["num_updates"] > 0


def test_learners_and_generation_workers_on_separate_nodes(tmp_path):
    # Two nodes of one simulated cluster, each advertising a custom resource: the learners ask
    # for one, the generation workers for the other.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"learner_node": 2}},
    )
    rollout_node = cluster.add_node(num_cpus=2, resources={"rollout_node": 2})
    head_node_id = cluster.head_node.node_id
    ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
    try:
        config = two_learners(tmp_path, custom_resources_per_learner={"learner_node": 1}).generation(
            num_generation_workers=2, custom_resources_per_generation_worker={"rollout_node": 1}
        )
        algo = config.build()
        try:
            result = algo.train()
            learner_nodes = algo.learner.node_ids()
            generation_nodes = algo.generation.node_ids()
        finally:
            algo.stop()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert learner_nodes == [head_node_id] * 2
    assert generation_nodes == [rollout_node.node_id] * 2
    assert result["training_iteration"] == 1 and result["optim"]["num_updates"] > 0
