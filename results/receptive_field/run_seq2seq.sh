#!/usr/bin/env bash
# Receptive-field study for encoder-decoders on the built-in synth_extract task (CPU, tiny random-init models,
# equal budgets). Each document is a header naming a topic word and 48 sentences (~600 tokens); the target
# is the 3 sentences, all in the second half, that carry the header's topic, so deciding that a sentence
# belongs needs the header, 300+ tokens away. Attention windows are ~128 tokens wide everywhere (LED w=128,
# local w=128, LSG b=64, BigBird b=32, LongT5 radius 63, PEGASUS-X blocks of 64); BART at 256 tokens
# (truncated before the selected sentences) and at 1,024 (the whole document) bracket them.
# Same data, tokenizer recipe, optimiser and steps for every model (6 epochs of 1,024 documents).
# Regenerate: bash results/receptive_field/run_seq2seq.sh   (then the table is rebuilt from the records)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/receptive_field
common=(task=synth_extract task.synthetic.doc_sentences=48 task.synthetic.n_train=1024 task.synthetic.n_test=100
        task.synthetic.n_validation=8 task.generation.max_new_tokens=64 model.init=random model.size=tiny trainer=cpu
        trainer.args.learning_rate=1e-3 trainer.args.num_train_epochs=6 trainer.args.per_device_train_batch_size=16
        model.max_length=1024 paths.store_dir=$out/runs_seq2seq
        hydra.run.dir=outputs/receptive_field_seq2seq/\${model.name}/\${now:%H-%M-%S})
python -m lsgbench "${common[@]}" model=bart model.max_length=256        # truncated before the selected sentences
python -m lsgbench "${common[@]}" model=bart                              # full attention, the whole document
python -m lsgbench "${common[@]}" model=local_bart model.attention.window=128
python -m lsgbench "${common[@]}" model=lsg_bart model.attention.block_size=64 model.attention.sparse_block_size=64 \
    model.attention.sparsity_factor=4 model.attention.sparsity_type=pooling
python -m lsgbench "${common[@]}" model=led model.attention.attention_window=128
python -m lsgbench "${common[@]}" model=bigbird_pegasus model.attention.block_size=32
python -m lsgbench "${common[@]}" model=longt5_local model.attention.local_radius=63
python -m lsgbench "${common[@]}" model=longt5_tglobal model.attention.local_radius=63
python -m lsgbench "${common[@]}" model=pegasus_x model.attention.block_size=64 model.attention.num_global_tokens=8
python -m lsgbench.report $out/runs_seq2seq --by model,attention,max_length --format md,csv --out $out/seq2seq
