#!/usr/bin/env bash
# The LSG paper's central claim on the one real checkpoint that installs offline: all-MiniLM-L6-v2
# (BERT, 6 layers, 384 hidden, 512 positions) truncated at 512 tokens, against the same checkpoint
# converted to LSG at 4,096 tokens (reviews read whole), fine-tuned with the same budget (trainer=cpu:
# one epoch of the 1,000-review IMDb sample, batch 8, lr 5e-5) and tested on the 1,000 test reviews.
# Needs the samples at ../shared/data/imdb. Regenerate: bash results/imdb_minilm/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/imdb_minilm
common=(task=imdb task.data_dir=../shared/data/imdb trainer=cpu paths.store_dir=$out/runs
        hydra.run.dir=outputs/imdb_minilm/\${model.name}/\${now:%H-%M-%S})
python -m lsgbench "${common[@]}" model=minilm
python -m lsgbench "${common[@]}" model=lsg_minilm model.max_length=4096
python -m lsgbench.report $out/runs --by model,attention,max_length --format md,csv --out $out
