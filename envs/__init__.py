"""ngrpo_rl.envs: math problems, prompt templates, the reward verifier and gymnasium text envs.

- ``score(completions, golds)`` -> rewards (1.0 / 0.0); ``verify_batch`` -> ``Verdict``s with the
  extracted answer and the reason; ``configure_verifier`` sets the worker count and deadline.
- ``load_problems(path_or_name, ...)`` reads MATH, MATH-500, GSM8K, AIME, AMC, OlympiadBench and
  any jsonl / parquet / ``datasets`` object into ``Problem``s; without ``split=`` a dataset with
  several splits gives its ``"train"`` split (``choose_split``).
- ``ArithmeticTask``: the bundled procedural task.
- gymnasium ids ``ngrpo_rl/Arithmetic-v0`` and ``ngrpo_rl/Math-v0``, registered on import.
"""

from __future__ import annotations

import gymnasium
from ngrpo_rl.envs.arithmetic import ArithmeticTask, evaluate_expression
from ngrpo_rl.envs.extraction import answer_extractors, extract_answer, last_boxed
from ngrpo_rl.envs.loaders import (
    SplitNotFoundError,
    choose_split,
    load_problems,
    resolve_dataset,
)
from ngrpo_rl.envs.problems import Problem
from ngrpo_rl.envs.spaces import AnyText
from ngrpo_rl.envs.templates import render, templates
from ngrpo_rl.envs.text_env import ArithmeticEnv, MathEnv, MathTextEnv, score_problems
from ngrpo_rl.envs.verifier import (
    DEFAULT_TIMEOUT,
    Verdict,
    Verifier,
    VerifierStats,
    configure_verifier,
    get_verifier,
    score,
    timeout_count,
    verify_batch,
)

ENV_IDS = {
    "ngrpo_rl/Arithmetic-v0": "ngrpo_rl.envs.text_env:ArithmeticEnv",
    "ngrpo_rl/Math-v0": "ngrpo_rl.envs.text_env:MathEnv",
}

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ENV_IDS",
    "AnyText",
    "ArithmeticEnv",
    "ArithmeticTask",
    "MathEnv",
    "MathTextEnv",
    "Problem",
    "SplitNotFoundError",
    "Verdict",
    "Verifier",
    "VerifierStats",
    "answer_extractors",
    "choose_split",
    "configure_verifier",
    "evaluate_expression",
    "extract_answer",
    "get_verifier",
    "last_boxed",
    "load_problems",
    "render",
    "resolve_dataset",
    "score",
    "score_problems",
    "templates",
    "timeout_count",
    "verify_batch",
]
