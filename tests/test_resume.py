"""Exact resume: N iterations straight equal k + checkpoint + restore in a new process + (N - k),
weights and metrics bit for bit on the CPU, for every preset; and the CLI's ``--resume`` and
periodic checkpoints.

Run as a script, this file is the new process: ``python tests/test_resume.py OUT THREADS CKPT...``
restores each checkpoint with ``Algorithm.from_checkpoint``, trains ``N - k`` iterations and writes
``OUT/<name>.safetensors`` (the weights) and ``OUT/<name>.json`` (the metrics of each iteration).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

N, K = 3, 2  # iterations in all; iterations before the checkpoint
# Levels where the group filters keep surplus groups that must cross the checkpoint: level 2 has
# all-correct groups for NGRPO to drop, level 3 mixed ones for DAPO to keep among homogeneous ones.
LEVELS = {"dapo": (3,)}
# Wall-clock measurements, which no two runs share.
CLOCK_GROUPS = ("timers", "throughput")
# The verifier's memo is a cache a new process starts without: what it served and what math-verify
# had to compare again differ across a restart, the verdicts do not.
CACHE_METRICS = ("verifier/memo_hits", "verifier/comparisons")


def weights(algo) -> dict[str, torch.Tensor]:
    """The policy's (and the critic's) parameters, as independent CPU tensors."""
    out = {f"policy/{k}": v.detach().cpu().clone() for k, v in algo.learner.model.named_parameters()}
    if algo.critic is not None:
        out.update({f"critic/{k}": v.detach().cpu().clone() for k, v in algo.critic.model.named_parameters()})
    return out


def training_metrics(result: dict) -> dict[str, float]:
    """The iteration's own metrics (``logged_metrics`` groups and the iteration number), flat;
    timers, throughput and RLlib's bookkeeping (time, host, pid, since-restore counters) dropped."""
    from ngrpo_rl import logged_metrics

    groups = {key.split("/")[0] for key in logged_metrics.METRICS} - set(CLOCK_GROUPS)
    flat = {"training_iteration": float(result["training_iteration"])}
    for group, values in result.items():
        if group in groups and isinstance(values, dict):
            flat.update({f"{group}/{key}": float(value) for key, value in values.items()
                         if f"{group}/{key}" not in CACHE_METRICS})
    return flat


def same_number(a: float, b: float) -> bool:
    """Equal bit for bit as floats (NaN equals NaN)."""
    return a == b or (math.isnan(a) and math.isnan(b))


# -- the new process -------------------------------------------------------------------------


def restore_and_train(out: Path, checkpoints: list[str]) -> None:
    """For each checkpoint: ``Algorithm.from_checkpoint``, ``N - K`` iterations, weights and metrics
    written to ``out``. (Generation and learning run in this process, so Ray is never started.)"""
    from ray.rllib.algorithms.algorithm import Algorithm
    from safetensors.torch import save_file

    for checkpoint in checkpoints:
        name = Path(checkpoint).parent.name
        algo = Algorithm.from_checkpoint(checkpoint)
        try:
            results = [training_metrics(algo.train()) for _ in range(N - K)]
            save_file(weights(algo), str(out / f"{name}.safetensors"))
        finally:
            algo.stop()
        (out / f"{name}.json").write_text(json.dumps(results))


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_preset_resumes_exactly_in_a_new_process(tmp_path):
    pytest.importorskip("ray")
    from ngrpo_rl.algorithms import ALGORITHMS
    from safetensors.torch import load_file
    from support import small

    expected: dict[str, tuple[dict[str, torch.Tensor], list[dict[str, float]]]] = {}
    checkpoints = []
    # Every preset with its generation and learner in this process: no Ray cluster is started.
    for name, (_, config_class) in sorted(ALGORITHMS.items()):
        algo = small(config_class(), tmp_path / name, levels=LEVELS.get(name, (2,))).build_algo()
        try:
            results = [training_metrics(algo.train()) for _ in range(K)]
            # A save only reads the algorithm's state (test_algorithms.py's in-process resume test
            # trains straight without one), so the run goes straight on.
            checkpoints.append(algo.save_to_path(str(tmp_path / name / "checkpoint")))
            results += [training_metrics(algo.train()) for _ in range(N - K)]
            expected[name] = (weights(algo), results)
        finally:
            algo.stop()
    for name in ("ngrpo", "dapo"):
        assert expected[name][1][K - 1]["groups/carried_over"] > 0, f"{name}: nothing carried over"

    out = tmp_path / "restored"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, __file__, str(out), str(torch.get_num_threads()), *checkpoints],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    for name, (straight_weights, straight_results) in expected.items():
        restored = load_file(str(out / f"{name}.safetensors"))
        assert restored.keys() == straight_weights.keys(), name
        differ = [k for k, v in straight_weights.items() if not torch.equal(v, restored[k])]
        assert not differ, f"{name}: weights differ after the resume: {differ[:5]}"
        resumed_results = json.loads((out / f"{name}.json").read_text())
        assert len(resumed_results) == N - K, name
        for straight, resumed in zip(straight_results[K:], resumed_results):
            assert straight.keys() == resumed.keys(), name
            differ = {k: (straight[k], resumed[k]) for k in straight if not same_number(straight[k], resumed[k])}
            assert not differ, f"{name}: metrics differ after the resume: {differ}"


# -- the CLI ---------------------------------------------------------------------------------

# A job that trains in well under a second per iteration.
TINY_JOB = [
    "--set", "group_size=4", "--set", "prompts_per_step=4", "--set", "micro_batch_size=8",
    "--set", "max_new_tokens=6", "--set", "lr=1e-3", "--set", "env_config={levels: [2], seed: 0}",
    "--no-evaluation",
]


class Interrupted(Exception):
    """Stands for a killed run."""


def final_policy(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "learner" / "policy" / "model.safetensors"))


@pytest.mark.slow
def test_cli_resume_continues_an_interrupted_run_and_keeps_the_last_checkpoints(tmp_path, monkeypatch, capsys):
    from ngrpo_rl.algorithms import RLVRAlgorithm

    from ngrpo_rl import cli

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert cli.main(["train", "--output-dir", str(straight), "--iterations", "4",
                     "--checkpoint-every", "1", "--keep-checkpoints", "2", *TINY_JOB]) == 0
    assert sorted(p.name for p in straight.iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint_000003", "checkpoint_000004"
    ]

    # Killed during iteration 4: the checkpoint after iteration 2 is the last one; 3 is lost.
    train = RLVRAlgorithm.train

    def train_until_killed(self):
        if self.iteration == 3:
            raise Interrupted
        return train(self)

    monkeypatch.setattr(RLVRAlgorithm, "train", train_until_killed)
    with pytest.raises(Interrupted):
        cli.main(["train", "--output-dir", str(interrupted), "--iterations", "4",
                  "--checkpoint-every", "2", *TINY_JOB])
    monkeypatch.undo()
    assert sorted(p.name for p in interrupted.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint_000002"]

    capsys.readouterr()
    assert cli.main(["train", "--resume", str(interrupted)]) == 0
    assert f"resumed from {interrupted / 'checkpoint_000002'} (iteration 2)" in capsys.readouterr().out
    expected = final_policy(straight / "checkpoint_000004")
    resumed = final_policy(interrupted / "checkpoint_000004")
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)


def test_cli_resume_refuses_what_it_cannot_do(tmp_path):
    from ngrpo_rl import cli

    with pytest.raises(SystemExit, match=r"--set cannot change them"):
        cli.main(["train", "--resume", str(tmp_path), "--set", "lr=1e-4"])
    with pytest.raises(SystemExit, match=rf"--resume {tmp_path}: no job.json there"):
        cli.main(["train", "--resume", str(tmp_path)])
    (tmp_path / "job.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"not the job file of an ngrpo-rl run"):
        cli.main(["train", "--resume", str(tmp_path)])
    (tmp_path / "job.json").write_text('{"iterations": 1}')
    with pytest.raises(SystemExit, match=rf"{tmp_path} already holds a run.*--resume {tmp_path}"):
        cli.main(["train", "--output-dir", str(tmp_path)])
    with cli.run_lock(tmp_path), pytest.raises(SystemExit, match=rf"another ngrpo-rl train \(pid {os.getpid()}\) is running in {tmp_path}"):
        cli.main(["train", "--resume", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"--keep-checkpoints must be an integer >= 1"):
        cli.main(["train", "--output-dir", str(tmp_path / "new"), "--keep-checkpoints", "0"])


def test_cli_keeps_the_starting_evaluation_for_a_resumed_run(tmp_path):
    from ngrpo_rl import cli
    from ngrpo_rl.evaluation import PassAtKResult

    before = PassAtKResult(ks=(1, 2), overall={1: 0.25, 2: 0.375}, by_group={3: {1: 0.5, 2: 0.625},
                           "all": {1: 0.125, 2: 0.25}}, num_problems=4, samples_per_problem=2)
    cli.save_evaluation(tmp_path / "evaluation_before.json", before)
    assert cli.load_evaluation(tmp_path / "evaluation_before.json") == before
    assert cli.load_evaluation(tmp_path / "missing.json") is None


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[2]))
    restore_and_train(Path(sys.argv[1]), sys.argv[3:])
