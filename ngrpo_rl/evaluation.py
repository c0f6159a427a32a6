"""Held-out pass@k evaluation: sample n responses per problem, score them, estimate pass@k.

The estimator is the unbiased one of ``ngrpo_rl.metrics.pass_at_k``; the summary adds the NGRPO
paper's Pass@k AUC when at least two ks are measured. Two entry points:

- :func:`evaluate_pass_at_k`: any ``generate`` and ``score`` functions (the training loop's
  periodic evaluation, with the small settings of the ``evaluation_*`` config fields);
- :func:`evaluate_model`: a model (folder, cached Hub id, checkpoint or run folder) on a benchmark by
  name, with the paper's protocol by default (:class:`EvaluationProtocol`: n = 256, temperature
  0.6, top_p 0.95, 4096 new tokens, pass@k for k = 1, 2, 4, ..., n), returning an
  :class:`EvaluationReport` that saves as JSON and recomputes pass@k and the AUC from its
  per-problem counts. ``ngrpo-rl eval`` is its command line.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ngrpo_rl import __version__, metrics
from ngrpo_rl.generation import GenerationOutput, SamplingParams, derive_seed
from ngrpo_rl.group_filters import DEFAULT_CORRECT_THRESHOLD

GenerateFn = Callable[[list[str], SamplingParams], GenerationOutput]
ScoreFn = Callable[[list[str], list[str]], list[float]]


@dataclass
class PassAtKResult:
    """pass@k overall and per group (e.g. per difficulty level)."""

    ks: tuple[int, ...]
    overall: dict[int, float]
    by_group: dict[Hashable, dict[int, float]]
    num_problems: int
    samples_per_problem: int
    # Correct samples of each problem (c of the estimator), in the order the problems were given,
    # and their ids where the caller named them: what pass@k is recomputed from.
    correct_counts: tuple[int, ...] = ()
    problem_ids: tuple[str, ...] = ()

    @property
    def auc(self) -> float | None:
        """The paper's Pass@k AUC, when at least two ks were measured."""
        return metrics.pass_at_k_auc(self.overall) if len(self.ks) >= 2 else None

    def as_metrics(self, prefix: str = "evaluation/") -> dict[str, float]:
        out = {f"{prefix}pass_at_{k}": v for k, v in self.overall.items()}
        if self.auc is not None:
            out[f"{prefix}pass_at_k_auc"] = self.auc
        return out

    def format_table(self, title: str = "") -> str:
        header = f"{'':>10}" + "".join(f"{'pass@' + str(k):>10}" for k in self.ks)
        lines = [title, header] if title else [header]
        for group in sorted(self.by_group, key=str):
            row = self.by_group[group]
            lines.append(f"{group!s:>10}" + "".join(f"{row[k]:>10.3f}" for k in self.ks))
        lines.append(f"{'all':>10}" + "".join(f"{self.overall[k]:>10.3f}" for k in self.ks))
        return "\n".join(lines)


def evaluate_pass_at_k(
    generate: GenerateFn,
    score: ScoreFn,
    prompts: Sequence[str],
    golds: Sequence[str],
    *,
    samples_per_problem: int,
    ks: Sequence[int],
    params: SamplingParams,
    groups: Sequence[Hashable] | None = None,
    problem_ids: Sequence[str] | None = None,
) -> PassAtKResult:
    """Samples ``samples_per_problem`` responses for each prompt and estimates pass@k.

    Args:
        generate: ``generate(prompts, params) -> GenerationOutput`` (prompt-major order).
        score: ``score(completions, golds) -> rewards`` with 1.0 meaning correct.
        prompts / golds: the rendered prompts and their gold answers, one per problem.
        samples_per_problem: n of the unbiased estimator.
        ks: the k values to report, each <= n.
        params: sampling settings (its ``n`` is replaced by ``samples_per_problem``).
        groups: optional label per problem (e.g. difficulty level) for a breakdown.
        problem_ids: optional id per problem, kept beside its correct count.
    """
    if len(prompts) != len(golds):
        raise ValueError(f"{len(prompts)} prompts but {len(golds)} gold answers")
    if problem_ids is not None and len(problem_ids) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(problem_ids)} problem ids")
    counts = count_correct(generate, score, prompts, golds, samples_per_problem, params)
    labels = list(groups) if groups is not None else ["all"] * len(prompts)
    by_label: dict[Hashable, list[int]] = defaultdict(list)
    for label, count in zip(labels, counts):
        by_label[label].append(count)
    return PassAtKResult(
        ks=tuple(ks),
        overall=metrics.benchmark_pass_at_k(counts, samples_per_problem, ks),
        by_group={
            label: metrics.benchmark_pass_at_k(c, samples_per_problem, ks)
            for label, c in by_label.items()
        },
        num_problems=len(prompts),
        samples_per_problem=samples_per_problem,
        correct_counts=tuple(counts),
        problem_ids=tuple(problem_ids) if problem_ids is not None else (),
    )


def count_correct(
    generate: GenerateFn,
    score: ScoreFn,
    prompts: Sequence[str],
    golds: Sequence[str],
    samples_per_problem: int,
    params: SamplingParams,
) -> list[int]:
    """Samples ``samples_per_problem`` responses per prompt in one ``generate`` call and returns
    how many of each prompt's responses score correct (reward above
    :data:`ngrpo_rl.group_filters.DEFAULT_CORRECT_THRESHOLD`, 0.5, as the group filters read it)."""
    output = generate(list(prompts), replace(params, n=samples_per_problem))
    if len(output) != len(prompts) * samples_per_problem:
        raise ValueError(
            f"generate returned {len(output)} responses for {len(prompts)} prompts x "
            f"{samples_per_problem} samples"
        )
    repeated_golds = [g for g in golds for _ in range(samples_per_problem)]
    rewards = score(output.texts, repeated_golds)
    n = samples_per_problem
    return [
        sum(r > DEFAULT_CORRECT_THRESHOLD for r in rewards[i * n : (i + 1) * n])
        for i in range(len(prompts))
    ]


# -- model evaluation with the paper's protocol -----------------------------------------------------


def powers_of_two_up_to(n: int) -> tuple[int, ...]:
    """``(1, 2, 4, ..., 2**floor(log2 n))``: the ks of the NGRPO paper's ``calculate_metrics.py``
    (which stops at the last power of two <= n)."""
    if n < 1:
        raise ValueError(f"n (samples per problem) must be >= 1, got {n}")
    return tuple(2**i for i in range(n.bit_length()))


def check_ks(ks: Sequence[int], n: int) -> tuple[int, ...]:
    """``ks`` sorted and deduplicated; refuses k < 1 and k > n, saying how to fix it."""
    too_large = sorted({k for k in ks if k > n})
    if too_large:
        raise ValueError(
            f"pass@k needs at least k samples per problem, but k = {too_large} > n = {n}; raise "
            f"--n (samples per problem) to at least {too_large[-1]} or drop those ks"
        )
    if any(k < 1 for k in ks) or not ks:
        raise ValueError(f"the ks must be integers >= 1, got {list(ks)}")
    return tuple(sorted(set(ks)))


@dataclass(frozen=True)
class EvaluationProtocol:
    """How responses are sampled and counted; the defaults are the NGRPO paper's (its ``eval.py``
    run with n = 256, temperature 0.6, top_p 0.95, top_k -1, max_tokens 4096).

    Attributes:
        n: responses sampled per problem (n of the unbiased pass@k estimator).
        temperature: sampling temperature.
        top_p: nucleus sampling (1.0: the whole distribution). No top-k is applied (top_k -1).
        max_new_tokens: the longest response; longer ones are cut (and rarely hold an answer).
        seed: the sampling seed; problem chunk ``i`` is sampled with ``derive_seed(seed, i)``,
            so the same seed and ``batch_size`` give the same samples.
        batch_size: problems per generation call (and per seed and progress-bar step).
        ks: the ks reported; None: 1, 2, 4, ... up to n (:func:`powers_of_two_up_to`).
    """

    n: int = 256
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 4096
    seed: int = 0
    batch_size: int = 8
    ks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n (samples per problem) must be >= 1, got {self.n}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size (problems per generation call) must be >= 1, got {self.batch_size}")
        SamplingParams(self.max_new_tokens, self.temperature, self.top_p)  # checks them
        if self.ks is not None:
            object.__setattr__(self, "ks", check_ks(self.ks, self.n))

    @property
    def resolved_ks(self) -> tuple[int, ...]:
        return self.ks if self.ks is not None else powers_of_two_up_to(self.n)

    def sampling_params(self, chunk_index: int) -> SamplingParams:
        """The sampling settings of problem chunk ``chunk_index`` (its own derived seed)."""
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            n=self.n,
            seed=derive_seed(self.seed, chunk_index),
        )


@dataclass(frozen=True)
class ProblemOutcome:
    """One problem of an evaluation: ``correct`` of its ``n`` sampled responses scored correct."""

    id: str
    n: int
    correct: int


@dataclass
class EvaluationReport:
    """The result of :func:`evaluate_model`, saved as JSON of exactly this shape::

        {"per_problem": [{"id": ..., "n": ..., "correct": ...}, ...],
         "pass_at_k": {"1": ..., "2": ..., ...},
         "auc": ...,
         "settings": {...}}

    ``pass_at_k`` and ``auc`` are derived from ``per_problem`` (:meth:`from_counts`), so a saved
    report can be checked (:meth:`recomputed`) or re-summarised without sampling again. ``auc`` is
    the NGRPO paper's Pass@k AUC (``calculate_metrics.py``): 100 times the trapezoid of pass@k over
    log2 k, divided by the span of log2 k; None with a single k. ``settings`` holds everything
    needed to reproduce the numbers.
    """

    per_problem: list[ProblemOutcome]
    pass_at_k: dict[int, float]
    auc: float | None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_counts(
        cls,
        per_problem: Sequence[ProblemOutcome],
        ks: Sequence[int],
        settings: Mapping[str, Any] | None = None,
    ) -> EvaluationReport:
        """pass@k (the mean over problems of each problem's unbiased estimate from its own n and
        c) and the AUC, for each k in ``ks`` (each <= the smallest n)."""
        if not per_problem:
            raise ValueError("an evaluation needs at least one problem")
        ks = check_ks(ks, min(p.n for p in per_problem))
        pass_at_k = {
            k: math.fsum(metrics.pass_at_k(p.n, p.correct, k) for p in per_problem) / len(per_problem)
            for k in ks
        }
        auc = metrics.pass_at_k_auc(pass_at_k) if len(ks) >= 2 else None
        return cls(list(per_problem), pass_at_k, auc, dict(settings or {}))

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(self.pass_at_k)

    def recomputed(self) -> EvaluationReport:
        """The report rebuilt from its per-problem counts (equal to itself unless edited)."""
        return EvaluationReport.from_counts(self.per_problem, self.ks, self.settings)

    def as_pass_at_k_result(self) -> PassAtKResult:
        """The same numbers as a :class:`PassAtKResult` (for its table)."""
        return PassAtKResult(
            ks=self.ks,
            overall=dict(self.pass_at_k),
            by_group={},
            num_problems=len(self.per_problem),
            samples_per_problem=min(p.n for p in self.per_problem),
            correct_counts=tuple(p.correct for p in self.per_problem),
            problem_ids=tuple(p.id for p in self.per_problem),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_problem": [{"id": p.id, "n": p.n, "correct": p.correct} for p in self.per_problem],
            "pass_at_k": {str(k): v for k, v in self.pass_at_k.items()},
            "auc": self.auc,
            "settings": self.settings,
        }

    def to_json(self) -> str:
        """The report as JSON text (no timestamps: the same evaluation gives the same bytes)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        missing = [key for key in ("per_problem", "pass_at_k", "auc", "settings") if key not in data]
        if missing:
            raise ValueError(f"not an evaluation report: the keys {missing} are missing")
        return cls(
            per_problem=[ProblemOutcome(str(p["id"]), int(p["n"]), int(p["correct"])) for p in data["per_problem"]],
            pass_at_k={int(k): float(v) for k, v in data["pass_at_k"].items()},
            auc=None if data["auc"] is None else float(data["auc"]),
            settings=dict(data["settings"]),
        )

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationReport:
        """Reads a report; ``ValueError`` names the file when it is not one."""
        try:
            return cls.from_json(Path(path).read_text())
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not an evaluation report of ngrpo-rl eval ({error})") from None


def evaluate_model(
    model: str | os.PathLike,
    benchmark: str | os.PathLike,
    protocol: EvaluationProtocol = EvaluationProtocol(),
    *,
    num_problems: int | None = None,
    prompt_template: str | None = None,
    split: str | None = None,
    data_root: str | os.PathLike | None = None,
    backend: str = "hf",
    device: str | None = None,
    dtype: str | None = None,
    backend_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Samples ``protocol.n`` responses per problem of ``benchmark`` from ``model``, scores them with
    the library's verifier and returns pass@k, the AUC and the per-problem counts.

    Args:
        model: a Hugging Face folder, a Hub id in the local cache, a checkpoint folder (its
            ``learner/policy``) or a run folder of ``ngrpo-rl train`` (its last checkpoint);
            see :mod:`ngrpo_rl.policy_paths`.
        benchmark: a name of :mod:`ngrpo_rl.benchmark_sets` (``math500``, ``arithmetic``, ...) or
            the path of a data file or folder.
        protocol: the sampling settings (default: the paper's).
        num_problems: evaluate only the first this many problems (default: all).
        prompt_template: a registered prompt template (default: the benchmark's own, ``official``
            for the math benchmarks, the paper's prompt).
        split: the split of a dataset with several (default: ``test``).
        data_root: where benchmark names resolve (default: ``$NGRPO_RL_DATA``).
        backend: a registered generation backend, ``hf`` or ``vllm`` (an optional install).
        device: where the model runs (default: ``cuda`` when available, else ``cpu``).
        dtype: the weights' dtype (default: as stored).
        backend_options: more keyword arguments of the backend (for vLLM, e.g.
            ``gpu_memory_utilization``, 0.9 unless given).
        progress: show a progress bar over the problems.
    """
    import torch

    from ngrpo_rl.benchmark_sets import resolve_benchmark
    from ngrpo_rl.envs.templates import templates
    from ngrpo_rl.envs.text_env import MathTextEnv
    from ngrpo_rl.generation import create_backend
    from ngrpo_rl.policy_paths import resolve_policy

    ks = protocol.resolved_ks
    bench = resolve_benchmark(benchmark)
    template = prompt_template or bench.prompt_template
    templates.get(template)  # an unknown name fails here, listing the valid ones
    if num_problems is not None and num_problems < 1:
        raise ValueError(f"num_problems must be >= 1, got {num_problems}")
    problems = bench.load(data_root, split)[:num_problems]
    if not problems:
        raise ValueError(f"the benchmark {bench.name!r} holds no problems")
    policy = resolve_policy(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = dict(backend_options or {})
    if backend == "vllm":
        options.setdefault("gpu_memory_utilization", 0.9)
    generator = create_backend(backend, policy.path, device=device, dtype=dtype, seed=protocol.seed, **options)
    env = MathTextEnv(problems, prompt_template=template, tokenizer=generator.tokenizer)
    try:
        counts = _sample_and_count(generator.generate, env, protocol, f"eval {bench.name}", progress)
    finally:
        env.close()
    settings = {
        "model": os.fspath(model),
        "model_path": policy.path,
        "checkpoint": policy.checkpoint,
        "benchmark": bench.name,
        "benchmark_description": bench.description,
        "data": bench.provenance(data_root, split),  # the files read (split included) and their hashes
        "num_problems": len(problems),
        "prompt_template": template,
        "n": protocol.n,
        "ks": list(ks),
        "temperature": protocol.temperature,
        "top_p": protocol.top_p,
        "top_k": -1,
        "max_new_tokens": protocol.max_new_tokens,
        "seed": protocol.seed,
        "batch_size": protocol.batch_size,
        "backend": backend,
        "backend_options": options,
        "device": str(device),
        "dtype": dtype,
        "ngrpo_rl_version": __version__,
        "torch_version": torch.__version__,
    }
    outcomes = [ProblemOutcome(p.id, protocol.n, c) for p, c in zip(problems, counts)]
    return EvaluationReport.from_counts(outcomes, ks, settings)


def _sample_and_count(generate: GenerateFn, env: Any, protocol: EvaluationProtocol, title: str, progress: bool) -> list[int]:
    """The correct count of each of ``env.problems``, sampled ``protocol.batch_size`` problems at a
    time (chunk ``i`` with its own seed) and scored by ``env.score_batch``, the training loop's
    verifier; a progress bar counts the problems."""
    from tqdm import tqdm

    problems = env.problems
    counts: list[int] = []
    with tqdm(total=len(problems), desc=title, unit="problem", disable=not progress) as bar:
        for chunk_index, start in enumerate(range(0, len(problems), protocol.batch_size)):
            chunk = problems[start : start + protocol.batch_size]
            repeated = [p for p in chunk for _ in range(protocol.n)]
            counts += count_correct(
                generate,
                lambda texts, _golds, repeated=repeated: [
                    float(v.correct) for v in env.score_batch(repeated, texts)
                ],
                [env.prompt(p) for p in chunk],
                [p.answer for p in chunk],
                protocol.n,
                protocol.sampling_params(chunk_index),
            )
            bar.update(len(chunk))
    return counts
