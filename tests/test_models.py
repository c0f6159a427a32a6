"""Tokenizer, tiny models, saving/loading and the warm start (CPU, seconds), plus the default model.

The default model's full warm start takes about a minute and is marked slow; its caching logic is
tested fast with a two-step recipe.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from ngrpo_rl.models import (
    ModelLoadError,
    build_tiny_model,
    char_tokenizer,
    count_parameters,
    encode_completion,
    encode_completions,
    encode_prompts,
    load_model,
    save_model,
    warm_start,
)
from ngrpo_rl.models.tokenizer import CHARACTERS, SPECIAL_TOKENS

SMALL = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


# --- tokenizer -----------------------------------------------------------------------------------


def test_tokenizer_vocabulary_and_special_tokens(tokenizer):
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(4)] == list(SPECIAL_TOKENS)
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (
        "<pad>",
        "<s>",
        "</s>",
    )
    assert tokenizer.padding_side == "left"
    assert len(tokenizer) == len(SPECIAL_TOKENS) + len(CHARACTERS)
    for required in "0123456789+-*/=()., \nazAZ\\{}^_$#:?!'\"":
        assert required in CHARACTERS


def test_tokenizer_is_character_level_and_round_trips(tokenizer):
    text = "\\frac{1}{2} + x^2 = 3.5, isn't it?\n$#:!\""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer("é", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]


def test_prompt_and_completion_encoding_convention(tokenizer):
    [prompt] = encode_prompts(tokenizer, ["23+45="])
    assert prompt[0] == tokenizer.bos_token_id and tokenizer.decode(prompt[1:]) == "23+45="
    # A prompt that already starts with bos (a rendered chat template) gets no second one.
    assert encode_prompts(tokenizer, ["<s>1="]) == encode_prompts(tokenizer, ["1="])
    completion = encode_completion(tokenizer, "68")
    assert completion[-1] == tokenizer.eos_token_id and tokenizer.decode(completion[:-1]) == "68"


def test_batched_encoding_keeps_each_text_in_its_place(tokenizer):
    """Prompts with and without a leading bos, of different lengths, mixed in one call."""
    prompts = ["23+45=", "<s>1=", "", "7*8=", "<s>", "100-99="]
    encoded = encode_prompts(tokenizer, prompts)
    one_by_one = [
        tokenizer(p, add_special_tokens=not p.startswith("<s>"))["input_ids"] for p in prompts
    ]
    assert encoded == one_by_one
    assert encoded[1][0] == encoded[0][0] == tokenizer.bos_token_id and encoded[1].count(1) == 1
    completions = ["68", "", "1,000"]
    assert encode_completions(tokenizer, completions) == [
        tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for c in completions
    ]
    assert encode_prompts(tokenizer, []) == [] and encode_completions(tokenizer, []) == []


def test_tokenizer_saves_and_loads_offline(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "12*(3-4)=?\nabc XYZ"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"], skip_special_tokens=True) == text
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.padding_side) == (0, 2, "left")
    batch = loaded(["1=", "12+3="], padding=True)
    assert batch["input_ids"][0][:3] == [0, 0, 0] and batch["attention_mask"][0][:3] == [0, 0, 0]


# --- tiny models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["qwen2", "llama"])
def test_default_size_is_tiny_and_tied(tokenizer, architecture):
    model = build_tiny_model(tokenizer, architecture=architecture)
    assert 300_000 <= count_parameters(model) <= 3_000_000
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert not model.training


def test_build_is_seeded_and_leaves_global_rng_alone(tokenizer):
    state = torch.get_rng_state()
    a = build_tiny_model(tokenizer, seed=1, **SMALL)
    b = build_tiny_model(tokenizer, seed=1, **SMALL)
    c = build_tiny_model(tokenizer, seed=2, **SMALL)
    assert torch.equal(state, torch.get_rng_state())
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name])
    assert not torch.equal(a.get_input_embeddings().weight, c.get_input_embeddings().weight)


def test_build_rejects_bad_shapes(tokenizer):
    with pytest.raises(ValueError, match="architecture"):
        build_tiny_model(tokenizer, architecture="gpt9")
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_model(tokenizer, hidden_size=30, num_heads=4)


# --- saving and loading --------------------------------------------------------------------------


@pytest.fixture()
def small_model(tokenizer):
    return build_tiny_model(tokenizer, **SMALL)


def test_save_writes_safetensors_only_and_opens_with_auto_classes(small_model, tokenizer, tmp_path):
    path = save_model(small_model, tokenizer, tmp_path / "model")
    names = set(os.listdir(path))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert os.listdir(tmp_path) == ["model"]  # no staging folder left behind
    reloaded = AutoModelForCausalLM.from_pretrained(
        path, use_safetensors=True, local_files_only=True
    )
    for name, tensor in small_model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name
    assert set(load_file(os.path.join(path, "model.safetensors")))  # a real safetensors file


def test_load_model_round_trip_and_dtype(small_model, tokenizer, tmp_path):
    path = save_model(small_model, tokenizer, tmp_path / "model")
    model, loaded_tokenizer = load_model(path)
    assert model.dtype == torch.float32 and not model.training
    assert loaded_tokenizer("1+1=")["input_ids"] == tokenizer("1+1=")["input_ids"]
    ids = torch.tensor([encode_prompts(tokenizer, ["12+7="])[0]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, small_model(ids).logits)
    half, _ = load_model(path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


def test_save_replaces_existing_directory_and_leaves_it_intact_on_failure(
    small_model, tokenizer, tmp_path, monkeypatch
):
    path = tmp_path / "model"
    save_model(small_model, tokenizer, path)
    before = (path / "model.safetensors").read_bytes()
    with torch.no_grad():
        small_model.get_input_embeddings().weight.add_(1.0)
    save_model(small_model, tokenizer, path)  # overwrite
    after = (path / "model.safetensors").read_bytes()
    assert after != before and os.listdir(tmp_path) == ["model"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(small_model, tokenizer, path)
    assert (path / "model.safetensors").read_bytes() == after  # the old model is untouched
    assert os.listdir(tmp_path) == ["model"]


def test_load_errors_name_the_path(small_model, tokenizer, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match="nowhere"):
        load_model(missing)

    path = Path(save_model(small_model, tokenizer, tmp_path / "corrupt"))
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(path)

    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="pickled"):
        load_model(path)

    (path / "config.json").write_text("{ not json")
    (path / "pytorch_model.bin").unlink()
    save_model(small_model, tokenizer, tmp_path / "donor")
    os.replace(tmp_path / "donor" / "model.safetensors", path / "model.safetensors")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(path)


# --- warm start ----------------------------------------------------------------------------------


def test_warm_start_reduces_loss_and_learns_to_stop(tokenizer):
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=4)
    examples = [(f"{a}+{b}=", str(a + b)) for a in range(10) for b in range(10)]
    state = torch.get_rng_state()
    stats = warm_start(
        model, tokenizer, examples, steps=60, batch_size=32, lr=3e-3, seed=0, progress=False
    )
    assert torch.equal(state, torch.get_rng_state())
    assert set(stats) >= {"initial_loss", "final_loss", "steps", "examples_seen", "seconds"}
    assert stats["final_loss"] < 0.6 * stats["initial_loss"]
    assert not model.training
    # After the answer's digits the model should put most of its mass on eos.
    ids = torch.tensor(
        [
            encode_prompts(tokenizer, ["3+4="])[0]
            + tokenizer("7", add_special_tokens=False)["input_ids"]
        ]
    )
    with torch.no_grad():
        next_token = model(ids).logits[0, -1].argmax().item()
    assert next_token == tokenizer.eos_token_id


def test_warm_start_is_reproducible(tokenizer):
    examples = [(f"{a}*2=", str(2 * a)) for a in range(10)]
    weights = []
    for _ in range(2):
        model = build_tiny_model(tokenizer, **SMALL)
        warm_start(
            model, tokenizer, examples, steps=3, batch_size=4, lr=1e-3, seed=5, progress=False
        )
        weights.append(model.get_input_embeddings().weight.detach().clone())
    assert torch.equal(*weights)


def test_warm_start_validates_arguments(tokenizer, small_model):
    with pytest.raises(ValueError, match="example"):
        warm_start(small_model, tokenizer, [], steps=1, batch_size=1, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="steps"):
        warm_start(
            small_model, tokenizer, [("1=", "1")], steps=0, batch_size=1, lr=1e-3, progress=False
        )


# --- the default model ---------------------------------------------------------------------------

from ngrpo_rl.algorithms import default_model

TINY_RECIPE = dataclasses.replace(
    default_model.DEFAULT_RECIPE,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    steps=2,
    batch_size=4,
    num_examples=50,
)


def test_default_model_is_built_once_and_cached(tmp_path, monkeypatch):
    path = default_model.ensure_default_model(str(tmp_path), progress=False, recipe=TINY_RECIPE)
    model, _ = load_model(path)
    stats = json.loads((Path(path) / default_model.STATS_FILE).read_text())
    assert stats["recipe"]["steps"] == 2 and stats["num_parameters"] == sum(
        p.numel() for p in model.parameters()
    )
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [Path(path).name]

    def must_not_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(default_model, "build_default_model", must_not_build)
    assert (
        default_model.ensure_default_model(str(tmp_path), progress=False, recipe=TINY_RECIPE)
        == path
    )
    monkeypatch.setenv("NGRPO_RL_CACHE", str(tmp_path))
    assert default_model.ensure_default_model(progress=False, recipe=TINY_RECIPE) == path


def test_recipe_change_changes_the_cache_folder():
    changed = dataclasses.replace(TINY_RECIPE, lr=TINY_RECIPE.lr * 2)
    assert changed.fingerprint() != TINY_RECIPE.fingerprint()
    assert TINY_RECIPE.fingerprint() == dataclasses.replace(TINY_RECIPE).fingerprint()


def test_warm_start_examples_come_from_the_train_split():
    from ngrpo_rl.envs.arithmetic import split_of

    examples = default_model.warm_start_examples(dataclasses.replace(TINY_RECIPE, num_examples=500))
    assert len(examples) == 500
    assert all(split_of(prompt[:-1]) == "train" and prompt.endswith("=") for prompt, _ in examples)


@pytest.mark.slow
def test_default_model_reaches_partial_competence(tmp_path):
    """The regime RL needs: easy levels mostly right, hard ones mostly wrong, sampling > greedy."""
    path = default_model.ensure_default_model(str(tmp_path), progress=False)
    stats = json.loads((Path(path) / default_model.STATS_FILE).read_text())
    assert 300_000 <= stats["num_parameters"] <= 3_000_000
    accuracy = default_model.level_accuracies(path, num_problems=100, num_samples=8)
    assert accuracy[1]["greedy"] > 0.7
    assert accuracy[4]["greedy"] < 0.25 and accuracy[5]["greedy"] < 0.25
    for level in (2, 3, 4):
        assert accuracy[level]["pass@1"] + 0.1 < accuracy[level]["pass@8"]
        assert accuracy[level]["frac_all_incorrect"] > 0.0
