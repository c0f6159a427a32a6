"""The vLLM generation backend (registered as ``"vllm"``), an optional extra for CUDA GPUs.

Install with ``pip install -e ".[vllm]"`` (vLLM >= 0.10.2, a CUDA GPU). This module imports
without vLLM: ``vllm`` is imported only when :class:`VLLMBackend` is constructed, so registering
the backend costs nothing on a CPU machine.

What has and has not been run
-----------------------------
Nothing that needs vLLM has been run: vLLM has no CPU wheel and this code was written on a machine
without a GPU. What is tested (``tests/test_vllm_backend.py``) is everything that does not need
vLLM: the mapping of our :class:`SamplingParams` to vLLM's keyword arguments, the engine keyword
arguments, the conversion of vLLM ``RequestOutput`` objects (small fakes with the same attributes)
into a :class:`GenerationOutput`, the weight naming for ``load_weights``, the chunking of a weight
sync, and the backend's own glue (per-prompt seeds, greedy copies, sleep / wake bookkeeping,
weight sync calls) against a fake engine. The calls into a real ``vllm.LLM`` (``generate``,
``collective_rpc``, ``reset_prefix_cache``, ``sleep``, ``wake_up``) follow vLLM's documentation
cited below and have not been exercised.

Log-probs: which vLLM mode matches our contract
-----------------------------------------------
Our contract (:class:`GenerationOutput`): ``response_logprobs`` is
``log_softmax(raw_logits / temperature)`` of the sampled token, before top-p. vLLM's engine option
``logprobs_mode`` decides what ``SamplingParams(logprobs=0)`` returns for the sampled token
(https://docs.vllm.ai/en/v0.10.2/configuration/engine_args.html, ``--logprobs-mode``; the order of
the steps is in the V1 ``Sampler`` docstring,
https://docs.vllm.ai/en/v0.10.2/api/vllm/v1/sample/sampler.html):

* ``"raw_logprobs"`` (vLLM's default): log_softmax of the model's logits before penalties,
  temperature and top-k/top-p, i.e. always at temperature 1. Matches our contract only when
  temperature == 1 (or greedy, whose contract is temperature 1).
* ``"processed_logprobs"`` (vLLM >= 0.10.2, vllm-project/vllm PR #22387): log_softmax after
  penalties, temperature, min-p and top-k/top-p, i.e. of the distribution actually sampled from.
  With top_p == 1 (and no penalties / top-k / min-p, which we never set) this is exactly
  ``log_softmax(raw_logits / temperature)``: our contract. For greedy requests vLLM returns the
  log_softmax of the unscaled logits, which is our greedy contract (temperature 1). With top_p < 1
  it is the log-prob renormalised over the nucleus, which is larger than our contract's value.

So the backend runs the engine with ``logprobs_mode="processed_logprobs"`` (TRL made the same
choice, huggingface/trl PR #4163). With top_p < 1 no vLLM mode gives the untruncated,
temperature-scaled value (``raw_*`` lack the temperature, ``processed_*`` are truncated, and the
normaliser over the whole vocabulary is not returned), so the backend logs a warning once and
returns the truncated log-probs; train with top_p = 1 (the default) when the learner uses these as
``old_logp``. Evaluation (top_p 0.95) does not read log-probs. A processed mode keeps vLLM on its
PyTorch top-k/top-p sampler, since FlashInfer's does not expose the processed values (a small
cost; ``TopKTopPSampler`` in vllm/v1/sample/ops/topk_topp_sampler.py). ``logprobs_mode`` is an
engine option, not a per-request one, which is why it is set in :func:`vllm_engine_kwargs` and not
in :func:`to_vllm_sampling_kwargs`.

Older vLLM: before ``logprobs_mode`` existed, the V1 engine returned raw logprobs only (before
temperature, "Semantic changes to logprobs" in the V1 user guide,
https://docs.vllm.ai/en/v0.8.4/getting_started/v1_user_guide.html). In 0.10.0 and 0.10.1 no mode
returned values after temperature and top-k/top-p (the ``processed_*`` modes, where present,
stopped after the penalties); PR #22387, released in 0.10.2, moved them there, and TRL's switch
required 0.10.2 for that reason. The V0 engine returned logprobs after penalties, temperature and
top-k/top-p. Hence the version floor, checked at construction (:func:`check_vllm_version`), and the
extra in setup.cfg should read ``vllm>=0.10.2``.

Weight sync
-----------
:meth:`VLLMBackend.load_state_dict` loads new weights into the running engine without a restart,
the way vLLM's RLHF examples do it
(https://docs.vllm.ai/en/v0.10.2/examples/offline_inference/rlhf_utils.html): the engine is
built with ``worker_extension_cls`` naming :class:`WeightSyncExtension`, a mix-in vLLM adds to its
worker class, and ``LLM.collective_rpc`` calls its method on every worker, which hands Hugging Face
named tensors to ``model.load_weights``. vLLM's Qwen2 / Llama loaders take Hugging Face names and
stack q/k/v and gate/up themselves, so names pass as they are (:func:`vllm_weight_items`). Tensors
travel as CPU tensors in chunks (:func:`chunk_weight_items`), which works whether the engine core
runs in this process or in its own, and with tensor parallelism (each worker slices its shard).
Afterwards the prefix cache is reset, since its KV entries were computed with the old weights
(TRL's colocate mode does the same). Only unquantized models are supported: a quantized engine
would need ``process_weights_after_loading`` after each sync. Weights that the state dict leaves
out keep their previous value; vLLM raises for names it does not know.

GPU weight broadcast (documentation only, not implemented here)
---------------------------------------------------------------
Going through CPU memory costs two copies of the model per sync. OpenRLHF and verl instead join the
learner's rank 0 and every vLLM worker into one NCCL group (vLLM's ``StatelessProcessGroup`` plus
``PyNcclCommunicator``, so the group does not touch either side's default ``torch.distributed``
group), then, per tensor or per bucket, send the name, dtype and shape to the workers by
``collective_rpc`` and ``broadcast`` the data from rank 0, each worker calling ``load_weights`` on
what it received (the ``init_weight_update_group`` / ``update_weight`` methods of vLLM's
``rlhf_utils.py`` example above). Limits: NCCL cannot connect two processes that share one GPU, so a
colocated engine needs CUDA IPC handles instead (vLLM's ``rlhf_colocate.py``); rank 0 must hold the
full, unsharded tensors (FSDP / ZeRO-3 gather first), in the dtype the workers expect; the group
needs a reachable address and port and must be built after both sides have their GPUs; one
broadcast per tensor is latency bound, so tensors are bucketed; and a failed broadcast leaves the
group unusable, so a restarted worker must rebuild it. Recent vLLM releases add a weight-transfer
API of their own (``WeightTransferConfig``, ``vllm.distributed.weight_transfer``) that may replace
this hand-built path.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl.generation.backend import GenerationBackend, backends
from ngrpo_rl.generation.types import GenerationOutput, SamplingParams, derive_seed
from ngrpo_rl.models.io import check_model_dir
from ngrpo_rl.models.tokenizer import encode_prompts

logger = logging.getLogger(__name__)

MIN_VLLM_VERSION = (0, 10, 2)
INSTALL_HINT = (
    'install the optional extra with `pip install -e ".[vllm]"` (vLLM >= 0.10.2; it needs a '
    'CUDA GPU), or use generation_backend="hf"'
)
# The engine option that makes the sampled token's log-prob log_softmax(logits / temperature);
# see the module docstring.
LOGPROBS_MODE = "processed_logprobs"
# vLLM clamps temperatures in (0, 0.01) up to 0.01, logging a warning (``_MAX_TEMP`` in
# vllm/sampling_params.py), which would make its log-probs disagree with the learner's.
VLLM_MIN_TEMPERATURE = 1e-2
WORKER_EXTENSION = "ngrpo_rl.generation.vllm_backend.WeightSyncExtension"
SYNC_METHOD = "ngrpo_load_weights"
DEFAULT_WEIGHT_CHUNK_BYTES = 1 << 30
# Names the engine options of VLLMBackend set themselves; engine_kwargs may not override them.
RESERVED_ENGINE_KWARGS = frozenset(
    {"model", "tokenizer", "dtype", "seed", "logprobs_mode", "worker_extension_cls"}
)
# dtypes vLLM accepts (https://docs.vllm.ai/en/v0.10.2/configuration/engine_args.html, --dtype).
VLLM_DTYPES = ("float16", "bfloat16", "float32")
# Prefixes wrappers put in front of parameter names: DDP's ``module.`` (only at the front),
# torch.compile's ``_orig_mod.``, FSDP's and activation checkpointing's wrapper modules (anywhere).
LEADING_WRAPPER = "module"
WRAPPER_COMPONENTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})
# Finish reasons of a CompletionOutput that end a response normally.
FINISHED_BY_STOP = "stop"
FINISHED_BY_LENGTH = "length"

WeightItems = list[tuple[str, Tensor]]


# --- importing vLLM ------------------------------------------------------------------------------


def import_vllm() -> ModuleType:
    """Imports vLLM, or raises ``ImportError`` saying how to install it; checks its version."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(f"the vLLM generation backend needs vllm: {INSTALL_HINT}") from error
    check_vllm_version(getattr(vllm, "__version__", "0"))
    return vllm


def check_vllm_version(version: str) -> None:
    """Raises ``ImportError`` unless ``version`` is at least :data:`MIN_VLLM_VERSION`.

    Pre-release and local suffixes are ignored (``0.10.2rc1`` and ``0.11.0.dev5+g1234`` pass).
    """
    match = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    release = tuple(int(part or 0) for part in match.groups()) if match else (0, 0, 0)
    if release < MIN_VLLM_VERSION:
        needed = ".".join(map(str, MIN_VLLM_VERSION))
        raise ImportError(
            f"vllm {version} is too old for the vLLM generation backend: it needs >= {needed}, "
            f"whose logprobs_mode='{LOGPROBS_MODE}' returns temperature-scaled log-probs; "
            f"{INSTALL_HINT}"
        )


# --- sampling parameters -------------------------------------------------------------------------


def to_vllm_sampling_kwargs(params: SamplingParams, *, detokenize: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` that sample as ``params`` asks.

    Field meanings: https://docs.vllm.ai/en/v0.10.2/api/vllm/sampling_params.html

    * ``logprobs=0``: return the log-prob of the sampled token only (vLLM always includes the
      sampled token); what it means is set by the engine's ``logprobs_mode`` (module docstring).
    * greedy: ``temperature=0`` (vLLM's greedy), ``top_p=1`` and ``n=1``, because vLLM refuses
      greedy requests with ``n > 1``; the backend submits ``n`` copies of the prompt instead
      (:func:`prompt_copies`).
    * top-k, min-p and the penalties are set to their neutral values explicitly, so nothing but
      temperature and top-p shapes the distribution (as the HF backend's clean generation config).
    * ``ignore_eos=False``: stop at the model's eos tokens (the tokenizer's and those of the
      checkpoint's ``generation_config.json``), which stay in ``token_ids``.
    * ``detokenize=False`` by default: the backend decodes the token ids with our tokenizer, as the
      HF backend does, so both backends produce the same text for the same tokens.
      ``skip_special_tokens=True`` applies when vLLM detokenizes.
    * ``seed``: as given; the backend replaces it with one derived seed per prompt.

    Raises ``ValueError`` for a temperature in (0, 0.01), which vLLM would clamp up to 0.01.
    """
    if not params.greedy and params.temperature < VLLM_MIN_TEMPERATURE:
        raise ValueError(
            f"temperature {params.temperature} is below {VLLM_MIN_TEMPERATURE}, which vLLM clamps "
            "up to that value (its log-probs would then disagree with the learner's); use "
            "greedy=True for argmax decoding"
        )
    return {
        "n": 1 if params.greedy else params.n,
        "max_tokens": params.max_new_tokens,
        "temperature": 0.0 if params.greedy else params.temperature,
        "top_p": 1.0 if params.greedy else params.top_p,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": params.seed,
        "logprobs": 0,
        "ignore_eos": False,
        "skip_special_tokens": True,
        "detokenize": detokenize,
    }


def prompt_copies(params: SamplingParams) -> int:
    """How many requests each prompt becomes: ``n`` for greedy (vLLM refuses greedy ``n > 1``, so
    each copy asks for one completion), else 1 (one request asks for ``n``)."""
    return params.n if params.greedy else 1


def logprobs_match_contract(params: SamplingParams) -> bool:
    """Whether vLLM's ``processed_logprobs`` equal our contract's log-probs for ``params``: always
    for greedy, else only without top-p truncation (see the module docstring)."""
    return params.greedy or params.top_p >= 1.0


def request_seeds(seed: int | None, num_requests: int) -> list[int | None]:
    """One vLLM seed per request, derived from the call's ``seed`` (all None when it is None, so
    vLLM continues the engine's own stream, seeded at construction).

    Distinct requests get unrelated seeds (a shared seed would correlate the samples of different
    prompts). vLLM gives the ``j``-th completion of a request ``seed + j``
    (``ParentRequest`` in vllm/v1/engine/parallel_sampling.py), so seeds stay below 2**62 to leave
    room for that sum within int64.
    """
    if seed is None:
        return [None] * num_requests
    return [derive_seed(seed, index) % (2**62) for index in range(num_requests)]


# --- converting vLLM's outputs -------------------------------------------------------------------


def outputs_from_vllm(
    request_outputs: Sequence[Any],
    n: int,
    *,
    eos_token_ids: Iterable[int] = (),
    decode: Callable[[list[list[int]]], list[str]] | None = None,
) -> GenerationOutput:
    """Turns vLLM ``RequestOutput`` objects into a prompt-major :class:`GenerationOutput`.

    Args:
        request_outputs: one per request, in request order (``LLM.generate`` returns them so);
            each has ``.prompt_token_ids`` and ``.outputs``, ``n`` completions with ``.token_ids``,
            ``.logprobs`` (per position, a mapping token id -> ``Logprob`` with ``.logprob``),
            ``.text``, ``.finish_reason`` and, optionally, ``.index``.
        n: completions each request must have.
        eos_token_ids: the ids that end a response; a ``"length"`` finish whose last token is one
            of them is not truncated (vLLM versions differ in which reason they report when eos
            is the last allowed token).
        decode: turns each response's token ids into text; None takes vLLM's ``.text``.

    Raises ``ValueError`` for a request with another number of completions, a missing or
    non-finite log-prob of a sampled token, or a finish reason other than ``"stop"`` /
    ``"length"`` (an aborted request).
    """
    eos = frozenset(eos_token_ids)
    prompts: list[list[int]] = []
    responses: list[list[int]] = []
    logprobs: list[list[float]] = []
    truncated: list[bool] = []
    texts: list[str] = []
    for request_index, request in enumerate(request_outputs):
        prompt_ids = _prompt_token_ids(request, request_index)
        for completion_index, completion in enumerate(_completions(request, n, request_index)):
            where = f"request {request_index}, completion {completion_index}"
            tokens = [int(token) for token in completion.token_ids]
            prompts.append(list(prompt_ids))
            responses.append(tokens)
            logprobs.append(sampled_logprobs(tokens, completion.logprobs, where))
            truncated.append(is_truncated(completion.finish_reason, tokens, eos, where))
            if decode is None:
                texts.append(str(completion.text))
    if decode is not None:
        texts = list(decode(responses))
    return GenerationOutput(
        prompt_token_ids=prompts,
        response_token_ids=responses,
        response_logprobs=logprobs,
        texts=texts,
        truncated=truncated,
    )


def sampled_logprobs(
    tokens: Sequence[int], logprobs: Sequence[Any] | None, where: str
) -> list[float]:
    """The log-prob of each sampled token, from vLLM's per-position mappings; refuses gaps."""
    if logprobs is None:
        raise ValueError(
            f"{where}: vLLM returned no log-probs; the request must set logprobs=0 "
            "(to_vllm_sampling_kwargs does)"
        )
    if len(logprobs) != len(tokens):
        raise ValueError(f"{where}: {len(tokens)} tokens but {len(logprobs)} log-prob positions")
    values = []
    for position, (token, candidates) in enumerate(zip(tokens, logprobs)):
        entry = candidates.get(token) if candidates is not None else None
        value = getattr(entry, "logprob", None)
        if value is None:
            raise ValueError(
                f"{where}: no log-prob for sampled token {token} at position {position}"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(
                f"{where}: log-prob {value} for sampled token {token} at position {position}"
            )
        values.append(value)
    return values


def is_truncated(
    finish_reason: str | None, tokens: Sequence[int], eos: frozenset[int], where: str
) -> bool:
    """True when the response was cut at the length limit rather than ended by eos."""
    if finish_reason == FINISHED_BY_STOP:
        return False
    if finish_reason == FINISHED_BY_LENGTH:
        return not (tokens and tokens[-1] in eos)
    raise ValueError(
        f"{where}: unexpected finish reason {finish_reason!r} (expected 'stop' or 'length'); "
        "the request was aborted or is unfinished"
    )


def _prompt_token_ids(request: Any, index: int) -> list[int]:
    ids = getattr(request, "prompt_token_ids", None)
    if ids is None:
        raise ValueError(f"request {index}: vLLM returned no prompt_token_ids")
    return [int(token) for token in ids]


def _completions(request: Any, n: int, index: int) -> list[Any]:
    """The request's completions ordered by their ``index`` (their position when absent)."""
    completions = list(request.outputs)
    if len(completions) != n:
        raise ValueError(
            f"request {index}: expected {n} completions, vLLM returned {len(completions)}"
        )
    order = sorted(range(n), key=lambda position: getattr(completions[position], "index", position))
    return [completions[position] for position in order]


# --- weights -------------------------------------------------------------------------------------


def vllm_weight_items(state_dict: Mapping[str, Tensor], config: Any) -> WeightItems:
    """The ``(name, tensor)`` pairs to hand to vLLM's ``model.load_weights``.

    Hugging Face parameter names pass unchanged: vLLM's Qwen2 / Llama ``load_weights`` take them
    and stack q/k/v and gate/up themselves (``stacked_params_mapping`` in
    vllm/model_executor/models/qwen2.py and llama.py). Dropped: wrapper prefixes
    (:func:`strip_wrapper_prefixes`), rotary-embedding buffers (``rotary_emb.inv_freq`` and
    friends, which vLLM computes and its loaders skip) and, when ``config`` ties the word
    embeddings, ``lm_head.weight`` (vLLM's loaders skip ``lm_head.`` then, as its head *is* the
    embedding). Tensors are detached, otherwise untouched (vLLM's weight loaders copy across dtype
    and device).

    Args:
        state_dict: e.g. the learner's ``model.state_dict()``.
        config: the model's config (a transformers ``PretrainedConfig`` or a ``config.json``
            mapping), read for ``tie_word_embeddings``.

    Raises ``ValueError`` if two names become one after the prefixes are stripped.
    """
    tied = tied_word_embeddings(config)
    items: WeightItems = []
    seen: dict[str, str] = {}
    for name, tensor in state_dict.items():
        clean = strip_wrapper_prefixes(name)
        if is_rotary_buffer(clean) or (tied and clean == "lm_head.weight"):
            continue
        if clean in seen:
            raise ValueError(f"state_dict names {seen[clean]!r} and {name!r} both map to {clean!r}")
        seen[clean] = name
        items.append((clean, tensor.detach()))
    return items


def strip_wrapper_prefixes(name: str) -> str:
    """``name`` without the components wrappers add: leading ``module.`` (DDP, repeated for nested
    wrapping) and ``_orig_mod.`` / ``_fsdp_wrapped_module.`` / ``_checkpoint_wrapped_module.``
    anywhere (torch.compile, FSDP, activation checkpointing)."""
    parts = name.split(".")
    while len(parts) > 1 and parts[0] in WRAPPER_COMPONENTS | {LEADING_WRAPPER}:
        parts = parts[1:]
    return ".".join(part for part in parts if part not in WRAPPER_COMPONENTS)


def is_rotary_buffer(name: str) -> bool:
    """Whether ``name`` belongs to a rotary embedding (``...rotary_emb.inv_freq`` etc.)."""
    return "rotary_emb" in name.split(".")


def tied_word_embeddings(config: Any) -> bool:
    """``tie_word_embeddings`` of a transformers config object or a ``config.json`` mapping
    (looked up in ``text_config`` too, for wrappers); raises ``ValueError`` if neither says."""
    for candidate in (config, _text_config(config)):
        if candidate is None:
            continue
        value = (
            candidate.get("tie_word_embeddings")
            if isinstance(candidate, Mapping)
            else getattr(candidate, "tie_word_embeddings", None)
        )
        if value is not None:
            return bool(value)
    raise ValueError(
        "the model config does not say whether word embeddings are tied (tie_word_embeddings); "
        "pass the transformers config of the model"
    )


def _text_config(config: Any) -> Any:
    if isinstance(config, Mapping):
        return config.get("text_config")
    return getattr(config, "text_config", None)


def chunk_weight_items(items: Sequence[tuple[str, Tensor]], max_bytes: int) -> list[WeightItems]:
    """``items`` in order, split into chunks of at most ``max_bytes`` (a larger tensor goes alone),
    so a weight sync never holds more than one chunk in flight."""
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    chunks: list[WeightItems] = []
    current: WeightItems = []
    size = 0
    for name, tensor in items:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append((name, tensor))
        size += nbytes
    if current:
        chunks.append(current)
    return chunks


class WeightSyncExtension:
    """Methods vLLM adds to each of its workers (``LLM(worker_extension_cls=WORKER_EXTENSION)``),
    called through ``LLM.collective_rpc``; ``self`` is the vLLM worker. The pattern is that of
    vLLM's RLHF example ``rlhf_utils.py`` (module docstring).
    """

    model_runner: Any  # provided by the vLLM worker this class is mixed into

    def ngrpo_load_weights(self, items: Sequence[Sequence[Any]]) -> int:
        """Loads Hugging Face ``(name, tensor)`` pairs into the worker's model; returns how many.

        A tensor-parallel worker receives whole tensors and keeps its shard (vLLM's weight
        loaders slice them).
        """
        pairs = [(str(name), tensor) for name, tensor in items]
        model = _runner_model(self.model_runner)
        model.load_weights(weights=pairs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return len(pairs)


def _runner_model(model_runner: Any) -> Any:
    get_model = getattr(model_runner, "get_model", None)
    return get_model() if callable(get_model) else model_runner.model


# --- engine options ------------------------------------------------------------------------------


def vllm_dtype(dtype: str | torch.dtype | None) -> str:
    """The ``dtype`` engine option for ours: None -> ``"auto"`` (the checkpoint's), else the name
    (``torch.bfloat16`` -> ``"bfloat16"``); float64 and unknown names raise ``ValueError``."""
    if dtype is None:
        return "auto"
    name = str(dtype).removeprefix("torch.")
    if name not in VLLM_DTYPES:
        raise ValueError(
            f"vLLM cannot run dtype {name!r}; use one of {', '.join(VLLM_DTYPES)} or None"
        )
    return name


def check_cuda_device(device: str | torch.device) -> None:
    """Accepts ``"cuda"`` and ``"cuda:0"``; vLLM places itself on the visible GPUs, so another
    index or a CPU device raises ``ValueError`` saying what to do instead."""
    parsed = torch.device(device)
    if parsed.type != "cuda":
        raise ValueError(
            f"the vLLM backend runs on CUDA GPUs, not {str(device)!r}; use generation_backend='hf' "
            "on CPU, or give generation workers a GPU (num_gpus_per_generation_worker > 0)"
        )
    if parsed.index not in (None, 0):
        raise ValueError(
            f"the vLLM backend uses the GPUs that are visible to it, starting with the first; to "
            f"run on {str(device)!r}, set CUDA_VISIBLE_DEVICES (Ray does so for GPU actors) and "
            "pass 'cuda'"
        )


def vllm_engine_kwargs(
    model_dir: str,
    *,
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.5,
    enable_sleep_mode: bool = False,
    max_model_len: int | None = None,
    batch_size: int | None = None,
    engine_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``
    (https://docs.vllm.ai/en/v0.10.2/configuration/engine_args.html).

    Sets ``logprobs_mode`` (:data:`LOGPROBS_MODE`) and ``worker_extension_cls``
    (:data:`WORKER_EXTENSION`), which the backend's contract depends on, so ``engine_kwargs`` may
    not override them (nor ``model``, ``tokenizer``, ``dtype``, ``seed``); ``batch_size`` (our
    sequences decoded together) becomes ``max_num_seqs``. Quantized engines are refused: a weight
    sync into one is not supported.
    """
    extra = dict(engine_kwargs or {})
    clashes = sorted(RESERVED_ENGINE_KWARGS & extra.keys())
    if clashes:
        raise ValueError(f"engine_kwargs may not set {clashes}: the vLLM backend sets them itself")
    if extra.get("quantization") is not None:
        raise ValueError("the vLLM backend syncs unquantized weights only; drop 'quantization'")
    if tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    kwargs: dict[str, Any] = {
        "model": model_dir,
        "tokenizer": model_dir,
        "dtype": vllm_dtype(dtype),
        "seed": int(seed),
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "enable_sleep_mode": enable_sleep_mode,
        "logprobs_mode": LOGPROBS_MODE,
        "worker_extension_cls": WORKER_EXTENSION,
    }
    if max_model_len is not None:
        if max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {max_model_len}")
        kwargs["max_model_len"] = max_model_len
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        kwargs["max_num_seqs"] = batch_size
    kwargs.update(extra)
    return kwargs


# --- the backend ---------------------------------------------------------------------------------


@backends.register("vllm")
class VLLMBackend(GenerationBackend):
    """Samples with an in-process ``vllm.LLM`` engine from a local Hugging Face directory.

    Args:
        model_name_or_path: a local model directory (``config.json`` and safetensors weights).
        device: ``"cuda"`` (or ``"cuda:0"``); vLLM uses the visible GPUs.
        dtype: weights' dtype; None keeps the checkpoint's.
        seed: seeds the engine's random stream (used by calls without ``params.seed``).
        tensor_parallel_size: GPUs the engine shards the model over.
        gpu_memory_utilization: fraction of the GPU vLLM may take (weights and KV cache); keep it
            below 1 minus what the learner needs when both share a GPU.
        enable_sleep_mode: allow :meth:`sleep` / :meth:`wake_up` (colocated placement).
        max_model_len: the longest prompt + response; None takes the model's.
        batch_size: the most sequences decoded together (vLLM's ``max_num_seqs``); the value the
            generation pool passes for the HF backend; None keeps vLLM's default.
        weight_chunk_bytes: the most bytes of weights sent per ``collective_rpc`` in a sync.
        **engine_kwargs: more ``vllm.LLM`` options (``enforce_eager``, ``enable_prefix_caching``).

    Raises ``ImportError`` (naming the extra to install) without vLLM >= 0.10.2.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        device: str | torch.device = "cuda",
        dtype: str | torch.dtype | None = None,
        seed: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        enable_sleep_mode: bool = False,
        max_model_len: int | None = None,
        batch_size: int | None = None,
        weight_chunk_bytes: int = DEFAULT_WEIGHT_CHUNK_BYTES,
        **engine_kwargs: Any,
    ) -> None:
        vllm = import_vllm()  # first, so a missing vLLM is reported before anything else
        if os.environ.get("VLLM_USE_V1") == "0":
            raise RuntimeError("the vLLM backend needs vLLM's V1 engine; unset VLLM_USE_V1=0")
        check_cuda_device(device)
        directory = str(check_model_dir(model_name_or_path))
        options = vllm_engine_kwargs(
            directory,
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=enable_sleep_mode,
            max_model_len=max_model_len,
            batch_size=batch_size,
            engine_kwargs=engine_kwargs,
        )
        tokenizer, hf_config, eos_token_ids = load_model_metadata(directory)
        llm = vllm.LLM(**options)
        self._attach(
            llm,
            sampling_params_class=vllm.SamplingParams,
            tokenizer=tokenizer,
            hf_config=hf_config,
            eos_token_ids=eos_token_ids,
            enable_sleep_mode=enable_sleep_mode,
            weight_chunk_bytes=weight_chunk_bytes,
        )

    def _attach(
        self,
        llm: Any,
        *,
        sampling_params_class: Callable[..., Any],
        tokenizer: Any,
        hf_config: Any,
        eos_token_ids: Iterable[int],
        enable_sleep_mode: bool,
        weight_chunk_bytes: int,
    ) -> None:
        """Sets the backend's state around an engine (the constructor's last step; tests attach a
        fake engine this way)."""
        if weight_chunk_bytes < 1:
            raise ValueError(f"weight_chunk_bytes must be >= 1, got {weight_chunk_bytes}")
        self.llm = llm
        self.tokenizer = tokenizer
        self.hf_config = hf_config
        self.eos_token_ids: list[int] = sorted(set(eos_token_ids))
        self.enable_sleep_mode = enable_sleep_mode
        self.weight_chunk_bytes = weight_chunk_bytes
        self._sampling_params_class = sampling_params_class
        self._asleep: set[str] = set()  # the sleeping memory tags: "weights", "kv_cache"
        self._weights_lost = False  # sleep(level=2) discarded the weights
        self._warned_truncated_logprobs = False

    def generate(self, prompts: list[str], params: SamplingParams) -> GenerationOutput:
        """``params.n`` samples per prompt, prompt-major; see :class:`GenerationOutput`."""
        self._require_awake("generate")
        if self._weights_lost:
            raise RuntimeError(
                "the weights were discarded by sleep(level=2); call load_state_dict first"
            )
        self._warn_if_logprobs_truncated(params)
        if not prompts:
            return GenerationOutput()
        base = to_vllm_sampling_kwargs(params)
        copies = prompt_copies(params)
        requests = [ids for ids in encode_prompts(self.tokenizer, prompts) for _ in range(copies)]
        sampling = [
            self._sampling_params_class(**{**base, "seed": seed})
            for seed in request_seeds(params.seed, len(requests))
        ]
        request_outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in requests],
            sampling_params=sampling,
            use_tqdm=False,
        )
        return outputs_from_vllm(
            request_outputs, base["n"], eos_token_ids=self.eos_token_ids, decode=self._decode
        )

    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Loads new weights into the running engine (names as in ``model.state_dict()``, any dtype
        or device), chunk by chunk through ``collective_rpc``, then resets the prefix cache."""
        if "weights" in self._asleep:
            raise RuntimeError(
                "the engine's weights are asleep; call wake_up(tags=['weights']) (or wake_up()) "
                "before load_state_dict"
            )
        items = vllm_weight_items(state_dict, self.hf_config)
        for chunk in chunk_weight_items(items, self.weight_chunk_bytes):
            payload = [(name, tensor.to("cpu").contiguous()) for name, tensor in chunk]
            self.llm.collective_rpc(SYNC_METHOD, args=(payload,))
        self.llm.reset_prefix_cache()
        self._weights_lost = False

    def sleep(self, level: int = 1) -> None:
        """Frees the engine's GPU memory while the learner trains: level 1 offloads the weights to
        CPU memory and drops the KV cache; level 2 drops both (the next :meth:`load_state_dict`
        restores the weights). See https://docs.vllm.ai/en/v0.10.2/features/sleep_mode.html."""
        if not self.enable_sleep_mode:
            raise RuntimeError("sleep needs a backend constructed with enable_sleep_mode=True")
        if level not in (1, 2):
            raise ValueError(f"sleep level must be 1 or 2, got {level}")
        self.llm.sleep(level=level)
        self._asleep = {"weights", "kv_cache"}
        self._weights_lost = self._weights_lost or level == 2

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Restores the engine's memory: all of it, or only ``tags`` (``"weights"`` first, to load
        new weights before the KV cache takes its memory back, as TRL's colocate mode does)."""
        if tags is None:
            self.llm.wake_up()
            self._asleep = set()
            return
        unknown = sorted(set(tags) - {"weights", "kv_cache"})
        if unknown:
            raise ValueError(f"unknown wake_up tags {unknown}; use 'weights' and/or 'kv_cache'")
        self.llm.wake_up(tags=list(tags))
        self._asleep -= set(tags)

    def _require_awake(self, action: str) -> None:
        if self._asleep:
            raise RuntimeError(
                f"cannot {action} while the engine sleeps ({sorted(self._asleep)}); call wake_up()"
            )

    def _warn_if_logprobs_truncated(self, params: SamplingParams) -> None:
        if logprobs_match_contract(params) or self._warned_truncated_logprobs:
            return
        self._warned_truncated_logprobs = True
        logger.warning(
            "vLLM backend with top_p=%s < 1: the returned log-probs are those of the top-p "
            "truncated, renormalised distribution, not log_softmax(logits / temperature); "
            "they are fine for evaluation but biased as the learner's old_logp "
            "(train with top_p=1)",
            params.top_p,
        )

    def _decode(self, token_ids: list[list[int]]) -> list[str]:
        return list(self.tokenizer.batch_decode(token_ids, skip_special_tokens=True))


def load_model_metadata(directory: str) -> tuple[Any, Any, list[int]]:
    """The tokenizer, the transformers config and the eos ids of a local model directory, read
    offline as :func:`ngrpo_rl.models.load_model` reads them (left padding, eos as pad if none).

    The eos ids are the tokenizer's and those of ``generation_config.json``: the tokens vLLM stops
    at.
    """
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    eos: set[int] = set()
    if tokenizer.eos_token_id is not None:
        eos.add(int(tokenizer.eos_token_id))
    if (Path(directory) / "generation_config.json").is_file():
        stored = GenerationConfig.from_pretrained(directory, local_files_only=True).eos_token_id
        eos.update([stored] if isinstance(stored, int) else list(stored or []))
    return tokenizer, config, sorted(eos)
