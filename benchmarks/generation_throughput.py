"""Throughput of the HF generation backend with the default tiny model, for a few batch sizes.

Samples ``--num-prompts`` held-out arithmetic prompts ``--n`` times each (one RL step's worth of
generation) with different ``batch_size`` settings (sequences decoded together) and reports
generated tokens per second (eos included, padding excluded) and sequences per second. Writes JSON.

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

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="model directory (default: the warm-started tiny model)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[8, 32, 128, 512],
        help="sequences decoded together",
    )
    parser.add_argument("--num-prompts", type=int, default=64, help="prompts per measured call")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="response length cap")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per batch size (median reported)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--output",
        default=str(Path(__file__).parent / "results" / "generation_throughput.json"),
        help="where to write the JSON results",
    )
    args = parser.parse_args()

    from ngrpo_rl.algorithms.default_model import DEFAULT_MODEL, resolve_model_path
    from ngrpo_rl.envs.arithmetic import ArithmeticTask
    from ngrpo_rl.envs.templates import render

    from ngrpo_rl.generation import HFBackend, SamplingParams
    from ngrpo_rl.models import count_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = resolve_model_path(args.model or DEFAULT_MODEL)
    prompts = [
        render("plain", p.problem)
        for p in ArithmeticTask(seed=0).problems("test", n=args.num_prompts)
    ]
    params = SamplingParams(
        n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=0
    )

    runs = []
    for batch_size in args.batch_sizes:
        backend = HFBackend(model_path, batch_size=batch_size)
        backend.generate(prompts[: max(1, batch_size // args.n)], params)  # warm-up
        seconds, tokens = [], 0
        for _ in range(args.repeats):
            started = time.perf_counter()
            output = backend.generate(prompts, params)
            seconds.append(time.perf_counter() - started)
            tokens = sum(len(r) for r in output.response_token_ids)
        median = statistics.median(seconds)
        run = {
            "batch_size": batch_size,
            "sequences": len(output),
            "generated_tokens": tokens,
            "mean_response_tokens": tokens / len(output),
            "truncation_rate": sum(output.truncated) / len(output),
            "seconds_median": median,
            "seconds_all": seconds,
            "tokens_per_second": tokens / median,
            "sequences_per_second": len(output) / median,
        }
        runs.append(run)
        print(
            f"batch_size={batch_size:4d}  {run['tokens_per_second']:8.0f} tokens/s  "
            f"{run['sequences_per_second']:7.1f} sequences/s  "
            f"({median:.2f} s per {len(output)} sequences)",
            flush=True,
        )

    model = HFBackend(model_path).model
    result = {
        "benchmark": "generation_throughput",
        "backend": "hf",
        "model": model_path,
        "num_parameters": count_parameters(model),
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "torch_threads": torch.get_num_threads(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "runs": runs,
    }
    output_path = Path(args.output)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output_path}")


if __name__ == "__main__":
    main()
