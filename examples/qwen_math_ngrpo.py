"""NGRPO on MATH with Qwen2.5-Math-7B on one 8-GPU node, at the paper's batch sizes.

    python examples/qwen_math_ngrpo.py [--iterations 140] [--run-dir runs/qwen_math_ngrpo]
    python examples/qwen_math_ngrpo.py --mini    # the same code on a CPU, in about half a minute

The numbers come from the official run script, nangongrui-ngr/NGRPO at e7a3804,
``train_scripts/train_qwen2.5-math-7b_ngrpo.sh`` (``l.`` below), and the verl defaults it runs
with. ``NGRPOConfig`` already holds the algorithm (virtual max reward, clip 0.24 / 0.16, drop
all-correct groups) and the shared setup (``algorithms/official.py``: lr 1e-6, 4 optimizer steps per
batch, ...). A step is ``data.train_batch_size=1024`` prompts (l. 34) x ``rollout.n=8`` responses
(l. 12, 57; ``group_size`` 8 is the default); verl's ``ppo_mini_batch_size=256`` prompts (l. 47)
make 4 optimizer steps, which is the preset's ``num_minibatches=4``, so ``prompts_per_step=1024``.

The GPU split. verl puts the actor and vLLM on all 8 GPUs in turn (hybrid engine, l. 66), four vLLM
engines of 2 GPUs each (``tensor_model_parallel_size=2``, l. 54). Here generation workers and
learners are separate Ray actors that alternate (generate, then learn), and nothing puts vLLM to
sleep while the learners train, so the GPUs are split: 4 learners x 1 GPU, the model sharded with
FSDP2 (7.6 B parameters with gradients and AdamW state are ~61 GB in bf16: ~15 GB a GPU, where one
DDP replica would not fit), and 4 vLLM workers x 1 GPU (the bf16 weights, 15 GB, fit one GPU: as
many engines as verl's, one GPU each). Half the GPUs wait in each phase; move GPUs to whichever of
``timers/generate`` and ``timers/learn`` dominates (e.g. 6 + 2: FSDP2 over 2 still fits).

``dtype="bfloat16"``: vLLM generates in bf16; the learners keep float32 master weights and AdamW
state and compute in bf16 under autocast, as verl's FSDP workers do (verl/workers/fsdp_workers.py
l. 163-170, 236-240).

Known gap against the official run (the library has no field for it yet):
- The in-run evaluation shares ``max_new_tokens`` (3072); the paper evaluates with 4096
  (eval_math.sh l. 14).

On a multi-node cluster the one line that changes is ``ray.init()`` -> ``ray.init(address="auto")``
(run ``ray start`` on every node first). To keep learners and generation on node types of their
own, start the nodes with ``ray start ... --resources='{"learner_node": 8}'`` (or
``'{"rollout_node": 8}'``) and add ``custom_resources_per_learner={"learner_node": 1}`` /
``custom_resources_per_generation_worker={"rollout_node": 1}`` (tests/test_scaling.py). Every node
must then read the model (its Hugging Face cache) and ``--run-dir`` (shared storage).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import ray

from ngrpo_rl import NGRPOConfig

PAPER_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # calculate_metrics.py l. 49


def build_config(mini: bool = False, data_root: str | None = None) -> NGRPOConfig:
    """The full run (``mini=False``) or the same algorithm in miniature on a CPU."""
    config = (
        NGRPOConfig()
        .training(
            gradient_checkpointing=True,  # l. 42
            recompute_old_logprobs=True,  # verl recomputes them with the actor (ray_trainer.py l. 1156-1158)
            tis_cap=2.0,  # ours, not in the script: corrects the vLLM / learner log-prob mismatch
        )
        .learners(learner_strategy="fsdp2")
    )
    if mini:  # the bundled tiny model on the bundled task: MATH is not bundled
        return (
            config.environment("ngrpo_rl/Arithmetic-v0", env_config={"levels": [1, 2, 3], "seed": 0})
            .training(prompts_per_step=4, micro_batch_size=8)
            .learners(num_learners=2, num_cpus_per_learner=0.5)
            .generation(max_new_tokens=6, dtype="float32", generation_backend="hf",
                        num_generation_workers=1, num_cpus_per_generation_worker=1)
            .evaluation(evaluation_num_problems=16, evaluation_samples_per_problem=4, evaluation_ks=(1, 2, 4))
            .debugging(seed=0)
        )
    return (
        config.environment(
            "ngrpo_rl/Math-v0",
            env_config={
                "dataset": "math",  # MATH train (7,500; l. 3, 32); the held-out env reads its test split
                "split": "train",
                "data_root": data_root,  # a folder holding math/train.parquet and math/test.parquet
                "on_error": "skip",  # 2 training records box no answer
                "prompt_template": "official",  # the script's Qwen chat prompt
            },
        )
        .training(
            prompts_per_step=1024,  # l. 34
            # verl packs <= 36,000 tokens a GPU (l. 43-44); ours pads to the longest response and
            # takes float32 log-softmax over Qwen's 152k vocabulary: 4 x 4,096 tokens.
            micro_batch_size=4,
        )
        .learners(num_learners=4, num_gpus_per_learner=1, num_cpus_per_learner=8)
        .generation(
            model_name_or_path="Qwen/Qwen2.5-Math-7B",  # l. 24; must be in the local HF cache
            max_new_tokens=3072,  # data.max_response_length, l. 36
            dtype="bfloat16",  # verl's rollout and compute dtype (ppo_trainer.yaml l. 79)
            generation_backend="vllm",  # l. 55
            num_generation_workers=4,
            num_gpus_per_generation_worker=1,
            num_cpus_per_generation_worker=4,
            generation_batch_size=1024,  # vLLM max_num_seqs (ppo_trainer.yaml l. 88)
            generation_backend_kwargs={"gpu_memory_utilization": 0.7},  # l. 56
        )
        # The paper's pass@k: n=256 at temperature 0.6, top_p 0.95 (eval_math.sh l. 16-19; 0.6 and
        # 0.95 are the defaults), on the MATH test split (5,000, eval_math.sh l. 10-11): 1.28 M
        # responses, so it runs once, after training; lower evaluation_num_problems for a quick look.
        .evaluation(evaluation_num_problems=5000, evaluation_samples_per_problem=256, evaluation_ks=PAPER_KS)
        .debugging(seed=0)
    )


def summary(algo, result: dict) -> dict:
    """The metrics that say whether NGRPO is doing its job this iteration."""
    return {
        "training_iteration": result["training_iteration"],
        "num_learners": len(algo.learner.workers),
        "num_generation_workers": algo.generation.num_workers,
        "num_updates": result["optim"]["num_updates"],
        "reward_mean": result["reward"]["mean"],
        "frac_all_incorrect": result["groups"]["frac_all_incorrect"],
        "advantage_min": result["advantages"]["min"],  # < 0 on all-wrong groups: NGRPO's push
        "clip_upper_frac": result["clip"]["upper_frac"],
        "clip_lower_frac": result["clip"]["lower_frac"],
        "ratio_max": result["ratio"]["max"],
        "seconds": round(result["time_this_iter_s"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini", action="store_true", help="the same run in miniature on a CPU")
    parser.add_argument("--iterations", type=int, default=None,
                        help="default 140 = 20 epochs (l. 71) x 7 batches of 1024 (drop_last); --mini: 2")
    parser.add_argument("--run-dir", default="runs/qwen_math_ngrpo", help="checkpoints and TensorBoard")
    parser.add_argument("--data-root", default=os.environ.get("NGRPO_RL_DATA", "data"),
                        help="folder with math/{train,test}.parquet (the official repo's data/)")
    args = parser.parse_args()
    iterations = args.iterations or (2 if args.mini else 140)

    if args.mini:  # 2 learners x 0.5 CPU + 1 generation worker x 1 CPU
        ray.init(num_cpus=2, include_dashboard=False)
    else:  # the one line that changes on a multi-node cluster: ray.init(address="auto")
        ray.init()
    config = build_config(args.mini, args.data_root).reporting(
        tensorboard_dir=os.path.join(args.run_dir, "tensorboard")
    )
    started = time.perf_counter()
    algo = config.build_algo()
    for _ in range(iterations):
        result = algo.train()
        print(json.dumps(summary(algo, result)), flush=True)
        if algo.iteration % 7 == 0 or algo.iteration == iterations:  # save_freq=7, l. 69
            path = algo.save_to_path(os.path.abspath(f"{args.run_dir}/checkpoint_{algo.iteration:04d}"))
    evaluation = algo.evaluate_pass_at_k()
    print(json.dumps({"evaluation": {f"pass@{k}": round(v, 4) for k, v in evaluation.overall.items()},
                      "checkpoint": path, "total_seconds": round(time.perf_counter() - started, 1)}))
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main()
