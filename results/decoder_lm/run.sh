#!/usr/bin/env bash
# Tiny decoders on equal footing (CPU): Llama-architecture models (2 layers, 64 hidden, 2 query / 1 K/V heads,
# random init) with full causal attention, causal LSG (b=128 s=128 f=4 pooling, 1 sink token), a causal local
# sliding window (512: the 256 tokens before a query), Mistral's window (257: the same keys) and Gemma-2's
# alternation (window 257 in every other layer, full causal attention in the others), trained with the same budget
# (200 steps of 4 pieces of 2,048 tokens, AdamW at 1e-3, seed 42) on the WikiText sample (45 articles; evaluation:
# its 15 test articles, every token predicted once), then each evaluated with no further training at 4,096 and
# 8,192 tokens (model.eval_max_length): how perplexity, speed and memory trade, and what each does at lengths it
# never trained at.
# Regenerate: bash results/decoder_lm/run.sh   (needs ../shared/data/wikitext; about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/decoder_lm
export OMP_NUM_THREADS=2
common=(task=causal_lm task.name=wikitext_sample task.data_dir=../shared/data/wikitext model.init=random
        model.size=tiny trainer=cpu trainer.args.learning_rate=1e-3 paths.store_dir=$out/runs)
train=(model.max_length=2048 trainer.args.max_steps=200 trainer.args.per_device_train_batch_size=4 save_model=true)
lsg=(model.attention.block_size=128 model.attention.sparse_block_size=128 model.attention.sparsity_factor=4
     model.attention.sparsity_type=pooling)
variants=("model=llama" "model=llama attention=lsg ${lsg[*]}" "model=llama attention=local model.attention.window=512"
          "model=mistral model.attention.sliding_window=257" "model=gemma2 model.attention.sliding_window=257")
for i in "${!variants[@]}"; do
    read -ra variant <<<"${variants[$i]}"
    python -m lsgbench "${common[@]}" "${variant[@]}" "${train[@]}" hydra.run.dir=outputs/decoder_lm/train_$i
    id=$(python -c "import json; print(json.load(open('outputs/decoder_lm/train_$i/run_record.json'))['run_id'])")
    for length in 4096 8192; do
        python -m lsgbench "${common[@]}" "${variant[@]}" model.pretrained=run:$id model.init=pretrained \
            model.max_length=2048 model.eval_max_length=$length trainer.trainable=none \
            hydra.run.dir=outputs/decoder_lm/eval_${i}_$length
    done
done
python -m lsgbench.report $out/runs --by model,attention,max_length,eval_max_length --format md,csv --out $out
python $out/ngram_baselines.py outputs/decoder_lm/train_0/model ../shared/data/wikitext $out/ngram_baselines.md
