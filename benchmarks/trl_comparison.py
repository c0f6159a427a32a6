"""Seconds per RL step: ours (the main job's defaults) beside TRL's GRPOTrainer, interleaved.

    .venv/bin/python benchmarks/trl_comparison.py [--rounds 3] [--steps 4] [--quick]

Both sides train the same warm-started tiny model from the same start, on the same prompts (the
main job's arithmetic levels 3 and 4, rendered by the env), with the same reward (the env's own
verifier, so equally strict), the same batch (64 prompts x 8 samples, 8 new tokens, temperature 1),
the same number of optimizer steps per batch (the main job's 2 mini-batches: TRL's
``steps_per_generation=2`` with 256 rows per step), no KL, a token-mean loss and the same learning
rate. TRL runs without vLLM (as we do on a CPU). The rounds interleave: ``steps`` of ours, then
``steps`` of TRL's, repeated ``rounds`` times, each side's first step of a round dropped as warm-up;
the figure is the median over all kept steps. Needs the ``bench`` extra (``bash scripts/setup.sh
bench``). Writes benchmarks/results/trl_comparison.json.

A step is what one of our ``train()`` iterations does: generate the batch, score it, learn from it
(and for us, put the new weights where generation reads them). TRL's step here is one generation
cycle, the time between the callbacks that close every second optimizer step.
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

RESULTS = Path(__file__).parent / "results" / "trl_comparison.json"
PROMPTS_PER_STEP = 64
GROUP_SIZE = 8
STEPS_PER_BATCH = 2  # the main job: 512 rows, minibatch_size 256


def _our_algorithm():
    from ngrpo_rl import cli

    job = {**cli.MAIN_JOB, "tensorboard": False}
    _, config = cli.build_config(job)
    assert config.prompts_per_step == PROMPTS_PER_STEP and config.group_size == GROUP_SIZE
    return config, config.build_algo()


def _trl_trainer(config, algo, output_dir: Path):
    """TRL's GRPOTrainer on the same model, prompts, reward and batch as ``algo``."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ngrpo_rl.models.io import load_model

    env = algo.env.unwrapped
    problems = list(env.problems)
    dataset = Dataset.from_dict({
        "prompt": [env.prompt(p) for p in problems],
        "problem_id": [p.id for p in problems],
    })

    def reward(completions: list[str], problem_id: list[str], **_: Any) -> list[float]:
        return [v.reward for v in env.score_batch(problem_id, completions)]

    model, tokenizer = load_model(algo.model_path)  # the tokenizer pads on the left, as TRL wants
    model.train()
    rows_per_step = PROMPTS_PER_STEP * GROUP_SIZE // STEPS_PER_BATCH
    args = GRPOConfig(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=10_000,
        disable_tqdm=True,
        learning_rate=config.lr,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=config.grad_clip if config.grad_clip else 1e9,
        per_device_train_batch_size=rows_per_step,
        gradient_accumulation_steps=1,
        steps_per_generation=STEPS_PER_BATCH,
        num_generations=GROUP_SIZE,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        top_p=1.0,
        num_iterations=1,
        beta=0.0,
        epsilon=config.epsilon_neg,
        epsilon_high=config.epsilon_pos,
        loss_type="dapo",  # token-mean over the batch, as ours
        scale_rewards="group",
        log_completions=False,
        seed=0,
        dataloader_num_workers=0,
    )

    class StepClock(TrainerCallback):
        """Times each generation cycle: the span between every ``STEPS_PER_BATCH``-th step end."""

        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self.marks = [time.perf_counter()]

        def on_step_end(self, _args, state, *__: Any, **___: Any) -> None:
            if state.global_step % STEPS_PER_BATCH == 0:
                self.marks.append(time.perf_counter())

    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[clock])
    return trainer, clock


def run(quick: bool = False, rounds: int = 3, steps: int = 4) -> dict[str, Any]:
    """The interleaved comparison; returns the figures (``step_time_ratio_vs_trl`` among them)."""
    import tempfile

    import ray
    import torch

    if quick:
        rounds, steps = 2, 2
    torch.set_num_threads(os.cpu_count() or 1)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        config, algo = _our_algorithm()
        with tempfile.TemporaryDirectory() as tmp:
            trainer, clock = _trl_trainer(config, algo, Path(tmp))
            for _ in range(rounds):
                times = []
                for _ in range(steps + 1):
                    t0 = time.perf_counter()
                    algo.train()
                    times.append(time.perf_counter() - t0)
                ours += times[1:]
                trainer.args.max_steps = (steps + 1) * STEPS_PER_BATCH
                trainer.train()
                theirs += [b - a for a, b in zip(clock.marks, clock.marks[1:])][1:]
        algo.stop()
    finally:
        if started_ray:
            ray.shutdown()
    import trl

    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    return {
        "step_time_ratio_vs_trl": ours_median / theirs_median,
        "ours_seconds_per_step_median": ours_median,
        "trl_seconds_per_step_median": theirs_median,
        "ours_seconds": ours,
        "trl_seconds": theirs,
        "setup": {
            "prompts_per_step": PROMPTS_PER_STEP, "group_size": GROUP_SIZE,
            "optimizer_steps_per_batch": STEPS_PER_BATCH, "rounds": rounds, "steps_per_round": steps,
            "trl_version": trl.__version__, "torch_threads": torch.get_num_threads(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 steps")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.quick, args.rounds, args.steps)
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print(f"ours {result['ours_seconds_per_step_median']:.3f} s/step, TRL {result['trl_seconds_per_step_median']:.3f} "
          f"s/step, ratio {result['step_time_ratio_vs_trl']:.2f} -> {args.output}")


if __name__ == "__main__":
    main()
