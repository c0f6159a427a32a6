"""The critic (ngrpo_rl.critic) on a tiny model, on CPU; plus the checkpoint helpers it uses."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForTokenClassification

from ngrpo_rl import losses, state_io
from ngrpo_rl.critic import Critic
from ngrpo_rl.models import ModelLoadError, build_tiny_model, char_tokenizer, save_model
from ngrpo_rl.models.forward import pad_batch
from ngrpo_rl.models.tokenizer import encode_prompts
from ngrpo_rl.value import clipped_value_loss


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def policy_dir(request, tmp_path_factory) -> Path:
    """A tiny causal LM saved as a Hugging Face folder (what the policy would start from)."""
    tokenizer = char_tokenizer()
    model = build_tiny_model(
        tokenizer, architecture=request.param, hidden_size=32, num_layers=1, num_heads=2
    )
    path = tmp_path_factory.mktemp(f"policy-{request.param}")
    save_model(model, tokenizer, path)
    return path


def _batch(prompts: list[str], responses: list[list[int]]) -> dict[str, torch.Tensor]:
    tokenizer = char_tokenizer()
    return pad_batch(encode_prompts(tokenizer, prompts), responses, tokenizer.pad_token_id)


PROMPTS = ["1+1=", "12*3=?"]
RESPONSES = [[20, 21, 22, 2], [30, 2]]  # lengths 4 and 2


def test_values_shape_dtype_and_masking(policy_dir: Path) -> None:
    critic = Critic(policy_dir)
    batch = _batch(PROMPTS, RESPONSES)
    values = critic.values(batch)
    assert values.shape == (2, 4) and values.dtype == torch.float32
    assert values.requires_grad
    assert torch.equal(values[1, 2:], torch.zeros(2))
    assert (values[0] != 0).all() and (values[1, :2] != 0).all()
    with torch.no_grad():
        assert not critic.values(batch).requires_grad


def test_value_of_the_first_response_token_is_read_after_the_prompt(policy_dir: Path) -> None:
    critic = Critic(policy_dir)
    batch = _batch(PROMPTS, RESPONSES)
    prompt = torch.tensor([encode_prompts(char_tokenizer(), [PROMPTS[1]])[0]])  # the longer one
    with torch.no_grad():
        values = critic.values(batch)
        at_prompt_end = critic.model(input_ids=prompt).logits[0, -1, 0]
    torch.testing.assert_close(values[1, 0], at_prompt_end)


def test_value_does_not_depend_on_later_tokens(policy_dir: Path) -> None:
    critic = Critic(policy_dir)
    changed = [list(RESPONSES[0]), list(RESPONSES[1])]
    changed[0][2] = 40  # response token 2 of row 0
    with torch.no_grad():
        before = critic.values(_batch(PROMPTS, RESPONSES))
        after = critic.values(_batch(PROMPTS, changed))
    torch.testing.assert_close(after[:, :3], before[:, :3])  # values at t <= 2 see tokens < t
    assert after[0, 3] != before[0, 3]


def test_fresh_head_is_seeded_and_the_backbone_is_the_policy(policy_dir: Path) -> None:
    first, again, other = Critic(policy_dir, seed=0), Critic(policy_dir, seed=0), Critic(policy_dir, seed=1)
    assert torch.equal(first.model.score.weight, again.model.score.weight)
    assert not torch.equal(first.model.score.weight, other.model.score.weight)
    assert torch.equal(first.model.model.embed_tokens.weight, other.model.model.embed_tokens.weight)
    assert first.model.dropout.p == 0.0


def _value_loss(critic: Critic, batch, old_values, returns) -> torch.Tensor:
    mask = batch["response_mask"]
    out = clipped_value_loss(critic.values(batch), old_values, returns, mask, clip=0.5)
    return losses.aggregate(out.per_token_loss, mask, "token-mean")


def test_one_step_towards_fixed_returns_lowers_the_loss(policy_dir: Path) -> None:
    critic = Critic(policy_dir, lr=1e-3)
    batch = _batch(PROMPTS, RESPONSES)
    with torch.no_grad():
        old_values = critic.values(batch)
    returns = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, 0.0, 0.0]])
    loss = _value_loss(critic, batch, old_values, returns)
    loss.backward()
    grad_norm = critic.clip_and_step()
    assert grad_norm > 0 and critic.num_updates == 1
    assert all(p.grad is None for p in critic.parameters())
    with torch.no_grad():
        assert _value_loss(critic, batch, old_values, returns) < loss.detach()


def test_save_and_load_round_trip(policy_dir: Path, tmp_path: Path) -> None:
    critic = Critic(policy_dir, lr=1e-3, seed=3)
    batch = _batch(PROMPTS, RESPONSES)
    returns = torch.ones(2, 4)
    for _ in range(2):
        _value_loss(critic, batch, torch.zeros(2, 4), returns).backward()
        critic.clip_and_step()
    saved = tmp_path / "critic"
    critic.save(saved)
    assert {"config.json", "model.safetensors", "optimizer.safetensors", "critic_state.json"} <= {
        p.name for p in saved.iterdir()
    }
    assert not [p for p in saved.iterdir() if p.suffix in {".bin", ".pt", ".pkl"}]
    json.loads((saved / "critic_state.json").read_text())

    restored = Critic(policy_dir, lr=1e-3, seed=4)  # another fresh head: load must overwrite it
    restored.load(saved)
    expected = {k: v.clone() for k, v in critic.model.state_dict().items()}
    got = restored.model.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    expected_opt, got_opt = critic.optimizer.state_dict(), restored.optimizer.state_dict()
    assert expected_opt["param_groups"] == got_opt["param_groups"]
    assert expected_opt["state"].keys() == got_opt["state"].keys()
    for index, param_state in expected_opt["state"].items():
        for name, value in param_state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(got_opt["state"][index][name]))
    assert restored.num_updates == critic.num_updates == 2

    # The same next step on both gives the same weights (nothing of the optimizer was lost).
    for c in (critic, restored):
        _value_loss(c, batch, torch.zeros(2, 4), returns).backward()
        c.clip_and_step()
    assert all(torch.equal(a, b) for a, b in zip(critic.parameters(), restored.parameters()))

    # An ordinary Hugging Face folder: transformers opens it, and so does Critic (head kept).
    hf_model = AutoModelForTokenClassification.from_pretrained(saved, local_files_only=True)
    assert torch.equal(hf_model.score.weight, expected["score.weight"])
    assert torch.equal(Critic(saved, seed=99).model.score.weight, expected["score.weight"])


def test_missing_or_unreadable_files_name_the_path(policy_dir: Path, tmp_path: Path) -> None:
    critic = Critic(policy_dir)
    saved = tmp_path / "critic"
    critic.save(saved)
    (saved / "optimizer.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="optimizer.safetensors") as error:
        critic.load(saved)
    assert str(saved) in str(error.value)

    critic.save(saved)
    (saved / "critic_state.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=str(saved)):
        critic.load(saved)

    critic.save(saved)
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="model.safetensors") as error:
        critic.load(saved)
    assert str(saved) in str(error.value)

    with pytest.raises(ModelLoadError, match=str(tmp_path / "nowhere")):
        Critic(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match=str(policy_dir)):
        critic.load(policy_dir)  # a policy folder is not a critic checkpoint


def test_a_folder_without_tokenizer_files_loads_and_saves(policy_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(policy_dir / name, bare / name)
    critic = Critic(bare, dtype="bfloat16")
    assert critic.tokenizer is None
    assert critic.values(_batch(PROMPTS, RESPONSES)).dtype == torch.float32
    critic.save(tmp_path / "critic")
    assert not list((tmp_path / "critic").glob("tokenizer*"))
    critic.load(tmp_path / "critic")


def test_bad_batches_and_arguments_are_rejected(policy_dir: Path) -> None:
    with pytest.raises(ValueError, match="lr"):
        Critic(policy_dir, lr=0.0)
    with pytest.raises(ValueError, match="grad_clip"):
        Critic(policy_dir, grad_clip=0.0)
    critic = Critic(policy_dir)
    batch = _batch(PROMPTS, RESPONSES)
    del batch["position_ids"]
    with pytest.raises(ValueError, match="position_ids"):
        critic.values(batch)


# ---- state_io ----------------------------------------------------------------------------------


def test_state_io_round_trips_random_state_and_writes_atomically(tmp_path: Path) -> None:
    state = random.Random(5).getstate()
    as_json = json.loads(json.dumps(state_io.random_state_to_json(state)))
    assert state_io.random_state_from_json(as_json) == state
    assert state_io.jsonable({1: (2, torch.float32)}) == {"1": [2, "torch.float32"]}

    target = tmp_path / "file.txt"
    state_io.atomic_write(target, lambda p: Path(p).write_text("old"))

    def fail(p: str) -> None:
        Path(p).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        state_io.atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary file left behind
