"""Throughput of the HF generation backend against bare ``model.generate``, and over batch sizes.

``run()`` samples ``num_prompts`` held-out arithmetic prompts ``n`` times each (one RL step's worth
of generation) with the default tiny model, twice per repeat and interleaved: through our backend
(``HFBackend.generate``: prompt encoding, the sampled tokens' log-probs, trimming at eos, decoding)
and through bare ``model.generate`` on the same model, prompt batches and sampling settings (no
log-probs, no decoding, inputs built beforehand). ``loop_vs_generate`` is the median over repeats
of our new tokens per second divided by bare generate's (eos included, padding excluded); it can
exceed 1, since our backend prefills each prompt once for its ``n`` samples where bare generate
prefills every row. A sweep over ``batch_size`` (sequences decoded together) follows. ``main()``
writes the JSON.

    .venv/bin/python benchmarks/generation_throughput.py
    .venv/bin/python benchmarks/generation_throughput.py --batch-sizes 16 64 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "generation_throughput.json"


def _prompts(num_prompts: int) -> list[str]:
    from ngrpo_rl.envs.arithmetic import ArithmeticTask
    from ngrpo_rl.envs.templates import render

    return [render("plain", p.problem) for p in ArithmeticTask(seed=0).problems("test", n=num_prompts)]


def _bare_batches(backend: Any, prompts: list[str], params: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The left-padded ``(input_ids, attention_mask)`` batches ``backend`` decodes for ``prompts``
    (each prompt ``params.n`` times, ``backend.batch_size`` sequences at most)."""
    from ngrpo_rl.models import encode_prompts

    ids = encode_prompts(backend.tokenizer, prompts)
    step = max(1, backend.batch_size // params.n)
    batches = []
    for start in range(0, len(ids), step):
        rows = [p for p in ids[start : start + step] for _ in range(params.n)]
        width = max(map(len, rows))
        input_ids = torch.tensor([[backend.pad_token_id] * (width - len(r)) + r for r in rows])
        padding = torch.tensor([width - len(r) for r in rows])
        batches.append((input_ids, (torch.arange(width)[None, :] >= padding[:, None]).long()))
    return batches


def _bare_generate(backend: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], params: Any) -> tuple[int, float]:
    """``(new tokens, seconds)`` of bare ``model.generate`` over ``batches`` with the sampling
    settings of ``params``: no log-probs, no decoding, inputs built beforehand; only the generate
    calls are timed. New tokens count eos and stop there, as our backend's do."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=params.max_new_tokens, do_sample=True, temperature=params.temperature,
        top_k=0, top_p=params.top_p, eos_token_id=backend.eos_token_ids,
        pad_token_id=backend.pad_token_id, use_cache=True,
    )
    outputs, seconds = [], 0.0
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed or 0)
        for input_ids, attention_mask in batches:
            started = time.perf_counter()
            out = backend.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
            seconds += time.perf_counter() - started
            outputs.append(out[:, input_ids.shape[1] :])
    eos = torch.tensor(backend.eos_token_ids)
    tokens = 0
    for new in outputs:
        ended = torch.isin(new, eos)
        tokens += int(torch.where(ended.any(1), ended.int().argmax(1) + 1, new.shape[1]).sum())
    return tokens, seconds


def compare_with_bare_generate(
    model_path: str, prompts: list[str], params: Any, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Our backend and bare generate, interleaved ``repeats`` times; medians and their ratio."""
    from ngrpo_rl.generation import HFBackend

    backend = HFBackend(model_path, batch_size=batch_size)
    batches = _bare_batches(backend, prompts, params)
    backend.generate(prompts[:2], params)  # warm-up
    _bare_generate(backend, batches[:1], params)
    ours, bare, ratios = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        output = backend.generate(prompts, params)
        ours_tps = sum(len(r) for r in output.response_token_ids) / (time.perf_counter() - started)
        bare_tokens, bare_seconds = _bare_generate(backend, batches, params)
        bare_tps = bare_tokens / bare_seconds
        ours.append(ours_tps)
        bare.append(bare_tps)
        ratios.append(ours_tps / bare_tps)
    return {
        "batch_size": batch_size,
        "sequences": len(prompts) * params.n,
        "loop_vs_generate": statistics.median(ratios),
        "ours_tokens_per_second_median": statistics.median(ours),
        "bare_generate_tokens_per_second_median": statistics.median(bare),
        "ratios_all": ratios,
    }


def sweep_batch_sizes(
    model_path: str, prompts: list[str], params: Any, batch_sizes: list[int], repeats: int
) -> list[dict[str, Any]]:
    """Our backend's throughput per ``batch_size``, the sizes interleaved within each repeat."""
    from ngrpo_rl.generation import HFBackend

    backends = {size: HFBackend(model_path, batch_size=size) for size in batch_sizes}
    for backend in backends.values():
        backend.generate(prompts[:2], params)  # warm-up
    seconds: dict[int, list[float]] = {size: [] for size in batch_sizes}
    outputs = {}
    for _ in range(repeats):
        for size, backend in backends.items():
            started = time.perf_counter()
            outputs[size] = backend.generate(prompts, params)
            seconds[size].append(time.perf_counter() - started)
    runs = []
    for size in batch_sizes:
        output, median = outputs[size], statistics.median(seconds[size])
        tokens = sum(len(r) for r in output.response_token_ids)
        runs.append({
            "batch_size": size,
            "sequences": len(output),
            "generated_tokens": tokens,
            "mean_response_tokens": tokens / len(output),
            "truncation_rate": sum(output.truncated) / len(output),
            "seconds_median": median,
            "seconds_all": seconds[size],
            "tokens_per_second": tokens / median,
            "sequences_per_second": len(output) / median,
        })
    return runs


def run(
    quick: bool = False,
    *,
    model: str | None = None,
    num_prompts: int = 64,
    n: int = 8,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    batch_size: int | None = None,
    batch_sizes: list[int] | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    """The measurements as a dict: ``loop_vs_generate`` (our backend's new tokens per second over
    bare ``model.generate``'s, median of interleaved repeats) at ``batch_size`` (default: the
    ``generation_batch_size`` setting's default), and ``runs``, the batch-size sweep. ``quick``
    takes fewer repeats and batch sizes."""
    from ngrpo_rl.algorithms.default_model import DEFAULT_MODEL, resolve_model_path

    from ngrpo_rl import settings
    from ngrpo_rl.generation import SamplingParams
    from ngrpo_rl.models import count_parameters, load_model

    model_path = resolve_model_path(model or DEFAULT_MODEL)
    prompts = _prompts(num_prompts)
    params = SamplingParams(n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=0)
    batch_size = batch_size or settings.get("generation_batch_size").default
    repeats = repeats or (3 if quick else 7)
    batch_sizes = batch_sizes or ([64, 512] if quick else [8, 32, 128, 512])
    comparison = compare_with_bare_generate(model_path, prompts, params, batch_size, repeats)
    return {
        "benchmark": "generation_throughput",
        "backend": "hf",
        "model": model_path,
        "num_parameters": count_parameters(load_model(model_path)[0]),
        "settings": {"num_prompts": num_prompts, "n": n, "max_new_tokens": max_new_tokens,
                     "temperature": temperature, "repeats": repeats, "quick": quick},
        "torch_threads": torch.get_num_threads(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        **comparison,
        "runs": sweep_batch_sizes(model_path, prompts, params, batch_sizes, max(3, repeats // 2)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the warm-started tiny model)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sequences decoded together for the comparison with bare generate "
                             "(default: the generation_batch_size default)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="the sweep's batch sizes (default 8 32 128 512)")
    parser.add_argument("--num-prompts", type=int, default=64, help="prompts per measured call")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="response length cap")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (median reported)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and batch sizes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(
        args.quick, model=args.model, num_prompts=args.num_prompts, n=args.n,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, batch_size=args.batch_size,
        batch_sizes=args.batch_sizes, repeats=args.repeats,
    )
    print(f"loop vs bare generate at batch_size={result['batch_size']}: {result['loop_vs_generate']:.3f} "
          f"({result['ours_tokens_per_second_median']:.0f} vs "
          f"{result['bare_generate_tokens_per_second_median']:.0f} new tokens/s)")
    for entry in result["runs"]:
        print(f"batch_size={entry['batch_size']:4d}  {entry['tokens_per_second']:8.0f} tokens/s  "
              f"{entry['sequences_per_second']:7.1f} sequences/s  "
              f"({entry['seconds_median']:.2f} s per {entry['sequences']} sequences)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
