"""From trial records to the numbers a report shows: per-variant means with 95% intervals, paired
differences against the baseline, the mechanism metric, per-step curves, and a sweep's grid.

Pure computation on ``TrialRecord`` and ``PassAtKResult``: no Ray, no files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ngrpo_rl.evaluation import PassAtKResult
from ngrpo_rl.study.records import TrialRecord
from ngrpo_rl.study.stats import Interval, mean_interval, paired_difference

# ---- per-trial outcomes --------------------------------------------------------------------------


def never_solved(result: PassAtKResult) -> tuple[str, ...]:
    """The ids of the problems ``result`` solved in none of its samples (correct count 0)."""
    if len(result.problem_ids) != len(result.correct_counts):
        raise ValueError("the evaluation lacks problem ids for its correct counts")
    return tuple(pid for pid, count in zip(result.problem_ids, result.correct_counts) if count == 0)


def fraction_solved(result: PassAtKResult, problem_ids: Sequence[str]) -> float:
    """Of ``problem_ids``, the fraction ``result`` solved at least once (NaN when empty). The
    mechanism the NGRPO paper claims, measured directly: of the problems the warm start never
    solves, how many a policy learns to solve. Every id must be among ``result``'s problems."""
    if not problem_ids:
        return math.nan
    counts = dict(zip(result.problem_ids, result.correct_counts))
    missing = [pid for pid in problem_ids if pid not in counts]
    if missing:
        raise ValueError(f"{len(missing)} problem(s) were not evaluated, e.g. {missing[0]!r}")
    return sum(counts[pid] > 0 for pid in problem_ids) / len(problem_ids)


def pass_at_max(result: PassAtKResult) -> float:
    """pass@k at the largest measured k."""
    return result.overall[max(result.ks)]


def _auc(result: PassAtKResult) -> float:
    auc = result.auc
    return math.nan if auc is None else auc


# The outcomes compared across variants: name -> (how to read it off a final evaluation, unit).
# Each takes the trial's evaluation and the warm start's never-solved ids.
Outcome = Callable[[PassAtKResult, Sequence[str]], float]
OUTCOMES: dict[str, tuple[Outcome, str]] = {
    "pass_at_k_auc": (lambda r, _u: _auc(r), "points (0-100)"),
    "pass_at_1": (lambda r, _u: 100.0 * r.overall[1], "%"),
    "pass_at_max": (lambda r, _u: 100.0 * pass_at_max(r), "%"),
    "solved_from_never": (lambda r, u: 100.0 * fraction_solved(r, u), "%"),
}


# ---- a comparison study --------------------------------------------------------------------------

# "At the start": the first iterations, before training has moved the policy much.
START_ITERATIONS = 5


@dataclass
class VariantSummary:
    """One variant over its seeds."""

    name: str
    seeds: tuple[int, ...]
    outcomes: dict[str, Interval]
    curve: dict[int, float]  # mean pass@k over seeds
    pass_at_1_by_group: dict[Any, float]  # mean pass@1 over seeds per problem group (difficulty level)
    steps: dict[str, list[float]]  # per-iteration mean over seeds of each history metric
    run_means: dict[str, float]  # each history metric averaged over iterations and seeds
    generated_responses: float  # mean over seeds of the responses generated for training
    time_total_s: float  # mean seconds per trial


@dataclass
class StudySummary:
    """Everything the report says about a comparison study."""

    variants: dict[str, VariantSummary]
    baseline: str
    differences: dict[str, dict[str, Interval]]  # variant -> outcome -> paired (variant - baseline)
    never_solved: tuple[str, ...]  # the held-out problems the warm start never solved
    warm_start: PassAtKResult
    warm_start_control: PassAtKResult | None
    control_solved_from_never: float  # fraction of never_solved a second warm-start draw solves
    start_all_wrong: Interval  # groups/frac_all_incorrect over each trial's first START_ITERATIONS
    unfinished: list[str] = field(default_factory=list)


def summarize_study(
    records: Sequence[TrialRecord],
    warm_start: PassAtKResult,
    *,
    baseline: str = "grpo",
    group_size: int,
    warm_start_control: PassAtKResult | None = None,
    order: Sequence[str] | None = None,
) -> StudySummary:
    """Summarises the finished trials of a study (unfinished ones are listed, not averaged).

    Args:
        records: one per variant and seed.
        warm_start: the starting policy's evaluation on the same held-out problems and n.
        baseline: the variant the paired differences are taken against.
        group_size: responses per group (to count the generated responses).
        warm_start_control: a second, independent evaluation of the starting policy: how many of
            the never-solved problems a fresh draw solves without any training (chance alone).
        order: the variants' order in the summary (default: as they first appear).
    """
    finished = [r for r in records if r.finished]
    unfinished = [f"{r.variant} seed {r.seed}: {r.iterations_done}/{r.iterations} iterations"
                  for r in records if not r.finished]
    unsolved = never_solved(warm_start)
    names = list(order) if order is not None else list(dict.fromkeys(r.variant for r in finished))
    per_variant = {name: {r.seed: r for r in finished if r.variant == name} for name in names}
    per_variant = {name: by_seed for name, by_seed in per_variant.items() if by_seed}

    values = {
        name: {outcome: {seed: read(r.evaluation, unsolved) for seed, r in by_seed.items()}
               for outcome, (read, _) in OUTCOMES.items()}
        for name, by_seed in per_variant.items()
    }
    summaries = {
        name: _variant_summary(name, by_seed, values[name], group_size)
        for name, by_seed in per_variant.items()
    }
    differences: dict[str, dict[str, Interval]] = {}
    if baseline in values:
        for name in summaries:
            if name == baseline:
                continue
            differences[name] = {
                outcome: paired_difference(values[name][outcome], values[baseline][outcome])
                for outcome in OUTCOMES
                if _finite(values[name][outcome]) and _finite(values[baseline][outcome])
            }
    # One value per seed: a seed's first iteration samples the same problems from the same warm
    # start in every variant, so its trials are not independent draws of the start.
    start_by_seed: dict[int, list[float]] = {}
    for r in finished:
        column = [v for v in r.history.get("groups/frac_all_incorrect", [])[:START_ITERATIONS] if not math.isnan(v)]
        if column:
            start_by_seed.setdefault(r.seed, []).append(_mean(column))
    first_steps = [_mean(values) for values in start_by_seed.values()]
    control = (fraction_solved(warm_start_control, unsolved)
               if warm_start_control is not None and unsolved else math.nan)
    return StudySummary(
        variants=summaries,
        baseline=baseline,
        differences=differences,
        never_solved=unsolved,
        warm_start=warm_start,
        warm_start_control=warm_start_control,
        control_solved_from_never=control,
        start_all_wrong=mean_interval(first_steps) if first_steps else Interval(math.nan, math.nan, math.nan, 0, math.nan),
        unfinished=unfinished,
    )


def _variant_summary(name: str, by_seed: Mapping[int, TrialRecord], values: Mapping[str, Mapping[int, float]],
                     group_size: int) -> VariantSummary:
    records = list(by_seed.values())
    ks = records[0].evaluation.ks
    curve = {k: _mean([r.evaluation.overall[k] for r in records]) for k in ks}
    groups = sorted({g for r in records for g in r.evaluation.by_group}, key=_sort_key)
    by_group = {g: _mean([r.evaluation.by_group[g][1] for r in records if g in r.evaluation.by_group])
                for g in groups}
    keys = sorted({key for r in records for key in r.history})
    steps = {key: _mean_columns([r.history.get(key, []) for r in records]) for key in keys}
    run_means = {key: _mean([v for v in column if not math.isnan(v)]) for key, column in steps.items()}
    generated = _mean([group_size * math.fsum(v for v in r.history.get("groups/sampled", []) if not math.isnan(v))
                       for r in records])
    return VariantSummary(
        name=name,
        seeds=tuple(sorted(by_seed)),
        outcomes={outcome: mean_interval([v for v in per_seed.values()])
                  for outcome, per_seed in values.items() if _finite(per_seed)},
        curve=curve,
        pass_at_1_by_group=by_group,
        steps=steps,
        run_means=run_means,
        generated_responses=generated,
        time_total_s=_mean([r.time_total_s for r in records]),
    )


# ---- a sweep ---------------------------------------------------------------------------------------


@dataclass
class SweepCell:
    """One point of a sweep (its params) over its seeds."""

    params: dict[str, Any]
    seeds: tuple[int, ...]
    auc: Interval
    pass_at_1: Interval
    pass_at_max: Interval
    iterations_done: int  # the fewest iterations any of its trials trained (a scheduler may stop early)
    auc_by_seed: dict[int, float]


@dataclass
class SweepSummary:
    """The sweep's cells, best first, and the grid of mean AUC over two swept fields."""

    cells: list[SweepCell]
    fields: tuple[str, ...]
    grid: tuple[list[Any], list[Any], list[list[float]]] | None  # rows, cols, mean AUC (NaN: none)
    best_vs_others: dict[int, Interval]  # index in cells -> paired (best - cell), common seeds


def summarize_sweep(records: Sequence[TrialRecord], fields: Sequence[str] | None = None) -> SweepSummary:
    """Groups the records by their params (``fields``, in this order: the grid's rows, then its
    columns; default: every param, sorted); each cell's AUC is that of its trials' latest
    evaluation (the final one unless a scheduler stopped the trial early)."""
    if not records:
        raise ValueError("no trial records to summarise")
    fields = tuple(fields) if fields else tuple(sorted({key for r in records for key in r.params}))
    groups: dict[tuple, list[TrialRecord]] = {}
    for record in records:
        if record.evaluation is None:
            continue
        key = tuple(record.params.get(f) for f in fields)
        groups.setdefault(key, []).append(record)
    cells = []
    for key, members in groups.items():
        by_seed = {r.seed: r for r in members}
        aucs = {seed: _auc(r.evaluation) for seed, r in by_seed.items()}
        cells.append(SweepCell(
            params=dict(zip(fields, key)),
            seeds=tuple(sorted(by_seed)),
            auc=mean_interval(list(aucs.values())),
            pass_at_1=mean_interval([100.0 * r.evaluation.overall[1] for r in by_seed.values()]),
            pass_at_max=mean_interval([100.0 * pass_at_max(r.evaluation) for r in by_seed.values()]),
            iterations_done=min(r.iterations_done for r in members),
            auc_by_seed=aucs,
        ))
    cells.sort(key=lambda c: -c.auc.mean if not math.isnan(c.auc.mean) else math.inf)
    best_vs_others = {}
    for index, cell in enumerate(cells[1:], start=1):
        common = set(cells[0].auc_by_seed) & set(cell.auc_by_seed)
        if common:
            best_vs_others[index] = paired_difference(cells[0].auc_by_seed, cell.auc_by_seed)
    return SweepSummary(cells=cells, fields=fields, grid=_grid(cells, fields), best_vs_others=best_vs_others)


def _grid(cells: Sequence[SweepCell], fields: Sequence[str]):
    """Rows (the first field's values), columns (the second's) and the mean AUC of each cell, when
    exactly two fields were swept."""
    if len(fields) != 2:
        return None
    rows = sorted({c.params[fields[0]] for c in cells}, key=_sort_key)
    cols = sorted({c.params[fields[1]] for c in cells}, key=_sort_key)
    lookup = {(c.params[fields[0]], c.params[fields[1]]): c.auc.mean for c in cells}
    return rows, cols, [[lookup.get((r, c), math.nan) for c in cols] for r in rows]


# ---- helpers ---------------------------------------------------------------------------------------


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _finite(values: Mapping[Any, float]) -> bool:
    return bool(values) and all(not math.isnan(v) for v in values.values())


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def _mean_columns(columns: Sequence[Sequence[float]]) -> list[float]:
    """Element-wise mean over seeds, ignoring NaN, as long as the longest column."""
    length = max((len(c) for c in columns), default=0)
    out = []
    for i in range(length):
        present = [c[i] for c in columns if i < len(c) and not math.isnan(c[i])]
        out.append(_mean(present))
    return out

