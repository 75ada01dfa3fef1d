#!/usr/bin/env bash
# Receptive-field study on the built-in synth_extract task (summarization; CPU, tiny random-init
# encoder-decoders, equal budgets). Each document is a header naming the topic, then 128 sentences
# (~1,400 words, ~1,550 tokens); the 3 sentences to extract sit in the last quarter, beyond the 1,024 tokens BART
# reads. Whether a sentence belongs to the summary depends on the header, far away.
# Same data, tokenizer recipe, optimiser and steps for every model (3 epochs of 800 documents).
# Regenerate: bash results/receptive_field_summ/run.sh   (then the table is rebuilt from the records)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/receptive_field_summ
common=(task=synth_extract task.synthetic.doc_sentences=128 task.synthetic.key_start=0.75 task.synthetic.n_train=800 task.synthetic.n_test=100
        model.init=random model.size=tiny trainer=cpu trainer.args.learning_rate=1e-3
        trainer.args.num_train_epochs=3 trainer.args.per_device_train_batch_size=8 store_dir=$out/runs
        hydra.run.dir=outputs/receptive_field_summ/\${model.name}/\${now:%H-%M-%S}_\${uid:})
python -m lsgbench "${common[@]}" model=bart                                      # full attention, its own 1,024
python -m lsgbench "${common[@]}" model=bart model.max_positions=2048 model.max_length=2048   # full, whole doc
python -m lsgbench "${common[@]}" model=local_bart model.max_length=2048 model.attention.mode=sliding \
    model.attention.window=64
python -m lsgbench "${common[@]}" model=local_bart model.max_length=2048 model.attention.mode=disjoint \
    model.attention.block_size=64
python -m lsgbench "${common[@]}" model=local_bart model.max_length=2048 model.attention.mode=sliding \
    model.attention.window=64 model.attention.num_global_tokens=1
python -m lsgbench "${common[@]}" model=lsg_bart model.max_length=2048 model.attention.block_size=64 \
    model.attention.sparse_block_size=64 model.attention.sparsity_factor=4 model.attention.sparsity_type=pooling
python -m lsgbench "${common[@]}" model=spade_bart model.max_length=2048 model.attention.window=64
python -m lsgbench.report $out/runs --by model,attention,max_length --format md,csv --out $out
