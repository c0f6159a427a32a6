"""Benchmarks by name: where ``ngrpo-rl eval`` finds a benchmark's problems, and its prompt.

    from ngrpo_rl.benchmark_sets import resolve_benchmark
    benchmark = resolve_benchmark("math500")
    problems = benchmark.load(data_root="../shared/data")

The math benchmarks (``math500``, ``aime24``, ``aime25``, ``amc23``, ``gsm8k``, ``olympiadbench``,
``math``) are read from their folder under the data root (``data_root=`` or ``$NGRPO_RL_DATA``;
nothing is downloaded), test split, with the NGRPO paper's prompt (``official``). ``arithmetic`` is
the bundled task's test split (levels 1-5, task seed 0, as ``ngrpo_rl/Arithmetic-v0`` with
``split="test"``) with the ``plain`` prompt the bundled model was warm-started on. Any other value
that names a data file or a folder of split files is a benchmark too. Register more with
``benchmarks.register("name")(Benchmark(...))``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ngrpo_rl.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from ngrpo_rl.envs.problems import Problem

DataRoot = str | os.PathLike | None
ProblemLoader = Callable[[DataRoot, str | None], list["Problem"]]
"""``load(data_root, split) -> problems``; ``split=None`` is the benchmark's evaluation split."""


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: how to read its problems and which prompt template it is evaluated with.

    Attributes:
        name: the registered name, or the path for a benchmark given as a file.
        loader: ``loader(data_root, split) -> problems``, in the benchmark's own order.
        prompt_template: the template its problems are rendered with unless told otherwise.
        description: one line for ``--help`` and the settings of a report.
    """

    name: str
    loader: ProblemLoader
    prompt_template: str
    description: str

    def load(self, data_root: DataRoot = None, split: str | None = None) -> list[Problem]:
        """The problems, in order (``data_root`` defaults to ``$NGRPO_RL_DATA``)."""
        return self.loader(data_root, split)

    def provenance(self, data_root: DataRoot = None, split: str | None = None) -> dict[str, Any]:
        """What identifies the problems read: the data files (path and sha256), or the task's
        own settings for a generated benchmark."""
        if self.name == "arithmetic":
            return {"task": "ArithmeticTask", **ARITHMETIC_TASK, "split": split or ARITHMETIC_TASK["split"]}
        from ngrpo_rl.envs.loaders import resolve_dataset

        files = resolve_dataset(self._source(), split=_split(self, data_root, split), data_root=data_root)
        return {"files": [{"path": str(f.resolve()), "sha256": _sha256(f)} for f in files]}

    def _source(self) -> str:
        return self.name if self.name in benchmarks else str(Path(self.name).expanduser())


benchmarks: Registry[Benchmark] = Registry("benchmark")

ARITHMETIC_TASK = {"levels": [1, 2, 3, 4, 5], "seed": 0, "num_problems": 1000, "split": "test"}
"""The ``arithmetic`` benchmark: ``ArithmeticEnv(**ARITHMETIC_TASK)``'s problems."""


def _arithmetic(data_root: DataRoot, split: str | None) -> list[Problem]:
    from ngrpo_rl.envs.arithmetic import ArithmeticTask

    task = ArithmeticTask(ARITHMETIC_TASK["levels"], seed=ARITHMETIC_TASK["seed"])
    drawn = task.problems(split or ARITHMETIC_TASK["split"], ARITHMETIC_TASK["num_problems"])
    return list({problem.id: problem for problem in drawn}.values())  # as ArithmeticEnv dedups


def _folder_loader(folder: str) -> ProblemLoader:
    def load(data_root: DataRoot, split: str | None) -> list[Problem]:
        from ngrpo_rl.envs.loaders import load_problems

        return load_problems(folder, split=split or "test", data_root=data_root)

    return load


benchmarks.register("arithmetic")(
    Benchmark("arithmetic", _arithmetic, "plain", "the bundled arithmetic task's test split")
)
for _name, _what in (
    ("math500", "MATH-500 (500 problems)"),
    ("aime24", "AIME 2024 (30 problems)"),
    ("aime25", "AIME 2025 (30 problems)"),
    ("amc23", "AMC 2023 (40 problems)"),
    ("gsm8k", "GSM8K test split (1,319 problems)"),
    ("olympiadbench", "OlympiadBench (675 problems)"),
    ("math", "MATH test split (5,000 problems)"),
):
    benchmarks.register(_name)(Benchmark(_name, _folder_loader(_name), "official", _what))


def benchmark_names() -> list[str]:
    """The registered benchmark names, sorted."""
    return benchmarks.available()


def resolve_benchmark(name_or_path: str | os.PathLike) -> Benchmark:
    """The benchmark registered as ``name_or_path`` (other spellings such as ``aime2024``
    accepted), or one read from the data file or folder it names (with the ``official`` prompt).

    Raises:
        UnknownNameError: neither a registered name nor an existing file or folder; the message
            lists the names and says that a path works too.
    """
    from ngrpo_rl.envs.loaders import DATASET_ALIASES

    text = os.fspath(name_or_path)
    name = DATASET_ALIASES.get(text.lower(), text.lower())
    if name in benchmarks:
        return benchmarks.get(name)
    path = Path(text).expanduser()
    if path.exists():
        return Benchmark(text, _path_loader(path), "official", f"the problems in {path}")
    raise UnknownNameError(
        f"unknown benchmark {text!r}: choose one of {', '.join(benchmark_names())}, or pass the "
        "path of a .jsonl / .json / .parquet file (or a folder of split files)"
    )


def _path_loader(path: Path) -> ProblemLoader:
    def load(data_root: DataRoot, split: str | None) -> list[Problem]:
        from ngrpo_rl.envs.loaders import load_problems

        return load_problems(path, split=_folder_split(path, split))

    return load


def _split(benchmark: Benchmark, data_root: DataRoot, split: str | None) -> str | None:
    if benchmark.name in benchmarks:
        return split or "test"
    return _folder_split(Path(benchmark.name).expanduser(), split)


def _folder_split(path: Path, split: str | None) -> str | None:
    """For a folder of split files: ``split`` if given, else ``test`` where there is one, else the
    loaders' own choice; None for a file."""
    if split is not None or not path.is_dir():
        return split
    has_test = any(p.stem == "test" or p.stem.startswith("test-") for p in path.iterdir())
    return "test" if has_test else None


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
