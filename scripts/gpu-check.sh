#!/usr/bin/env bash
# The GPU machine's check: the embedded default's training, sampling and local judging through the
# `em` command line, on CUDA in bf16 (on the CPU where there is no GPU), with tokens per second
# written to $OUT/gpu-check.{json,md} (results/gpu-check/ when OUT is unset).
#   bash scripts/gpu-check.sh [--tiny]        PYTHON=python3 by default
# Needs torch, transformers, peft, accelerate, tokenizers, pyyaml, trl and datasets. Wheels in .whl/
# are installed first, each only when its package is missing here (the GPU machine has no network;
# docs/scale-out.md gives the `pip download` command that fills .whl/). No Snakemake needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
out=${OUT:-results/gpu-check}
mkdir -p "$out"

if compgen -G ".whl/*.whl" > /dev/null; then
  # Install a carried wheel only if its distribution is absent: never replace the machine's torch.
  mapfile -t wanted < <("$PYTHON" - .whl/*.whl <<'PY'
import re, sys
from importlib import metadata
for wheel in sys.argv[1:]:
    name = re.sub(r"[-_.]+", "-", wheel.rsplit("/", 1)[-1].split("-")[0]).lower()
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(wheel)
PY
  )
  if [ "${#wanted[@]}" -gt 0 ]; then
    echo "gpu-check: installing ${wanted[*]}"
    "$PYTHON" -m pip install --quiet --no-index --no-deps "${wanted[@]}"
  fi
fi

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" - <<'PY'
import torch
print(f"gpu-check: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
PY
exec "$PYTHON" scripts/gpu_check.py --out "$out" "$@"
