#!/usr/bin/env bash
# Mutation testing of the core components against their fast tests (by hand, not in CI).
#   bash scripts/mutation_test.sh                        every module (~2 h on 2 cores)
#   bash scripts/mutation_test.sh --module losses        one module (repeatable)
#   bash scripts/mutation_test.sh --rerun-survivors      only the survivors of the last run
#   bash scripts/mutation_test.sh --resume               continue an interrupted run
#   bash scripts/mutation_test.sh --list                 the sampled mutants, nothing run
# Writes benchmarks/results/mutation_score.json; see benchmarks/mutation_score.py and
# docs/mutation_testing.md. Mutants are written only into a temporary copy of the package, never
# into the working tree. Needs the dev extra (pytest, hypothesis): bash scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
exec "$python" benchmarks/mutation_score.py "$@"
