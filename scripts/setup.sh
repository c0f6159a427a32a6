#!/usr/bin/env bash
# Creates (or refreshes) the virtual environment at .venv in the repository root.
#   bash scripts/setup.sh        runtime dependencies
#   bash scripts/setup.sh dev    runtime + test dependencies
# Idempotent: a second run with unchanged setup.cfg installs nothing.
# TORCH_SPEC picks the torch build: the default is the CPU wheel torch==2.13.0; GPU users set e.g.
# TORCH_SPEC="torch==2.13.0" with their CUDA index, or TORCH_SPEC=skip to keep what is installed.
# torch is installed with pip (which finds a local wheel where the machine has one); the rest with
# uv when it can be installed (about 5 s instead of 40 s), else with pip. INSTALLER=pip forces pip.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
python="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.setup-stamp${extras:+-$extras}"
want="$(cat setup.cfg pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $torch_spec"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
if [ "$torch_spec" != skip ]; then
  # Unquoted on purpose: TORCH_SPEC may carry pip options, e.g. "torch==2.13.0 --index-url URL".
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $torch_spec
fi
project=".${extras:+[$extras]}"
# uv keeps the torch installed above: it satisfies the project's requirement.
if [ "${INSTALLER:-uv}" = uv ] && .venv/bin/python -m pip install -q uv \
    && .venv/bin/python -m uv pip install -q --python .venv/bin/python -e "$project"; then
  :
else
  echo "setup.sh: installing with pip" >&2
  .venv/bin/python -m pip install -q -e "$project"
fi
echo "$want" > "$stamp"
