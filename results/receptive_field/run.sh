#!/usr/bin/env bash
# Receptive-field study on the built-in synth_keys task (CPU, tiny random-init models, equal budgets).
# Each document has 1,000 filler words (~1,150 tokens); the label's key word is planted 6 times in
# the second half, so the first token must gather information from 500+ tokens away.
# Same data, tokenizer recipe, optimiser and steps for every model (4 epochs of 1,024 documents).
# Regenerate: bash results/receptive_field/run.sh   (then the table is rebuilt from the records)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/receptive_field
common=(task=synth_keys task.synthetic.doc_words=1000 task.synthetic.num_keys=6 task.synthetic.n_train=1024
        task.synthetic.n_test=200 model.init=random model.size=tiny trainer=cpu trainer.args.learning_rate=1e-3
        trainer.args.num_train_epochs=4 trainer.args.per_device_train_batch_size=16 paths.store_dir=$out/runs
        hydra.run.dir=outputs/receptive_field/\${model.name}/\${now:%H-%M-%S})
python -m lsgbench "${common[@]}" model=roberta                                   # full attention, its own 512
python -m lsgbench "${common[@]}" model=roberta model.max_positions=2048 model.max_length=2048   # full, whole doc
python -m lsgbench "${common[@]}" model=local_roberta model.max_length=2048 model.attention.mode=sliding \
    model.attention.window=64
python -m lsgbench "${common[@]}" model=local_roberta model.max_length=2048 model.attention.mode=disjoint \
    model.attention.block_size=64
python -m lsgbench "${common[@]}" model=local_roberta model.max_length=2048 model.attention.mode=sliding \
    model.attention.window=64 model.attention.num_global_tokens=1
python -m lsgbench "${common[@]}" model=lsg_roberta model.max_length=2048 model.attention.block_size=64 \
    model.attention.sparse_block_size=64 model.attention.sparsity_factor=4 model.attention.sparsity_type=pooling
python -m lsgbench "${common[@]}" model=spade_roberta model.max_length=2048 model.attention.window=64
# LongT5 and PEGASUS-X: their encoders under lsgbench's first-token head (models/heads.py), 64-token locality
python -m lsgbench "${common[@]}" model=longt5_local model.max_length=2048 model.attention.local_radius=63
python -m lsgbench "${common[@]}" model=longt5_tglobal model.max_length=2048 model.attention.local_radius=63 \
    model.attention.global_block_size=16
python -m lsgbench "${common[@]}" model=pegasus_x model.max_length=2048 model.attention.block_size=64 \
    model.attention.num_global_tokens=16
# ModernBERT with its own attention at 64-token locality (window 128: 64 tokens on each side; of the tiny model's 2
# layers the first is global), and a Llama-architecture decoder: causal, classifying from its last token
python -m lsgbench "${common[@]}" model=modernbert model.max_length=2048
python -m lsgbench "${common[@]}" model=llama model.max_length=2048
python -m lsgbench.report $out/runs --by model,attention,max_length --format md,csv --out $out
