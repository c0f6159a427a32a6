"""Fuzzing with hypothesis: the reward path and the configuration.

- Completions of every kind (any unicode, empty, about 100k characters, control characters, NUL,
  lone surrogates, nested and unbalanced braces, LaTeX fragments, exponent towers, long digit
  strings) through the verifier and through ``ngrpo_rl/Arithmetic-v0`` and ``ngrpo_rl/Math-v0``
  (``step`` and ``score_batch``, an in-memory problem set for Math-v0): no call raises, each returns
  within the verifier's deadline plus ``MARGIN`` of it per answer math-verify had to judge, and
  every reward is a finite float in [0, 1].
- Reward tensors (groups of one, all-equal groups, 0/1 groups, magnitudes 1e30 and 1e-30, mixed
  signs, float64 / float32 / bfloat16) through every advantage estimator, reward shaper and group
  filter the package registers (token-level GAE gets a batch with token rewards and critic
  values), with parameters drawn from random valid configs: results are finite; NaN or infinite
  rewards are refused with a ValueError that says so.
- Random valid configs (each field drawn within its declared type and check) build a ``Settings``;
  a valid config with one field broken (wrong type, NaN / infinity, below its bound or outside its
  range, an unregistered component name) is refused with a ValueError naming that field.

Components that other test modules register at run time are left out: only the package's own
(their functions live in ``ngrpo_rl``) are fuzzed, so the outcome does not depend on test order.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import time
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Union

import gymnasium as gym
import ngrpo_rl.envs  # noqa: F401  (registers the gymnasium ids)
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from ngrpo_rl.envs import Problem, Verdict, Verifier

from ngrpo_rl import advantages, group_filters
from ngrpo_rl import settings as config
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.pipeline import shaping
from ngrpo_rl.settings import SETTINGS, Settings
from ngrpo_rl.value import outcome_token_rewards

DEADLINE = 1.0
"""Seconds math-verify may spend on one answer (the verifier's configured timeout)."""

MARGIN = 0.5
"""Slack on top of the deadline, as a fraction of it: a call that sends ``k`` answers to
math-verify must return within ``DEADLINE * (max(k, 1) + MARGIN)`` seconds."""

REASONS = {"correct", "no_answer", "wrong", "timeout"}
METHODS = {"none", "too_long", "exact", "numeric", "math_verify"}

FUZZ: dict[str, Any] = {
    "deadline": None,  # each verifier call is timed against DEADLINE instead
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}


# ==== completions ==================================================================================

LATEX_PIECES = [
    "\\frac{", "\\dfrac", "\\sqrt{", "\\sqrt[", "^", "_", "{", "}", "(", ")", "[", "]",
    "\\left(", "\\right)", "\\cdot", "\\times", "\\pi", "\\infty", "\\circ", "\\%", "\\$", "$",
    "\\begin{pmatrix}", "\\end{pmatrix}", "\\\\", "&", "\\boxed{", "\\boxed ", "\\text{", "\\mathrm{",
    "\\int", "\\sum_{", "\\lim", "\\le", "\\{", "\\}", "1", "2", "9", "0", ".", ",", "x", "y", "-",
    "+", "=", "!", "/", " ", "\n", "####", "\\,", "~", "e", "i", "\\in", "\\emptyset",
]

latex = st.lists(st.sampled_from(LATEX_PIECES), max_size=40).map("".join)
control = st.text(st.characters(categories=["Cc", "Cf", "Cs", "Co", "Zl", "Zp"]), max_size=40)
nul = st.lists(st.sampled_from(["\x00", "\\boxed{", "}", "7", "\x00\x00", "#### "]), max_size=20).map("".join)


def _boxed(content: str) -> str:
    return "\\boxed{" + content + "}"


@st.composite
def towers(draw: st.DrawFn) -> str:
    """``2^2^...^2``, ``10^{10^{10^{10}}}``, ``x^{-9^{...}}``: exponents sympy may try to evaluate."""
    base = draw(st.sampled_from(["2", "9", "10", "x", "-3", "0.5", "e", "\\pi"]))
    depth = draw(st.integers(2, 60))
    if draw(st.booleans()):
        text = base + "^{" * (depth - 1) + base + "}" * (depth - 1)
    else:
        text = "^".join([base] * depth)
    return _boxed(text) if draw(st.booleans()) else text


@st.composite
def digit_strings(draw: st.DrawFn) -> str:
    """Long digit strings, plain or as decimals, fractions, thousands groups, boxed."""
    digits = draw(st.text("0123456789", min_size=1, max_size=30)) * draw(st.integers(1, 3_000))
    shape = draw(st.sampled_from(["plain", "negative", "decimal", "fraction", "commas"]))
    if shape == "negative":
        digits = "-" + digits
    elif shape == "decimal":
        digits = digits[: len(digits) // 2] + "." + digits[len(digits) // 2 :]
    elif shape == "fraction":
        digits = f"{digits}/{digits[::-1]}"
    elif shape == "commas":
        digits = ",".join(digits[i : i + 3] for i in range(0, len(digits), 3))
    return _boxed(digits) if draw(st.booleans()) else "The answer is " + digits


@st.composite
def braces(draw: st.DrawFn) -> str:
    """``\\boxed{\\boxed{{{...``: nested boxes and braces, balanced or not."""
    opens = draw(st.integers(0, 3_000))
    closes = draw(st.sampled_from([opens, 0, max(0, opens - 1), opens + 1, draw(st.integers(0, 3_000))]))
    inner = draw(st.sampled_from(["\\boxed{", "{", "\\frac{", "\\sqrt{"]))
    content = draw(st.sampled_from(["", "5", "x", "\\frac{1}{2}", "}{", "{}"]))
    return "\\boxed{" * draw(st.integers(0, 3)) + inner * opens + content + "}" * closes


@st.composite
def huge(draw: st.DrawFn) -> str:
    """About 100k characters: a short unit repeated (hypothesis cannot draw 100k characters itself)."""
    unit = draw(st.one_of(st.text(min_size=1, max_size=12), latex.filter(bool), st.sampled_from(
        ["7 ", "\\boxed{", "\\boxed}", "\\boxed $", "}", "{", "1,", "-", "#### ", "\\frac{1}{", "9"]
    )))
    text = unit * (100_000 // len(unit) + 1)
    return draw(st.sampled_from(["", "\\boxed{42} ", "#### 5\n"])) + text[:100_000]


completion_parts = st.one_of(
    st.text(max_size=200),
    control,
    nul,
    latex,
    latex.map(_boxed),
    towers(),
    digit_strings(),
    braces(),
    huge(),
)
completions = st.one_of(
    completion_parts,
    st.lists(completion_parts, min_size=2, max_size=3).map(" ".join),  # mixtures
)

GOLDS = [
    "5", "-3", "0", "1024", "0.5", "\\frac{3}{4}", "\\sqrt{2}", "2\\sqrt{2}", "(1,2]", "x^2+1",
    "\\infty", "\\pi", "10^{10}", "336^\\circ", "\\$40", "\\text{(C)}", "\\{1,2\\}",
    "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
]
golds = st.one_of(st.sampled_from(GOLDS), st.sampled_from(GOLDS), latex, st.text(max_size=20))

PATHOLOGICAL = [
    "",
    "\x00",
    "\x00\\boxed{\x00}",
    "\ud800\\boxed{\udfff}",
    "\\boxed ,",  # a bare box with only punctuation is no answer, not ""
    "\\boxed{9^{9^{9^9}}}",
    "\\boxed{10^{10^{10^{10}}}}",
    "\\boxed{" + "2^" * 300 + "2}",
    "2^2^2^2^2^2^2^2^2^2",
    "\\boxed{(10^{10})!}",
    "\\boxed{" + "9" * 900 + "}",
    "9" * 100_000,
    "\\boxed{" * 20_000 + "x" * 60_000,
    "\\boxed}" * 14_000,
    "\\boxed{\\frac{1}{2" + "{" * 5_000 + "}",
    "\\boxed{" + "\\left(" * 2_000 + "}",
]


# ==== the verifier and the environments ================================================================


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    """One verifier (two math-verify workers) for the module, its workers started before any timing."""
    verifier = Verifier(num_workers=2, timeout=DEADLINE)
    # Answers only math-verify can judge (the fast path settles roots and fractions itself).
    verifier.verify_batch(
        ["\\boxed{\\frac{2\\pi}{4}}", "\\boxed{\\frac{6\\pi}{2}}"], ["\\frac{\\pi}{2}", "3\\pi"]
    )
    yield verifier
    verifier.close()


def _settle(verifier: Verifier) -> None:
    """Waits, outside any timed call, until workers replaced after a kill have started (white box:
    a fresh worker's start-up is not charged to any answer's deadline, so it is kept out of the
    timings here too)."""
    pool = verifier.pool
    starting = [worker for worker in pool._workers if not worker.ready]
    if starting:
        for worker in starting:
            worker.connection.poll(pool.startup_timeout)
        pool.map(abs, [0], deadline=pool.startup_timeout)  # reads their ready signals


def _math_verify_answers(verdicts: list[Verdict], golds: list[str]) -> int:
    """How many distinct (gold, answer) pairs went to math-verify (each has its own deadline)."""
    return len(
        {(gold.strip().strip("$"), v.extracted) for v, gold in zip(verdicts, golds) if v.method == "math_verify"}
    )


def _bound(answers: int) -> float:
    return DEADLINE * (max(answers, 1) + MARGIN)


def _check_reward(reward: Any) -> None:
    assert isinstance(reward, float) and math.isfinite(reward) and 0.0 <= reward <= 1.0, reward


def _check_verdict(verdict: Verdict) -> None:
    _check_reward(verdict.reward)
    assert verdict.reason in REASONS and verdict.method in METHODS
    assert verdict.correct is (verdict.reason == "correct")
    assert (verdict.extracted is None) is (verdict.reason == "no_answer")
    assert verdict.extracted is None or (isinstance(verdict.extracted, str) and verdict.extracted)


@fuzz_settings(max_examples=100, **FUZZ)
@given(completion=completions, gold=golds)
@example(completion=PATHOLOGICAL[0], gold="5")
@example(completion="\\boxed ,", gold=",")
@example(completion="\\boxed{10^{10^{10^{10}}}}", gold="10^{10}")
@example(completion="\\boxed}" * 14_000, gold="5")
def test_the_verifier_never_raises_never_hangs_and_scores_in_0_1(
    verifier: Verifier, completion: str, gold: str
) -> None:
    _settle(verifier)
    start = time.perf_counter()
    verdicts = verifier.verify_batch([completion], [gold])
    elapsed = time.perf_counter() - start
    assert len(verdicts) == 1
    _check_verdict(verdicts[0])
    assert elapsed < _bound(_math_verify_answers(verdicts, [gold])), (elapsed, verdicts[0])


def test_pathological_completions_in_one_batch(verifier: Verifier) -> None:
    """All of them at once, each against a LaTeX gold (so the slow ones reach math-verify)."""
    golds = [GOLDS[i % len(GOLDS)] for i in range(len(PATHOLOGICAL))]
    _settle(verifier)
    start = time.perf_counter()
    verdicts = verifier.verify_batch(PATHOLOGICAL, golds)
    elapsed = time.perf_counter() - start
    assert len(verdicts) == len(PATHOLOGICAL)
    for verdict in verdicts:
        _check_verdict(verdict)
    assert elapsed < _bound(_math_verify_answers(verdicts, golds))
    assert any(verdict.reason == "timeout" for verdict in verdicts)  # the towers ran out of time
    assert verifier.score(PATHOLOGICAL[:3], golds[:3]) == [0.0, 0.0, 0.0]


MATH_PROBLEMS = [
    Problem(f"math-{index}", f"Problem {index}: find the value.", gold, level=1 + index % 5)
    for index, gold in enumerate(GOLDS)
]


@pytest.fixture(scope="module", params=["ngrpo_rl/Arithmetic-v0", "ngrpo_rl/Math-v0"])
def env(request: pytest.FixtureRequest, verifier: Verifier) -> Iterator[gym.Env]:
    if request.param == "ngrpo_rl/Arithmetic-v0":
        env = gym.make(request.param, levels=[1, 2, 3, 4, 5], seed=0, num_problems=30, verifier=verifier)
    else:
        env = gym.make(request.param, dataset=MATH_PROBLEMS, verifier=verifier)
    yield env
    env.close()


@fuzz_settings(max_examples=30, **FUZZ)
@given(batch=st.lists(completions, min_size=1, max_size=3), data=st.data())
def test_env_step_and_score_batch_never_raise_never_hang_and_reward_in_0_1(
    env: gym.Env, batch: list[str], data: st.DataObject
) -> None:
    base = env.unwrapped
    index = data.draw(st.integers(0, len(base.problems) - 1), label="problem index")
    problem = base.problems[index]
    stepped = []
    for completion in batch:
        _settle(base.verifier)
        env.reset(options={"index": index})
        start = time.perf_counter()
        observation, reward, terminated, truncated, info = env.step(completion)
        elapsed = time.perf_counter() - start
        _check_reward(reward)
        assert (observation, terminated, truncated) == ("", True, False)
        assert info["reason"] in REASONS and info["problem_id"] == problem.id
        assert elapsed < _bound(1), (elapsed, info)
        stepped.append((reward, info["reason"]))

    _settle(base.verifier)
    start = time.perf_counter()
    verdicts = base.score_batch([problem.id] * len(batch), batch)
    elapsed = time.perf_counter() - start
    assert len(verdicts) == len(batch)
    for verdict, (reward, reason) in zip(verdicts, stepped):
        _check_verdict(verdict)
        if "timeout" not in (reason, verdict.reason):  # a deadline is met or not, run by run
            assert verdict.reward == reward
    assert elapsed < _bound(_math_verify_answers(verdicts, [problem.answer] * len(batch)))


# ==== configs ===================================================================================


def _package_names(registry: Any) -> list[str]:
    """The names the package itself registered (not components other tests register at run time)."""
    return [
        name for name in registry.available()
        if getattr(registry.get(name), "__module__", "").startswith("ngrpo_rl")
    ]


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    return typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else None


def _tuple_items(tp: Any) -> tuple[Any, ...] | None:
    return typing.get_args(tp) if typing.get_origin(tp) is tuple else None


def _accepts(tp: Any, value: Any) -> bool:
    """The declared types' meaning (``Setting``'s docstring): an int is a float, a bool is no int,
    a list is a tuple; written out here so the test does not take the validator's word for it."""
    args = _union_args(tp)
    if args is not None:
        return any(_accepts(a, value) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is dict:
        return isinstance(value, Mapping)
    items = _tuple_items(tp)
    if items is not None:
        if not isinstance(value, (tuple, list)):
            return False
        if len(items) == 2 and items[1] is Ellipsis:
            return all(_accepts(items[0], v) for v in value)
        return len(value) == len(items) and all(_accepts(a, v) for a, v in zip(items, value))
    return isinstance(value, tp)


def _values_of_type(tp: Any) -> st.SearchStrategy[Any]:
    """A small strategy per declared type (values of that type, valid or not for the check)."""
    args = _union_args(tp)
    if args is not None:
        return st.one_of(*[_values_of_type(a) for a in args])
    items = _tuple_items(tp)
    if items is not None:
        if len(items) == 2 and items[1] is Ellipsis:
            return st.lists(_values_of_type(items[0]), max_size=4).flatmap(
                lambda values: st.sampled_from([tuple(values), list(values)])
            )
        return st.tuples(*[_values_of_type(a) for a in items])
    strategies: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        bool: st.booleans(),
        int: st.one_of(st.integers(-2, 64), st.integers(-(10**6), 10**6)),
        float: st.one_of(
            st.floats(0, 1), st.floats(-2, 2), st.floats(-1e6, 1e6), st.integers(-3, 8),
            st.sampled_from([0.0, 1.0, 1e-6, 1e-30, 1e30]),
        ),
        str: st.text(max_size=12),
        dict: st.dictionaries(
            st.text("abcdefgh_", min_size=1, max_size=8), st.one_of(st.integers(0, 4), st.floats(0, 4)), max_size=2
        ),
    }
    return strategies.get(tp, st.nothing())


def _passes(setting: config.Setting, value: Any) -> bool:
    """The declared check (None passes an optional field)."""
    return value is None or setting.check is None or setting.check(value)


def _choices(setting: config.Setting) -> list[Any] | None:
    """The choices of a ``one_of(...)`` check, read from its description; None for other checks."""
    description = setting.check.description if setting.check is not None else ""
    if not description.startswith("one of "):
        return None
    try:
        return list(ast.literal_eval("(" + description[len("one of ") :] + ",)"))
    except (ValueError, SyntaxError):
        return None


def _candidates(setting: config.Setting) -> st.SearchStrategy[Any]:
    """Values of the field's type, drawn where valid ones are likely (registered names, choices)."""
    if setting.name not in _CANDIDATES:
        _CANDIDATES[setting.name] = _make_candidates(setting)
    return _CANDIDATES[setting.name]


_CANDIDATES: dict[str, st.SearchStrategy[Any]] = {}


def _make_candidates(setting: config.Setting) -> st.SearchStrategy[Any]:
    optional = _union_args(setting.type) is not None and type(None) in _union_args(setting.type)
    strategy: st.SearchStrategy[Any] | None = None
    if setting.registry is not None:
        registry = config.resolve_registry(setting.registry)
        names = _package_names(registry) if registry is not None else []
        if names:
            if _tuple_items(setting.type) is not None:
                strategy = st.lists(st.sampled_from(names), unique=True, max_size=len(names)).map(tuple)
            else:
                strategy = st.sampled_from(names)
    elif _choices(setting) is not None:
        strategy = st.sampled_from(_choices(setting))
    elif setting.check is getattr(config, "DEVICE", None):
        strategy = st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
    if strategy is None:
        return _values_of_type(setting.type)
    return st.one_of(strategy, st.none()) if optional else strategy


@st.composite
def valid_values(draw: st.DrawFn, setting: config.Setting) -> Any:
    """A value of the field's declared type that passes its check (else the field's default)."""
    value = draw(_candidates(setting))
    return value if _accepts(setting.type, value) and _passes(setting, value) else setting.default


@st.composite
def valid_configs(draw: st.DrawFn, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every field (or only ``fields``, the rest at their defaults) drawn valid, then the checks
    across fields made to hold."""
    values = {setting.name: setting.default for setting in SETTINGS}
    for setting in SETTINGS:
        if fields is None or setting.name in fields:
            values[setting.name] = draw(valid_values(setting), label=setting.name)
    values["seed"] = draw(st.integers(0, 2**31 - 1), label="seed")
    # The checks across fields (ngrpo_rl.settings._check_consistency).
    estimator = config.component_registry("advantage_estimator")
    minimum = estimator.metadata(values["advantage_estimator"]).get("min_group_size", 1)
    values["group_size"] = max(values["group_size"], minimum)
    if values["overlong_buffer"] is not None:
        values["max_new_tokens"] = max(values["max_new_tokens"], values["overlong_buffer"])
    values["evaluation_samples_per_problem"] = max(
        values["evaluation_samples_per_problem"], *values["evaluation_ks"]
    )
    if values.get("tis_cap") is not None:
        values["recompute_old_logprobs"] = True
    # component_kwargs: the parameters of their own the chosen components declare.
    kwargs = {}
    for kind, name in config.chosen_components(values):
        for keyword, source in config.component_registry(kind).params(name).items():
            if isinstance(source, config.Param) and (source.default is config.REQUIRED or draw(st.booleans())):
                own = config.Setting(f"{kind}:{name}:{keyword}", source.default, source.type, "", "training",
                                     source.check)
                kwargs[keyword] = draw(valid_values(own))
    values["component_kwargs"] = kwargs
    return values


def _component_fields(kind: str) -> tuple[str, ...]:
    """The config fields that feed the package's components of ``kind``."""
    registry = config.component_registry(kind)
    return tuple(
        sorted({source for name in _package_names(registry) for source in registry.params(name).values()
                if isinstance(source, str)})
    )


def _canonical(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@fuzz_settings(max_examples=120, **FUZZ)
@given(values=valid_configs())
def test_random_valid_configs_build_settings(values: dict[str, Any]) -> None:
    built = Settings(**values)
    for name, value in values.items():
        assert getattr(built, name) == _canonical(value), name
    assert dataclasses.replace(built) == built


WRONG_TYPED = ["7", "", "x", 2.5, 3, True, False, None, [1], ("a",), (1.5,), {"a": 1}, b"x", 1 + 2j, object()]


def _below_or_outside(setting: config.Setting) -> st.SearchStrategy[Any]:
    """Values of the right type that fail the field's check: negatives where it is ``>= 0`` or
    ``>= 1``, numbers outside a range, unknown choices, bad elements of a sequence."""
    if setting.check is None:
        return st.nothing()
    extra = st.sampled_from([-1, -1.0, -1e-9, 0, 0.0, -(10**9), 2.0, 1.0, "", " ", "gpu", "cuda:x", "float7",
                             (), (0,), (-1, 1), (1.0, 1.0), ("",), {"a": -1}, {"a": "x"}, {1: 1}])
    return (
        st.one_of(_values_of_type(setting.type), extra)
        .filter(lambda value: _accepts(setting.type, value))
        .filter(lambda value: not _passes(setting, value))
    )


def _non_finite(setting: config.Setting) -> st.SearchStrategy[Any]:
    bad = st.sampled_from([math.nan, math.inf, -math.inf])
    tp = setting.type
    args = _union_args(tp) or (tp,)
    if float in args:
        return bad
    for arg in args:
        items = _tuple_items(arg)
        if items is not None and float in items:
            width = 1 if items[-1] is Ellipsis else len(items)
            return st.tuples(bad, st.integers(0, width - 1)).map(
                lambda pair, width=width: tuple(pair[0] if i == pair[1] else 0.5 for i in range(width))
            )
    return st.nothing()


def _unregistered(setting: config.Setting) -> st.SearchStrategy[Any]:
    if setting.registry is None or config.resolve_registry(setting.registry) is None:
        return st.nothing()
    registry = config.resolve_registry(setting.registry)
    names = st.text("abcxyz_-", min_size=1, max_size=10).map(lambda s: "no_such_" + s)
    names = names.filter(lambda name: name not in registry)
    return names.map(lambda name: (name,)) if _tuple_items(setting.type) is not None else names


def invalid_values(setting: config.Setting) -> st.SearchStrategy[Any]:
    wrong_type = st.sampled_from([value for value in WRONG_TYPED if not _accepts(setting.type, value)])
    return st.one_of(wrong_type, _non_finite(setting), _below_or_outside(setting), _unregistered(setting))


SEED = config.Setting("seed", 0, int, "", "training", config.at_least(0))


def _names(name: str, message: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message) is not None


@fuzz_settings(max_examples=200, **FUZZ)
@given(values=valid_configs(), setting=st.sampled_from([*SETTINGS, SEED]), data=st.data())
def test_a_config_with_one_invalid_field_is_refused_naming_it(
    values: dict[str, Any], setting: config.Setting, data: st.DataObject
) -> None:
    bad = data.draw(invalid_values(setting), label=f"bad {setting.name}")
    with pytest.raises(ValueError) as error:
        Settings(**{**values, setting.name: bad})
    assert _names(setting.name, str(error.value)), str(error.value)


# ==== rewards through estimators, shapers and filters ==================================================

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 1e30, -1e30, 1e-30, -1e-30, 3.0e-38, 1e-300]
reward_values = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(-1.0, 1.0),
    st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False),
)
DTYPES = [torch.float64, torch.float32, torch.bfloat16]


@st.composite
def reward_tensors(draw: st.DrawFn, values: st.SearchStrategy[float] = reward_values) -> torch.Tensor:
    """[num_groups, group_size] rewards: groups of one, all-equal, 0/1, scaled 0/1, or any values."""
    num_groups, group_size = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["any", "equal", "binary", "scaled"]))
    rows = []
    for _ in range(num_groups):
        if kind == "equal":
            rows.append([draw(values)] * group_size)
        elif kind == "any":
            rows.append(draw(st.lists(values, min_size=group_size, max_size=group_size)))
        else:
            scale = 1.0 if kind == "binary" else draw(st.sampled_from([1e30, -1e30, 1e-30, -1e-30, 7.5]))
            rows.append([scale * b for b in draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=group_size,
                                                          max_size=group_size))])
    return torch.tensor(rows, dtype=torch.float64).to(draw(st.sampled_from(DTYPES)))


def _batch(rewards: torch.Tensor, seed: int, max_length: int = 6, correct: torch.Tensor | None = None) -> TrainingBatch:
    """A batch whose rows are ``rewards`` flattened (prompt-major), with random response lengths."""
    generator = torch.Generator().manual_seed(seed)
    num_groups, group_size = rewards.shape
    n = num_groups * group_size
    lengths = torch.randint(0, max_length + 1, (n,), generator=generator).tolist()
    scores = rewards.reshape(-1)
    return TrainingBatch(
        problem_ids=[f"p{i // group_size}" for i in range(n)],
        golds=["1"] * n,
        prompt_token_ids=[[1, 2]] * n,
        response_token_ids=[[5] * length for length in lengths],
        old_logprobs=[[-1.0] * length for length in lengths],
        texts=["x"] * n,
        truncated=[length >= max_length for length in lengths],
        correct=(scores > 0.5) if correct is None else correct.reshape(-1),
        scores=scores,
        rewards=scores.clone(),
        reasons=["wrong"] * n,
        group_size=group_size,
    )


def _estimate(name: str, rewards: torch.Tensor, params: dict[str, Any], seed: int, magnitude: float) -> torch.Tensor:
    """Estimator ``name`` on ``rewards``: a sequence-level one directly, a token-level one (GAE) on
    a batch with the pipeline's token rewards and, if it needs a critic, random values."""
    if not advantages.is_token_level(name):
        return advantages.compute(name, rewards, **params)
    batch = _batch(rewards, seed)
    mask = batch.response_mask()
    batch = batch.with_fields(token_rewards=outcome_token_rewards(batch.rewards, mask))
    if advantages.needs_critic(name):
        generator = torch.Generator().manual_seed(seed + 1)
        values = (torch.rand(mask.shape, generator=generator) * 2 - 1) * magnitude * mask
        batch = batch.with_fields(values=values)
    out = advantages.compute_token_level(name, batch, **params)
    assert out.returns is None or bool(torch.isfinite(out.returns).all())
    return out.advantages


def _params(values: dict[str, Any] | Settings, kind: str, name: str) -> dict[str, Any]:
    """The keyword arguments component ``name`` receives from a config (as the pipeline passes them)."""
    built = values if isinstance(values, Settings) else Settings(**values)
    return config.component_params(built, kind, name)


ESTIMATORS = _package_names(advantages.estimators)
SHAPERS = _package_names(shaping.reward_shapers)
FILTERS = _package_names(group_filters.group_filters)


def test_the_fuzzed_components_are_the_packages_own() -> None:
    assert {"grpo", "ngrpo", "dr_grpo", "rloo", "w_reinforce", "psr", "nsr", "gae"} <= set(ESTIMATORS)
    assert {"overlong_penalty", "binary"} <= set(SHAPERS)
    assert {"none", "drop_homogeneous", "drop_all_correct", "drop_all_incorrect"} <= set(FILTERS)


@fuzz_settings(max_examples=100, **FUZZ)
@given(
    rewards=reward_tensors(),
    values=valid_configs(_component_fields("advantage_estimator")),
    seed=st.integers(0, 2**16),
    magnitude=st.sampled_from([0.0, 1.0, 1e-30, 1e30]),
)
@example(rewards=torch.ones(1, 1), values={}, seed=0, magnitude=1.0)  # a group of one
@example(rewards=torch.tensor([[1e30, -1e30, 1e-30]], dtype=torch.float32), values={}, seed=0, magnitude=1e30)
def test_every_estimator_gives_finite_advantages_for_finite_rewards(
    rewards: torch.Tensor, values: dict[str, Any], seed: int, magnitude: float
) -> None:
    built = Settings(**values)
    for name in ESTIMATORS:
        out = _estimate(name, rewards, _params(built, "advantage_estimator", name), seed, magnitude)
        assert bool(torch.isfinite(out).all()), (name, rewards, out)
        if not advantages.is_token_level(name):
            assert out.shape == rewards.shape and out.dtype == rewards.dtype


@fuzz_settings(max_examples=40, **FUZZ)
@given(
    rewards=reward_tensors(st.floats(allow_nan=False, allow_infinity=False, width=32)),
    seed=st.integers(0, 2**16),
)
@example(rewards=torch.tensor([[3.4e38, -3.4e38]]), seed=0)  # the leave-one-out gap overflows float32
@example(rewards=torch.tensor([[1e308, 1e308, -1e308]], dtype=torch.float64), seed=0)  # the group sum overflows
def test_rewards_near_the_largest_float_give_finite_advantages_or_a_clear_error(
    rewards: torch.Tensor, seed: int
) -> None:
    assume(bool(torch.isfinite(rewards).all()))  # the largest float32 rounds to inf in bfloat16
    for name in ESTIMATORS:
        try:
            out = _estimate(name, rewards, _params({}, "advantage_estimator", name), seed, 1.0)
        except ValueError as error:
            assert "overflow" in str(error) and name in str(error)
        else:
            assert bool(torch.isfinite(out).all()), (name, rewards, out)


@fuzz_settings(max_examples=60, **FUZZ)
@given(
    rewards=reward_tensors(),
    position=st.tuples(st.integers(0, 4), st.integers(0, 8)),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    seed=st.integers(0, 2**16),
)
def test_non_finite_rewards_are_refused_by_every_component(
    rewards: torch.Tensor, position: tuple[int, int], bad: float, seed: int
) -> None:
    group, index = position[0] % rewards.shape[0], position[1] % rewards.shape[1]
    rewards = rewards.clone()
    rewards[group, index] = bad
    for name in ESTIMATORS:
        with pytest.raises(ValueError, match="non-finite"):
            _estimate(name, rewards, _params({}, "advantage_estimator", name), seed, 1.0)
    for name in FILTERS:
        with pytest.raises(ValueError, match=rf"non-finite values \(first at group {group}, index {index}\)"):
            group_filters.apply(name, rewards, **_params({}, "group_filter", name))
    with pytest.raises(ValueError, match="non-finite"):
        group_filters.group_stats(rewards)
    batch = _batch(rewards, seed)
    for names in ([], *([name] for name in SHAPERS), SHAPERS):
        shaper_params = {name: _params({}, "reward_shaping", name) for name in names}
        with pytest.raises(ValueError, match=rf"scores contain 1 non-finite values \(first at row {group * rewards.shape[1] + index}\)"):
            shaping.shape_rewards(batch, names, shaper_params)


@fuzz_settings(max_examples=80, **FUZZ)
@given(
    rewards=reward_tensors(),
    values=valid_configs(_component_fields("reward_shaping") + _component_fields("group_filter")),
    data=st.data(),
)
def test_every_shaper_and_filter_gives_finite_results(
    rewards: torch.Tensor, values: dict[str, Any], data: st.DataObject
) -> None:
    correct = data.draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=rewards.numel(),
                                                      max_size=rewards.numel())), label="correct")
    if correct is not None:
        correct = torch.tensor(correct).reshape(rewards.shape)

    built = Settings(**values)
    # Shapers: each alone, then a random order of all of them (lengths around max_new_tokens).
    max_length = min(values["max_new_tokens"], 200) + 3
    batch = _batch(rewards, data.draw(st.integers(0, 2**16), label="seed"), max_length, correct)
    orders = [[name] for name in SHAPERS] + [data.draw(st.permutations(SHAPERS), label="order")]
    for names in orders:
        shaper_params = {name: _params(built, "reward_shaping", name) for name in names}
        shaped = shaping.shape_rewards(batch, names, shaper_params).rewards
        assert shaped.shape == batch.scores.shape and bool(torch.isfinite(shaped).all()), (names, shaped)

    # Filters and the group statistics.
    for name in FILTERS:
        keep = group_filters.apply(name, rewards, correct, **_params(built, "group_filter", name))
        assert keep.dtype == torch.bool and keep.shape == (rewards.shape[0],)
    stats = group_filters.group_stats(rewards, correct, advantages.compute("rloo", rewards.double()))
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values()), stats
    fractions = [stats[f"groups/frac_{k}"] for k in ("all_incorrect", "all_correct", "mixed")]
    assert sum(fractions) == pytest.approx(1.0)
