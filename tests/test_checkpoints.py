"""Atomic, honest checkpoints: an interrupted save leaves the previous checkpoint whole; an
incompatible or damaged one is refused with the reason before anything is loaded; the state is
msgpack, the policy a plain Hugging Face folder, and restoring into a built algorithm unpickles
nothing. (Generation and learning run in the test process: no Ray cluster is started.)"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray")

from ngrpo_rl.algorithms import GRPO, NGRPO, GRPOConfig, NGRPOConfig
from ngrpo_rl.algorithms import base as algorithm_base
from ngrpo_rl.algorithms.checkpoints import (
    MANIFEST_FILE,
    STATE_FILE,
    CheckpointError,
    files_that_pickle,
    read_state,
)
from ray import cloudpickle
from support import small

pytestmark = pytest.mark.slow


def policy_weights(algo) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in algo.learner.model.named_parameters()}


def assert_same_weights(algo, expected: dict[str, torch.Tensor]) -> None:
    for name, tensor in algo.learner.model.named_parameters():
        assert torch.equal(tensor, expected[name]), name


@pytest.fixture
def no_unpickling(monkeypatch):
    """Makes every unpickling entry point (pickle, Ray's cloudpickle, torch.load) fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module, name in ((pickle, "load"), (pickle, "loads"), (cloudpickle, "load"),
                         (cloudpickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    algo = small(NGRPOConfig(), tmp_path, levels=(2,)).build_algo()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
        saved = policy_weights(algo)
        algo.train()

        def write_half_then_fail(folder, state):  # the disk fills up halfway through the state
            (Path(folder) / STATE_FILE).write_bytes(b"\x85\xa9iteration")
            raise OSError("No space left on device")

        monkeypatch.setattr(algorithm_base, "write_state", write_half_then_fail)
        with pytest.raises(OSError, match="No space left"):
            algo.save_to_path(path)
        monkeypatch.undo()

        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")) == []
        assert json.loads((Path(path) / MANIFEST_FILE).read_text())["iteration"] == 1
        algo.restore_from_path(path)
        assert algo.iteration == 1
        assert_same_weights(algo, saved)
    finally:
        algo.stop()
    restored = NGRPO.from_checkpoint(path)
    try:
        assert restored.iteration == 1
        assert_same_weights(restored, saved)
    finally:
        restored.stop()


def test_incompatible_or_damaged_checkpoints_are_refused_with_the_reason(
    tmp_path, tiny_model_dir, monkeypatch
):
    def config(config_class, model):
        return small(config_class(), tmp_path, levels=(2,)).generation(model_name_or_path=model)

    ngrpo = config(NGRPOConfig, tiny_model_dir).build_algo()  # a model of hidden size 32
    try:
        ngrpo.train()
        path = Path(ngrpo.save_to_path(str(tmp_path / "checkpoint")))
    finally:
        ngrpo.stop()

    # Another algorithm: refused before RLlib unpickles the saved class and config.
    with monkeypatch.context() as patched:
        patched.setattr(cloudpickle, "load", lambda *a, **k: pytest.fail("unpickled before the check"))
        with pytest.raises(CheckpointError, match=r"NGRPO checkpoint, not a GRPO one.*NGRPO\.from_checkpoint"):
            GRPO.from_checkpoint(str(path))
    grpo = config(GRPOConfig, tiny_model_dir).build_algo()
    try:
        before = policy_weights(grpo)
        with pytest.raises(CheckpointError, match=r"NGRPO checkpoint and cannot be restored into GRPO"):
            grpo.restore_from_path(str(path))
        assert_same_weights(grpo, before)
        assert grpo.iteration == 0
    finally:
        grpo.stop()

    # Another model shape: the bundled model (hidden size 128) instead of the checkpoint's 32.
    other = small(NGRPOConfig(), tmp_path, levels=(2,)).build_algo()
    try:
        before = policy_weights(other)
        with pytest.raises(CheckpointError, match=r"policy model of another shape: hidden_size 32 \(this config: 128\)"):
            other.restore_from_path(str(path))
        assert_same_weights(other, before)

        # A newer format version, a missing manifest, a damaged state file.
        newer = tmp_path / "newer"
        shutil.copytree(path, newer)
        manifest = json.loads((newer / MANIFEST_FILE).read_text())
        (newer / MANIFEST_FILE).write_text(json.dumps({**manifest, "format_version": 2}))
        with pytest.raises(CheckpointError, match=r"format version 2, newer than this ngrpo_rl reads \(1\).*upgrade"):
            other.restore_from_path(str(newer))
        with pytest.raises(CheckpointError, match=r"format version 2"):
            NGRPO.from_checkpoint(str(newer))
        (newer / MANIFEST_FILE).unlink()
        with pytest.raises(CheckpointError, match=rf"{newer} is not an ngrpo_rl checkpoint"):
            other.restore_from_path(str(newer))
    finally:
        other.stop()
    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    (damaged / STATE_FILE).write_bytes((damaged / STATE_FILE).read_bytes()[:20])
    with pytest.raises(CheckpointError, match=rf"unreadable algorithm state {damaged / STATE_FILE}"):
        NGRPO.from_checkpoint(str(damaged))


def test_state_is_msgpack_and_the_policy_folder_opens_without_unpickling(tmp_path, no_unpickling):
    from transformers import AutoModelForCausalLM

    config = small(NGRPOConfig(), tmp_path, levels=(2,))
    algo = config.build_algo()
    try:
        for _ in range(2):
            algo.train()
        carried = algo.pipeline.collector.carry_over
        assert carried is not None, "no surplus groups: pick easier levels"
        state = algo.get_state(not_components=["learner"])
        path = Path(algo.save_to_path(str(tmp_path / "checkpoint")))
        weights = policy_weights(algo)
    finally:
        algo.stop()

    # msgpack, no pickle: the state file reads back as it was, the carried-over groups included.
    assert not (path / "algorithm_state.pkl").exists()
    assert read_state(path) == json.loads(json.dumps(state))
    assert files_that_pickle(path) == [path / "class_and_ctor_args.pkl"]
    policy = path / "learner" / "policy"
    assert files_that_pickle(policy) == [] and list(policy.glob("*.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(policy)
    for name, tensor in model.named_parameters():
        assert torch.equal(tensor, weights[name]), name

    # Restoring into an algorithm built from the config reads no pickle either.
    fresh = config.build_algo()
    try:
        fresh.restore_from_path(str(path))
        assert fresh.iteration == 2
        assert_same_weights(fresh, weights)
        assert fresh.pipeline.collector.carry_over.to_state() == carried.to_state()
    finally:
        fresh.stop()
