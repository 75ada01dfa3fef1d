#!/usr/bin/env bash
# Receptive-field study for extractive QA on the built-in synth_qa task (CPU, tiny random-init models, equal
# budgets). Each document has 200 filler words (~240 tokens) with 4 codes planted in its second half, about
# 110-235 tokens after the question; which code answers depends on the question's name alone (chance: 25 exact match).
# Same data, optimiser and epochs for every model: 8,192 questions x 8 epochs, batch 16, learning rate 1e-3
# (a model reading 128-token windows trains on every window, as Hugging Face's run_qa does: 3 per question).
# Windows of 32 tokens (LSG blocks of 32, BigBird blocks of 16) against the ~300-token documents: the ratio of
# 512-token windows to 4,096-token documents. Two runs at a time, one thread each (a 2-core machine), so the
# speeds compare run to run, not with single-run figures elsewhere.
# Regenerate: bash results/qa_receptive_field/run.sh   (then the table is rebuilt from the records)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/qa_receptive_field
export OMP_NUM_THREADS=1
common=(task=synth_qa task.synthetic.doc_words=200 task.synthetic.num_facts=4 task.synthetic.n_train=8192
        task.synthetic.n_test=200 model.init=random model.size=tiny model.max_length=512 trainer=cpu
        trainer.args.learning_rate=1e-3 trainer.args.num_train_epochs=8 trainer.args.per_device_train_batch_size=16
        paths.store_dir=$out/runs)
run() { local name=$1; shift; python -m lsgbench "${common[@]}" hydra.run.dir=outputs/qa_receptive_field/$name "$@" & }
run full model=roberta                                                         # the whole document
run full_128 model=roberta model.max_length=128 task.doc_stride=32            # 128-token windows, question in each
wait
run local model=local_roberta model.attention.window=32
run local_global model=local_roberta model.attention.window=32 model.attention.num_global_tokens=1
wait
run lsg model=lsg_roberta model.attention.block_size=32 model.attention.sparse_block_size=32 \
    model.attention.sparsity_factor=4 model.attention.sparsity_type=pooling
run dilated model=roberta attention=dilated model.attention.window=32 "model.attention.dilation=[1,8]"
wait
run longformer model=longformer model.attention.attention_window=32               # global attention on the question
run bigbird model=bigbird model.attention.block_size=16 model.attention.num_random_blocks=3
wait
python -m lsgbench.report $out/runs --by model,attention,max_length --format md,csv --out $out
