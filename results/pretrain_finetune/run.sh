#!/usr/bin/env bash
# Xiong et al. 2022's protocol in small (CPU, tiny random-init RoBERTa, 1,024 tokens): three attention variants
# (LSG, local windows of 512, full attention with 1,024 learned positions) each MLM-pretrained with the same
# budget on the WikiText sample (300 steps, batch 4 x 1,024 tokens, lr 1e-3), then fine-tuned with the same
# budget (2 epochs, batch 8, lr 1e-3) on synth_keys (700-word documents, keys in the second half) and on the IMDb
# sample. The second command reuses the three pretraining runs from the store. Two points at a time would double
# the wall time of each, so they run one after another, on 2 threads.
# Needs ../shared/data/{wikitext,imdb}. Regenerate: bash results/pretrain_finetune/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/pretrain_finetune
common=(-m experiment=pretrain_finetune model=lsg_roberta,local_roberta,roberta model.max_positions=1024
        model.max_length=1024 model.init=random model.size=tiny trainer=cpu trainer.args.learning_rate=1e-3
        trainer.args.num_train_epochs=2 trainer.args.per_device_train_batch_size=8 paths.store_dir=$out/runs
        'pretrain.overrides=["task.data_dir=../shared/data/wikitext","trainer.args.max_steps=300","trainer.args.per_device_train_batch_size=4","trainer.args.learning_rate=1e-3"]')
python -m lsgbench "${common[@]}" task=synth_keys task.synthetic.doc_words=700 task.synthetic.n_train=500 \
    hydra.sweep.dir=outputs/pretrain_finetune/synth_keys
python -m lsgbench "${common[@]}" task=imdb task.data_dir=../shared/data/imdb hydra.sweep.dir=outputs/pretrain_finetune/imdb
python -m lsgbench.report $out/runs --by task,model,attention,max_length --format md,csv --out $out
