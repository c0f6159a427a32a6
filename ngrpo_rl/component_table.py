"""A side-by-side table of the advantages each estimator gives a group of 0/1 rewards."""

from __future__ import annotations

import torch

from ngrpo_rl import advantages

# (column title, estimator name)
_ESTIMATORS = (("GRPO", "grpo"), ("NGRPO", "ngrpo"), ("Dr.GRPO", "dr_grpo"), ("RLOO", "rloo"))


def _cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    rounded = round(value, 3)
    return "0.000" if rounded == 0 else f"{rounded:+.3f}"


def format_component_table(group_size: int = 8) -> str:
    """Rows: number correct 0..group_size; per estimator, the advantage of a correct and of an incorrect
    response (0/1 rewards, default parameters), to 3 decimals; "n/a" where no such response exists."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    rewards = torch.tensor(
        [[1.0] * c + [0.0] * (group_size - c) for c in range(group_size + 1)], dtype=torch.float64
    )
    columns = {name: advantages.compute(name, rewards) for _, name in _ESTIMATORS}

    header = ["correct"] + [f"{title} {side}" for title, _ in _ESTIMATORS for side in ("+", "-")]
    rows = [header]
    for c in range(group_size + 1):
        row = [f"{c}/{group_size}"]
        for _, name in _ESTIMATORS:
            adv = columns[name][c]
            row.append(_cell(adv[0].item() if c > 0 else None))
            row.append(_cell(adv[-1].item() if c < group_size else None))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    title = f"Advantage of a correct (+) and an incorrect (-) response, group of {group_size}, 0/1 rewards"
    lines = [title] + ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)
