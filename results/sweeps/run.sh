#!/usr/bin/env bash
# A saved grid through the sweep machinery, and the comparison of every committed CPU study.
#
# 1. sweep=lsg_grid on synth_keys with no global tokens: the first token reaches the keys (575+
#    tokens away) only through local blocks and sparse tokens, so block size and sparsity factor
#    decide its reach: 2b + s*f tokens to the right per layer (s = 64), twice that over 2 layers,
#    from 384 (b=32, f=2) to 1,280 (b=64, f=8). Tiny random-init
#    LSG-RoBERTa at 2,048 tokens, the receptive-field study's data, 3 epochs, pooling. Then the
#    same with one global token (which every query reads and which reads every token), at block
#    size 32 and 64 and sparsity factor 2 and 8.
# 2. sweep=length_scaling with tiny models at 1k, 2k and 4k tokens and a small budget (256k training
#    tokens per point, 16,384 tokens per batch): speed and memory against length, for its plot.
# 3. One report over these runs, the receptive-field study and the IMDb sample: tables (md, csv,
#    tex) with published scores where the task cards have them, and plots.
# Regenerate: bash results/sweeps/run.sh   (a rerun skips the points already in the store)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/sweeps
common=(sweep=lsg_grid task=synth_keys task.synthetic.doc_words=1000 task.synthetic.num_keys=6
        task.synthetic.n_train=1024 task.synthetic.n_test=200 model.init=random model.size=tiny trainer=cpu
        trainer.args.learning_rate=1e-3 trainer.args.num_train_epochs=3 trainer.args.per_device_train_batch_size=16
        model.max_length=2048 model.attention.sparse_block_size=64 model.attention.sparsity_type=pooling
        paths.store_dir=$out/lsg_grid/runs hydra.sweep.dir=multirun/lsg_grid_\${now:%Y-%m-%d_%H-%M-%S}_\${uid:})
python -m lsgbench -m "${common[@]}" model.attention.num_global_tokens=0 model.attention.block_size=32,64 \
    model.attention.sparsity_factor=2,4,8
python -m lsgbench -m "${common[@]}" model.attention.num_global_tokens=1 model.attention.block_size=32,64 \
    model.attention.sparsity_factor=2,8
python -m lsgbench -m sweep=length_scaling model.size=tiny trainer=cpu model.max_length=1024,2048,4096 \
    "task.synthetic.n_train='\${floordiv:262144,\${model.max_length}}'" \
    "task.synthetic.n_test='\${floordiv:32768,\${model.max_length}}'" \
    paths.store_dir=$out/length_scaling/runs hydra.sweep.dir=multirun/length_scaling_\${now:%Y-%m-%d_%H-%M-%S}_\${uid:}
python -m lsgbench.report $out/lsg_grid/runs $out/length_scaling/runs results/receptive_field/runs \
    results/imdb_minilm/runs --format md,csv,tex --out $out
