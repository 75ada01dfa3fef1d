#!/usr/bin/env bash
# One-command GPU verification: every check and measurement lsgbench needs a GPU for, written to OUT_DIR.
#
#   bash results/gpu/run.sh OUT_DIR                          # one CUDA GPU: the headline part in 6 minutes on an H100
#   bash results/gpu/run.sh OUT_DIR --device cpu --quick     # CPU dry run, small shapes (the slow tests run it)
#
# What the machine needs: torch, transformers and numpy. The rest comes as wheels made on a machine with
# network (pure-Python or manylinux wheels, for the GPU machine's Python version; the default is 3.12):
#   bash results/gpu/wheels.sh results/gpu/wheels 3.12
# and carried to results/gpu/wheels (or WHEELS=dir); this script installs what is missing from there with
# pip --no-index. The wheels: hydra-core 1.3.2, omegaconf 2.3.0, antlr4-python3-runtime 4.9.3 (built:
# PyPI has only its source), accelerate, datasets, matplotlib, pytest and their dependencies.
#
# The steps, their order and time limits are results/gpu/plan.py's (`python results/gpu/plan.py OUT --schedule`
# prints them): the headline part first (base encoders training at 16k, 4k, 1k: RoBERTa SDPA, Longformer, BigBird,
# LSG and local), within 6 minutes on an H100 with this install; then decoders, the kernel check, generation and
# the rest; report and targets always. A second lease continues a partial OUT_DIR:
#   bash results/gpu/run.sh OUT_DIR --resume
# Commit OUT_DIR as results/gpu/<device>_<date>/ with the commit that made it (summary.md names it).
set -uo pipefail
if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: bash results/gpu/run.sh OUT_DIR [--resume] [--device cpu --quick] [--budget SECONDS]" >&2; exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd); shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
python=${PYTHON:-python}

wheels=${WHEELS:-$repo/results/gpu/wheels}
if ! $python -c "import hydra, accelerate, datasets, matplotlib, pytest" 2>/dev/null; then
    [[ -d $wheels ]] || { echo "missing packages and no wheels at $wheels: see the header of $0" >&2; exit 2; }
    $python -m pip install --no-index --find-links "$wheels" "hydra-core==1.3.2" "omegaconf==2.3.0" accelerate \
        datasets matplotlib pytest >"$out/pip.txt" 2>&1 || { echo "pip install failed: $out/pip.txt" >&2; exit 2; }
fi

exec $python results/gpu/plan.py "$out" "$@"
