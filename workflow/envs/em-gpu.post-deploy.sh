#!/usr/bin/env bash
# Snakemake runs this once after creating the environment, with the environment active, in the
# workflow's working directory (the clone): install the project itself, editable, so that `em`
# exists in the environment and the package finds workflow/ beside src/.
set -euo pipefail
if ! grep -q '^name = "emergent-misalignment"' pyproject.toml 2>/dev/null; then
  echo "post-deploy: run snakemake from the repository root ($PWD has no emergent-misalignment pyproject.toml)" >&2
  exit 1
fi
python -m pip install --no-deps -e .
