"""The Hugging Face ``generate`` backend (registered as ``"hf"``): the CPU default.

Batched sampling with the KV cache, left padding and an attention mask. The log-prob of each
sampled token is recorded by a logits processor that runs first, on the raw logits, and keeps only
one step of logits alive (``output_logits=True`` would keep every step's ``[rows, vocab]`` logits
until the end, 40 GB for a 150k vocabulary at 1k tokens and 64 rows). Temperature and top-p are
applied after it by transformers' own warpers, so the recorded value is
``log_softmax(raw_logits / temperature)`` of the sampled token, before top-p, exactly what
:func:`ngrpo_rl.models.forward.response_logprobs` recomputes.

Sampling draws from a random stream private to the backend: a call with ``params.seed`` is
reproducible, a call without continues the backend's stream, and neither disturbs the caller's
global torch RNG (the learner's shuffling and dropout stay reproducible too).
"""

from __future__ import annotations

import contextlib
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
from ngrpo_rl.models.forward import token_logprobs
from ngrpo_rl.models.io import load_model
from ngrpo_rl.models.tokenizer import encode_prompts


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
        batch_size: int = 256,
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

    def generate(self, prompts: list[str], params: SamplingParams) -> GenerationOutput:
        """``params.n`` samples per prompt, prompt-major; see :class:`GenerationOutput`."""
        prompt_ids = encode_prompts(self.tokenizer, prompts)
        prompts_per_batch = max(1, self.batch_size // params.n)
        chunks = []
        with torch.inference_mode(), self._random.active(params.seed):
            for start in range(0, len(prompt_ids), prompts_per_batch):
                chunks.append(
                    self._generate_batch(prompt_ids[start : start + prompts_per_batch], params)
                )
        return GenerationOutput.concat(chunks)

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
        rows = [ids for ids in prompt_ids for _ in range(params.n)]
        prompt_length = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), prompt_length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(rows):
            input_ids[row, prompt_length - len(ids) :] = torch.tensor(ids)
            attention_mask[row, prompt_length - len(ids) :] = 1

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
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            generation_config=config,
            logits_processor=processors,
        )
        responses = sequences[:, prompt_length:].cpu()
        logprobs = recorder.finish(responses).tolist()
        return self._trim(rows, responses.tolist(), logprobs)

    def _trim(
        self, prompts: list[list[int]], responses: list[list[int]], logprobs: list[list[float]]
    ) -> GenerationOutput:
        """Cuts each response after its first eos (the rest is padding) and flags the others."""
        eos = set(self.eos_token_ids)
        kept_tokens, kept_logprobs, truncated = [], [], []
        for tokens, token_logprobs_ in zip(responses, logprobs):
            end = next((i + 1 for i, token in enumerate(tokens) if token in eos), None)
            truncated.append(end is None)
            kept_tokens.append(tokens[:end])
            kept_logprobs.append(token_logprobs_[:end])
        return GenerationOutput(
            prompt_token_ids=[list(ids) for ids in prompts],
            response_token_ids=kept_tokens,
            response_logprobs=kept_logprobs,
            texts=self.tokenizer.batch_decode(kept_tokens, skip_special_tokens=True),
            truncated=truncated,
        )


class SampledTokenLogprobs(LogitsProcessor):
    """Records ``log_softmax(raw_logits / temperature)`` of every sampled token.

    Must be the first processor. At step t it sees the raw logits of step t; the token sampled from
    them is only known at step t + 1 (the last column of ``input_ids``) or, for the final step, in
    the returned sequences, so one step of logits is kept pending.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self._pending: Tensor | None = None
        self._logprobs: list[Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._pending is not None:
            self._logprobs.append(token_logprobs(self._pending, input_ids[:, -1], self.temperature))
        self._pending = scores.detach().clone()
        return scores

    def finish(self, responses: Tensor) -> Tensor:
        """Log-probs ``[rows, L]`` of ``responses [rows, L]`` (the generated part of the output)."""
        length = responses.shape[1]
        recorded = len(self._logprobs)
        if recorded < length:
            if recorded != length - 1 or self._pending is None:
                raise RuntimeError(
                    f"recorded {recorded} log-prob steps for {length} generated tokens"
                )
            last = responses[:, -1].to(self._pending.device)
            self._logprobs.append(token_logprobs(self._pending, last, self.temperature))
        self._pending = None
        if length == 0:
            return torch.zeros(responses.shape[0], 0)
        return torch.stack(self._logprobs[:length], dim=1).cpu()


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
