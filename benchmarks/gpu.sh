#!/bin/sh
# One command for a GPU machine: the paper-scale epoch time and the bf16 / channels_last /
# torch.compile gains (gpu_epoch.py), then the demo-net step breakdown (training_step.py).
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" benchmarks/gpu_epoch.py --device cuda
"$PY" benchmarks/training_step.py --device cuda
