#!/usr/bin/env bash
# Local-window baselines (Xiong et al. 2022) on the same backbone and budget as run.sh: MiniLM converted
# to 4,096 tokens with disjoint blocks of 128 and with a sliding window of 256, no global tokens.
# Regenerate: bash results/imdb_minilm/run_local.sh   (the table then covers all runs in runs/)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/imdb_minilm
common=(task=imdb task.data_dir=../shared/data/imdb trainer=cpu paths.store_dir=$out/runs model=local_minilm
        model.max_length=4096 hydra.run.dir=outputs/imdb_minilm/\${model.name}/\${now:%H-%M-%S})
python -m lsgbench "${common[@]}" model.attention.mode=disjoint model.attention.block_size=128
python -m lsgbench "${common[@]}" model.attention.mode=sliding model.attention.window=256
python -m lsgbench.report $out/runs --by model,attention,max_length --format md,csv --out $out
