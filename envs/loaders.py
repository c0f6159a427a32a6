"""``load_problems``: math datasets from jsonl, json or parquet files, or ``datasets`` objects.

Nothing is ever downloaded. A dataset is named by

- a file path (``.jsonl``, ``.json`` holding a list of records, ``.parquet``);
- a directory holding one file per split (``test.jsonl``, ``train.parquet``,
  ``test-00000-of-00001.parquet``), with ``split=`` choosing among them: by default the
  ``"train"`` split where there is one, else the only split (``choose_split``);
- a short name (``"math500"``, ``"gsm8k"``, ``"aime24"``, ``"aime25"``, ``"amc23"``,
  ``"olympiadbench"``, ``"math"``, or any folder name) resolved under a data root: the
  ``data_root=`` argument or the ``NGRPO_RL_DATA`` environment variable;
- a Hugging Face ``datasets.Dataset`` (or a ``DatasetDict``, whose split is chosen the same way).

The record format is detected from the fields (see ``row_formats``) unless ``problem_field`` /
``answer_field`` name them. A malformed record raises ``ValueError`` naming the file, the line
(jsonl; the row for parquet and datasets, all 1-based), the field and the fix; with
``on_error="skip"`` such records are dropped instead, with one warning that counts them (MATH's
train split has a record whose solution boxes nothing).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ngrpo_rl.envs.problems import Problem
from ngrpo_rl.envs.row_formats import (
    RowError,
    RowFormat,
    detect_format,
    get_field,
    mapped_format,
)

DATA_ROOT_ENV = "NGRPO_RL_DATA"
"""Environment variable naming the folder under which dataset names resolve."""

DATASET_ALIASES = {
    "math-500": "math500",
    "math_500": "math500",
    "aime2024": "aime24",
    "aime_2024": "aime24",
    "aime2025": "aime25",
    "aime_2025": "aime25",
    "amc2023": "amc23",
    "amc_2023": "amc23",
    "olympiad_bench": "olympiadbench",
}
"""Other spellings of the dataset folder names."""

SUFFIXES = (".jsonl", ".json", ".parquet")
_SPLIT_STEMS = ("train", "test", "validation", "val", "dev")

Record = Mapping[str, Any]


class SplitNotFoundError(FileNotFoundError, ValueError):
    """A dataset has no split of the name asked for; the message lists the splits it has.

    A ``FileNotFoundError`` (no such split file in a folder) and a ``ValueError`` (no such key in a
    ``DatasetDict``), as these were raised before.
    """


@dataclasses.dataclass(frozen=True)
class _Unreadable:
    """Stands in for a record that could not be read (bad JSON); ``reason`` says why."""

    reason: str


def load_problems(
    path_or_name: str | os.PathLike | Any,
    *,
    split: str | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    limit: int | None = None,
    data_root: str | os.PathLike | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> list[Problem]:
    """Reads a math dataset as ``Problem``s (id, problem, answer, level, and the record as source).

    Args:
        path_or_name: a file, a directory of split files, a dataset name under the data root, or a
            ``datasets.Dataset`` / ``DatasetDict``.
        split: which split file of a directory (``"test"``, ``"train"``), or which split of a
            ``DatasetDict``. Default: ``"train"`` where there is one, else the only split (an
            error where there are several and none is ``"train"``). Ignored for a single file
            or ``Dataset``.
        problem_field: the field holding the problem (dotted paths reach into nested records);
            default: detected from the record format.
        answer_field: the field holding the gold answer (or a solution ending in ``\\boxed{}`` or
            ``#### N``); default: detected.
        id_field: the field holding a unique id; default: ``<dataset>-<row index>``.
        limit: read at most this many problems.
        data_root: folder under which names resolve (default: ``$NGRPO_RL_DATA``).
        on_error: ``"raise"`` on a malformed record, or ``"skip"`` it (one warning counts them).

    Raises:
        FileNotFoundError: no such file, or the name is not under the data root.
        SplitNotFoundError: the dataset has no split ``split`` (the message lists the splits it
            has); both a ``FileNotFoundError`` and a ``ValueError``.
        ValueError: a malformed record (with file, line and field), an undetectable format, an
            ambiguous split (several, none ``"train"``), or duplicate ids.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if _is_hf_dataset(path_or_name):
        dataset = _select_hf_split(path_or_name, split)
        name = str(getattr(getattr(dataset, "info", None), "dataset_name", None) or "dataset")
        records: Iterator[tuple[str, Any]] = (
            (f"row {number} of the dataset {name!r}", row) for number, row in enumerate(dataset, 1)
        )
    else:
        files = resolve_dataset(path_or_name, split=split, data_root=data_root)
        name = _dataset_name(files[0])
        records = (item for file in files for item in _read_records(file))
    return _to_problems(records, name, problem_field, answer_field, id_field, limit, on_error)


def resolve_dataset(
    path_or_name: str | os.PathLike,
    *,
    split: str | None = None,
    data_root: str | os.PathLike | None = None,
) -> list[Path]:
    """The file(s) that ``path_or_name`` and ``split`` designate (several for sharded splits)."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return _split_files(path, split)
    root = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV)
    if root is None:
        raise FileNotFoundError(
            f"no dataset file or folder {str(path_or_name)!r}; to load a dataset by name pass "
            f"data_root= or set {DATA_ROOT_ENV} to a folder holding e.g. gsm8k/test.jsonl"
        )
    root_path = Path(root).expanduser()
    name = str(path_or_name)
    for candidate in (
        root_path / DATASET_ALIASES.get(name.lower(), name.lower()),
        root_path / name,
    ):
        if candidate.is_file():
            return [candidate]
        if candidate.is_dir():
            return _split_files(candidate, split, name)
    known = sorted(entry.name for entry in root_path.iterdir()) if root_path.is_dir() else []
    raise FileNotFoundError(
        f"no dataset {name!r} under the data root {str(root_path)!r}"
        + (f" (it holds: {', '.join(known)})" if known else " (missing or empty)")
    )


def _split_files(folder: Path, split: str | None, name: str | None = None) -> list[Path]:
    """The files of ``split`` in ``folder``; ``split=None`` picks it by :func:`choose_split`."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    splits = sorted({p.stem.split("-")[0] for p in files})
    what = f"the dataset {name or folder.name!r} ({folder})"
    if not splits:
        raise FileNotFoundError(
            f"{what} holds no split files (.jsonl, .json or .parquet named after their split, "
            "e.g. train.jsonl and test.jsonl)"
        )
    split = choose_split(splits, split, what)
    return [p for p in files if p.stem == split or p.stem.startswith(f"{split}-")]


def choose_split(splits: Sequence[str], split: str | None, what: str = "the dataset") -> str:
    """The split to read: ``split`` if given, else ``"train"`` if present, else the only one.

    This is the rule for every dataset with several splits (a folder of split files or a
    ``DatasetDict``), so that ``dataset="gsm8k"`` trains on its train split while the held-out
    evaluation passes ``split="test"``.

    Raises:
        SplitNotFoundError: ``split`` is not among ``splits`` (the message names ``what``, the
            split and the splits there are).
        ValueError: ``split`` is None, there is no ``"train"`` split and several others.
    """
    available = sorted(splits)
    if split is None:
        if "train" in available:
            return "train"
        if len(available) == 1:
            return available[0]
        raise ValueError(
            f"{what} has the splits {available} and none is 'train'; pass split= to choose one"
        )
    if split not in available:
        raise SplitNotFoundError(
            f"{what} has no split {split!r}; it has the splits {available}; "
            "pass one of them as split="
        )
    return split


def _dataset_name(file: Path) -> str:
    stem = file.stem.split("-")[0]
    return f"{file.parent.name}-{stem}" if stem in _SPLIT_STEMS else stem


def _read_records(file: Path) -> Iterator[tuple[str, Record]]:
    """``(location, record)`` pairs; the location (``"file: line 3"``) is for error messages."""
    if file.suffix == ".parquet":
        from pyarrow import parquet

        table = parquet.read_table(file)
        for number, row in enumerate(table.to_pylist(), 1):
            yield f"{file}: row {number}", row
    elif file.suffix == ".json":
        try:
            rows = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{file}: line {error.lineno}: invalid JSON ({error.msg})") from None
        if not isinstance(rows, list):
            raise ValueError(
                f"{file}: expected a JSON list of records; use .jsonl for one record per line"
            )
        for number, row in enumerate(rows, 1):
            yield f"{file}: record {number}", row
    else:
        with file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    row = _Unreadable(
                        f"invalid JSON ({error.msg} at column {error.colno}); "
                        "fix or remove that line"
                    )
                yield f"{file}: line {number}", row


def _to_problems(
    records: Iterator[tuple[str, Any]],
    name: str,
    problem_field: str | None,
    answer_field: str | None,
    id_field: str | None,
    limit: int | None,
    on_error: str,
) -> list[Problem]:
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    format_: RowFormat | None = None
    skipped: list[str] = []
    for index, (location, row) in enumerate(records):
        if limit is not None and len(problems) >= limit:
            break
        try:
            if isinstance(row, _Unreadable):
                raise RowError(row.reason)
            if not isinstance(row, Mapping):
                raise RowError(f"expected a record (a JSON object), got {type(row).__name__}")
            if format_ is None:
                format_ = _choose_format(row, problem_field, answer_field)
            problem, answer, level = format_.read(row)
            problem_id = str(get_field(row, id_field)) if id_field else f"{name}-{index}"
        except RowError as error:
            if on_error == "skip":
                skipped.append(location)
                continue
            where = f" (format {format_.name!r})" if format_ is not None else ""
            raise ValueError(
                f"{location}: {error}{where}; or pass on_error='skip' to drop malformed records"
            ) from None
        if problem_id in first_seen:
            raise ValueError(
                f"{location}: duplicate id {problem_id!r} in field {id_field!r} (first at "
                f"{first_seen[problem_id]}); pass an id_field with unique values, "
                "or none to number the rows"
            )
        first_seen[problem_id] = location
        problems.append(
            Problem(id=problem_id, problem=problem, answer=answer, level=level, source=row)
        )
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} malformed record(s), the first at {skipped[0]}", stacklevel=3
        )
    return problems


def _choose_format(
    row: Record, problem_field: str | None, answer_field: str | None
) -> RowFormat:
    if problem_field or answer_field:
        return mapped_format(problem_field, answer_field, row)
    format_ = detect_format(row)
    if format_ is None:
        raise RowError(
            f"cannot tell the dataset format from the fields {sorted(row)}; "
            "pass problem_field= and answer_field= to name the problem and gold answer fields"
        )
    return format_


def _is_hf_dataset(obj: Any) -> bool:
    if isinstance(obj, (str, os.PathLike)):
        return False
    try:
        import datasets  # lazily: an optional dependency
    except ImportError:
        return False
    return isinstance(obj, (datasets.Dataset, datasets.DatasetDict))


def _select_hf_split(obj: Any, split: str | None) -> Any:
    import datasets

    if not isinstance(obj, datasets.DatasetDict):
        return obj
    first = next(iter(obj.values()), None)
    name = getattr(getattr(first, "info", None), "dataset_name", None)
    what = f"the DatasetDict {name!r}" if name else "the DatasetDict"
    if not obj:
        raise ValueError(f"{what} holds no splits")
    return obj[choose_split(list(obj), split, what)]
