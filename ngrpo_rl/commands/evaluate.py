"""``ngrpo-rl eval MODEL BENCHMARK``: pass@k and the Pass@k AUC of a model on a benchmark.

    ngrpo-rl eval runs/ngrpo-20250101-120000 arithmetic --n 16 --max-new-tokens 8 --out eval.json
    ngrpo-rl eval Qwen/Qwen2.5-Math-1.5B math500 --backend vllm --out math500.json

MODEL is a Hugging Face folder, a Hub id in the local cache (nothing is downloaded), a checkpoint
folder (its learner/policy) or the run folder of ngrpo-rl train (its last checkpoint). The defaults
are the NGRPO paper's protocol: n = 256 samples per problem, temperature 0.6, top_p 0.95, 4096 new
tokens, the paper's prompt, pass@k for k = 1, 2, 4, ..., n and the AUC of those. The JSON report
({"per_problem", "pass_at_k", "auc", "settings"}) goes to --out, or to stdout without it.
"""

from __future__ import annotations

import argparse
import sys

HELP = "evaluate a model's pass@k and Pass@k AUC on a benchmark (the paper's protocol by default)"

# The paper's protocol; ngrpo_rl.evaluation.EvaluationProtocol holds the same defaults (a test
# checks them), written here so that --help needs no torch import.
DEFAULTS = {"n": 256, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 4096, "seed": 0, "batch_size": 8}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ngrpo_rl.benchmark_sets import benchmark_names

    parser.add_argument(
        "model",
        help="a Hugging Face model folder, a Hub id in the local cache, a checkpoint folder, the "
        "run folder of ngrpo-rl train (its last checkpoint), or ngrpo_rl/tiny-arithmetic",
    )
    parser.add_argument(
        "benchmark",
        help=f"{' | '.join(benchmark_names())}, or the path of a .jsonl / .json / .parquet file",
    )
    parser.add_argument("--out", help="write the JSON report here (default: print it)")
    parser.add_argument("--n", type=int, default=DEFAULTS["n"], help="samples per problem (default 256)")
    parser.add_argument("--temperature", type=float, default=DEFAULTS["temperature"], help="default 0.6")
    parser.add_argument("--top-p", type=float, default=DEFAULTS["top_p"], help="default 0.95")
    parser.add_argument(
        "--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"], help="default 4096"
    )
    parser.add_argument(
        "--ks", help="comma-separated ks to report, each <= --n (default: 1, 2, 4, ... up to n)"
    )
    parser.add_argument("--num-problems", type=int, help="only the first this many problems")
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"],
        help="sampling seed (default 0); the same seed and --batch-size give the same report",
    )
    parser.add_argument(
        "--prompt-template",
        help="a registered prompt template (official, plain, chat, boxed; default: the "
        "benchmark's, the paper's prompt 'official' for the math benchmarks, 'plain' for arithmetic)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"],
        help="problems per generation call, each seeded on its own (default 8)",
    )
    parser.add_argument("--backend", default="hf", choices=("hf", "vllm"), help="generation backend")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--dtype", help="float32 | bfloat16 | float16 (default: as stored)")
    parser.add_argument("--split", help="the split of a dataset with several (default: test)")
    parser.add_argument(
        "--data-root", help="the folder benchmark names resolve under (default: $NGRPO_RL_DATA)"
    )
    parser.add_argument(
        "--backend-option", action="append", default=[], metavar="KEY=VALUE",
        help="more backend arguments, VALUE read as YAML (e.g. gpu_memory_utilization=0.8)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ngrpo_rl.evaluation import EvaluationProtocol, evaluate_model
    from ngrpo_rl.registry import UnknownNameError

    try:
        protocol = EvaluationProtocol(
            n=args.n,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            batch_size=args.batch_size,
            ks=parse_ks(args.ks) if args.ks else None,
        )
        report = evaluate_model(
            args.model,
            args.benchmark,
            protocol,
            num_problems=args.num_problems,
            prompt_template=args.prompt_template,
            split=args.split,
            data_root=args.data_root,
            backend=args.backend,
            device=args.device,
            dtype=args.dtype,
            backend_options=parse_options(args.backend_option),
            progress=not args.no_progress,
        )
    except (UnknownNameError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f"ngrpo-rl eval: {error}") from None
    if args.out is None:
        sys.stdout.write(report.to_json())
        return 0
    path = report.save(args.out)
    print(report.as_pass_at_k_result().format_table(f"{args.benchmark}: pass@k ({args.model})"))
    if report.auc is not None:
        print(f"Pass@k AUC: {report.auc:.2f}")
    print(f"report: {path}")
    return 0


def parse_ks(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ValueError(f"--ks expects comma-separated integers such as 1,2,4,8, got {text!r}") from None


def parse_options(items: list[str]) -> dict:
    """``["gpu_memory_utilization=0.8"]`` -> ``{"gpu_memory_utilization": 0.8}``."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--backend-option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options
