"""load_problems: every format, name resolution, and errors naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ngrpo_rl.envs import Problem, SplitNotFoundError, load_problems


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    )
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def verl_row(question: str, solution: str, target: str, level: str = "Level 2") -> dict[str, Any]:
    return {
        "level": level,
        "data_source": "MATH",
        "prompt": [{"content": question, "role": "user"}],
        "reward_model": {
            "ground_truth": {"question": question, "solution": solution, "target": target},
            "style": "rule",
        },
        "extra_info": {"index": 0, "split": "test"},
    }


# -- formats ----------------------------------------------------------------------------------


def test_math_jsonl_uses_answer_or_else_the_last_boxed_of_the_solution(tmp_path: Path) -> None:
    rows = [
        {"problem": "1+1?", "solution": "It is $\\boxed{2}$.", "answer": "2", "level": 1},
        {
            "problem": "Half?",
            "solution": "First \\boxed{1}, then $\\boxed{\\frac{1}{2}}$.",
            "level": "Level 3",
        },
    ]
    problems = load_problems(write_jsonl(tmp_path / "math" / "test.jsonl", rows))
    assert [(p.problem, p.answer, p.level) for p in problems] == [
        ("1+1?", "2", 1),
        ("Half?", "\\frac{1}{2}", 3),
    ]
    assert [p.id for p in problems] == ["math-test-0", "math-test-1"]
    assert problems[0].source == rows[0]


def test_gsm8k_gold_is_after_the_hashes_without_commas(tmp_path: Path) -> None:
    rows = [
        {
            "question": "How many?",
            "answer": "3 * 411 = <<3*411=1233>>1233\n1233 + 1 = 1234\n#### 1,234",
        }
    ]
    (problem,) = load_problems(write_jsonl(tmp_path / "gsm8k.jsonl", rows))
    assert (problem.id, problem.problem, problem.answer) == ("gsm8k-0", "How many?", "1234")


def test_aime_zero_padding_and_amc_floats_are_kept_as_written(tmp_path: Path) -> None:
    aime = load_problems(
        write_jsonl(tmp_path / "aime.jsonl", [{"id": 60, "problem": "p", "answer": "025"}])
    )
    amc = load_problems(
        write_jsonl(tmp_path / "amc.jsonl", [{"problem": "p", "question": "p", "answer": 27.0}])
    )
    assert aime[0].answer == "025" and amc[0].answer == "27.0"


def test_olympiadbench_list_answers_lose_dollars_and_are_joined(tmp_path: Path) -> None:
    rows = [
        {"question": "q1", "final_answer": ["$f(n)=n$, $g(n)=1$"], "context": None},
        {"question": "q2", "final_answer": ["$69$", "$84$"], "context": "Given a box."},
        {"question": "q3", "final_answer": ["\\$5"], "context": None},
    ]
    problems = load_problems(write_jsonl(tmp_path / "olympiad.jsonl", rows))
    assert [p.answer for p in problems] == ["f(n)=n, g(n)=1", "69, 84", "\\$5"]
    assert problems[1].problem == "Given a box.\n\nq2"


def test_verl_parquet_reads_the_chat_prompt_and_boxes_the_full_solution(tmp_path: Path) -> None:
    matrix = "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"
    rows = [
        verl_row(
            "Which vector?", f"So $\\boxed{{{matrix}}}$.", target="\\begin{pmatrix}12\\end{pmatrix}"
        ),
        verl_row("Count?", "There are $\\boxed{7}$.", target="7", level="Level ?"),
    ]
    problems = load_problems(write_parquet(tmp_path / "math" / "train.parquet", rows))
    assert [(p.problem, p.answer, p.level) for p in problems] == [
        ("Which vector?", matrix, 2),  # not the lossy target
        ("Count?", "7", None),
    ]


def test_field_mapping_with_dotted_paths_and_solution_answers(tmp_path: Path) -> None:
    rows = [
        {"meta": {"q": "What?"}, "sol": "We get \\boxed{42}.", "uid": "a"},
        {"meta": {"q": "Why?"}, "sol": "Done.\n#### 7", "uid": "b"},
    ]
    path = write_jsonl(tmp_path / "custom.jsonl", rows)
    problems = load_problems(path, problem_field="meta.q", answer_field="sol", id_field="uid")
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("a", "What?", "42"),
        ("b", "Why?", "7"),
    ]


def test_json_list_files_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"problem": f"p{i}", "answer": str(i)} for i in range(10)]))
    problems = load_problems(path, limit=3)
    assert [p.answer for p in problems] == ["0", "1", "2"]


def test_huggingface_dataset_objects() -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"question": "q", "answer": "w\n#### 5"}, {"question": "r", "answer": "#### -3"}]
    problems = load_problems(datasets.Dataset.from_list(rows))
    assert [p.answer for p in problems] == ["5", "-3"]
    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])}
    )
    assert len(load_problems(splits, split="test")) == 1
    assert len(load_problems(splits)) == 2  # no split: the train split
    bad = datasets.Dataset.from_list(
        [{"question": "q", "answer": "#### 1"}, {"question": "r", "answer": "none"}]
    )
    with pytest.raises(ValueError, match="row 2 of the dataset.*'answer'"):
        load_problems(bad)


# -- names, folders and splits ---------------------------------------------------------------


def test_names_resolve_under_the_data_root_argument_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jsonl(tmp_path / "math500" / "test.jsonl", [{"problem": "p", "answer": "1"}])
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", [{"question": "q", "answer": "#### 2"}])
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [{"question": "q", "answer": "#### 3"}])
    write_parquet(
        tmp_path / "aime25" / "test-00000-of-00001.parquet", [{"problem": "p", "answer": "4"}]
    )
    assert load_problems("math500", data_root=tmp_path)[0].answer == "1"
    assert load_problems("MATH-500", data_root=tmp_path)[0].answer == "1"
    assert load_problems("aime2025", data_root=tmp_path)[0].answer == "4"
    monkeypatch.setenv("NGRPO_RL_DATA", str(tmp_path))
    assert load_problems("gsm8k", split="train")[0].answer == "2"
    assert load_problems(tmp_path / "gsm8k", split="test")[0].answer == "3"
    assert load_problems("gsm8k")[0].answer == "2"  # no split: the train split
    with pytest.raises(FileNotFoundError, match="no split 'validation'"):
        load_problems("gsm8k", split="validation")
    with pytest.raises(FileNotFoundError, match="it holds: aime25, gsm8k, math500"):
        load_problems("nonexistent")


def test_without_a_split_a_dataset_gives_train_else_its_only_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "both" / "train.jsonl", [{"problem": "t", "answer": "1"}] * 3)
    write_jsonl(tmp_path / "both" / "test.jsonl", [{"problem": "e", "answer": "2"}])
    write_jsonl(tmp_path / "eval_only" / "test.jsonl", [{"problem": "e", "answer": "3"}])
    write_parquet(
        tmp_path / "sharded" / "train-00000-of-00002.parquet", [{"problem": "a", "answer": "4"}]
    )
    write_parquet(
        tmp_path / "sharded" / "train-00001-of-00002.parquet", [{"problem": "b", "answer": "5"}]
    )
    write_jsonl(tmp_path / "sharded" / "test.jsonl", [{"problem": "c", "answer": "6"}])
    both = load_problems("both", data_root=tmp_path)
    assert [p.answer for p in both] == ["1", "1", "1"] and both[0].id == "both-train-0"
    assert [p.answer for p in load_problems("both", data_root=tmp_path, split="test")] == ["2"]
    assert [p.answer for p in load_problems(tmp_path / "both")] == ["1", "1", "1"]
    assert [p.answer for p in load_problems("eval_only", data_root=tmp_path)] == ["3"]
    # The held-out env asks for split="test": a test-only dataset has it.
    assert [p.answer for p in load_problems("eval_only", data_root=tmp_path, split="test")] == ["3"]
    assert [p.answer for p in load_problems("sharded", data_root=tmp_path)] == ["4", "5"]


def test_several_splits_without_train_or_a_missing_split_name_the_splits(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "evals" / "test.jsonl", [{"problem": "e", "answer": "1"}])
    write_jsonl(tmp_path / "evals" / "validation.jsonl", [{"problem": "v", "answer": "2"}])
    write_jsonl(tmp_path / "train_only" / "train.jsonl", [{"problem": "t", "answer": "3"}])
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ValueError,
        match=r"dataset 'evals' .* has the splits \['test', 'validation'\] and none is 'train'; "
        "pass split=",
    ):
        load_problems("evals", data_root=tmp_path)
    with pytest.raises(
        SplitNotFoundError,
        match=r"the dataset 'train_only' \(.*train_only\) has no split 'test'; "
        r"it has the splits \['train'\]",
    ) as raised:
        load_problems("train_only", data_root=tmp_path, split="test")
    assert isinstance(raised.value, FileNotFoundError)
    with pytest.raises(SplitNotFoundError, match=r"dataset 'train_only' \("):
        load_problems(tmp_path / "train_only", split="test")
    with pytest.raises(FileNotFoundError, match="'empty' .* holds no split files"):
        load_problems("empty", data_root=tmp_path)


def test_a_dataset_dict_follows_the_same_split_rule() -> None:
    datasets = pytest.importorskip("datasets")

    def split_of(*answers: str) -> Any:
        return datasets.Dataset.from_list([{"problem": "p", "answer": a} for a in answers])

    both = datasets.DatasetDict({"test": split_of("1"), "train": split_of("2", "3")})
    assert [p.answer for p in load_problems(both)] == ["2", "3"]
    assert [p.answer for p in load_problems(both, split="test")] == ["1"]
    only = datasets.DatasetDict({"test": split_of("4")})
    assert [p.answer for p in load_problems(only)] == ["4"]
    evals = datasets.DatasetDict({"test": split_of("5"), "validation": split_of("6")})
    with pytest.raises(ValueError, match=r"\['test', 'validation'\] and none is 'train'"):
        load_problems(evals)
    with pytest.raises(
        SplitNotFoundError, match=r"DatasetDict has no split 'train'; it has the splits \['test'\]"
    ) as raised:
        load_problems(only, split="train")
    assert isinstance(raised.value, ValueError)  # as a missing DatasetDict split was before


def test_a_name_without_a_data_root_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NGRPO_RL_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="NGRPO_RL_DATA"):
        load_problems("surely-not-a-file-or-folder")


# -- malformed records ------------------------------------------------------------------------


def test_bad_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl", [{"problem": "p", "answer": "1"}, "", '{"problem": "p", "answer": ']
    )
    with pytest.raises(ValueError) as error:
        load_problems(path)
    assert f"{path}: line 3: invalid JSON" in str(error.value)


def test_a_missing_field_names_file_line_field_and_fix(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "math.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "q", "answr": "2"}]
    )
    with pytest.raises(ValueError) as error:
        load_problems(path)
    message = str(error.value)
    assert f"{path}: line 2:" in message
    assert "'solution'" in message and "answer_field=" in message


def test_a_gsm8k_row_without_hashes_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "g.jsonl",
        [{"question": "q", "answer": "#### 1"}, {"question": "q", "answer": "2"}],
    )
    with pytest.raises(
        ValueError, match=r"line 2: field 'answer' has no '#### <answer>' line; pass answer_field="
    ):
        load_problems(path)


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    rows = [verl_row("q", "\\boxed{1}", "1"), verl_row("r", "there are $\\boxed{}$ primes", "")]
    path = write_parquet(tmp_path / "v.parquet", rows)
    with pytest.raises(
        ValueError,
        match=r"v.parquet: row 2: field 'reward_model.ground_truth.solution' has no \\boxed",
    ):
        load_problems(path)
    with pytest.warns(UserWarning, match="skipped 1 malformed record"):
        assert len(load_problems(path, on_error="skip")) == 1


def test_unknown_formats_and_mapped_fields_say_what_to_pass(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "t", "label": "1"}])
    with pytest.raises(
        ValueError,
        match=r"line 1: cannot tell the dataset format.*problem_field= and answer_field=",
    ):
        load_problems(path)
    assert load_problems(path, problem_field="text", answer_field="label")[0].answer == "1"
    with pytest.raises(ValueError, match=r"line 1: missing field 'lbl' \(found: label, text\)"):
        load_problems(path, problem_field="text", answer_field="lbl")


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"id": 1, "problem": "p", "answer": "1"}, {"id": 1, "problem": "q", "answer": "2"}],
    )
    with pytest.raises(ValueError, match=r"line 2: duplicate id '1' in field 'id'"):
        load_problems(path, id_field="id")
    assert [p.id for p in load_problems(path)] == ["d-0", "d-1"]


# -- the real files (skipped when ../shared/data is absent) ---------------------------------------

REAL_ROW_COUNTS = {
    ("math500", None): 500,
    ("gsm8k", "test"): 1319,
    ("gsm8k", "train"): 7473,
    ("aime24", None): 30,
    ("aime25", None): 30,
    ("amc23", None): 40,
    ("olympiadbench", None): 675,
    ("math", "test"): 5000,
}


@pytest.mark.parametrize("name, split", list(REAL_ROW_COUNTS))
def test_real_files_load_with_their_row_counts(
    shared_data: Path, name: str, split: str | None
) -> None:
    if not (shared_data / name).is_dir():
        pytest.skip(f"{shared_data / name} is absent")
    problems = load_problems(name, split=split, data_root=shared_data)
    assert len(problems) == REAL_ROW_COUNTS[(name, split)]
    assert all(isinstance(p, Problem) and p.problem.strip() and p.answer.strip() for p in problems)
    assert len({p.id for p in problems}) == len(problems)
    assert not any("$" in p.answer.replace("\\$", "") for p in problems)


def test_real_gsm8k_by_name_gives_train_without_a_split_and_test_when_asked(
    shared_data: Path,
) -> None:
    if not (shared_data / "gsm8k" / "train.jsonl").is_file():
        pytest.skip(f"{shared_data / 'gsm8k'} has no train.jsonl")
    train = load_problems("gsm8k", data_root=shared_data)
    assert len(train) == REAL_ROW_COUNTS[("gsm8k", "train")] and train[0].id == "gsm8k-train-0"
    test = load_problems("gsm8k", data_root=shared_data, split="test")
    assert len(test) == REAL_ROW_COUNTS[("gsm8k", "test")] and test[0].id == "gsm8k-test-0"


def test_real_math_parquet_keeps_matrix_rows_that_target_loses(shared_data: Path) -> None:
    if not (shared_data / "math" / "test.parquet").is_file():
        pytest.skip("math/test.parquet is absent")
    problems = load_problems("math", split="test", data_root=shared_data)
    matrices = [p for p in problems if "pmatrix" in p.answer and "\\\\" in p.answer]
    assert matrices, "expected matrix answers with row separators"
    assert any(p.source["reward_model"]["ground_truth"]["target"] != p.answer for p in matrices)
    assert {p.level for p in problems} <= {1, 2, 3, 4, 5, None}


def test_real_math_train_has_two_rows_without_a_boxed_answer(shared_data: Path) -> None:
    if not (shared_data / "math" / "train.parquet").is_file():
        pytest.skip("math/train.parquet is absent")
    with pytest.raises(ValueError, match="row 5342"):
        load_problems("math", split="train", data_root=shared_data)
    with pytest.warns(UserWarning, match="skipped 2"):
        assert (
            len(load_problems("math", split="train", data_root=shared_data, on_error="skip"))
            == 7498
        )
