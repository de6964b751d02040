#!/usr/bin/env bash
# The project's test command (README): unit tests, then every notebook under strict nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg PYTHONHASHSEED=0

python3 -m pytest tests -q -rs
if compgen -G "chapters/*.ipynb" > /dev/null; then
  python3 -m pytest --nbval intro.ipynb chapters -q
fi
