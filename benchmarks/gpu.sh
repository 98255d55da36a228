#!/bin/sh
# One command for a GPU machine: the paper-scale epoch time and the bf16 / channels_last /
# torch.compile gains (gpu_epoch.py: per variant the step time, the evaluations per block and
# whether the solves reached their tolerance), the demo-net step breakdown (training_step.py), what
# the Fourier preconditioner costs beside an evaluation (inversion.py --preconditioner-cost), and
# the Lipschitz projection's cost per step and per refresh, exact grid against tracked norm
# (projection.py).
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" benchmarks/gpu_epoch.py --device cuda
"$PY" benchmarks/training_step.py --device cuda
"$PY" benchmarks/inversion.py --preconditioner-cost --device cuda
"$PY" benchmarks/projection.py --device cuda
