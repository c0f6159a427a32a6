"""Supervised warm start: teach a model to answer prompts before RL takes over.

The loss is the mean negative log-likelihood of the completion tokens and the final eos (the
prompt is context only), computed with the very function the RL learner uses,
:func:`ngrpo_rl.models.forward.response_logprobs`, over prompts encoded by
:func:`ngrpo_rl.models.tokenizer.encode_prompts`, so the model is trained on exactly the layout it
later generates from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ngrpo_rl.models.forward import pad_batch, response_logprobs
from ngrpo_rl.models.tokenizer import encode_completions, encode_prompts


def warm_start(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[str, str]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    weight_decay: float = 0.01,
    warmup_fraction: float = 0.05,
    max_grad_norm: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains ``model`` in place on ``(prompt, completion)`` pairs; returns training statistics.

    Args:
        model: a causal LM on its target device; left in eval mode afterwards.
        tokenizer: its tokenizer (pad, eos set).
        examples: pairs such as ``("23+45=", "68")``; the model learns to write the completion
            and then eos.
        steps: optimizer steps.
        batch_size: examples per step, drawn without replacement epoch by epoch.
        lr: peak AdamW learning rate (linear warm-up, then cosine decay to a tenth of it).
        seed: fixes the order of the examples (the caller's global RNG is untouched).
        weight_decay: AdamW weight decay.
        warmup_fraction: share of the steps spent warming the learning rate up.
        max_grad_norm: gradient-norm clipping threshold.
        progress: show a tqdm bar with the running loss.

    Returns:
        ``{"initial_loss", "final_loss", "steps", "examples_seen", "seconds"}``: the losses are
        per-token NLL averaged over the first / last 5% of steps (at least one step).
    """
    if not examples:
        raise ValueError("warm_start needs at least one (prompt, completion) example")
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}"
        )
    device = next(model.parameters()).device
    prompt_ids = encode_prompts(tokenizer, [prompt for prompt, _ in examples])
    completion_ids = encode_completions(tokenizer, [completion for _, completion in examples])

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98)
    )
    warmup = max(1, int(warmup_fraction * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, warmup, steps)
    )
    order = torch.Generator().manual_seed(seed)
    permutation: list[int] = []
    losses: list[float] = []
    started = time.perf_counter()

    model.train()
    bar = tqdm(range(steps), desc="warm start", disable=not progress, leave=False)
    try:
        for _ in bar:
            indices = []
            while len(indices) < batch_size:
                if not permutation:
                    permutation = torch.randperm(len(examples), generator=order).tolist()
                indices.append(permutation.pop())
            batch = pad_batch(
                [prompt_ids[i] for i in indices],
                [completion_ids[i] for i in indices],
                tokenizer.pad_token_id,
                device=device,
            )
            logprobs = response_logprobs(model, batch)
            mask = batch["response_mask"]
            loss = -(logprobs * mask).sum() / mask.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    finally:
        bar.close()
        model.eval()

    window = max(1, steps // 20)
    return {
        "initial_loss": sum(losses[:window]) / window,
        "final_loss": sum(losses[-window:]) / window,
        "steps": steps,
        "examples_seen": steps * batch_size,
        "seconds": time.perf_counter() - started,
    }


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))
