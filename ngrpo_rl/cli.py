"""``ngrpo-rl``: the command line.

    ngrpo-rl train                       the main job: NGRPO on the bundled arithmetic task
    ngrpo-rl train --algorithm grpo --set lr=5e-5 --iterations 10
    ngrpo-rl train --config run.yaml     a YAML file of the same keys (see --help)
    ngrpo-rl components                  the advantage table of DESIGN.md section 3 for G = 8
    ngrpo-rl algorithms                  the algorithms and their preset components

The CLI sits at the edge of the package: it may import everything, nothing imports it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ngrpo_rl import settings

# The embedded main job: the bundled tiny model (warm-started on first use), NGRPO on the
# arithmetic task's two-digit levels (3: dd+-d, 4: dd+-dd), where the warm start's pass@1 is far
# below its pass@8 and about half of all groups are all wrong, the regime NGRPO is for. The train
# split is large (10,000 problems) so that RL improves arithmetic rather than memorising answers;
# levels 1-2 hold too few distinct problems for that. About 3 minutes of RL on 2 CPU cores.
MAIN_JOB: dict[str, Any] = {
    "algorithm": "ngrpo",
    "iterations": 300,
    "env": "ngrpo_rl/Arithmetic-v0",
    "env_config": {"levels": [3, 4], "seed": 0, "num_problems": 10000},
    "seed": 0,
    "group_size": 8,
    "prompts_per_step": 64,
    "lr": 1e-4,
    "num_epochs": 1,
    "minibatch_size": 256,
    "max_new_tokens": 8,
    "temperature": 1.0,
    "evaluation_num_problems": 300,
    "evaluation_samples_per_problem": 16,
    "evaluation_ks": [1, 2, 4, 8, 16],
    "evaluation_temperature": 1.0,
    "evaluation_top_p": 1.0,
    "weight_decay": 0.0,  # the main job's own tuning, whatever the NGRPO preset's
}

# Keys that drive the run rather than configure the algorithm.
RUN_KEYS = ("algorithm", "iterations", "output_dir")
# RLlib's own keys a job may set besides the fields of ngrpo_rl.settings.SETTINGS.
RLLIB_KEYS = ("env", "env_config", "seed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ngrpo-rl", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an algorithm (default: the main job)")
    train.add_argument("--config", type=Path, help="YAML file of config keys (flat)")
    train.add_argument("--algorithm", help="ngrpo | grpo | dapo | dr_grpo | psr_nsr | ppo (ngrpo-rl algorithms lists them)")
    train.add_argument("--iterations", type=int, help="train() calls")
    train.add_argument("--output-dir", type=Path, help="where checkpoints and events go")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override one config field (docs/CONFIG.md), VALUE read by the field's type "
        "(e.g. --set epsilon_pos=0.3 --set evaluation_ks=[1,2] --set dual_clip_c=null)",
    )
    train.add_argument("--no-evaluation", action="store_true", help="skip the pass@k tables")

    commands.add_parser("components", help="print the advantage table for a sample group")
    commands.add_parser("algorithms", help="list the algorithms and their presets")

    args = parser.parse_args(argv)
    if args.command == "components":
        from ngrpo_rl.component_table import format_component_table

        print(format_component_table(group_size=8))
        return 0
    if args.command == "algorithms":
        print(describe_algorithms())
        return 0
    return run_training(args)


def describe_algorithms() -> str:
    from ngrpo_rl.algorithms import ALGORITHMS

    fields = ("advantage_estimator", "epsilon_pos", "epsilon_neg", "loss_agg_mode", "group_filter",
              "kl_coef", "entropy_coef")
    rows = [["algorithm", *fields]]
    for name, (_, config_class) in ALGORITHMS.items():
        config = config_class()
        rows.append([name, *(str(getattr(config, f)) for f in fields)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def load_job(config_file: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The main job, updated by the YAML file, then by ``--set`` overrides (each read by its
    field's declared type)."""
    import yaml

    job = dict(MAIN_JOB)
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise SystemExit(f"cannot read config file {config_file}: {error}")
        if not isinstance(loaded, dict):
            raise SystemExit(f"{config_file} must hold a mapping of config keys to values")
        job.update(loaded)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        if key in settings.SETTINGS_BY_NAME:
            try:
                job[key] = settings.parse_value(key, value)
            except ValueError as error:
                raise SystemExit(f"--set {item}: {error}")
        else:
            job[key] = parse_value(value)
    return job


def parse_value(text: str) -> Any:
    """A value for a key that is no field (env_config, seed, iterations) as YAML, except that
    ``5e-5`` is a float (YAML 1.1 reads it as a string)."""
    import yaml

    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def build_config(job: dict[str, Any]):
    """An algorithm config from a flat job dict: each key a field of ``ngrpo_rl.settings.SETTINGS``
    (set through its section's builder method), ``env``, ``env_config`` or ``seed``. Unknown keys
    are refused with suggestions, invalid values with the field's message."""
    from ngrpo_rl.algorithms import ALGORITHMS

    name = job.get("algorithm", "ngrpo")
    if name not in ALGORITHMS:
        raise SystemExit(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}")
    config = ALGORITHMS[name][1]()
    for key, value in job.items():
        if key in RUN_KEYS:
            continue
        if key == "env":
            config.environment(env=value)
        elif key == "env_config":
            config.environment(env_config=value)
        elif key == "seed":
            config.debugging(seed=value)
        elif key in settings.SETTINGS_BY_NAME:
            value = settings.coerce_value(key, value)
            try:
                settings.validate_value(key, value)
            except ValueError as error:
                raise SystemExit(f"invalid config: {error}")
            getattr(config, settings.SETTINGS_BY_NAME[key].section)(**{key: value})
        else:
            known = [*settings.SETTINGS_BY_NAME, *RLLIB_KEYS, *RUN_KEYS]
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SystemExit(f"unknown config key {key!r}{hint} (the fields are listed in docs/CONFIG.md)")
    try:
        config.validate()
    except ValueError as error:
        raise SystemExit(f"invalid config: {error}")
    return name, config


def run_training(args: argparse.Namespace) -> int:
    job = load_job(args.config, args.set)
    if args.algorithm:
        job["algorithm"] = args.algorithm
    if args.iterations is not None:
        job["iterations"] = args.iterations
    name, config = build_config(job)
    output_dir = Path(args.output_dir or job.get("output_dir") or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    output_dir = output_dir.resolve()
    config.tensorboard_dir = str(output_dir / "tensorboard")

    import ray
    from tqdm import tqdm

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True,
             configure_logging=False)
    print(f"ngrpo-rl: {name} on {config.env}, {job['iterations']} iterations, output in {output_dir}")
    started = time.perf_counter()
    algo = config.build_algo()
    try:
        before = None
        if not args.no_evaluation:
            before = algo.evaluate_pass_at_k()
            print(before.format_table(f"held-out pass@k before RL ({algo.model_path}):"))
        # Redrawn often on a terminal; in a log file (CI), a line every 10 s is enough.
        progress = tqdm(range(job["iterations"]), desc=name, unit="it",
                        mininterval=0.1 if sys.stderr.isatty() else 10.0)
        for _ in progress:
            result = algo.train()
            progress.set_postfix(
                reward=f"{result['reward'].get('mean', float('nan')):.3f}",
                all_wrong=f"{result['groups']['frac_all_incorrect']:.2f}",
                clip_up=f"{result.get('clip', {}).get('upper_frac', 0.0):.3f}",
            )
        checkpoint = algo.save_to_path(str(output_dir / "checkpoint"))
        print(f"checkpoint: {checkpoint} (policy: {checkpoint}/learner/policy)")
        if not args.no_evaluation:
            after = algo.evaluate_pass_at_k()
            print(after.format_table("held-out pass@k after RL:"))
            print(compare_pass_at_1(before, after))
            (output_dir / "evaluation.json").write_text(
                json.dumps({"before": before.overall, "after": after.overall}, indent=2)
            )
        print(f"done in {time.perf_counter() - started:.0f} s")
        print(f"TensorBoard: tensorboard --logdir {config.tensorboard_dir}")
    finally:
        algo.stop()
        ray.shutdown()
    return 0


def compare_pass_at_1(before, after) -> str:
    """Held-out pass@1 per level, warm start beside after RL."""
    lines = ["held-out pass@1", f"{'level':>8}{'warm start':>12}{'after RL':>12}{'change':>10}"]
    for group in sorted(after.by_group, key=str):
        b, a = before.by_group[group][1], after.by_group[group][1]
        lines.append(f"{group!s:>8}{b:>12.3f}{a:>12.3f}{a - b:>+10.3f}")
    b, a = before.overall[1], after.overall[1]
    lines.append(f"{'all':>8}{b:>12.3f}{a:>12.3f}{a - b:>+10.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
