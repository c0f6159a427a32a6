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

Work that changes no result is skipped. A micro-batch of some rows (:func:`select_rows`) drops the
columns that are padding in all of them, so rows sorted by length compute on little padding
(position ids are counted over real tokens and attention never reaches a padding key). The last
response token is not fed (it predicts nothing needed). Rows with the same prompt, a group's
responses, run one pass over it whose KV cache every one of them continues from
(:func:`response_logits`): with G responses per prompt this skips G - 1 of every G prompt passes,
more than half the work when prompts are longer than responses.

The log-probs are computed from the logits in chunks along the sequence (:func:`logprobs_from_logits`),
so that no ``[B, R, V]`` float32 copy of the logits exists at once; with gradients each chunk's
float32 work is recomputed in the backward pass instead of being kept (a large vocabulary on a GPU
needs this: 8 x 3000 x 152k float32 logits are 15 GB).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence

import torch
import torch.utils.checkpoint
from torch import Tensor

LOGITS_CHUNK_ELEMENTS = 2**26
"""The most vocabulary entries (rows x positions x V) one chunk of :func:`logprobs_from_logits`
upcasts to float32 at a time (256 MiB): a whole small-vocabulary batch is one chunk."""


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
    """``log_softmax(logits / temperature)`` at ``tokens``, computed in float32 (float64 logits stay
    float64).

    Shapes: ``logits [..., V]``, ``tokens [...]`` -> ``[...]``. Generation and
    :func:`response_logprobs` both compute it this way, so the two agree to the last bit the model
    allows.
    """
    scaled = _upcast(logits) / temperature
    chosen = scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return chosen - torch.logsumexp(scaled, dim=-1)


def _upcast(logits: Tensor) -> Tensor:
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def select_rows(
    batch: dict[str, Tensor], rows: Tensor, prompt_width: int, response_width: int
) -> dict[str, Tensor]:
    """The ``rows`` of a :func:`pad_batch` batch, cut to the ``prompt_width`` last prompt columns and
    the ``response_width`` first response columns (the longest prompt and response among ``rows``;
    the columns cut are padding in every one of them). The result is again a :func:`pad_batch`
    batch, of width ``prompt_width + response_width``; its log-probs are the first
    ``response_width`` columns of the whole batch's."""
    response_length = batch["response_mask"].shape[1]
    prompt_length = batch["input_ids"].shape[1] - response_length
    if not (1 <= prompt_width <= prompt_length and 1 <= response_width <= response_length):
        raise ValueError(
            f"widths ({prompt_width}, {response_width}) outside the batch's ({prompt_length}, {response_length})"
        )
    columns = slice(prompt_length - prompt_width, prompt_length + response_width)
    rows = rows.to(batch["input_ids"].device)
    return {
        "input_ids": batch["input_ids"][rows, columns],
        "attention_mask": batch["attention_mask"][rows, columns],
        "position_ids": batch["position_ids"][rows, columns],
        "response_mask": batch["response_mask"][rows, :response_width],
    }


def response_logits(
    model: torch.nn.Module, batch: dict[str, Tensor], share_prompts: bool = True
) -> Tensor:
    """The logits that predict each response token, ``[B, R, V]``.

    The logits at position t predict token t + 1, so the last token is not fed at all, and only the
    last ``R`` positions are projected onto the vocabulary when the model accepts
    ``logits_to_keep``. With ``share_prompts``, rows with the same prompt (a group's responses)
    share one pass over it when the model takes a KV cache (:func:`_shared_prompt_logits`);
    otherwise every row runs whole, in one call of ``model``. Both give the same logits up to float
    rounding. Sharing makes the number of calls depend on the batch: turn it off where every
    process of a group must call the model alike (FSDP gathers parameters in each call).
    """
    shared = _shared_prompt_logits(model, batch) if share_prompts else None
    if shared is not None:
        return shared
    response_length = batch["response_mask"].shape[1]
    extra = {}
    if forward_signature(model).logits_to_keep:
        extra["logits_to_keep"] = response_length
    logits = model(
        input_ids=batch["input_ids"][:, :-1],
        attention_mask=batch["attention_mask"][:, :-1],
        position_ids=batch["position_ids"][:, :-1],
        use_cache=False,
        **extra,
    ).logits
    return logits[:, -response_length:]


def _shared_prompt_logits(model: torch.nn.Module, batch: dict[str, Tensor]) -> Tensor | None:
    """:func:`response_logits` with one pass over each distinct prompt: the prompts' keys and values
    (a KV cache, with gradient) are copied to every row that shares them, then the responses run on
    top. Rows of a group share their prompt, so this skips ``G - 1`` of every ``G`` prompt passes.
    None when no prompt repeats, the model takes no cache, or gradient checkpointing (which drops
    the cache) is on."""
    signature = forward_signature(model)
    if not (signature.cache and signature.logits_to_keep):
        return None
    response_length = batch["response_mask"].shape[1]
    prompt_length = batch["input_ids"].shape[1] - response_length
    prompt_ids = batch["input_ids"][:, :prompt_length]
    # Padding gets id -1, so prompts that differ only in where their padding starts stay apart.
    key = torch.where(batch["attention_mask"][:, :prompt_length].bool(), prompt_ids, -1)
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)
    if len(unique) == len(key) or (torch.is_grad_enabled() and _checkpointing(model)):
        return None
    first = torch.full((len(unique),), len(key), dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(key), device=key.device), "amin")
    prompts = model(
        input_ids=prompt_ids[first],
        attention_mask=batch["attention_mask"][first, :prompt_length],
        position_ids=batch["position_ids"][first, :prompt_length],
        use_cache=True,
        logits_to_keep=1,
    )
    cache = getattr(prompts, signature.cache, None)
    if cache is None or cache.get_seq_length() != prompt_length:
        return None
    first_token = prompts.logits[:, -1:][inverse]  # predicts response token 0
    if response_length == 1:
        return first_token
    cache.reorder_cache(inverse)
    # Response tokens 0 .. R-2 predict tokens 1 .. R-1; the last token predicts nothing needed.
    responses = model(
        input_ids=batch["input_ids"][:, prompt_length:-1],
        attention_mask=batch["attention_mask"][:, :-1],
        position_ids=batch["position_ids"][:, prompt_length:-1],
        use_cache=True,
        logits_to_keep=response_length - 1,
        **{signature.cache: cache},
    ).logits
    return torch.cat([first_token, responses], dim=1)


def logprobs_from_logits(
    logits: Tensor,
    tokens: Tensor,
    temperature: float = 1.0,
    *,
    return_entropy: bool = False,
    entropy_grad: bool = True,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """:func:`token_logprobs` of ``tokens [B, R]`` under ``logits [B, R, V]``, and the entropy of
    ``softmax(logits / temperature)`` when asked, over chunks of the sequence axis.

    Both come from one ``logsumexp`` per position: the entropy reuses it instead of a second
    softmax. ``entropy_grad=False`` computes the entropy without gradient (a metric). With
    ``chunk_size`` None, a chunk holds at most ``LOGITS_CHUNK_ELEMENTS`` logits; when there are
    several chunks and gradients are on, each chunk is checkpointed (its float32 work is redone in
    the backward pass rather than kept). Any chunking gives the same values.

    Returns ``(logprobs [B, R], entropy [B, R] or None)``, float32 (float64 for float64 logits).
    """
    rows, length, vocab = logits.shape
    if chunk_size is None:
        chunk_size = max(1, LOGITS_CHUNK_ELEMENTS // max(1, rows * vocab))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    starts = range(0, length, chunk_size)
    checkpointed = len(starts) > 1 and torch.is_grad_enabled() and logits.requires_grad
    logprobs, entropies = [], []
    for start in starts:
        args = (
            logits[:, start : start + chunk_size],
            tokens[:, start : start + chunk_size],
            temperature,
            return_entropy,
            entropy_grad,
        )
        if checkpointed:
            part = torch.utils.checkpoint.checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            part = _chunk_logprobs(*args)
        logprobs.append(part[0])
        entropies.append(part[1])
    if len(starts) == 1:
        return logprobs[0], entropies[0]
    if not logprobs:  # no position at all
        empty = _upcast(logits).new_zeros(rows, 0)
        return empty, empty if return_entropy else None
    return torch.cat(logprobs, 1), torch.cat(entropies, 1) if return_entropy else None


def _chunk_logprobs(
    logits: Tensor, tokens: Tensor, temperature: float, return_entropy: bool, entropy_grad: bool
) -> tuple[Tensor, Tensor | None]:
    scaled = _upcast(logits) / temperature
    normaliser = torch.logsumexp(scaled, dim=-1)
    logprobs = scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - normaliser
    if not return_entropy:
        return logprobs, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        if not entropy_grad:
            scaled, normaliser = scaled.detach(), normaliser.detach()
        log_p = scaled - normaliser.unsqueeze(-1)
        # A -inf logit (a masked vocabulary entry) has p = 0 and contributes 0, not 0 * -inf = NaN.
        entropy = -(log_p.exp() * log_p.clamp(min=torch.finfo(log_p.dtype).min)).sum(-1)
    return logprobs, entropy


def response_logprobs(
    model: torch.nn.Module,
    batch: dict[str, Tensor],
    temperature: float = 1.0,
    return_entropy: bool = False,
    entropy_grad: bool = True,
    chunk_size: int | None = None,
    share_prompts: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """Runs ``model`` teacher-forced over a :func:`pad_batch` batch; log-probs of the responses.

    Args:
        model: a Hugging Face causal LM (or anything returning ``.logits [B, T, V]``).
        batch: the output of :func:`pad_batch` (on the model's device).
        temperature: logits are divided by it, as in sampling; use 1.0 for greedy decoding.
        return_entropy: also return the entropy of ``softmax(logits / temperature)`` (from the same
            normaliser as the log-probs, a few elementwise passes over the logits).
        entropy_grad: keep the entropy in the autograd graph (an entropy bonus); False computes
            it as a metric only, without building the graph of the ``[B, R, V]`` softmax.
        chunk_size: positions per chunk of :func:`logprobs_from_logits` (None: automatic).
        share_prompts: one pass over each distinct prompt (see :func:`response_logits`).

    Returns:
        ``logprobs [B, R]`` (float32, 0 where ``response_mask`` is 0), and with
        ``return_entropy`` also ``entropy [B, R]`` (float32, 0 where masked).
        Gradients flow through the log-probs unless the caller disables them.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    response_mask = batch["response_mask"].bool()
    responses = batch["input_ids"][:, -response_mask.shape[1] :]
    logits = response_logits(model, batch, share_prompts)
    logprobs, entropy = logprobs_from_logits(
        logits,
        responses,
        temperature,
        return_entropy=return_entropy,
        entropy_grad=entropy_grad,
        chunk_size=chunk_size,
    )
    logprobs = logprobs.masked_fill(~response_mask, 0.0)
    if not return_entropy:
        return logprobs
    return logprobs, entropy.masked_fill(~response_mask, 0.0)


@dataclasses.dataclass(frozen=True)
class ForwardSignature:
    """What a model's forward accepts.

    Attributes:
        logits_to_keep: it projects only the last positions onto the vocabulary when asked.
        cache: the name of its KV-cache argument (``"cache"`` in recent transformers,
            ``"past_key_values"`` before), or None when it takes no cache.
    """

    logits_to_keep: bool
    cache: str | None


def forward_signature(model: torch.nn.Module) -> ForwardSignature:
    """What the forward of ``model`` (or of the module a DDP wrapper holds) accepts."""
    return _class_signature(type(getattr(model, "module", model)))


@functools.cache
def _class_signature(model_class: type) -> ForwardSignature:
    try:
        parameters = inspect.signature(model_class.forward).parameters
    except (TypeError, ValueError):
        return ForwardSignature(False, None)
    cache = next((name for name in ("cache", "past_key_values") if name in parameters), None)
    return ForwardSignature("logits_to_keep" in parameters, cache if "use_cache" in parameters else None)


def _checkpointing(model: torch.nn.Module) -> bool:
    """Whether any module of ``model`` checkpoints activations (then a layer drops its KV cache)."""
    return model.training and any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
