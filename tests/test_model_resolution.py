"""``resolve_model_path``: the default model, local folders, and Hub ids in the HF cache, offline.

The Hub cache here is built by hand in ``tmp_path`` in the layout ``huggingface_hub`` writes
(``models--org--name/{blobs,refs,snapshots}``, snapshot files as relative links to blobs named by
their hash), and ``HF_HUB_CACHE`` points at it; ``HF_HUB_OFFLINE=1`` makes any network access fail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from ngrpo_rl.algorithms import default_model
from ngrpo_rl.algorithms.default_model import (
    ModelNotFoundError,
    hf_hub_cache_dir,
    resolve_model_path,
)

from ngrpo_rl.models import (
    ModelLoadError,
    build_tiny_model,
    char_tokenizer,
    load_model,
    save_model,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = char_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2)
    return Path(save_model(model, tokenizer, tmp_path_factory.mktemp("saved") / "tiny"))


def cache_model(
    cache: Path,
    repo_id: str,
    source: Path,
    *,
    commit: str = COMMIT,
    ref: str | None = "main",
    skip: tuple[str, ...] = (),
) -> Path:
    """Puts ``source``'s files into ``cache`` as ``huggingface_hub`` would; returns the snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        if file.name in skip:
            continue
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_hub_id_resolves_to_its_snapshot_in_the_cache(hub_cache: Path, model_dir: Path) -> None:
    snapshot = cache_model(hub_cache, "Qwen/Qwen2.5-Math-1.5B", model_dir)
    resolved = resolve_model_path("Qwen/Qwen2.5-Math-1.5B")
    assert Path(resolved).resolve() == snapshot.resolve()
    model, tokenizer = load_model(resolved)
    assert model.config.hidden_size == 32
    assert tokenizer.decode(tokenizer("12+7=")["input_ids"], skip_special_tokens=True) == "12+7="


def test_the_cache_folder_is_read_from_the_environment_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    """huggingface_hub.constants froze HF_HUB_CACHE at import; the environment of now counts."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_hub_cache_dir() == tmp_path / "home" / "hub"
    snapshot = cache_model(tmp_path / "home" / "hub", "org/name", model_dir)
    assert Path(resolve_model_path("org/name")).resolve() == snapshot.resolve()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hf_hub_cache_dir() == tmp_path / "elsewhere"
    with pytest.raises(ModelNotFoundError, match="elsewhere"):
        resolve_model_path("org/name")


def test_a_revision_after_at_picks_that_snapshot(hub_cache: Path, model_dir: Path) -> None:
    latest = cache_model(hub_cache, "org/name", model_dir)
    old = cache_model(hub_cache, "org/name", model_dir, commit=OLD_COMMIT, ref="v1")
    assert Path(resolve_model_path("org/name")).resolve() == latest.resolve()
    assert Path(resolve_model_path("org/name@v1")).resolve() == old.resolve()
    assert Path(resolve_model_path(f"org/name@{OLD_COMMIT}")).resolve() == old.resolve()
    with pytest.raises(ModelNotFoundError, match=r"at revision 'v2'.*holds the revisions main, v1"):
        resolve_model_path("org/name@v2")


def test_an_uncached_id_names_the_id_the_cache_and_the_fix(hub_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model_path("Qwen/Qwen2.5-Math-1.5B")
    message = str(raised.value)
    assert "'Qwen/Qwen2.5-Math-1.5B'" in message
    assert str(hub_cache) in message
    assert "hf download Qwen/Qwen2.5-Math-1.5B" in message and "local model folder" in message
    assert isinstance(raised.value, ModelLoadError) and isinstance(raised.value, FileNotFoundError)


def test_a_partial_snapshot_is_refused_naming_what_is_missing(
    hub_cache: Path, model_dir: Path
) -> None:
    cache_model(hub_cache, "org/name", model_dir, skip=("model.safetensors",))
    with pytest.raises(ModelNotFoundError, match=r"only part of 'org/name'.*model\.safetensors"):
        resolve_model_path("org/name")


def test_local_folders_win_and_stay_unchanged(
    hub_cache: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_model_path(str(model_dir)) == str(model_dir)
    assert resolve_model_path(model_dir) == str(model_dir)
    # A relative folder that looks like a Hub id is the folder, not the Hub model.
    monkeypatch.chdir(tmp_path)
    shutil.copytree(model_dir, tmp_path / "org" / "name")
    cache_model(hub_cache, "org/name", model_dir)
    assert resolve_model_path("org/name") == "org/name"
    load_model(resolve_model_path("org/name"))


def test_values_that_are_neither_a_folder_nor_a_hub_id_say_no_such_folder(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for value in ("./missing/dir", "/no/such/model/dir", "missing-model", "a/b/c"):
        with pytest.raises(ModelNotFoundError, match=f"{value!r}: no such folder"):
            resolve_model_path(value)
    with pytest.raises(ModelNotFoundError, match="full id 'org/name'"):
        resolve_model_path("gpt2")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file, not a model folder"):
        resolve_model_path("weights.safetensors")


def test_the_default_model_name_still_builds_the_default_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dispatch check: the name goes to the builder (building it for real takes a minute and is
    covered by test_models.py), never to the Hub-id path, which would refuse it as uncached."""
    calls = []
    monkeypatch.setattr(default_model, "ensure_default_model", lambda: calls.append(1) or "/built")
    monkeypatch.setattr(default_model, "_cached_snapshot", lambda *a: pytest.fail("treated as a Hub id"))
    assert resolve_model_path(default_model.DEFAULT_MODEL) == "/built" and calls == [1]
