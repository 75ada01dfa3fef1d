#!/usr/bin/env bash
# Extractive QA on the real HotpotQA sample (62 training questions, 30 test; distractor setting: 10
# paragraphs, ~1,200 tokens) with the one real checkpoint that installs offline, all-MiniLM-L6-v2: at its own
# 512 tokens reading each context in windows sharing 128 tokens (the Longformer paper's RoBERTa baseline
# setup), against the same checkpoint converted to LSG at 4,096 tokens (one window each). Same budget:
# trainer=cpu (batch 8, lr 5e-5), 3 epochs. 62 questions teach little: read the figures as a smoke test of the
# protocol, not as a result. Needs the sample at ../shared/data/hotpotqa.
# Regenerate: bash results/hotpotqa_minilm/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/hotpotqa_minilm
common=(task=hotpotqa task.data_dir=../shared/data/hotpotqa trainer=cpu trainer.args.num_train_epochs=3
        paths.store_dir=$out/runs hydra.run.dir=outputs/hotpotqa_minilm/\${model.name}/\${now:%H-%M-%S})
python -m lsgbench "${common[@]}" model=minilm
python -m lsgbench "${common[@]}" model=lsg_minilm model.max_length=4096
python -m lsgbench.report $out/runs --by model,attention,max_length --format md,csv --out $out
