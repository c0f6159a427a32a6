"""Single-step gymnasium text environments: one problem per episode, one completion per step.

``reset()`` draws a problem and returns its prompt (the problem through a prompt template) with
``info = {"problem_id", "answer", "problem", "level"}``; ``step(completion)`` verifies the
completion and returns ``("", reward, True, False, info)`` with ``info = {"problem_id", "answer",
"extracted", "correct", "reason"}`` (reason: ``"correct"``, ``"no_answer"``, ``"wrong"``,
``"timeout"``). Prompts and completions are ``AnyText`` spaces: any string up to a length.

A training loop that batches generation can skip the per-episode API: ``env.unwrapped.problems``
is the dataset, ``env.unwrapped.prompt(problem)`` renders one prompt, and
``env.unwrapped.score_batch(problems_or_ids, completions)`` (or ``score_problems``) verifies a
whole batch in one call.

Registered ids (on ``import ngrpo_rl.envs``):

- ``ngrpo_rl/Arithmetic-v0`` -> ``ArithmeticEnv(levels, seed, split, num_problems, test_fraction,
  prompt_template="plain", ...)``: the bundled task, no download.
- ``ngrpo_rl/Math-v0`` -> ``MathEnv(dataset, split, problem_field, answer_field, id_field, limit,
  data_root, on_error, prompt_template="official", ...)``: any dataset ``load_problems`` reads;
  without ``split=`` a dataset with several splits gives its ``"train"`` split (the training
  loop's held-out env passes ``split="test"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
from ngrpo_rl.envs.arithmetic import LEVELS, ArithmeticTask
from ngrpo_rl.envs.loaders import load_problems
from ngrpo_rl.envs.problems import Problem
from ngrpo_rl.envs.spaces import AnyText
from ngrpo_rl.envs.templates import render, templates
from ngrpo_rl.envs.verifier import Verdict, Verifier, VerifierStats, get_verifier

DEFAULT_MAX_PROMPT_LENGTH = 16_384
DEFAULT_MAX_COMPLETION_LENGTH = 131_072


def score_problems(
    problems: Sequence[Problem],
    completions: Sequence[str],
    *,
    verifier: Verifier | None = None,
    timeout: float | None = None,
) -> list[Verdict]:
    """Verifies ``completions[i]`` against ``problems[i].answer``, all in one batch.

    ``verifier`` defaults to the shared one (``get_verifier``).
    """
    if len(problems) != len(completions):
        raise ValueError(
            f"got {len(problems)} problems but {len(completions)} completions; pass one each"
        )
    verifier = verifier or get_verifier()
    return verifier.verify_batch(
        completions, [problem.answer for problem in problems], timeout=timeout
    )


class MathTextEnv(gym.Env[str, str]):
    """A single-step environment over a fixed list of problems.

    Args:
        problems: the dataset; ``reset`` draws from it uniformly with the env's seeded generator.
        prompt_template: name of a registered prompt template (``templates``).
        tokenizer: passed to the template (needed by ``"chat"``).
        max_prompt_length: longest prompt, in characters (the observation space).
        max_completion_length: longest completion, in characters (the action space).
        verifier: the verifier to use (default: the shared one, see ``configure_verifier``).
        timeout: math-verify deadline per answer in seconds (default: the verifier's).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        problems: Sequence[Problem],
        *,
        prompt_template: str = "plain",
        tokenizer: Any | None = None,
        max_prompt_length: int = DEFAULT_MAX_PROMPT_LENGTH,
        max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH,
        verifier: Verifier | None = None,
        timeout: float | None = None,
    ) -> None:
        if not problems:
            raise ValueError("the environment needs at least one problem")
        templates.get(prompt_template)  # fails now, listing the valid names
        self.problems: list[Problem] = list(problems)
        self.prompt_template = prompt_template
        self.tokenizer = tokenizer
        self.verifier = verifier
        self.timeout = timeout
        self.observation_space = AnyText(max_prompt_length)
        self.action_space = AnyText(max_completion_length)
        self._by_id = {problem.id: problem for problem in self.problems}
        if len(self._by_id) != len(self.problems):
            raise ValueError("problem ids must be unique within an environment's dataset")
        self._by_prompt: dict[str, Problem] | None = None
        self._current: Problem | None = None

    def prompt(self, problem: Problem) -> str:
        """The prompt of ``problem`` under this env's template; refuses prompts over the limit."""
        text = render(self.prompt_template, problem.problem, self.tokenizer)
        if len(text) > self.observation_space.max_length:
            raise ValueError(
                f"the prompt of problem {problem.id!r} has {len(text)} characters, more than "
                f"max_prompt_length={self.observation_space.max_length}; raise max_prompt_length"
            )
        return text

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Draws a problem (or takes ``options["problem_id"]`` or ``options["index"]``).

        Returns the prompt and ``{"problem_id", "answer", "problem", "level"}``.
        """
        super().reset(seed=seed)
        options = options or {}
        if "problem_id" in options:
            problem = self.problem_by_id(options["problem_id"])
        elif "index" in options:
            problem = self.problems[int(options["index"])]
        else:
            problem = self.problems[int(self.np_random.integers(len(self.problems)))]
        self._current = problem
        info = {
            "problem_id": problem.id,
            "answer": problem.answer,
            "problem": problem.problem,
            "level": problem.level,
        }
        return self.prompt(problem), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Verifies the completion ``action``; the episode always ends here."""
        if self._current is None:
            raise RuntimeError(
                "call reset() before step(): each episode is one problem and one completion"
            )
        if not isinstance(action, str):
            raise TypeError(f"the action is the completion text (str), got {type(action).__name__}")
        problem, self._current = self._current, None
        verdict = score_problems([problem], [action], verifier=self.verifier, timeout=self.timeout)[
            0
        ]
        info = {
            "problem_id": problem.id,
            "answer": problem.answer,
            "extracted": verdict.extracted,
            "correct": verdict.correct,
            "reason": verdict.reason,
        }
        return "", verdict.reward, True, False, info

    def problem_by_id(self, problem_id: str) -> Problem:
        """The problem with this id (``KeyError`` if the dataset has none)."""
        try:
            return self._by_id[problem_id]
        except KeyError:
            raise KeyError(
                f"no problem with id {problem_id!r} in this environment's dataset"
            ) from None

    def score_batch(
        self, problems_or_ids: Sequence[Problem | str], completions: Sequence[str]
    ) -> list[Verdict]:
        """Verifies a batch at once. Each entry names its problem by ``Problem``, id, or prompt."""
        resolved = [self._resolve(item) for item in problems_or_ids]
        return score_problems(resolved, completions, verifier=self.verifier, timeout=self.timeout)

    def verifier_stats(self) -> VerifierStats:
        """A snapshot of the counters of the verifier this environment scores with."""
        return (self.verifier or get_verifier()).stats.snapshot()

    def _resolve(self, item: Problem | str) -> Problem:
        if isinstance(item, Problem):
            return item
        if item in self._by_id:
            return self._by_id[item]
        if self._by_prompt is None:
            self._by_prompt = {self.prompt(problem): problem for problem in self.problems}
        try:
            return self._by_prompt[item]
        except KeyError:
            raise KeyError(
                f"{item[:80]!r} is neither a problem id nor a prompt of this environment"
            ) from None


class ArithmeticEnv(MathTextEnv):
    """``ngrpo_rl/Arithmetic-v0``: the bundled arithmetic task (``ArithmeticTask``).

    Args:
        levels: difficulty levels to draw from (subset of 1-5).
        seed: the task seed: the same seed gives the same problems (``reset(seed=)`` orders draws).
        split: ``"train"`` or ``"test"`` (disjoint for every seed).
        num_problems: size of the dataset; fewer when the levels have fewer distinct problems
            (level 1 alone has 100, about 80 of them in the train split).
        test_fraction: share of the problem space held out as the test split.
        prompt_template: default ``"plain"`` (``"12+7"`` -> ``"12+7="``).
        **kwargs: the rest of ``MathTextEnv``'s arguments.
    """

    def __init__(
        self,
        levels: Sequence[int] = LEVELS,
        seed: int = 0,
        split: str = "train",
        num_problems: int = 1000,
        test_fraction: float = 0.2,
        prompt_template: str = "plain",
        **kwargs: Any,
    ) -> None:
        self.task = ArithmeticTask(levels, seed=seed, test_fraction=test_fraction)
        self.split = split
        distinct = {problem.id: problem for problem in self.task.problems(split, num_problems)}
        super().__init__(list(distinct.values()), prompt_template=prompt_template, **kwargs)


class MathEnv(MathTextEnv):
    """``ngrpo_rl/Math-v0``: any dataset ``load_problems`` reads (MATH, GSM8K, AIME, ...).

    Args:
        dataset: a file, a folder of split files, a name under the data root, a ``datasets``
            object, or an already loaded list of ``Problem``.
        split: which split of a dataset with several (a folder of split files, a
            ``DatasetDict``); default: ``"train"`` where there is one, else the only split. The
            training loop's held-out env passes ``split="test"``.
        problem_field, answer_field, id_field, limit, data_root, on_error: passed to
            ``load_problems``.
        prompt_template: default ``"official"``, the NGRPO paper's prompt (system message "You
            are a helpful assistant.", the problem and "Please reason step by step, and put your
            final answer within \\boxed{}."), through the ``tokenizer``'s chat template when it
            has one, else in Qwen's ChatML; ``"boxed"`` gives plain text for base models.
        **kwargs: the rest of ``MathTextEnv``'s arguments.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        split: str | None = None,
        problem_field: str | None = None,
        answer_field: str | None = None,
        id_field: str | None = None,
        limit: int | None = None,
        data_root: str | None = None,
        on_error: str = "raise",
        prompt_template: str = "official",
        **kwargs: Any,
    ) -> None:
        if isinstance(dataset, (list, tuple)) and all(isinstance(p, Problem) for p in dataset):
            problems = list(dataset)[:limit]
        else:
            problems = load_problems(
                dataset,
                split=split,
                problem_field=problem_field,
                answer_field=answer_field,
                id_field=id_field,
                limit=limit,
                data_root=data_root,
                on_error=on_error,  # type: ignore[arg-type]
            )
        super().__init__(problems, prompt_template=prompt_template, **kwargs)
