#!/usr/bin/env bash
# Xiong et al. 2022's protocol in small (CPU, tiny random-init RoBERTa, 1,024 tokens, a 1,000-token BPE vocabulary):
# three attention variants (LSG, local windows of 512, full attention with 1,024 learned positions) each
# MLM-pretrained with the same budget on the WikiText sample (1,000 steps, batch 4 x 1,024 tokens, lr 3e-3), then
# fine-tuned with the same budget (4 epochs, batch 16, lr 1e-3) on synth_keys (400-word documents, ~800 tokens, 40
# keys in the second half, 512 training documents; with 6 keys LSG stayed at chance) and on the IMDb sample (1,000
# reviews). The second command reuses the three
# pretraining runs from the store. Points run one after another, on the machine's 2 threads.
# Needs ../shared/data/{wikitext,imdb}. Regenerate: bash results/pretrain_finetune/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/pretrain_finetune
common=(-m experiment=pretrain_finetune model=lsg_roberta,local_roberta,roberta model.max_positions=1024
        model.max_length=1024 model.init=random model.size=tiny model.tokenizer_vocab_size=1000 trainer=cpu
        trainer.args.learning_rate=1e-3 trainer.args.num_train_epochs=4 trainer.args.per_device_train_batch_size=16
        paths.store_dir=$out/runs
        'pretrain.overrides=["task.data_dir=../shared/data/wikitext","trainer.args.max_steps=1000","trainer.args.per_device_train_batch_size=4","trainer.args.learning_rate=3e-3"]')
python -m lsgbench "${common[@]}" task=synth_keys task.synthetic.doc_words=400 task.synthetic.num_keys=40 \
    task.synthetic.n_train=512 task.synthetic.n_test=200 hydra.sweep.dir=outputs/pretrain_finetune/synth_keys
python -m lsgbench "${common[@]}" task=imdb task.data_dir=../shared/data/imdb hydra.sweep.dir=outputs/pretrain_finetune/imdb
python -m lsgbench.report $out/runs --by task,model,attention,max_length --format md,csv --out $out
