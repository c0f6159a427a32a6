"""One-shot accelerator check: HF generation then learner steps on a random Qwen2.5-0.5B-shaped model.

    .venv/bin/python scripts/gpu_check.py                        # cuda, bf16, Qwen2.5-0.5B shape
    .venv/bin/python scripts/gpu_check.py --device cpu --size tiny --steps 2   # seconds, on a CPU

No download, no Ray, no vLLM (neither is ever imported; the report lists any that were). The
stages, each timed, each reported even when it fails:

1. ``setup``: checks the device (CUDA present, bf16 supported), then imports the project; versions.
2. ``build``: a randomly initialised ``Qwen2ForCausalLM`` of the chosen size and a ``tokenizers``
   word-level tokenizer with the model's full vocabulary (so every sampled id decodes), saved as a
   Hugging Face folder (safetensors) in a temporary directory.
3. ``generate``: ``ngrpo_rl.generation.HFBackend`` samples ``--group-size`` responses to each of
   ``--prompts`` arithmetic prompts (after a small warm-up call); generation tokens/s and peak memory.
4. ``batch``: a ``TrainingBatch`` of the samples with made-up 0/1 rewards (each group mixed) and
   GRPO advantages.
5. ``learner``: ``ngrpo_rl.learner.Learner`` loads the folder (``gradient_checkpointing=True`` when
   the settings have that field).
6. ``logprob_gap``: before any update, the learner's log-probs of the sampled responses
   (``response_logprobs`` over ``pad_batch``) against the sampler's: max and mean absolute gap over
   response tokens.
7. ``learn``: ``--steps`` calls of ``Learner.update`` (one optimizer step each): losses, gradient
   norms, median step time, learner tokens/s, peak memory, and the fraction of weights that moved.

The report is one JSON object on stdout (``--out`` also writes it, and rewrites it after every
stage, so a killed run still leaves what it measured); progress goes to stderr. ``ok`` is true when
every stage ran, the losses and gradient norms are finite, the log-prob gap is within
``GAP_BOUNDS`` and neither Ray nor vLLM got imported; otherwise ``reasons`` says why and the exit
status is 1. ``--time-limit`` (and SIGTERM) stop the run with a report (stages not reached are
"skipped") before an outer timeout would kill it silently.

Log-prob gap bounds (``GAP_BOUNDS``): the sampler computes each token's log-prob incrementally with
the KV cache, the learner in one teacher-forced pass over the whole sequence; different kernels
and reduction orders give slightly different logits. In float32 the two agree to ~1e-6, so the
bounds there (max 1e-3, mean 1e-4) fail only on a real mismatch. bfloat16 keeps 8 significant
bits (relative rounding up to 2**-9), and the rounding differences compound over the layers: mean
gaps of ~1e-3 to 1e-2 and a rare token at ~0.1 to 1 are normal (the rollout/training mismatch
that verl and vLLM users report), so the bounds are loose: mean <= 0.05, max <= 1.0 (float16, with
3 more mantissa bits: 0.02 and 0.5). What they catch is a misalignment bug (wrong position ids, a
token off by one, a wrong temperature), which moves every log-prob by about the spread of the
log-probs themselves; the report gives that spread (``sampler_logprob_std``: about 0.8 nats for the
random 0.5B model) and warns when it is too small for the mean bound to tell the two apart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import string
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FORBIDDEN_MODULES = frozenset({"ray", "vllm"})
"""Top-level packages this script must never import."""

QWEN25_CARD = "https://huggingface.co/Qwen/Qwen2.5-0.5B (model card and config.json)"


@dataclass(frozen=True)
class ModelSize:
    """The architecture of one ``--size`` and the run defaults that suit it.

    The architecture fields are ``Qwen2Config`` arguments; ``expected_parameters`` (when known) is
    checked against the built model; ``defaults`` fill the flags left unset.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rope_theta: float
    rms_norm_eps: float
    eos_token_id: int
    expected_parameters: int | None
    defaults: dict[str, int]
    source: str


SIZES: dict[str, ModelSize] = {
    # Qwen/Qwen2.5-0.5B's config.json (base model): Qwen2ForCausalLM, hidden 896, 24 layers, 14
    # query heads and 2 key/value heads (GQA), SwiGLU width 4864, vocabulary 151936 (151665 tokens
    # in use, padded), tied embeddings, RoPE theta 1e6, RMSNorm eps 1e-6, 32768 positions, no
    # sliding window, bos = eos = 151643 (<|endoftext|>). The card: 0.49B parameters (0.36B
    # non-embedding), which is 494,032,768 exactly (attention q/k/v have biases).
    "qwen2.5-0.5b": ModelSize(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        eos_token_id=151643,
        expected_parameters=494_032_768,
        defaults={"prompts": 16, "group_size": 8, "max_new_tokens": 256, "steps": 4,
                  "micro_batch_size": 16},
        source=QWEN25_CARD,
    ),
    # The same architecture (GQA, biases on q/k/v, tied embeddings, RoPE 1e6) at a size a CPU test
    # runs in seconds.
    "tiny": ModelSize(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        eos_token_id=511,
        expected_parameters=None,
        defaults={"prompts": 4, "group_size": 4, "max_new_tokens": 12, "steps": 2,
                  "micro_batch_size": 8},
        source="a scaled-down Qwen2 (this script)",
    ),
}

GAP_BOUNDS: dict[str, dict[str, float]] = {
    "float64": {"max": 1e-3, "mean": 1e-4},
    "float32": {"max": 1e-3, "mean": 1e-4},
    "float16": {"max": 0.5, "mean": 0.02},
    "bfloat16": {"max": 1.0, "mean": 0.05},
}
"""Bounds on the absolute sampler-vs-learner log-prob gap over response tokens, by dtype (see the
module docstring for why bfloat16's are loose)."""

EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<|unk|>"
CHARACTERS = "\n" + "".join(c for c in string.printable if c not in "\t\r\x0b\x0c\n")


class TimeLimitExceeded(BaseException):
    """Raised by the SIGALRM / SIGTERM handlers: the run stops, the report is still written."""


# ---- progress and the report ---------------------------------------------------------------------

_STARTED = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since start."""
    print(f"[gpu_check {time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def forbidden_imports() -> list[str]:
    """The loaded modules of Ray or vLLM (this script must load none)."""
    return sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN_MODULES)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def gigabytes(num_bytes: int) -> float:
    return round(num_bytes / 1e9, 3)


class Report:
    """The JSON report: top-level figures, a record per stage, and ``--out`` rewritten after each."""

    def __init__(self, out: Path | None) -> None:
        self.data: dict[str, Any] = {"ok": False, "reasons": [], "warnings": [], "stages": {}}
        self.out = out

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def update(self, values: dict[str, Any]) -> None:
        self.data.update(values)

    def warn(self, message: str) -> None:
        log(f"warning: {message}")
        self.data["warnings"].append(message)

    def run_stage(self, name: str, needs: tuple[str, ...], fn: Callable[[], None]) -> bool:
        """Runs ``fn`` as stage ``name`` unless a stage in ``needs`` did not finish; records its
        status and seconds, and the error (type, message, last traceback lines) if it raised.
        ``TimeLimitExceeded`` and ``KeyboardInterrupt`` are recorded and propagate."""
        missing = [n for n in needs if self.data["stages"].get(n, {}).get("status") != "ok"]
        if missing:
            self.data["stages"][name] = {"status": "skipped", "reason": f"needs {', '.join(missing)}"}
            self.write()
            return False
        log(f"stage {name} ...")
        started = time.perf_counter()
        record: dict[str, Any] = {"status": "running"}
        self.data["stages"][name] = record
        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
                fn()
            record["status"] = "ok"
        except (TimeLimitExceeded, KeyboardInterrupt) as error:
            record.update(status="interrupted", error=f"{type(error).__name__}: {error}")
            raise
        except Exception as error:  # noqa: BLE001 - every failure is reported; later stages skip
            record.update(
                status="error",
                error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc().splitlines()[-12:],
            )
            log(f"stage {name} failed: {type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stderr)
        finally:
            record["seconds"] = round(time.perf_counter() - started, 3)
            self.write()
        log(f"stage {name} {record['status']} in {record['seconds']:.1f}s")
        return record["status"] == "ok"

    def skip_rest(self, names: list[str], reason: str) -> None:
        for name in names:
            self.data["stages"].setdefault(name, {"status": "skipped", "reason": reason})

    def dumps(self) -> str:
        """The report as strict JSON: NaN and infinities become the strings "nan", "inf", "-inf"."""
        return json.dumps(strict_json(self.data), indent=2, default=str, allow_nan=False)

    def write(self) -> None:
        """Writes the report to ``--out`` atomically (no-op without ``--out``); a failed write is
        logged, never raised (stdout still gets the report)."""
        if self.out is None:
            return
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            staging = self.out.with_name(f".{self.out.name}.tmp")
            staging.write_text(self.dumps() + "\n")
            os.replace(staging, self.out)
        except OSError as error:
            log(f"could not write {self.out}: {error}")


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


# ---- the model and the tokenizer -----------------------------------------------------------------


def build_tokenizer(size: ModelSize) -> Any:
    """A ``PreTrainedTokenizerFast`` over the model's whole vocabulary, built in code.

    Ids 0-95 are newline and printable ASCII (prompts are encoded one token per character), id 96
    is ``<|unk|>``, ``size.eos_token_id`` is ``<|endoftext|>`` (eos and pad, as in Qwen2.5's base
    tokenizer), every other id a filler word ``<|tN|>``, so any sampled id decodes. No bos is
    added to prompts (Qwen2.5 adds none).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = [f"<|t{i}|>" for i in range(size.vocab_size)]
    for index, character in enumerate(CHARACTERS):
        tokens[index] = character
    tokens[len(CHARACTERS)] = UNK_TOKEN
    if size.eos_token_id <= len(CHARACTERS) or size.eos_token_id >= size.vocab_size:
        raise ValueError(f"eos id {size.eos_token_id} collides with the characters or is out of range")
    tokens[size.eos_token_id] = EOS_TOKEN
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([EOS_TOKEN, UNK_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def build_model(size: ModelSize, dtype: torch.dtype, seed: int) -> Any:
    """A randomly initialised ``Qwen2ForCausalLM`` of ``size`` in ``dtype`` (on the CPU, eval mode)."""
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    config = Qwen2Config(
        vocab_size=size.vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        hidden_act="silu",
        max_position_embeddings=size.max_position_embeddings,
        initializer_range=0.02,
        rms_norm_eps=size.rms_norm_eps,
        rope_theta=size.rope_theta,  # transformers 5 moves it into rope_parameters
        tie_word_embeddings=True,
        use_sliding_window=False,
        sliding_window=size.max_position_embeddings,
        max_window_layers=size.num_hidden_layers,
        attention_dropout=0.0,
        bos_token_id=size.eos_token_id,
        eos_token_id=size.eos_token_id,
        pad_token_id=size.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    special = {"bos_token_id": size.eos_token_id, "eos_token_id": size.eos_token_id,
               "pad_token_id": size.eos_token_id}
    model.generation_config = GenerationConfig(**special)
    return model.eval()


def rope_theta_of(config: Any) -> float | None:
    """The RoPE base a config ended up with (``rope_theta`` or, in transformers 5, ``rope_parameters``)."""
    parameters = getattr(config, "rope_parameters", None)
    if isinstance(parameters, dict) and "rope_theta" in parameters:
        return float(parameters["rope_theta"])
    theta = getattr(config, "rope_theta", None)
    return float(theta) if theta is not None else None


def make_prompts(count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` arithmetic questions and their answers (about 60 characters = tokens each)."""
    import random

    rng = random.Random(seed)
    prompts, golds = [], []
    for _ in range(count):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        prompts.append(f"Question: what is {a} + {b}? Think step by step, then answer.\nAnswer:")
        golds.append(str(a + b))
    return prompts, golds


def made_up_rewards(num_groups: int, group_size: int, seed: int) -> torch.Tensor:
    """0/1 rewards ``[N]``, random but with a correct and a wrong response in every group (so every
    group has nonzero advantages)."""
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.bernoulli(torch.full((num_groups, group_size), 0.5), generator=generator)
    rewards[:, 0] = 1.0
    rewards[:, 1] = 0.0
    return rewards.flatten()


# ---- the check -----------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: str) -> float | None:
    return gigabytes(torch.cuda.max_memory_allocated(device)) if device.startswith("cuda") else None


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raises ``TimeLimitExceeded`` in the main thread after ``seconds`` (SIGALRM) or on SIGTERM,
    so an outer timeout still gets the report. A no-op for the alarm where SIGALRM is missing."""
    def stop(signum: int, frame: Any) -> None:
        raise TimeLimitExceeded(f"{signal.Signals(signum).name} after {time.perf_counter() - _STARTED:.0f}s")

    previous_term = signal.signal(signal.SIGTERM, stop)
    has_alarm = hasattr(signal, "SIGALRM") and seconds > 0
    if has_alarm:
        previous_alarm = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if has_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_alarm)
        signal.signal(signal.SIGTERM, previous_term)


class Check:
    """The stages of one run; each stage keeps what the next ones need on ``self``."""

    def __init__(self, args: argparse.Namespace, report: Report) -> None:
        self.args = args
        self.report = report
        self.size = SIZES[args.size]
        self.device: str = args.device
        self.dtype_name: str = args.dtype
        self.workdir: Path | None = None
        self.state: dict[str, Any] = {}
        self.stage_peaks: list[float] = []

    # -- stages ------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Device facts, then the project's imports (a syntax error there is a report, not a crash)."""
        self.report.update({
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda,
            "python_version": platform.python_version(),
        })
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise RuntimeError(f"--device {self.device} but torch.cuda.is_available() is False "
                                   f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
            torch.cuda.init()
            self.report["device_name"] = torch.cuda.get_device_name(self.device)
            props = torch.cuda.get_device_properties(self.device)
            self.report["device_memory_gb"] = gigabytes(props.total_memory)
            if self.dtype_name == "bfloat16" and not torch.cuda.is_bf16_supported():
                raise RuntimeError(f"{self.report['device_name']} does not support bfloat16")
        else:
            self.report["device_name"] = platform.processor() or platform.machine()

        import transformers

        # Imported here so that a broken project file is a failed setup stage in the report.
        import ngrpo_rl.batch
        import ngrpo_rl.generation
        import ngrpo_rl.learner
        import ngrpo_rl.settings

        self.report.update({
            "transformers_version": transformers.__version__,
            "gradient_checkpointing_setting_exists": (
                "gradient_checkpointing" in ngrpo_rl.settings.FIELD_NAMES
            ),
        })
        log(f"device {self.report['device_name']}, torch {torch.__version__}, "
            f"transformers {transformers.__version__}")

    def build(self) -> None:
        """The random model and the tokenizer, saved as a Hugging Face folder (safetensors)."""
        from ngrpo_rl.models import count_parameters, save_model

        self.workdir = Path(tempfile.mkdtemp(prefix="gpu_check-", dir=self.args.workdir))
        tokenizer = build_tokenizer(self.size)
        if len(tokenizer) != self.size.vocab_size:
            raise RuntimeError(f"the tokenizer has {len(tokenizer)} tokens, not {self.size.vocab_size}")
        model = build_model(self.size, getattr(torch, self.dtype_name), self.args.seed)
        parameters = count_parameters(model)
        config = model.config
        self.report.update({
            "parameter_count": parameters,
            "model": {
                "architecture": type(model).__name__,
                "source": self.size.source,
                "hidden_size": config.hidden_size,
                "num_hidden_layers": config.num_hidden_layers,
                "num_attention_heads": config.num_attention_heads,
                "num_key_value_heads": config.num_key_value_heads,
                "intermediate_size": config.intermediate_size,
                "vocab_size": config.vocab_size,
                "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
                "rope_theta": rope_theta_of(config),
                "max_position_embeddings": config.max_position_embeddings,
            },
        })
        expected = self.size.expected_parameters
        if expected is not None and parameters != expected:
            self.report.warn(f"the model has {parameters} parameters, the card's config gives {expected}")
        if rope_theta_of(config) != self.size.rope_theta:
            self.report.warn(f"rope theta is {rope_theta_of(config)}, not {self.size.rope_theta}")
        path = self.workdir / "model"
        save_model(model, tokenizer, path)
        self.state["model_path"] = str(path)
        log(f"built {parameters:,} parameters ({self.dtype_name}) and saved to {path}")

    def generate(self) -> None:
        """Samples ``group_size`` responses per prompt with ``HFBackend``; tokens/s, peak memory."""
        from ngrpo_rl.generation import HFBackend, SamplingParams

        args = self.args
        backend = HFBackend(self.state["model_path"], device=self.device, dtype=self.dtype_name,
                            seed=args.seed)
        self.report["attention_implementation"] = getattr(backend.model.config, "_attn_implementation", None)
        prompts, golds = make_prompts(args.prompts, args.seed)
        # Warm-up: first-call CUDA context, kernels and allocator growth stay out of the timing.
        backend.generate(prompts[:1], SamplingParams(n=2, max_new_tokens=4, seed=args.seed))
        params = SamplingParams(n=args.group_size, max_new_tokens=args.max_new_tokens,
                                temperature=1.0, seed=args.seed + 1)
        reset_peak(self.device)
        synchronize(self.device)
        started = time.perf_counter()
        output = backend.generate(prompts, params)
        synchronize(self.device)
        seconds = time.perf_counter() - started
        tokens = sum(len(r) for r in output.response_token_ids)
        peak = peak_gb(self.device)
        if peak is not None:
            self.stage_peaks.append(peak)
        self.report["generation"] = {
            "sequences": len(output),
            "generated_tokens": tokens,
            "seconds": round(seconds, 3),
            "truncated_fraction": sum(output.truncated) / max(len(output), 1),
            "mean_response_tokens": tokens / max(len(output), 1),
            "mean_prompt_tokens": sum(map(len, output.prompt_token_ids)) / max(len(output), 1),
            "peak_memory_gb": peak,
        }
        self.report["generation_tokens_per_s"] = round(tokens / seconds, 1)
        self.state.update(output=output, golds=golds)
        del backend
        self.free()
        log(f"generated {tokens} tokens in {seconds:.2f}s ({tokens / seconds:.0f} tokens/s)")

    def batch(self) -> None:
        """The samples as a ``TrainingBatch`` with made-up rewards and GRPO advantages."""
        from ngrpo_rl import advantages
        from ngrpo_rl.batch import TrainingBatch

        args, output = self.args, self.state["output"]
        rewards = made_up_rewards(args.prompts, args.group_size, args.seed)
        correct = rewards > 0.5
        batch = TrainingBatch(
            problem_ids=[f"p{i // args.group_size}" for i in range(len(output))],
            golds=[g for g in self.state["golds"] for _ in range(args.group_size)],
            prompt_token_ids=output.prompt_token_ids,
            response_token_ids=output.response_token_ids,
            old_logprobs=output.response_logprobs,
            texts=output.texts,
            truncated=output.truncated,
            correct=correct,
            scores=rewards,
            rewards=rewards,
            reasons=["correct" if c else "wrong" for c in correct.tolist()],
            group_size=args.group_size,
        )
        settings = self.settings()
        estimate = advantages.compute(settings.advantage_estimator, batch.grouped(batch.rewards),
                                      **settings.component_params("advantage_estimator"))
        self.state["batch"] = batch.with_fields(advantages=estimate.flatten())
        self.report["reward_mean"] = float(rewards.mean())

    def learner(self) -> None:
        """Loads the learner (the policy in ``dtype``, AdamW) from the saved folder."""
        from ngrpo_rl.learner import Learner

        settings = self.settings()
        self.report["settings"] = {
            k: getattr(settings, k)
            for k in ("dtype", "device", "lr", "micro_batch_size", "group_size", "max_new_tokens",
                      "advantage_estimator", "policy_loss", "loss_agg_mode", "grad_clip", "kl_coef")
        }
        learner = Learner(settings, model_path=self.state["model_path"], device=self.device)
        flag = ("is_activation_checkpointing" if hasattr(type(learner.model), "is_activation_checkpointing")
                else "is_gradient_checkpointing")  # the name transformers 5 uses, else the old one
        active = bool(getattr(learner.model, flag, False))
        requested = bool(self.args.gradient_checkpointing)
        self.report["gradient_checkpointing"] = {
            "requested": requested,
            "setting_exists": self.report.data.get("gradient_checkpointing_setting_exists", False),
            "active_on_learner_model": active,
        }
        if requested and not active:
            self.report.warn("gradient_checkpointing was requested but the learner's model does not "
                             "have it enabled (the Settings field is missing or the learner ignores it)")
        self.state["learner"] = learner

    def logprob_gap(self) -> None:
        """The learner's log-probs of the samples, before any update, against the sampler's."""
        from ngrpo_rl.models.forward import pad_batch, response_logprobs

        learner, batch = self.state["learner"], self.state["batch"]
        padded = pad_batch(batch.prompt_token_ids, batch.response_token_ids,
                           learner.tokenizer.pad_token_id, device=self.device)
        size = self.args.micro_batch_size
        parts = []
        with torch.no_grad():
            for start in range(0, padded["input_ids"].shape[0], size):
                micro = {k: v[start : start + size] for k, v in padded.items()}
                parts.append(response_logprobs(learner.model, micro, 1.0).float().cpu())
        learner_logp = torch.cat(parts)
        sampler_logp = batch.padded_old_logprobs()
        mask = batch.response_mask().bool()
        gap = (learner_logp - sampler_logp).abs()[mask]
        sampled = sampler_logp[mask]
        bounds = GAP_BOUNDS[self.dtype_name]
        self.report.update({
            "logprob_gap_max": float(gap.max()),
            "logprob_gap_mean": float(gap.mean()),
            "logprob_gap_bounds": bounds,
            "logprob_gap_tokens": int(mask.sum()),
            "sampler_logprob_mean": float(sampled.mean()),
            "sampler_logprob_std": float(sampled.std()) if sampled.numel() > 1 else 0.0,
        })
        self.state["learner_tokens_per_step"] = int(padded["attention_mask"].sum())
        if self.report.data["sampler_logprob_std"] < 4 * bounds["mean"]:
            self.report.warn("the sampled log-probs vary too little for the mean gap bound to detect a "
                             "misaligned log-prob (the model's distribution is nearly uniform)")
        log(f"log-prob gap max {gap.max():.3g}, mean {gap.mean():.3g} over {int(mask.sum())} tokens")

    def learn(self) -> None:
        """``--steps`` learner updates: losses, gradient norms, step time, tokens/s, peak memory."""
        learner, batch = self.state["learner"], self.state["batch"]
        # A CPU copy, so that the snapshot stays out of the learner's peak memory.
        before = [p.detach().to("cpu", copy=True) for p in learner.model.parameters()]
        reset_peak(self.device)
        step_seconds: list[float] = []
        losses: list[float] = []
        grad_norms: list[float] = []
        first: dict[str, float] = {}
        self.report.update({"losses": losses, "grad_norms": grad_norms, "learner_step_seconds": step_seconds})
        for step in range(self.args.steps):
            synchronize(self.device)
            started = time.perf_counter()
            metrics = learner.update(batch)
            synchronize(self.device)
            step_seconds.append(round(time.perf_counter() - started, 4))
            losses.append(float(metrics["losses/total"]))
            grad_norms.append(float(metrics["optim/grad_norm"]))
            if step == 0:
                first = metrics
            log(f"step {step + 1}/{self.args.steps}: loss {losses[-1]:.4g}, grad norm "
                f"{grad_norms[-1]:.4g}, {step_seconds[-1]:.2f}s")
            self.report.write()
        changed = total = 0
        with torch.no_grad():
            for old, new in zip(before, learner.model.parameters()):
                changed += int((old != new.detach().cpu()).sum())
                total += old.numel()
        del before
        median = statistics.median(step_seconds)
        tokens = self.state["learner_tokens_per_step"] * learner.settings.num_epochs
        peak = peak_gb(self.device)
        if peak is not None:
            self.stage_peaks.append(peak)
        self.report.update({
            "learner_tokens_note": "prompt + response tokens per update, padding excluded",
            "learner_step_seconds_median": round(median, 4),
            "learner_tokens_per_step": tokens,
            "learner_tokens_per_s": round(tokens / median, 1),
            "learner_peak_memory_gb": peak,
            "learner_optimizer_steps": int(learner.num_updates),
            "first_update": {k: float(first[k]) for k in ("ratio/min", "ratio/max", "ratio/mean",
                                                          "policy/entropy", "clip/upper_frac",
                                                          "clip/lower_frac") if k in first},
            "param_update_fraction": changed / max(total, 1),
        })
        if self.report.data["param_update_fraction"] < 0.5:
            self.report.warn(
                f"only {self.report.data['param_update_fraction']:.2%} of the weights changed after "
                f"{self.args.steps} AdamW steps at lr {learner.settings.lr:g}: in {self.dtype_name} an "
                "update smaller than half a unit in the last place of a weight is rounded away"
            )

    # -- helpers -----------------------------------------------------------------------------------

    def settings(self) -> Any:
        """The learner's ``Settings`` (``gradient_checkpointing`` only if the field exists)."""
        from ngrpo_rl.settings import FIELD_NAMES, Settings

        args = self.args
        values: dict[str, Any] = {
            "dtype": self.dtype_name,
            "device": self.device,
            "group_size": args.group_size,
            "max_new_tokens": args.max_new_tokens,
            "micro_batch_size": args.micro_batch_size,
            "lr": args.lr,
            "temperature": 1.0,
            "advantage_estimator": "grpo",
            "seed": args.seed,
        }
        if "gradient_checkpointing" in FIELD_NAMES:
            values["gradient_checkpointing"] = bool(args.gradient_checkpointing)
        return Settings(**{k: v for k, v in values.items() if k in FIELD_NAMES})

    def free(self) -> None:
        import gc

        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def cleanup(self) -> None:
        self.state.clear()
        self.free()
        if self.workdir is not None and not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the verdict -------------------------------------------------------------------------------

    def verdict(self) -> None:
        """Sets ``ok`` and ``reasons`` from the stages, the losses and the log-prob gap."""
        data = self.report.data
        reasons: list[str] = data["reasons"]
        for name, record in data["stages"].items():
            if record.get("status") != "ok":
                reasons.append(f"stage {name} {record.get('status')}: "
                               f"{record.get('error') or record.get('reason', '')}".rstrip(": "))
        losses, grad_norms = data.get("losses", []), data.get("grad_norms", [])
        learn_status = data["stages"].get("learn", {}).get("status", "skipped")
        if learn_status != "skipped" and len(losses) < self.args.steps:
            reasons.append(f"only {len(losses)} of {self.args.steps} learner steps ran")
        if any(not finite(x) for x in losses):
            reasons.append(f"non-finite loss: {losses}")
        if any(not finite(x) for x in grad_norms):
            reasons.append(f"non-finite gradient norm: {grad_norms}")
        if "logprob_gap_max" in data:
            bounds = GAP_BOUNDS[self.dtype_name]
            gap_max, gap_mean = data["logprob_gap_max"], data["logprob_gap_mean"]
            if not (finite(gap_max) and gap_max <= bounds["max"]):
                reasons.append(f"log-prob gap max {gap_max:.3g} above {bounds['max']:g} ({self.dtype_name})")
            if not (finite(gap_mean) and gap_mean <= bounds["mean"]):
                reasons.append(
                    f"log-prob gap mean {gap_mean:.3g} above {bounds['mean']:g} ({self.dtype_name})"
                )
        imported = forbidden_imports()
        data["imported_ray_or_vllm"] = imported
        if imported:
            reasons.append(f"Ray or vLLM was imported: {imported[:5]}")
        data["peak_memory_gb"] = max(self.stage_peaks) if self.stage_peaks else None
        data["ok"] = not reasons


STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("setup", ()),
    ("build", ("setup",)),
    ("generate", ("build",)),
    ("batch", ("generate",)),
    ("learner", ("batch",)),
    ("logprob_gap", ("learner",)),
    ("learn", ("logprob_gap",)),
)
"""Each stage and the stages it needs (a method of ``Check`` of the same name)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def by_size(name: str) -> str:
        return "default: " + ", ".join(f"{s.defaults[name]} for {k}" for k, s in sorted(SIZES.items()))

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--size", choices=sorted(SIZES), default="qwen2.5-0.5b",
                        help="model shape: Qwen2.5-0.5B's, or a tiny one of the same architecture "
                             "(default: qwen2.5-0.5b)")
    parser.add_argument("--dtype", choices=sorted(GAP_BOUNDS), default=None,
                        help="model dtype (default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"learner updates, one optimizer step each ({by_size('steps')})")
    parser.add_argument("--prompts", type=int, default=None, help=f"prompts per batch ({by_size('prompts')})")
    parser.add_argument("--group-size", type=int, default=None,
                        help=f"responses per prompt G ({by_size('group_size')})")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"most tokens per response ({by_size('max_new_tokens')})")
    parser.add_argument("--micro-batch-size", type=int, default=None,
                        help=f"sequences per learner forward/backward ({by_size('micro_batch_size')})")
    parser.add_argument("--lr", type=float, default=1e-6,
                        help="AdamW learning rate (default: 1e-6, the Settings default)")
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false",
                        help="do not ask the learner for gradient checkpointing (asked by default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, prompts and sampling (default: 0)")
    parser.add_argument("--time-limit", type=float, default=480.0,
                        help="seconds before the run stops and reports what it has (0 = none; default: 480)")
    parser.add_argument("--workdir", default=None,
                        help="where the temporary model folder goes (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary model folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    for name, value in size.defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    for name in ("steps", "prompts", "max_new_tokens", "micro_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.group_size < 2:
        parser.error("--group-size must be >= 2 (GRPO advantages need a group)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the check; prints the JSON report; returns 0 when ``ok``, else 1."""
    args = parse_args(argv)
    report = Report(args.out)
    report.update({
        "script": "scripts/gpu_check.py",
        "device": args.device,
        "size": args.size,
        "dtype": args.dtype,
        "run": {k: getattr(args, k) for k in ("prompts", "group_size", "max_new_tokens", "steps",
                                                "micro_batch_size", "lr", "seed")},
    })
    check = Check(args, report)
    try:
        with time_limit(args.time_limit):
            for name, needs in STAGES:
                report.run_stage(name, needs, getattr(check, name))
    except (TimeLimitExceeded, KeyboardInterrupt) as error:
        log(f"stopped: {type(error).__name__}: {error}")
        report.skip_rest([name for name, _ in STAGES], f"not reached: {type(error).__name__}")
    finally:
        try:
            check.cleanup()
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the report
            report.warn(f"cleanup failed: {type(error).__name__}: {error}")
        report["total_seconds"] = round(time.perf_counter() - _STARTED, 2)
        check.verdict()
        report.write()
        print(report.dumps(), flush=True)
        log("ok" if report.data["ok"] else f"NOT ok: {report.data['reasons']}")
    return 0 if report.data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
