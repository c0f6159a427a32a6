"""The critic of PPO: a separate value model, its optimizer, and its checkpoints.

As in the NGRPO paper's official PPO baseline (nangongrui-ngr/NGRPO at e7a3804), the critic is not
a value head on the policy but a second copy of the policy's network with a scalar head:
``critic.model.path`` is the policy's model and ``critic.optim.lr=1e-5``
(``train_scripts/train_qwen2.5-math-7b_ppo.sh`` lines 44-52), loaded with
``AutoModelForTokenClassification.from_pretrained(path, num_labels=1)``, dropout off, and trained
with AdamW (weight decay 1e-2; ``verl/workers/fsdp_workers.py`` lines 703-759) and gradient
clipping at 1.0 (``verl/trainer/config/ppo_trainer.yaml`` line 133). A causal-LM folder gets a
freshly initialised score head (seeded here); a folder written by :meth:`Critic.save` keeps its own.

A critic folder is an ordinary Hugging Face directory (``config.json``, ``model.safetensors``, the
tokenizer files) plus ``optimizer.safetensors`` and ``critic_state.json``. No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl import state_io
from ngrpo_rl.models.forward import response_logits
from ngrpo_rl.models.io import (
    ModelLoadError,
    PathLike,
    check_model_dir,
    quiet_progress_bars,
    save_model,
)

VALUE_HEAD_KEYS = frozenset({"score.weight", "score.bias"})
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "critic_state.json"
BATCH_KEYS = ("input_ids", "attention_mask", "position_ids", "response_mask")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


# ---- loading a value model ---------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Hides transformers' "newly initialized" load report: a fresh head is expected here, and
    :func:`load_value_model` checks the missing weights itself."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


def _is_value_model(config: Any) -> bool:
    """Whether ``config`` describes a saved token-classification model (a critic)."""
    architectures = getattr(config, "architectures", None) or []
    return any(name.endswith("ForTokenClassification") for name in architectures)


def load_value_model(
    path: PathLike,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    require_head: bool = False,
) -> tuple[torch.nn.Module, Any | None]:
    """Loads ``(model, tokenizer or None)``: ``AutoModelForTokenClassification`` with one label.

    Args:
        path: a local Hugging Face folder (safetensors weights): a causal LM, whose score head is
            then initialised from ``seed`` (the caller's RNG is left untouched), or a saved critic.
        dtype: parameter dtype; None keeps the checkpoint's.
        device: where to put the model.
        seed: seed of a fresh score head.
        require_head: refuse a folder without a trained score head (used when restoring a critic).

    Dropout on the head is switched off (``classifier_dropout = 0``, as verl does), so values are
    deterministic in train mode. Never touches the network. Raises :class:`ModelLoadError` naming
    ``path`` when the folder is missing, incomplete, unreadable or of another kind.
    """
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    directory = check_model_dir(path)
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except Exception as error:  # transformers and json raise many unrelated types
        raise ModelLoadError(f"could not read the model config in {str(path)!r}: {error}") from error
    has_head = _is_value_model(config)
    if has_head and config.num_labels != 1:
        raise ModelLoadError(
            f"{str(path)!r} holds a token classifier with {config.num_labels} labels; "
            "a critic has exactly 1"
        )
    if require_head and not has_head:
        raise ModelLoadError(
            f"{str(path)!r} is not a saved critic: its architecture is {config.architectures}, "
            "expected a *ForTokenClassification model with num_labels = 1"
        )
    config.num_labels = 1
    config.classifier_dropout = 0.0
    try:
        with quiet_progress_bars(), _quiet_load_report(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, info = AutoModelForTokenClassification.from_pretrained(
                directory,
                config=config,
                dtype=dtype if dtype is not None else "auto",
                use_safetensors=True,
                local_files_only=True,
                output_loading_info=True,
            )
        tokenizer = None
        if any((directory / name).is_file() for name in TOKENIZER_FILES):
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as error:
        raise ModelLoadError(f"could not load a value model from {str(path)!r}: {error}") from error
    missing = set(info.get("missing_keys") or ())
    unexpected_missing = missing if has_head else missing - VALUE_HEAD_KEYS
    if unexpected_missing:
        raise ModelLoadError(
            f"the checkpoint in {str(path)!r} lacks weights {sorted(unexpected_missing)[:5]}; "
            "it is incomplete or was written for another architecture"
        )
    return model.to(device), tokenizer


class _NoTokenizer:
    """Stands in for a missing tokenizer when saving: writes no tokenizer files."""

    def save_pretrained(self, path: PathLike) -> None:
        del path


# ---- the critic --------------------------------------------------------------------------------


class Critic:
    """A value model with its AdamW optimizer (the PPO baseline's separate critic).

    Args:
        model_name_or_path: a local Hugging Face folder: the policy's (fresh score head) or a
            folder written by :meth:`save` (head loaded; use :meth:`load` to restore the optimizer).
        lr: learning rate (1e-5 in the official PPO script).
        weight_decay: AdamW weight decay (verl's default 1e-2).
        betas: AdamW betas.
        grad_clip: max global gradient norm in :meth:`clip_and_step` (1.0); None disables clipping.
        device: where the model lives.
        dtype: parameter dtype; None keeps the checkpoint's.
        seed: seed of a freshly initialised score head.
    """

    def __init__(
        self,
        model_name_or_path: PathLike,
        *,
        lr: float = 1e-5,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_clip: float | None = 1.0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        seed: int = 0,
    ) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (or None for no clipping), got {grad_clip!r}")
        self.source = str(model_name_or_path)
        self.grad_clip = grad_clip
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.model, self.tokenizer = load_value_model(
            model_name_or_path, dtype=dtype, device=device, seed=seed
        )
        self.model.train()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay
        )
        self.num_updates = 0

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The value model's parameters."""
        return self.model.parameters()

    def values(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Teacher-forced values of the response tokens of a padded batch: ``[B, R]``, float32.

        ``batch`` is what ``ngrpo_rl.models.forward.pad_batch`` returns (``input_ids``,
        ``attention_mask``, ``position_ids`` ``[B, P + R]``; ``response_mask`` ``[B, R]``). The value
        of response token t is read at the position that predicts it, ``logits[:, -(R+1):-1, 0]``
        (``ngrpo_rl.models.forward.response_logits``, shared with the policy's log-probs; verl's
        ``verl/workers/critic/dp_critic.py`` lines 104-112 slice the same way), so it depends only
        on the prompt and the response tokens before t. verl then masks values with
        ``attention_mask[:, -R-1:-1]`` (lines 156, 214), which also covers the position just after
        a response's last token; here the response mask is used, as GAE and the value loss use it. 0 off the
        response mask. Gradients flow unless the caller runs it under ``torch.no_grad()``.
        """
        missing = [key for key in BATCH_KEYS if key not in batch]
        if missing:
            raise ValueError(f"the batch lacks {missing}; build it with pad_batch")
        on_device = {key: batch[key].to(self.device) for key in BATCH_KEYS}
        response_length = on_device["response_mask"].shape[1]
        total_length = on_device["input_ids"].shape[1]
        if not 0 < response_length < total_length:
            raise ValueError(f"need 0 < R < P + R, got R = {response_length} of {total_length} tokens")
        values = response_logits(self.model, on_device)[..., 0].float()
        return values.masked_fill(~on_device["response_mask"].bool(), 0.0)

    def clip_and_step(self) -> float:
        """Clips the accumulated gradients to ``grad_clip``, steps AdamW if the norm is finite, and
        zeroes the gradients. Returns the gradient norm before clipping."""
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.grad_clip if self.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
        if math.isfinite(grad_norm):
            self.optimizer.step()
            self.num_updates += 1
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    # -- checkpoints ---------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Writes ``path/`` as a Hugging Face folder (``AutoModelForTokenClassification`` opens it),
        plus ``optimizer.safetensors`` and ``critic_state.json``.

        The model folder replaces ``path`` as a whole (``ngrpo_rl.models.io.save_model``), then the
        two state files are written atomically into it.
        """
        from safetensors.torch import save_file

        path = Path(path)
        save_model(self.model, self.tokenizer or _NoTokenizer(), path)
        tensors, meta = state_io.optimizer_to_tensors(self.optimizer)
        state_io.atomic_write(path / OPTIMIZER_FILE, lambda tmp: save_file(tensors, tmp))
        state = {
            "optimizer": meta,
            "num_updates": self.num_updates,
            "critic": state_io.jsonable(
                {"source": self.source, "grad_clip": self.grad_clip, "seed": self.seed}
            ),
        }
        state_io.atomic_write(
            path / STATE_FILE, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=1))
        )

    def load(self, path: PathLike) -> None:
        """Restores the weights, the optimizer state and the update count that :meth:`save` wrote.

        Raises :class:`ModelLoadError` naming ``path`` when a file is missing or unreadable or the
        saved critic does not fit this one.
        """
        from safetensors.torch import load_file

        path = Path(path)
        try:
            state = json.loads((path / STATE_FILE).read_text())
            tensors = load_file(str(path / OPTIMIZER_FILE))
        except Exception as error:  # OSError, JSONDecodeError, SafetensorError
            raise ModelLoadError(f"unreadable critic checkpoint at {str(path)!r}: {error}") from error
        model, _ = load_value_model(path, dtype=self.dtype, device="cpu", require_head=True)
        try:
            self.model.load_state_dict(model.state_dict())
            state_io.optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
            self.num_updates = int(state["num_updates"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise ModelLoadError(
                f"the critic checkpoint at {str(path)!r} does not fit this critic: {error}"
            ) from error
