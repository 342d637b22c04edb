#!/usr/bin/env bash
# Set up everything the project needs, idempotently: a virtual environment with the exact pins of
# requirements.txt (torch first, CPU build where pip finds one), the package itself, and TeX Live
# (Debian/Ubuntu, as root) when latexmk is missing. A second run with nothing changed does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

"$PYTHON" - <<'PY' || { echo "setup: Python 3.11 or newer is needed (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.installed"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q "$(grep '^torch==' requirements.txt)"
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

if ! command -v latexmk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing TeX Live (about 500 MB, a minute or two)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends texlive-latex-recommended texlive-latex-extra \
      texlive-fonts-recommended texlive-science lmodern latexmk poppler-utils >/dev/null
  else
    echo "setup: latexmk is missing; install TeX Live (texlive-latex-extra, texlive-science, lmodern, latexmk)" >&2
    echo "setup: or use 'nix develop'. Everything but the PDF still runs." >&2
  fi
fi
