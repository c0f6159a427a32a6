"""The Hugging Face ``generate`` backend (registered as ``"hf"``): the CPU default.

Batched sampling with the KV cache, left padding and an attention mask. The log-prob of each
sampled token is recorded by a logits processor that runs first, on the raw logits: it takes each
step's normaliser (``logsumexp``) at once and keeps a reference to that step's logits, without a
copy, until the next step tells which token was sampled (``output_logits=True`` would keep every
step's ``[rows, vocab]`` logits until the end, 40 GB for a 150k vocabulary at 1k tokens and 64
rows). Temperature and top-p are applied after it by transformers' own warpers, which return new
tensors, so the recorded value is ``log_softmax(raw_logits / temperature)`` of the sampled token,
before top-p, by the formula of :func:`ngrpo_rl.models.forward.token_logprobs`: what
:func:`ngrpo_rl.models.forward.response_logprobs` recomputes, equal up to the float rounding by
which a cached decoding step and a teacher-forced pass differ.

The ``n`` samples of a prompt share its prefill: the prompts (all but their last token) run once
each, their KV cache is repeated ``n`` times and handed to ``generate``, which then feeds only the
last prompt token of every row before sampling (a group's prompt is otherwise computed ``n``
times, about a third of the work for short responses). Prompts are encoded once per distinct text
(a bounded cache), a batch's inputs are built in one tensor, and its responses are cut at eos with
tensor operations and decoded in one ``batch_decode``.

Sampling draws from a random stream private to the backend: a call with ``params.seed`` is
reproducible, a call without continues the backend's stream, and neither disturbs the caller's
global torch RNG (the learner's shuffling and dropout stay reproducible too).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from ngrpo_rl.generation.backend import GenerationBackend, backends
from ngrpo_rl.generation.types import GenerationOutput, SamplingParams
from ngrpo_rl.models.forward import forward_signature
from ngrpo_rl.models.io import load_model
from ngrpo_rl.models.tokenizer import encode_prompts

PROMPT_CACHE_SIZE = 65536
"""Distinct prompt texts whose token ids a backend keeps (a training set's problems recur)."""


@backends.register("hf")
class HFBackend(GenerationBackend):
    """Samples with ``model.generate`` from a local Hugging Face directory.

    Args:
        model_name_or_path: a local model directory (see :func:`ngrpo_rl.models.load_model`).
        device: where the model runs.
        dtype: weights' dtype; None keeps the checkpoint's.
        seed: seeds the backend's own random stream (for calls without ``params.seed``).
        batch_size: the most sequences (prompts x ``params.n``) decoded together; at least one
            prompt's ``n`` samples always go together.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        seed: int = 0,
        batch_size: int = 512,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer = load_model(model_name_or_path, dtype=dtype, device=device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        stored = self.model.generation_config
        eos = (
            stored.eos_token_id if stored.eos_token_id is not None else self.tokenizer.eos_token_id
        )
        if eos is None:
            raise ValueError(f"the model in {model_name_or_path!r} defines no eos token")
        self.eos_token_ids: list[int] = [eos] if isinstance(eos, int) else list(eos)
        self.pad_token_id: int = self.tokenizer.pad_token_id
        # A clean generation config: a checkpoint's sampling defaults (top_k, repetition_penalty,
        # ...) would otherwise fill every field a call leaves unset and change the distribution.
        self.model.generation_config = GenerationConfig(
            bos_token_id=stored.bos_token_id,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
        )
        self._random = PrivateRandomStream(seed, self.device)
        self._prompt_ids: OrderedDict[str, list[int]] = OrderedDict()

    def generate(self, prompts: list[str], params: SamplingParams) -> GenerationOutput:
        """``params.n`` samples per prompt, prompt-major; see :class:`GenerationOutput`."""
        prompt_ids = self.encode(prompts)
        prompts_per_batch = max(1, self.batch_size // params.n)
        chunks = []
        with torch.inference_mode(), self._random.active(params.seed):
            for start in range(0, len(prompt_ids), prompts_per_batch):
                chunks.append(
                    self._generate_batch(prompt_ids[start : start + prompts_per_batch], params)
                )
        return GenerationOutput.concat(chunks)

    def encode(self, prompts: list[str]) -> list[list[int]]:
        """The token ids of each prompt (:func:`ngrpo_rl.models.encode_prompts`), each distinct
        text encoded once while it stays among the last ``PROMPT_CACHE_SIZE`` used."""
        cache = self._prompt_ids
        missing = list(dict.fromkeys(text for text in prompts if text not in cache))
        if missing:
            cache.update(zip(missing, encode_prompts(self.tokenizer, missing)))
        encoded = []
        for text in prompts:
            cache.move_to_end(text)
            encoded.append(list(cache[text]))
        while len(cache) > PROMPT_CACHE_SIZE:
            cache.popitem(last=False)
        return encoded

    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Copies ``state_dict`` into the model (dtype and device converted); tied weights may be
        given once. Unknown names, or model weights left unset, raise ``KeyError``."""
        own = self.model.state_dict()
        with torch.no_grad():
            result = self.model.load_state_dict(dict(state_dict), strict=False)
        loaded = {own[name].data_ptr() for name in state_dict if name in own}
        unset = [name for name in result.missing_keys if own[name].data_ptr() not in loaded]
        if result.unexpected_keys or unset:
            raise KeyError(
                "state_dict does not match the generation model: "
                f"unknown {result.unexpected_keys[:5]}, "
                f"missing {unset[:5]}"
            )

    def _generate_batch(
        self, prompt_ids: list[list[int]], params: SamplingParams
    ) -> GenerationOutput:
        prompt_length = max(len(ids) for ids in prompt_ids)
        padding = [prompt_length - len(ids) for ids in prompt_ids]
        # One row per prompt; generate sees each repeated n times (prompt-major).
        prompt_rows = torch.tensor(
            [[self.pad_token_id] * pad + ids for pad, ids in zip(padding, prompt_ids)], dtype=torch.long
        ).to(self.device)
        prompt_mask = torch.arange(prompt_length)[None, :] >= torch.tensor(padding)[:, None]
        prompt_mask = prompt_mask.long().to(self.device)
        prefilled = self._prefill(prompt_rows, prompt_mask, params.n)

        recorder = SampledTokenLogprobs(params.logprob_temperature)
        processors = LogitsProcessorList([recorder])
        sampling = {"do_sample": False}
        if not params.greedy:
            sampling = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
            if params.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(params.top_p))
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            use_cache=True,
            num_return_sequences=1,
            bos_token_id=self.model.generation_config.bos_token_id,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            **sampling,
        )
        sequences = self.model.generate(
            input_ids=prompt_rows.repeat_interleave(params.n, dim=0),
            attention_mask=prompt_mask.repeat_interleave(params.n, dim=0),
            generation_config=config,
            logits_processor=processors,
            **prefilled,
        )
        responses = sequences[:, prompt_length:]
        logprobs = recorder.finish(responses)
        return self._trim(prompt_ids, params.n, responses.cpu(), logprobs.cpu())

    def _prefill(self, prompt_rows: Tensor, prompt_mask: Tensor, n: int) -> dict[str, object]:
        """``generate``'s keyword for a KV cache of all but the last token of each prompt, repeated
        ``n`` times; empty (``generate`` prefills every row itself) when nothing is shared or the
        model takes no cache."""
        signature = forward_signature(self.model)
        if n == 1 or prompt_rows.shape[1] < 2 or signature.cache is None:
            return {}
        extra = {"logits_to_keep": 1} if signature.logits_to_keep else {}
        # The position ids generate derives from the attention mask.
        position_ids = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=prompt_rows[:, :-1],
            attention_mask=prompt_mask[:, :-1],
            position_ids=position_ids[:, :-1],
            use_cache=True,
            **extra,
        )
        cache = getattr(out, signature.cache, None)
        if cache is None or cache.get_seq_length() != prompt_rows.shape[1] - 1:
            return {}
        cache.batch_repeat_interleave(n)
        return {signature.cache: cache}

    def _trim(
        self, prompt_ids: list[list[int]], n: int, responses: Tensor, logprobs: Tensor
    ) -> GenerationOutput:
        """Cuts each response ``[rows, L]`` after its first eos (the rest is padding) and flags
        the others as truncated."""
        is_eos = torch.isin(responses, torch.tensor(self.eos_token_ids))
        stopped = is_eos.any(dim=1)
        ends = torch.where(stopped, is_eos.int().argmax(dim=1) + 1, responses.shape[1]).tolist()
        kept_tokens = [row[:end] for row, end in zip(responses.tolist(), ends)]
        kept_logprobs = [row[:end] for row, end in zip(logprobs.tolist(), ends)]
        # Samples of a group often coincide (a short answer): each distinct response is decoded once.
        distinct = list(dict.fromkeys(map(tuple, kept_tokens)))
        decoded = self.tokenizer.batch_decode([list(tokens) for tokens in distinct], skip_special_tokens=True)
        texts = dict(zip(distinct, decoded))
        return GenerationOutput(
            prompt_token_ids=[list(ids) for ids in prompt_ids for _ in range(n)],
            response_token_ids=kept_tokens,
            response_logprobs=kept_logprobs,
            texts=[texts[tuple(tokens)] for tokens in kept_tokens],
            truncated=(~stopped).tolist(),
        )


class SampledTokenLogprobs(LogitsProcessor):
    """Records ``log_softmax(raw_logits / temperature)`` of every sampled token.

    Must be the first processor. At step t it sees the raw logits of step t and takes their
    normaliser ``logsumexp(logits / temperature)``; the token sampled from them is only known at
    step t + 1 (the last column of ``input_ids``) or, for the final step, in the returned
    sequences, so step t's logits stay referenced (not copied: the processors after this one return
    new tensors) until then. The result is what
    :func:`ngrpo_rl.models.forward.token_logprobs` computes, bit for bit.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self._pending: tuple[Tensor, Tensor] | None = None
        self._logprobs: list[Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._pending is not None:
            self._logprobs.append(self._logprob_of(input_ids[:, -1]))
        logits = scores.detach()
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()
        self._pending = (logits, torch.logsumexp(logits / self.temperature, dim=-1))
        return scores

    def _logprob_of(self, tokens: Tensor) -> Tensor:
        logits, normaliser = self._pending
        chosen = logits.gather(-1, tokens.to(logits.device).unsqueeze(-1)).squeeze(-1)
        return chosen / self.temperature - normaliser

    def finish(self, responses: Tensor) -> Tensor:
        """Log-probs ``[rows, L]`` of ``responses [rows, L]`` (the generated part of the output)."""
        length = responses.shape[1]
        recorded = len(self._logprobs)
        if recorded < length:
            if recorded != length - 1 or self._pending is None:
                raise RuntimeError(
                    f"recorded {recorded} log-prob steps for {length} generated tokens"
                )
            self._logprobs.append(self._logprob_of(responses[:, -1]))
        self._pending = None
        if length == 0:
            return torch.zeros(responses.shape[0], 0)
        return torch.stack(self._logprobs[:length], dim=1)


class PrivateRandomStream:
    """A torch random stream owned by one backend, isolated from the global one.

    ``active(seed)`` runs a block with the global RNG (CPU and the backend's CUDA device) set to
    ``seed`` or, for None, to this stream's saved state, which is then advanced; the caller's global
    RNG state is restored afterwards either way.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._cuda_index = (
            (device.index if device.index is not None else torch.cuda.current_device())
            if self._cuda
            else None
        )
        with self._forked():
            torch.manual_seed(seed)
            self._state = self._capture()

    @contextlib.contextmanager
    def active(self, seed: int | None = None) -> Iterator[None]:
        with self._forked():
            if seed is None:
                self._restore(self._state)
            else:
                torch.manual_seed(seed)
            yield
            if seed is None:
                self._state = self._capture()

    def _forked(self) -> contextlib.AbstractContextManager:
        devices = [self._cuda_index] if self._cuda else []
        return torch.random.fork_rng(devices=devices)

    def _capture(self) -> tuple[Tensor, Tensor | None]:
        cuda_state = torch.cuda.get_rng_state(self._cuda_index) if self._cuda else None
        return torch.get_rng_state(), cuda_state

    def _restore(self, state: tuple[Tensor, Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if self._cuda and state[1] is not None:
            torch.cuda.set_rng_state(state[1], self._cuda_index)
