"""Held-out pass@k evaluation: sample n responses per problem, score them, estimate pass@k.

The estimator is the unbiased one of ``ngrpo_rl.metrics.pass_at_k``; the summary adds the NGRPO
paper's Pass@k AUC when the ks are powers of two starting at 1. The paper samples n = 256 at
temperature 0.6, top_p 0.95; the defaults here are smaller so that a laptop finishes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Hashable, Optional, Sequence

from ngrpo_rl import metrics
from ngrpo_rl.generation import GenerationOutput, SamplingParams

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
    def auc(self) -> Optional[float]:
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
            lines.append(f"{str(group):>10}" + "".join(f"{row[k]:>10.3f}" for k in self.ks))
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
    groups: Optional[Sequence[Hashable]] = None,
    problem_ids: Optional[Sequence[str]] = None,
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
    output = generate(list(prompts), replace(params, n=samples_per_problem))
    repeated_golds = [g for g in golds for _ in range(samples_per_problem)]
    rewards = score(output.texts, repeated_golds)
    counts = [
        sum(r >= 0.5 for r in rewards[i * samples_per_problem : (i + 1) * samples_per_problem])
        for i in range(len(prompts))
    ]
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
