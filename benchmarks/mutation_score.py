"""Mutation testing of the core components: how many plausible one-token bugs do the fast tests catch?

For each core module this parses the source with ``ast``, generates classic mutants (one change
each), runs the module's fast tests against each mutant, and writes the mutation score as JSON
(``benchmarks/results/mutation_score.json``): per module killed / survived / timeout / total, the
overall score, and every surviving mutant with its file, line, mutation and a one-line explanation.

    python benchmarks/mutation_score.py                         # every module (~35 min, 2 cores)
    python benchmarks/mutation_score.py --module losses         # one module (repeatable)
    python benchmarks/mutation_score.py --rerun-survivors       # only last run's survivors
    scripts/mutation_test.sh                                    # the same, from the venv

It runs by hand, not in CI.

**The working tree is never modified.** The sources are copied once into a temporary *shadow*
package (``ngrpo_rl/``, with ``envs/`` and ``algorithms/`` placed at ``ngrpo_rl/envs`` and
``ngrpo_rl/algorithms`` as ``setup.cfg``'s ``package_dir`` installs them); each mutant is written
into that copy only, the tests of ``tests/`` run with the shadow first on ``sys.path`` (and on
``PYTHONPATH`` for subprocesses), and the copy is restored after each mutant and deleted at exit.
Before a module's mutants, its tests must pass on the unmutated copy (the baseline) and fail on a
copy that raises on import (the canary: proves the tests import the shadow, not the working tree).

Why not mutmut: mutmut 3 skips every decorated function, and every estimator, policy loss,
aggregation, KL estimator, group filter and reward shaper here is registered by a decorator; its
copy into ``mutants/`` also cannot follow ``package_dir`` (``ngrpo_rl.envs`` is ``envs/``).

Mutation operators (``KINDS``): comparison boundary and negation (``<`` -> ``<=`` / ``>=``, ``==``
-> ``!=``, ``is`` -> ``is not``, ``in`` -> ``not in``), arithmetic (``+`` <-> ``-``, ``*`` <-> ``/``,
``//`` -> ``/``, ``**`` -> ``*``), bitwise mask logic (``&`` <-> ``|``), ``and`` <-> ``or``, removal
of ``not`` / ``~`` / unary ``-``, constants (int ``n`` -> ``n + 1``, float ``x`` -> ``x + 1.0``,
``True`` <-> ``False``; keyword defaults included), ``min`` <-> ``max`` style call swaps, condition
negation (``if x`` -> ``if not x``), ``return value`` -> ``return None``, and deletion of calls and
of assignments to attributes / items (state updates such as ``self.scheduler.last_epoch = ...``).
Not mutated: docstrings, annotations, decorators (registration metadata), f-strings, string
constants, and the code building a ``raise``'s exception (its guarding condition is mutated).

Every mutant of each module runs (``Target.max_mutants`` can cap a module at a deterministic
sample, seeded and round-robin over functions so that every function is represented);
``--max-mutants N`` samples N of every module instead (0: all; a smaller sample is a prefix of a
larger one, same seed). Tests run with ``-m "not slow" -x -p
no:cacheprovider --hypothesis-seed=0`` and a timeout of 3x the baseline + 15 s; each run is a fork of
this process after it has imported the third-party libraries the tests need (torch, transformers,
...; never the package under test), so a mutant costs its tests' time, not the imports
(``--no-fork`` runs plain ``python -m pytest`` subprocesses instead).

Survivors judged equivalent (no observable behaviour change) are listed with the reason in
``benchmarks/mutation_equivalents.json`` keyed by the mutant's id (a hash of module, function,
kind, original and mutated text: stable across edits elsewhere in the file). The score counts
timeouts as detected: ``score = (killed + timeout) / total``; ``score_excluding_equivalent`` leaves
the explained equivalents out of the total.
"""

from __future__ import annotations

import argparse
import ast
import atexit
import copy
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "benchmarks" / "results" / "mutation_score.json"
EQUIVALENTS = REPOSITORY / "benchmarks" / "mutation_equivalents.json"
PYTEST_ARGS = ["-m", "not slow", "-x", "-q", "--tb=line", "-p", "no:cacheprovider", "--hypothesis-seed=0"]


@dataclasses.dataclass(frozen=True)
class Target:
    """One module under mutation: its file (repository path), the fast tests that cover it, and
    optionally which parts of it to mutate (qualified function names, or text-marked line regions)."""

    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()
    regions: tuple[tuple[str, str], ...] = ()  # (first line's text, text of the line after the region)
    max_mutants: int = 0  # default sample size (0: every mutant); --max-mutants overrides it


# learner last: it is the module other people edit most, and its tests are the slowest to start.
TARGETS: dict[str, Target] = {
    "advantages": Target("ngrpo_rl/advantages.py", ("tests/test_advantages.py",)),
    "losses": Target("ngrpo_rl/losses.py", ("tests/test_losses.py",)),
    "group_filters": Target("ngrpo_rl/group_filters.py", ("tests/test_group_filters.py",)),
    "metrics": Target("ngrpo_rl/metrics.py", ("tests/test_metrics.py",)),
    "shaping": Target("ngrpo_rl/pipeline/shaping.py", ("tests/test_shaping.py", "tests/test_pipeline.py")),
    # The verifier's fast path: the exact / numeric comparison before math-verify ...
    "fast_match": Target(
        "envs/fast_match.py",
        ("tests/test_fast_match.py", "tests/test_envs_extraction.py", "tests/test_envs_verifier.py"),
    ),
    # ... and the part of verify_batch that routes to it (extraction, length cap, fast verdicts).
    "verifier_fast_path": Target(
        "envs/verifier.py",
        ("tests/test_envs_verifier.py",),
        functions=("Verdict.reward",),
        regions=(("for position, (completion, gold) in enumerate(", "worker_errors = 0"),),
    ),
    # 300+ mutants at ~6 s each (every test loads a model): about 35 minutes for all of them. The
    # group tests (two learners as Ray actors) run second: only a mutant the single-learner tests
    # miss pays their minute, and they are what sees the multi-rank code (shares, gradient sync).
    "learner": Target("ngrpo_rl/learner.py", ("tests/test_learner.py", "tests/test_learner_group.py")),
}


# ---- mutant generation ---------------------------------------------------------------------------


@dataclasses.dataclass
class Mutant:
    module: str
    file: str
    line: int
    function: str
    kind: str
    original: str  # the source text replaced
    code: str  # the (first) source line it is on, stripped
    mutated: str  # what replaces it
    description: str
    source: str = dataclasses.field(repr=False, default="")  # the whole mutated file
    id: str = ""
    status: str = "pending"
    killed_by: str | None = None
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        del out["source"]
        return out


COMPARE_SWAPS: dict[type, list[type]] = {
    ast.Lt: [ast.LtE, ast.GtE],
    ast.LtE: [ast.Lt, ast.Gt],
    ast.Gt: [ast.GtE, ast.LtE],
    ast.GtE: [ast.Gt, ast.Lt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
    ast.Is: [ast.IsNot],
    ast.IsNot: [ast.Is],
    ast.In: [ast.NotIn],
    ast.NotIn: [ast.In],
}
BINOP_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.Mod: ast.FloorDiv,
}
CALL_SWAPS = {
    "min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "amin": "amax",
    "amax": "amin", "all": "any", "any": "all", "floor": "ceil", "ceil": "floor",
}
OP_TEXT = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
    ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**", ast.BitAnd: "&",
    ast.BitOr: "|", ast.Mod: "%",
}
KINDS = (
    "compare", "arithmetic", "boolean", "unary", "constant", "call_swap", "negate_condition",
    "return_none", "delete_statement",
)


class _Source:
    """Byte-exact replacement of AST node spans (ast offsets are UTF-8 byte columns)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8")
        self.line_starts = [0]
        for index, byte in enumerate(self.data):
            if byte == 0x0A:
                self.line_starts.append(index + 1)

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.line_starts[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
        end = self.line_starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
        return start, end

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.data[start:end].decode("utf-8")

    def replace(self, node: ast.AST, text: str) -> str:
        start, end = self.span(node)
        return (self.data[:start] + text.encode("utf-8") + self.data[end:]).decode("utf-8")


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Generator(ast.NodeVisitor):
    """Collects (node, replacement text, kind, description, is_statement) for every mutation point."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.scope: list[str] = []
        self.points: list[tuple[ast.AST, str, str, str, str]] = []  # node, new text, kind, mutation, qualname

    # -- scopes and skipped subtrees

    def _qualname(self) -> str:
        return ".".join(self.scope) or "<module>"

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # decorators and annotations are skipped; defaults belong to the function's scope
        self.scope.append(node.name)
        for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
            self.visit(default)
        self._body(node.body)
        self.scope.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self._body(node.body)
        self.scope.pop()

    def visit_Module(self, node: ast.Module) -> None:
        self._body(node.body)

    def _body(self, body: list[ast.stmt]) -> None:
        for index, statement in enumerate(body):
            if index == 0 and _is_docstring(statement):
                continue
            self.visit(statement)

    def visit_Raise(self, node: ast.Raise) -> None:
        pass  # the exception's message is not behaviour worth a mutant

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass

    def visit_Import(self, node: ast.Import) -> None:
        pass

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        pass

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_arg(self, node: ast.arg) -> None:
        pass  # annotations

    # -- mutation points

    def _add(self, node: ast.AST, text: str, kind: str, mutation: str) -> None:
        self.points.append((node, text, kind, mutation, self._qualname()))

    def _expr(self, node: ast.expr, replacement: ast.expr, kind: str, mutation: str) -> None:
        self._add(node, "(" + ast.unparse(replacement) + ")", kind, mutation)

    def visit_Compare(self, node: ast.Compare) -> None:
        for index, op in enumerate(node.ops):
            for new_op in COMPARE_SWAPS.get(type(op), []):
                mutated = copy.deepcopy(node)
                mutated.ops[index] = new_op()
                self._expr(node, mutated, "compare", f"`{OP_TEXT[type(op)]}` -> `{OP_TEXT[new_op]}`")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        new_op = BINOP_SWAPS.get(type(node.op))
        if new_op is not None:
            mutated = copy.deepcopy(node)
            mutated.op = new_op()
            self._expr(node, mutated, "arithmetic", f"`{OP_TEXT[type(node.op)]}` -> `{OP_TEXT[new_op]}`")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        new_op = BINOP_SWAPS.get(type(node.op))
        if new_op is not None:
            mutated = copy.deepcopy(node)
            mutated.op = new_op()
            self._add(node, ast.unparse(mutated), "arithmetic",
                      f"`{OP_TEXT[type(node.op)]}=` -> `{OP_TEXT[new_op]}=`")
        if isinstance(node.target, (ast.Attribute, ast.Subscript)):
            self._add(node, "pass", "delete_statement", "statement deleted")
        self.visit(node.value)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        mutated = copy.deepcopy(node)
        mutated.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        names = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        self._expr(node, mutated, "boolean", f"`{names[0]}` -> `{names[1]}`")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        names = {ast.Not: "not", ast.Invert: "~", ast.USub: "-"}
        name = names.get(type(node.op))
        if name is not None and not (isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)):
            self._expr(node, node.operand, "unary", f"`{name}` removed")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self._expr(node, ast.Constant(not value), "constant", f"`{value}` -> `{not value}`")
        elif isinstance(value, int):
            self._expr(node, ast.Constant(value + 1), "constant", f"`{value}` -> `{value + 1}`")
        elif isinstance(value, float):
            self._expr(node, ast.Constant(value + 1.0), "constant", f"`{value!r}` -> `{value + 1.0!r}`")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in CALL_SWAPS:
            mutated = copy.deepcopy(func)
            if isinstance(mutated, ast.Name):
                mutated.id = CALL_SWAPS[name]
            else:
                mutated.attr = CALL_SWAPS[name]
            self._add(func, ast.unparse(mutated), "call_swap", f"`{name}` -> `{CALL_SWAPS[name]}`")
        self.generic_visit(node)

    def _negate(self, test: ast.expr) -> None:
        if isinstance(test, (ast.Compare, ast.BoolOp)) or (
            isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
        ):
            return  # covered by the comparison / boolean / unary mutants
        self._add(test, f"(not ({self.source.segment(test)}))", "negate_condition", "condition negated")

    def visit_If(self, node: ast.If) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self._add(node, "return None", "return_none", "return value -> `None`")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Call):
            self._add(node, "pass", "delete_statement", "statement deleted")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets):
            self._add(node, "pass", "delete_statement", "statement deleted")
        self.visit(node.value)  # targets are not mutated


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _region_lines(text: str, target: Target) -> set[int]:
    lines = text.splitlines()
    selected: set[int] = set()
    for first, after in target.regions:
        start = next(i for i, line in enumerate(lines) if first in line)
        end = next(i for i in range(start + 1, len(lines)) if after in lines[i])
        selected.update(range(start + 1, end + 1))  # 1-based line numbers start..end-1
    return selected


def generate_mutants(module: str, target: Target, text: str) -> list[Mutant]:
    """Every mutant of ``text`` (that compiles and differs), in source order, with stable ids."""
    source = _Source(text)
    tree = ast.parse(text)
    generator = _Generator(source)
    generator.visit(tree)
    region = _region_lines(text, target) if target.regions else set()
    mutants: list[Mutant] = []
    seen_sources: set[str] = set()
    occurrences: dict[str, int] = defaultdict(int)
    for node, new_text, kind, mutation, qualname in generator.points:
        line = node.lineno  # type: ignore[attr-defined]
        if target.functions or target.regions:
            in_function = any(qualname == f or qualname.startswith(f + ".") for f in target.functions)
            if not in_function and line not in region:
                continue
        mutated_text = source.replace(node, new_text)
        if mutated_text == text or mutated_text in seen_sources:
            continue
        try:
            compile(mutated_text, target.path, "exec")
        except SyntaxError:
            continue
        seen_sources.add(mutated_text)
        original = source.segment(node)
        key = f"{module}|{qualname}|{kind}|{_short(original, 400)}|{_short(new_text, 400)}"
        occurrences[key] += 1
        key += f"|{occurrences[key]}"
        mutants.append(
            Mutant(
                module=module,
                file=target.path,
                line=line,
                function=qualname,
                kind=kind,
                original=_short(original),
                code=_short(text.splitlines()[line - 1].strip(), 160),
                mutated=_short(new_text),
                description=mutation,
                source=mutated_text,
                id=hashlib.sha1(key.encode()).hexdigest()[:10],
            )
        )
    return mutants


def sample(mutants: list[Mutant], limit: int, seed: int, module: str) -> list[Mutant]:
    """Up to ``limit`` mutants, round-robin over functions (each function's order shuffled by a
    seeded RNG), returned in source order."""
    if limit <= 0 or len(mutants) <= limit:
        return list(mutants)
    rng = random.Random(f"{seed}:{module}")
    by_function: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in mutants:
        by_function[mutant.function].append(mutant)
    queues = []
    for name in sorted(by_function):
        queue = by_function[name][:]
        rng.shuffle(queue)
        queues.append(queue)
    rng.shuffle(queues)
    chosen: list[Mutant] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop())
    order = {id(m): i for i, m in enumerate(mutants)}
    return sorted(chosen, key=lambda m: order[id(m)])


# ---- the shadow package and test runs --------------------------------------------------------------


def shadow_path(shadow: Path, repo_path: str) -> Path:
    """Where ``repo_path`` lives in the shadow package (``envs/x.py`` -> ``ngrpo_rl/envs/x.py``)."""
    first, _, rest = repo_path.partition("/")
    if first in ("envs", "algorithms"):
        return shadow / "ngrpo_rl" / first / rest
    return shadow / repo_path


def make_shadow(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shadow = root / "src"
    shutil.copytree(REPOSITORY / "ngrpo_rl", shadow / "ngrpo_rl", ignore=ignore)
    shutil.copytree(REPOSITORY / "envs", shadow / "ngrpo_rl" / "envs", ignore=ignore)
    shutil.copytree(REPOSITORY / "algorithms", shadow / "ngrpo_rl" / "algorithms", ignore=ignore)
    return shadow


class Runner:
    """Runs a module's tests against the shadow package, in forks of this process (or subprocesses)."""

    def __init__(self, work: Path, fork: bool) -> None:
        self.work = work
        self.shadow = make_shadow(work)
        self.fork = fork
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(self.shadow), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                        PYTHONDONTWRITEBYTECODE="1")
        sys.dont_write_bytecode = True  # stale bytecode of a same-size mutant must never be read
        self.preloaded = False
        self.counter = 0

    def write(self, repo_path: str, text: str) -> None:
        destination = shadow_path(self.shadow, repo_path)
        assert self.shadow in destination.parents, destination  # never the working tree
        destination.write_text(text, encoding="utf-8")

    def preload(self, tests: tuple[str, ...]) -> None:
        """Imports in this process the third-party modules the tests import (found by a collection
        run in a subprocess), so that each forked test run starts warm. The package under test is
        never imported here."""
        if not self.fork:
            return
        listing = self.work / "modules.json"
        code = (
            "import json, sys, pytest\n"
            f"pytest.main({[*tests, '--collect-only', '-q', '-p', 'no:cacheprovider', '--rootdir', str(REPOSITORY), '-c', str(REPOSITORY / 'setup.cfg')]!r})\n"
            f"json.dump(sorted(sys.modules), open({str(listing)!r}, 'w'))\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=self.shadow, env=self.env, capture_output=True, check=False,
                       timeout=600)
        if not listing.exists():
            return
        skip_prefixes = ("ngrpo_rl", "conftest", "support", "test_", "__", "tests")
        for name in json.loads(listing.read_text()):
            if name in sys.modules or name.startswith(skip_prefixes):
                continue
            module_file = None
            try:
                __import__(name)
                module_file = getattr(sys.modules.get(name), "__file__", None) or ""
            except BaseException:  # noqa: BLE001, S112 - optional modules may fail to import alone
                continue
            if str(REPOSITORY) in module_file or str(self.shadow) in module_file:
                sys.modules.pop(name, None)
        assert not any(m == "ngrpo_rl" or m.startswith("ngrpo_rl.") for m in sys.modules)
        self.preloaded = True

    def run(self, tests: tuple[str, ...], timeout: float) -> tuple[str, str | None, float, str]:
        """(status, first failing test, seconds, log tail): status ``passed`` / ``failed`` /
        ``timeout`` / ``error`` (pytest usage or internal error, no tests collected)."""
        self.counter += 1
        log = self.work / f"run-{self.counter % 4}.log"
        basetemp = self.work / "pytest-tmp"
        args = [*[str(REPOSITORY / t) for t in tests], *PYTEST_ARGS, "--rootdir", str(REPOSITORY),
                "-c", str(REPOSITORY / "setup.cfg"), "--basetemp", str(basetemp)]
        started = time.monotonic()
        if self.fork:
            code = self._run_forked(args, log, timeout)
        else:
            code = self._run_subprocess(args, log, timeout)
        seconds = time.monotonic() - started
        text = log.read_text(errors="replace") if log.exists() else ""
        failing = next(
            (line.split(" ", 1)[1].split(" - ")[0].strip() for line in text.splitlines()
             if line.startswith(("FAILED ", "ERROR "))),
            None,
        )
        if failing and "tests/" in failing:  # node ids are relative to the shadow: make them the repo's
            failing = failing[failing.index("tests/"):]
        if code is None:
            status = "timeout"
        elif code == 0:
            status = "passed"
        elif code in (1, 2):  # tests failed / collection (import) failed
            status = "failed"
        else:
            status = "error"
        return status, failing, seconds, text[-3000:]

    def _run_subprocess(self, args: list[str], log: Path, timeout: float) -> int | None:
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=self.shadow, env=self.env,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait()
                return None
            except BaseException:
                _kill_group(process.pid)
                raise

    def _run_forked(self, args: list[str], log: Path, timeout: float) -> int | None:
        pid = os.fork()
        if pid == 0:  # the child: a fresh session, output to the log, pytest on the shadow
            code = 3
            try:
                os.setsid()
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.chdir(self.shadow)
                os.environ.clear()
                os.environ.update(self.env)
                sys.path.insert(0, str(self.shadow))
                sys.argv = ["pytest"]
                import pytest

                code = int(pytest.main(args))
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
                code = 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + timeout
        try:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 3
                if time.monotonic() > deadline:
                    _kill_group(pid)
                    os.waitpid(pid, 0)
                    return None
                time.sleep(0.02)
        except BaseException:  # interrupted: the test run (its own session) must not outlive us
            _kill_group(pid)
            raise

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- one module ----------------------------------------------------------------------------------


def run_module(runner: Runner, module: str, target: Target, mutants: list[Mutant], log: Any,
               progress: Any = None) -> dict[str, Any]:
    original = (REPOSITORY / target.path).read_text(encoding="utf-8")
    runner.write(target.path, original)  # the snapshot the mutants were generated from
    runner.preload(target.tests)
    status, failing, baseline, tail = runner.run(target.tests, timeout=1800)
    if status != "passed":
        raise RuntimeError(f"{module}: the tests fail on the unmutated source ({status}, {failing}):\n{tail}")
    timeout = 3 * baseline + 15
    try:
        runner.write(target.path, 'raise RuntimeError("mutation canary")\n' + original)
        status, _, _, tail = runner.run(target.tests, timeout=timeout)
    finally:
        runner.write(target.path, original)
    if status != "failed":
        raise RuntimeError(f"{module}: the canary was not detected ({status}): the tests do not import the shadow\n{tail}")
    print(f"[{module}] {len(mutants)} mutants, baseline {baseline:.1f}s, timeout {timeout:.0f}s", file=log, flush=True)
    for index, mutant in enumerate(mutants, 1):
        try:
            runner.write(target.path, mutant.source)
            status, failing, seconds, tail = runner.run(target.tests, timeout=timeout)
        finally:
            runner.write(target.path, original)
        mutant.status = {"failed": "killed", "passed": "survived"}.get(status, status)
        mutant.killed_by = failing if mutant.status == "killed" else None
        mutant.seconds = round(seconds, 2)
        if mutant.status == "error":
            mutant.killed_by = _short(tail.strip().splitlines()[-1] if tail.strip() else "", 200)
        print(f"[{module}] {index}/{len(mutants)} {mutant.status:8s} {mutant.file}:{mutant.line} "
              f"{mutant.description}: {mutant.original} -> {mutant.mutated} ({seconds:.1f}s)", file=log, flush=True)
        if progress is not None and index % 10 == 0:
            progress(index)
    return {"baseline_seconds": round(baseline, 2), "timeout_seconds": round(timeout, 1)}


# ---- results -------------------------------------------------------------------------------------


def load_equivalents() -> dict[str, dict[str, Any]]:
    if not EQUIVALENTS.exists():
        return {}
    return {entry["id"]: entry for entry in json.loads(EQUIVALENTS.read_text())}


def summarize(records: dict[str, list[dict[str, Any]]], runs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    equivalents = load_equivalents()
    modules: dict[str, Any] = {}
    survivors: list[dict[str, Any]] = []
    totals: dict[str, int] = defaultdict(int)
    for module, target in TARGETS.items():
        if module not in records:
            continue
        counts = {"killed": 0, "survived": 0, "timeout": 0, "error": 0, "equivalent": 0, "total": 0}
        for record in records[module]:
            counts["total"] += 1
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            if record["status"] == "survived":
                entry = equivalents.get(record["id"])
                record["equivalent"] = entry is not None
                record["explanation"] = entry["why"] if entry else "NOT EXPLAINED: needs a test or an equivalence argument"
                counts["equivalent"] += entry is not None
                survivors.append({k: record[k] for k in ("id", "module", "file", "line", "function", "kind",
                                                          "description", "code", "original", "mutated", "equivalent",
                                                          "explanation")})
        detected = counts["killed"] + counts["timeout"]
        counts["score"] = round(detected / counts["total"], 4) if counts["total"] else None
        rest = counts["total"] - counts["equivalent"]
        counts["score_excluding_equivalent"] = round(detected / rest, 4) if rest else None
        counts.update(runs.get(module, {}))
        modules[module] = {"file": target.path, "tests": list(target.tests), **counts}
        for key in ("killed", "survived", "timeout", "error", "equivalent", "total"):
            totals[key] += counts[key]
    detected = totals["killed"] + totals["timeout"]
    rest = totals["total"] - totals["equivalent"]
    return {
        "tool": "benchmarks/mutation_score.py (ast mutants, shadow package; see its docstring)",
        "pytest_args": PYTEST_ARGS,
        "seed": args.seed,
        "overall": {
            **dict(totals),
            "score": round(detected / totals["total"], 4) if totals["total"] else None,
            "score_excluding_equivalent": round(detected / rest, 4) if rest else None,
        },
        "modules": modules,
        "survivors": survivors,
        "mutants": records,
    }


def markdown(summary: dict[str, Any]) -> str:
    """The score table and the survivors table of a results file, as Markdown (for the docs)."""
    lines = ["| module | file | killed | survived | (equivalent) | timeout | error | total | score |",
             "|---|---|---|---|---|---|---|---|---|"]
    for module, info in summary["modules"].items():
        lines.append(f"| {module} | `{info['file']}` | {info['killed']} | {info['survived']} | {info['equivalent']} | "
                     f"{info['timeout']} | {info['error']} | {info['total']} | {info['score']:.1%} |")
    overall = summary["overall"]
    lines.append(f"| **overall** | | {overall['killed']} | {overall['survived']} | {overall['equivalent']} | "
                 f"{overall['timeout']} | {overall['error']} | {overall['total']} | **{overall['score']:.1%}** |")
    lines += ["", "| id | where | mutation | code | why it survives |", "|---|---|---|---|---|"]
    for s in summary["survivors"]:
        code = s["code"].replace("|", "\\|")
        why = s["explanation"].replace("|", "\\|")
        lines.append(f"| `{s['id']}` | `{s['file']}:{s['line']}` ({s['function']}) | {s['description']} | `{code}` | {why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=list(TARGETS), help="run only this module (repeatable)")
    parser.add_argument("--max-mutants", type=int, default=None,
                        help="mutants sampled per module (0: all; default: every mutant, 100 of learner's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-module sample")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="re-test only the mutants that survived in the existing results file")
    parser.add_argument("--resume", action="store_true",
                        help="skip the mutants of the sample already recorded in the results file (continues an "
                             "interrupted run)")
    parser.add_argument("--only", action="append", metavar="ID",
                        help="run only the mutant with this id (repeatable; with --rerun-survivors, of those survivors)")
    parser.add_argument("--list", action="store_true", help="list the sampled mutants and exit")
    parser.add_argument("--no-fork", action="store_true", help="plain subprocesses instead of forks of a warm process")
    parser.add_argument("--markdown", action="store_true",
                        help="print the tables of the existing results file as Markdown and exit")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(summarize(json.loads(args.output.read_text())["mutants"], {}, args)))
        return 0

    modules = args.module or list(TARGETS)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    records: dict[str, list[dict[str, Any]]] = previous.get("mutants", {})
    runs: dict[str, Any] = {m: {k: v for k, v in info.items() if k in ("baseline_seconds", "timeout_seconds", "seconds")}
                            for m, info in previous.get("modules", {}).items()}
    for module, info in previous.get("modules", {}).items():
        runs[module].update({k: info[k] for k in ("generated", "max_mutants") if k in info})
    if args.rerun_survivors and not previous:
        parser.error(f"--rerun-survivors needs an existing {args.output}")

    work = Path(tempfile.mkdtemp(prefix="ngrpo-mutation-"))
    runner: Runner | None = None

    def cleanup() -> None:
        shutil.rmtree(work, ignore_errors=True)

    atexit.register(cleanup)

    def terminated(signum: int, _frame: Any) -> None:
        print(f"stopped by signal {signum}; results so far are in {args.output}", file=sys.stderr, flush=True)
        sys.exit(128 + signum)  # runs the finally clauses: the test run is killed, the copy deleted

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGHUP, terminated)
    started = time.monotonic()
    try:
        for module in modules:
            target = TARGETS[module]
            text = (REPOSITORY / target.path).read_text(encoding="utf-8")
            everything = generate_mutants(module, target, text)
            cap = target.max_mutants if args.max_mutants is None else args.max_mutants
            chosen = sample(everything, cap, args.seed, module)
            if args.rerun_survivors:
                wanted = {r["id"] for r in records.get(module, []) if r["status"] == "survived"}
                chosen = [m for m in chosen if m.id in wanted]
                # A mutant the current source no longer has (its code was removed) leaves the results.
                current = {m.id for m in everything}
                gone = [r for r in records.get(module, []) if r["id"] not in current]
                if gone:
                    print(f"[{module}] {len(gone)} recorded mutants no longer exist in the source: "
                          + ", ".join(f"{r['line']} {r['description']}" for r in gone), flush=True)
                    records[module] = [r for r in records[module] if r["id"] in current]
            if args.only:
                chosen = [m for m in chosen if m.id in set(args.only)]
            earlier = records.get(module, []) if args.resume else []
            if earlier:
                recorded = {r["id"] for r in earlier}
                chosen = [m for m in chosen if m.id not in recorded]
            if args.list:
                print(f"[{module}] {len(chosen)} of {len(everything)} mutants")
                for m in chosen:
                    print(f"  {m.id} {m.file}:{m.line} {m.function} {m.kind}: {m.description}: {m.original} -> {m.mutated}")
                continue
            if not chosen:
                continue
            if runner is not None:
                runner.close()
            runner = Runner(work / module, fork=not args.no_fork)
            module_started = time.monotonic()

            def progress(done: int, module: str = module, chosen: list[Mutant] = chosen) -> None:
                """Saves the finished part of an unfinished module (an interrupted run keeps it)."""
                partial = dict(records)
                finished = [m.record() for m in chosen[:done]]
                if args.rerun_survivors:
                    by_id = {r["id"]: r for r in finished}
                    finished = [by_id.get(r["id"], r) for r in records[module]]
                partial[module] = earlier + finished
                partial_runs = {**runs, module: {"complete": False, "done": done, "of": len(chosen)}}
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(summarize(partial, partial_runs, args), indent=1) + "\n")

            info = run_module(runner, module, target, chosen, sys.stdout, progress)
            info["seconds"] = round(time.monotonic() - module_started, 1)
            info["generated"] = len(everything)
            info["max_mutants"] = cap
            fresh = [m.record() for m in chosen]
            if args.rerun_survivors:
                by_id = {r["id"]: r for r in fresh}
                records[module] = [by_id.get(r["id"], r) for r in records[module]]
                info["seconds"] = runs.get(module, {}).get("seconds")
            else:
                records[module] = earlier + fresh
                if earlier:
                    info["seconds"] = round(info["seconds"] + (runs.get(module, {}).get("seconds") or 0.0), 1)
            runs[module] = info
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(summarize(records, runs, args), indent=1) + "\n")
    finally:
        if runner is not None:
            runner.close()
        cleanup()
    if args.list:
        return 0
    summary = summarize(records, runs, args)
    summary["seconds_this_invocation"] = round(time.monotonic() - started, 1)
    args.output.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({"overall": summary["overall"],
                      "modules": {m: {k: v[k] for k in ("killed", "survived", "timeout", "error", "equivalent", "total",
                                                        "score")} for m, v in summary["modules"].items()}}, indent=1))
    unexplained = [s for s in summary["survivors"] if not s["equivalent"]]
    for s in unexplained:
        print(f"SURVIVED {s['id']} {s['file']}:{s['line']} ({s['function']}) {s['description']}: "
              f"{s['original']} -> {s['mutated']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
