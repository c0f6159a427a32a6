"""Teacher-forced log-probs of responses: the one forward pass that generation, the warm start,
the learner and the critic share (``models`` sits below all of them, so no import runs back up).

Generation records, for each sampled token, ``log_softmax(raw_logits / temperature)`` at that
token. The learner recomputes the same quantity with gradients from the same token ids:
:func:`pad_batch` lays out a batch exactly as ``generate`` saw it (prompts left-padded, position
ids counted over real tokens only) and :func:`response_logprobs` runs the model over it. With
unchanged weights both agree to float error, so the importance ratio starts at exactly 1.

Layout of a batch of B sequences, prompts padded to P tokens and responses to R::

    input_ids       [B, P + R]   <pad>.. prompt | response ..<pad>
    attention_mask  [B, P + R]   1 on real tokens
    position_ids    [B, P + R]   cumsum(attention_mask) - 1, clamped at 0
    response_mask   [B, R]       1 on real response tokens
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import torch
from torch import Tensor

from ngrpo_rl.losses import entropy_from_logits


def pad_batch(
    prompt_token_ids: Sequence[Sequence[int]],
    response_token_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    *,
    device: str | torch.device | None = None,
) -> dict[str, Tensor]:
    """Pads prompts on the left and responses on the right into one ``[B, P + R]`` batch.

    Returns a dict of long tensors: ``input_ids``, ``attention_mask``, ``position_ids``
    (all ``[B, P + R]``) and ``response_mask`` (``[B, R]``); the responses are
    ``input_ids[:, -R:]``. Every response must have at least one token.
    """
    if len(prompt_token_ids) != len(response_token_ids):
        raise ValueError(
            f"got {len(prompt_token_ids)} prompts but {len(response_token_ids)} responses"
        )
    if not response_token_ids:
        raise ValueError("pad_batch needs at least one sequence")
    if any(len(response) == 0 for response in response_token_ids):
        raise ValueError("every response needs at least one token (generation always emits one)")
    prompt_length = max(len(prompt) for prompt in prompt_token_ids)
    response_length = max(len(response) for response in response_token_ids)
    rows, masks = [], []
    for prompt, response in zip(prompt_token_ids, response_token_ids):
        left = prompt_length - len(prompt)
        right = response_length - len(response)
        rows.append([pad_token_id] * left + list(prompt) + list(response) + [pad_token_id] * right)
        masks.append([0] * left + [1] * (len(prompt) + len(response)) + [0] * right)
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    attention_mask = torch.tensor(masks, dtype=torch.long, device=device)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
        "response_mask": attention_mask[:, prompt_length:],
    }


def token_logprobs(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """``log_softmax(logits / temperature)`` at ``tokens``, computed in float32.

    Shapes: ``logits [..., V]``, ``tokens [...]`` -> ``[...]``. Generation and
    :func:`response_logprobs` both call this, so the two agree to the last bit the model allows.
    """
    scaled = logits.float() / temperature
    chosen = scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return chosen - torch.logsumexp(scaled, dim=-1)


def response_logits(model: torch.nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The logits that predict each response token, ``[B, R, V]`` (a view of the model's output).

    Only the last ``R + 1`` positions are projected onto the vocabulary when the model accepts
    ``logits_to_keep``; the logits at position t predict token t + 1.
    """
    response_length = batch["response_mask"].shape[1]
    extra = {}
    if _accepts_logits_to_keep(type(model)):
        extra["logits_to_keep"] = response_length + 1
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
        **extra,
    ).logits
    return logits[:, -(response_length + 1) : -1]


def response_logprobs(
    model: torch.nn.Module,
    batch: dict[str, Tensor],
    temperature: float = 1.0,
    return_entropy: bool = False,
    entropy_grad: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """Runs ``model`` teacher-forced over a :func:`pad_batch` batch; log-probs of the responses.

    Args:
        model: a Hugging Face causal LM (or anything returning ``.logits [B, T, V]``).
        batch: the output of :func:`pad_batch` (on the model's device).
        temperature: logits are divided by it, as in sampling; use 1.0 for greedy decoding.
        return_entropy: also return the entropy of ``softmax(logits / temperature)``. It costs a
            full-vocabulary softmax, so ask only when it is used.
        entropy_grad: keep the entropy in the autograd graph (an entropy bonus); False computes
            it as a metric only, without building the graph of the ``[B, R, V]`` softmax.

    Returns:
        ``logprobs [B, R]`` (float32, 0 where ``response_mask`` is 0), and with
        ``return_entropy`` also ``entropy [B, R]`` (float32, 0 where masked).
        Gradients flow through the log-probs unless the caller disables them.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    response_mask = batch["response_mask"].bool()
    responses = batch["input_ids"][:, -response_mask.shape[1] :]
    logits = response_logits(model, batch)
    logprobs = token_logprobs(logits, responses, temperature).masked_fill(~response_mask, 0.0)
    if not return_entropy:
        return logprobs
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        scaled = (logits if entropy_grad else logits.detach()).float() / temperature
        entropy = entropy_from_logits(scaled)
    return logprobs, entropy.masked_fill(~response_mask, 0.0)


@functools.cache
def _accepts_logits_to_keep(model_class: type) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model_class.forward).parameters
    except (TypeError, ValueError):
        return False
