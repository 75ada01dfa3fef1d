#!/usr/bin/env bash
# The wheels results/gpu/run.sh needs on a machine that has only torch, transformers and numpy; run this on
# a machine with network, then carry DIR to the GPU machine's checkout as results/gpu/wheels (or WHEELS=DIR).
#   bash results/gpu/wheels.sh DIR [PYTHON_VERSION]      # default: results/gpu/wheels 3.12; about 150 MB
set -euo pipefail
dir=${1:-results/gpu/wheels} py=${2:-3.12}
mkdir -p "$dir"
target=(--python-version "$py" --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
        --find-links "$dir")
# antlr4-python3-runtime (hydra's parser runtime) is only a source package on PyPI: build its pure-Python wheel.
pip wheel --no-deps -w "$dir" antlr4-python3-runtime==4.9.3
pip download -d "$dir" "${target[@]}" hydra-core==1.3.2 omegaconf==2.3.0 datasets matplotlib pytest psutil
pip download -d "$dir" "${target[@]}" --no-deps accelerate   # its other requirement is torch, already there
ls "$dir" | wc -l
