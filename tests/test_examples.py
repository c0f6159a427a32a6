"""The examples run as written (in a subprocess, from the repository root)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_runs_as_written(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    # Five iterations, each with a reward and fractions in range and an advantage <= 0 where groups
    # are all wrong (NGRPO's point: those groups push down instead of teaching nothing).
    rows = re.findall(r"iteration (\d+): reward ([\d.]+), all-wrong groups ([\d.]+), advantage min ([-+][\d.]+), "
                      r"clipped above/below ([\d.]+)/([\d.]+)", out)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5], out
    for _, reward, all_wrong, adv_min, upper, lower in rows:
        assert 0.0 <= float(reward) <= 1.0 and 0.0 <= float(all_wrong) <= 1.0
        assert 0.0 <= float(upper) <= 1.0 and 0.0 <= float(lower) <= 1.0
        if float(all_wrong) > 0:
            assert float(adv_min) < 0
    # Both pass@k tables: an "all" row with pass@1 <= pass@2 <= pass@4, all in [0, 1].
    tables = re.findall(r"pass@k (before|after) training:\n.*\n(?:.*\n)*?\s+all((?:\s+[\d.]+){3})", out)
    assert [t[0] for t in tables] == ["before", "after"], out
    for _, values in tables:
        passes = [float(v) for v in values.split()]
        assert passes == sorted(passes) and all(0.0 <= p <= 1.0 for p in passes)
    assert (tmp_path / "runs" / "quickstart" / "checkpoint" / "learner" / "policy").is_dir()


def load_example(name: str):
    """An example as a module (its ``main()`` does not run on import)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_qwen_math_ngrpo_mini_trains_with_two_learners_and_a_generation_worker(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "qwen_math_ngrpo.py"), "--mini"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    iterations, final = lines[:-1], lines[-1]
    assert [r["training_iteration"] for r in iterations] == [1, 2]
    for result in iterations:
        assert result["num_learners"] == 2 and result["num_generation_workers"] == 1
        assert 0.0 <= result["reward_mean"] <= 1.0
    # 4 optimizer steps per iteration (num_minibatches=4), counted across the learner group.
    assert [r["num_updates"] for r in iterations] == [4, 8]
    passes = [final["evaluation"][f"pass@{k}"] for k in (1, 2, 4)]
    assert all(0.0 <= p <= 1.0 for p in passes) and passes == sorted(passes)
    assert final["checkpoint"].endswith("checkpoint_0002")
    assert (tmp_path / "runs" / "qwen_math_ngrpo" / "checkpoint_0002" / "learner" / "policy").is_dir()


def test_qwen_math_ngrpo_full_config_has_the_papers_numbers():
    from ngrpo_rl.algorithms import NGRPO

    example = load_example("qwen_math_ngrpo")
    config = example.build_config(mini=False)
    config.validate()  # not built: no GPU, no Qwen weights here
    assert config.env == "ngrpo_rl/Math-v0"
    assert config.env_config["dataset"] == "math" and config.env_config["prompt_template"] == "official"
    assert config.model_name_or_path == "Qwen/Qwen2.5-Math-7B"
    # NGRPO's preset, the official setup and the script's batch: 1024 prompts x 8, 4 steps.
    assert (config.advantage_estimator, config.group_filter) == ("ngrpo", "drop_all_correct")
    assert (config.epsilon_pos, config.epsilon_neg, config.lr) == (0.24, 0.16, 1e-6)
    assert (config.group_size, config.prompts_per_step, config.num_minibatches) == (8, 1024, 4)
    assert config.minibatch_size is None and config.max_new_tokens == 3072
    assert (config.dtype, config.generation_backend, config.learner_strategy) == ("bfloat16", "vllm", "fsdp2")
    assert config.gradient_checkpointing and config.recompute_old_logprobs and config.tis_cap == 2.0
    assert (config.evaluation_samples_per_problem, config.evaluation_temperature, config.evaluation_top_p) == (
        256, 0.6, 0.95
    )
    assert config.evaluation_ks[-1] == 256
    # The node's 8 GPUs, split explicitly: 4 learners and 4 generation workers, one GPU each.
    bundles = NGRPO.default_resource_request(config).bundles
    assert sum(b.get("GPU", 0) for b in bundles) == 8
    assert (config.num_learners, config.num_gpus_per_learner) == (4, 1)
    assert (config.num_generation_workers, config.num_gpus_per_generation_worker) == (4, 1)


def test_qwen_math_ngrpo_mini_config_fits_two_cpus_and_keeps_the_algorithm():
    from ngrpo_rl.algorithms import NGRPO

    example = load_example("qwen_math_ngrpo")
    full, mini = example.build_config(mini=False), example.build_config(mini=True)
    mini.validate()
    assert mini.env == "ngrpo_rl/Arithmetic-v0" and mini.model_name_or_path == "ngrpo_rl/tiny-arithmetic"
    assert (mini.generation_backend, mini.dtype, mini.num_learners) == ("hf", "float32", 2)
    bundles = NGRPO.default_resource_request(mini).bundles
    assert sum(b["CPU"] for b in bundles[1:]) <= 2 and not any("GPU" in b for b in bundles)
    same = ("advantage_estimator", "group_filter", "epsilon_pos", "epsilon_neg", "num_minibatches", "lr",
            "learner_strategy", "recompute_old_logprobs", "tis_cap", "gradient_checkpointing", "group_size")
    assert {k: getattr(mini, k) for k in same} == {k: getattr(full, k) for k in same}
