"""The gymnasium text environments, their spaces, and the arithmetic task's reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import ngrpo_rl.envs  # noqa: F401  (registers the ids)
import pytest
from gymnasium.utils.env_checker import check_env
from ngrpo_rl.envs import (
    AnyText,
    ArithmeticEnv,
    ArithmeticTask,
    MathEnv,
    Problem,
    SplitNotFoundError,
    render,
    score_problems,
    templates,
)
from transformers import PreTrainedTokenizerFast

from ngrpo_rl.models.tokenizer import char_tokenizer

# A small ChatML template in the style of Qwen2.5's (system message optional).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

OFFICIAL_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{input}\n"
    "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
"""nangongrui-ngr/NGRPO@e7a3804, verl/utils/dataset/rl_dataset.py line 137, verbatim."""


@pytest.fixture
def math_file(tmp_path: Path) -> Path:
    rows = [
        {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "answer": "\\frac{3}{4}", "level": 1},
        {"problem": "Compute $2^{10}$.", "answer": "1024", "level": 2},
        {"problem": "Solve $x + 1 = 3$.", "answer": "2", "level": 1},
    ]
    path = tmp_path / "tiny_math.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_check_env_passes_for_arithmetic() -> None:
    env = gym.make("ngrpo_rl/Arithmetic-v0", levels=[1, 2, 3], seed=0, split="train")
    check_env(env.unwrapped)
    env.close()


def test_check_env_passes_for_math(math_file: Path) -> None:
    env = gym.make("ngrpo_rl/Math-v0", dataset=str(math_file))
    check_env(env.unwrapped)
    env.close()


def test_reset_and_step_follow_the_single_step_contract() -> None:
    env = gym.make("ngrpo_rl/Arithmetic-v0", levels=[1], seed=0)
    prompt, info = env.reset(seed=5)
    assert set(info) == {"problem_id", "answer", "problem", "level"}
    assert prompt == info["problem"] + "=" and info["level"] == 1
    observation, reward, terminated, truncated, step_info = env.step(f" {info['answer']} ")
    assert (observation, reward, terminated, truncated) == ("", 1.0, True, False)
    assert step_info == {
        "problem_id": info["problem_id"],
        "answer": info["answer"],
        "extracted": info["answer"],
        "correct": True,
        "reason": "correct",
    }
    env.reset(seed=5)
    assert env.step("")[4]["reason"] == "no_answer"
    env.reset(seed=5)
    wrong = str(int(info["answer"]) + 1)
    assert env.step(wrong)[1:2] == (0.0,)


def test_step_before_reset_or_twice_is_refused() -> None:
    env = ArithmeticEnv(levels=[1])
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("1")
    env.reset(seed=0)
    env.step("1")
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("1")


def test_reset_options_choose_the_problem(math_file: Path) -> None:
    env = MathEnv(str(math_file))
    prompt, info = env.reset(options={"problem_id": "tiny_math-1"})
    assert info["answer"] == "1024" and "\\boxed{}" in prompt
    assert env.reset(options={"index": 2})[1]["answer"] == "2"
    with pytest.raises(KeyError, match="no problem with id"):
        env.reset(options={"problem_id": "missing"})


def test_math_env_scores_latex_answers(math_file: Path) -> None:
    env = gym.make("ngrpo_rl/Math-v0", dataset=str(math_file), prompt_template="boxed")
    env.reset(options={"index": 0})
    _, reward, _, _, step_info = env.step("We add: $\\boxed{0.75}$")
    assert reward == 1.0 and step_info["extracted"] == "0.75"


def write_splits(root: Path, name: str, splits: dict[str, int]) -> None:
    """``root/name/<split>.jsonl`` in GSM8K's format; row i of the k-th split answers 100*k + i."""
    (root / name).mkdir(parents=True)
    for k, (split, count) in enumerate(splits.items()):
        rows = [
            {"question": f"{split} question {i}", "answer": f"#### {100 * k + i}"}
            for i in range(count)
        ]
        (root / name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_named_dataset_trains_on_train_and_evaluates_on_test(tmp_path: Path) -> None:
    write_splits(tmp_path, "gsm8k", {"train": 5, "test": 2})
    env = gym.make("ngrpo_rl/Math-v0", dataset="gsm8k", data_root=str(tmp_path))
    assert [p.problem for p in env.unwrapped.problems] == [f"train question {i}" for i in range(5)]
    # What the training loop's held_out_env does: the same env config plus split="test".
    env_config = {"dataset": "gsm8k", "data_root": str(tmp_path)}
    held_out = gym.make("ngrpo_rl/Math-v0", **{**env_config, "split": "test"})
    held_out_problems = held_out.unwrapped.problems
    assert [p.problem for p in held_out_problems] == ["test question 0", "test question 1"]
    assert [p.answer for p in held_out_problems] == ["100", "101"]
    with pytest.raises(
        SplitNotFoundError,
        match=r"dataset 'gsm8k' .* no split 'validation'; it has the splits \['test', 'train'\]",
    ):
        MathEnv("gsm8k", data_root=str(tmp_path), split="validation")


def test_a_test_only_benchmark_serves_both_envs_and_a_train_only_one_refuses_test(
    tmp_path: Path,
) -> None:
    write_splits(tmp_path, "aime24", {"test": 3})
    write_splits(tmp_path, "mine", {"train": 2})
    assert len(MathEnv("aime24", data_root=str(tmp_path)).problems) == 3
    assert len(MathEnv("aime24", data_root=str(tmp_path), split="test").problems) == 3
    assert len(MathEnv("mine", data_root=str(tmp_path)).problems) == 2
    with pytest.raises(SplitNotFoundError, match=r"'mine' .* no split 'test'.*\['train'\]"):
        MathEnv("mine", data_root=str(tmp_path), split="test")


def test_real_gsm8k_by_name_picks_train_and_split_test_picks_test(shared_data: Path) -> None:
    if not (shared_data / "gsm8k" / "train.jsonl").is_file():
        pytest.skip(f"{shared_data / 'gsm8k'} has no train.jsonl")
    train = MathEnv(dataset="gsm8k", data_root=str(shared_data))
    test = MathEnv(dataset="gsm8k", data_root=str(shared_data), split="test")
    assert len(train.problems) == 7473 and train.problems[0].id == "gsm8k-train-0"
    assert len(test.problems) == 1319 and test.problems[0].id == "gsm8k-test-0"
    assert {p.problem for p in train.problems}.isdisjoint(p.problem for p in test.problems)


def test_math_env_by_name_under_the_shared_data(shared_data: Path) -> None:
    env = gym.make("ngrpo_rl/Math-v0", dataset="math500", data_root=str(shared_data), limit=20)
    assert len(env.unwrapped.problems) == 20
    _, info = env.reset(seed=0)
    assert env.step(f"\\boxed{{{info['answer']}}}")[1] == 1.0


def test_score_batch_takes_problems_ids_or_prompts() -> None:
    env = ArithmeticEnv(levels=[2, 3], seed=1, num_problems=50)
    problems = env.problems[:3]
    completions = [p.answer for p in problems]
    by_problem = env.score_batch(problems, completions)
    by_id = env.score_batch([p.id for p in problems], completions)
    by_prompt = env.score_batch([env.prompt(p) for p in problems], completions)
    assert by_problem == by_id == by_prompt
    assert all(v.correct for v in by_problem)
    assert score_problems(problems, ["nothing"] * 3)[0].reason == "no_answer"
    with pytest.raises(KeyError, match="neither a problem id nor a prompt"):
        env.score_batch(["1+1=?"], ["2"])


def test_vectorised_scoring_matches_step_by_step() -> None:
    env = ArithmeticEnv(levels=[1, 2, 3, 4, 5], seed=2, num_problems=40)
    completions = [str(int(p.answer) + (i % 2)) for i, p in enumerate(env.problems)]
    batch = [v.reward for v in env.score_batch(env.problems, completions)]
    stepped = []
    for index, completion in enumerate(completions):
        env.reset(options={"index": index})
        stepped.append(env.step(completion)[1])
    assert batch == stepped == [1.0 - (i % 2) for i in range(40)]


def test_arithmetic_is_identical_for_the_same_seed_and_differs_for_another() -> None:
    first, second = ArithmeticEnv(seed=7), ArithmeticEnv(seed=7)
    assert first.problems == second.problems
    assert [first.reset(seed=s)[0] for s in range(20)] == [
        second.reset(seed=s)[0] for s in range(20)
    ]
    assert ArithmeticEnv(seed=8).problems != first.problems
    assert ArithmeticTask(seed=7).problems("train", 300) == ArithmeticTask(seed=7).problems(
        "train", 300
    )


def test_arithmetic_splits_are_disjoint() -> None:
    for seed in (0, 1):
        train = {
            p.problem for p in ArithmeticEnv(seed=seed, split="train", num_problems=2000).problems
        }
        test = {
            p.problem for p in ArithmeticEnv(seed=seed, split="test", num_problems=2000).problems
        }
        assert train and test and not train & test


def test_arithmetic_dataset_has_distinct_problems_even_for_small_levels() -> None:
    env = ArithmeticEnv(levels=[1], num_problems=1000)
    assert 60 <= len(env.problems) <= 100
    assert len({p.id for p in env.problems}) == len(env.problems)


def test_asking_for_more_problems_than_a_split_holds_finds_them_all_first() -> None:
    from ngrpo_rl.envs.arithmetic import split_of

    space = {f"{a}+{b}" for a in range(10) for b in range(10) if split_of(f"{a}+{b}") == "train"}
    problems = ArithmeticTask(levels=[1]).problems("train", 500)
    assert len(problems) == 500
    # Every level-1 train problem, each once, before the stream's repeats fill the list.
    first = [p.problem for p in problems[: len(space)]]
    assert set(first) == space and len(set(first)) == len(space)
    assert {p.problem for p in problems[len(space):]} <= space


def test_env_arguments_are_checked_early(math_file: Path) -> None:
    with pytest.raises(KeyError, match="unknown prompt template .nope.; available:"):
        ArithmeticEnv(prompt_template="nope")
    with pytest.raises(ValueError, match="at least one problem"):
        MathEnv([])
    env = MathEnv(str(math_file), max_prompt_length=10)
    with pytest.raises(ValueError, match="raise max_prompt_length"):
        env.reset(seed=0)
    env = MathEnv(str(math_file), prompt_template="chat")
    with pytest.raises(ValueError, match="tokenizer"):
        env.reset(seed=0)


# -- prompt templates --------------------------------------------------------------------------


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = char_tokenizer()
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def test_the_official_template_without_a_tokenizer_is_the_paper_codes_string() -> None:
    problem = "What is $\\frac{1}{2} + \\frac{1}{4}$? {input}"
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is $\\frac{1}{2} + \\frac{1}{4}$? {input}\n"
        "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert render("official", problem) == expected
    assert render("official", "1+1?") == OFFICIAL_PROMPT.replace("{input}", "1+1?")
    assert render("official", "1+1?", char_tokenizer()) == render("official", "1+1?")  # no template


def test_the_official_template_goes_through_the_tokenizers_chat_template() -> None:
    problem = "Compute $2^{10}$."
    assert render("official", problem, chatml_tokenizer()) == OFFICIAL_PROMPT.replace(
        "{input}", problem
    )
    other = char_tokenizer()
    other.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    assert render("official", problem, other) == (
        "[system] You are a helpful assistant.\n"
        "[user] Compute $2^{10}$.\n"
        "Please reason step by step, and put your final answer within \\boxed{}.\n"
        "[assistant] "
    )


def test_math_env_defaults_to_the_official_prompt_and_arithmetic_to_plain(math_file: Path) -> None:
    assert {"official", "boxed", "chat", "plain"} <= set(templates.available())
    env = gym.make("ngrpo_rl/Math-v0", dataset=str(math_file))
    assert env.unwrapped.prompt_template == "official"
    prompt, _ = env.reset(options={"index": 1})
    assert prompt == OFFICIAL_PROMPT.replace("{input}", "Compute $2^{10}$.")
    with_tokenizer = MathEnv(str(math_file), tokenizer=chatml_tokenizer())
    assert with_tokenizer.reset(options={"index": 1})[0] == prompt
    assert ArithmeticEnv(levels=[1]).prompt_template == "plain"
    assert MathEnv(str(math_file), prompt_template="boxed").reset(options={"index": 1})[0] == (
        "Compute $2^{10}$.\n"
        "Let's think step by step and output the final answer within \\boxed{}.\n"
    )
    chat = MathEnv(str(math_file), prompt_template="chat", tokenizer=chatml_tokenizer())
    assert chat.reset(options={"index": 1})[0] == (
        "<|im_start|>user\nCompute $2^{10}$. Let's think step by step and output the final "
        "answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_any_text_space_holds_any_string_up_to_its_length() -> None:
    space = AnyText(50)
    for text in ["", "\\boxed{\\frac{1}{2}}", "ünïcödé → ∞", "$x$\n\t", "a" * 50]:
        assert text in space
    assert "a" * 51 not in space
    assert 5 not in space and None not in space and b"x" not in space
    space.seed(0)
    samples = [space.sample() for _ in range(20)]
    assert all(sample in space for sample in samples)
    assert AnyText(50) == space and AnyText(51) != space
    assert AnyText(5, min_length=1).contains("") is False


def test_loaded_problem_lists_can_be_passed_directly() -> None:
    problems = [
        Problem(id="a", problem="1+1", answer="2"),
        Problem(id="b", problem="2+2", answer="4"),
    ]
    env = MathEnv(problems, prompt_template="plain")
    assert env.problems == problems and env.reset(options={"index": 1})[0] == "2+2="
