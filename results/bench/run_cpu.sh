#!/usr/bin/env bash
# CPU efficiency benchmark (2 cores): 16,384 tokens per batch at 1k, 4k and 16k tokens, fp32.
# Attention alone at base shape (12 heads x 64 dims), then tiny whole models (2 layers, 64 hidden): encoders
# with a classifier and with the masked-LM head (the pretraining objective), encoder-decoders with their
# generation head (64 target tokens), then generation at 4k and
# 16k source tokens (batch 1, exactly 64 new tokens, greedy and beam 4); decoder-only models (Llama with full, LSG
# and local causal attention; Mistral and Gemma-2/3 with their windows at 257 tokens, the keys local's window of
# 512 gives a causal query) with their language-modelling head, train and infer, then greedy continuation of 4k and
# 16k-token prompts (prefill and decode timed apart, the KV cache's size); ModernBERT, its own attention and LSG.
# Every row also counts FLOPs and bytes saved for backward per token (bench.count), and its MFU.
# Regenerate: bash results/bench/run_cpu.sh   (the tables are rebuilt from the JSON rows)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/bench
common=(bench.seq_lens=[1024,4096,16384] bench.tokens_per_batch=16384 bench.device=cpu bench.repeats=3
        bench.out=$out/cpu "hydra.sweep.dir=outputs/bench/\${now:%H-%M-%S}")
lsg=(model.attention.block_size=128 model.attention.sparse_block_size=128 model.attention.sparsity_factor=4)
python -m lsgbench.bench -m "${common[@]}" bench.mode=attention bench.size=base model=roberta
python -m lsgbench.bench -m "${common[@]}" bench.mode=attention bench.size=base model=lsg_roberta "${lsg[@]}" \
    model.attention.sparsity_type=pooling,stride,norm
python -m lsgbench.bench -m "${common[@]}" bench.mode=attention bench.size=base model=local_roberta \
    model.attention.mode=sliding,disjoint model.attention.window=256 model.attention.block_size=128
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny model=roberta,longformer,bigbird
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny model=lsg_roberta "${lsg[@]}" \
    model.attention.sparsity_type=pooling
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny model=local_roberta \
    model.attention.mode=disjoint model.attention.block_size=128
# the pretraining objective: a masked-LM training step (15% of the tokens predicted) of the encoders
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny bench.task_kind=masked_lm \
    model=roberta,longformer,bigbird
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny bench.task_kind=masked_lm \
    model=lsg_roberta "${lsg[@]}" model.attention.sparsity_type=pooling
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny bench.task_kind=masked_lm \
    model=local_roberta model.attention.mode=disjoint model.attention.block_size=128
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny model=bart,led,bigbird_pegasus,longt5_tglobal,pegasus_x,local_bart
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny model=lsg_bart "${lsg[@]}" \
    model.attention.sparsity_type=pooling
python -m lsgbench.bench -m "${common[@]}" bench.mode=generate bench.size=tiny bench.seq_lens=[4096,16384] \
    model=bart,led,bigbird_pegasus,longt5_tglobal,pegasus_x,local_bart
python -m lsgbench.bench -m "${common[@]}" bench.mode=generate bench.size=tiny bench.seq_lens=[4096,16384] \
    model=lsg_bart "${lsg[@]}" model.attention.sparsity_type=pooling
# decoder-only models, and ModernBERT
python -m lsgbench.bench -m "${common[@]}" bench.mode=both bench.size=tiny model=llama
python -m lsgbench.bench -m "${common[@]}" bench.mode=both bench.size=tiny model=llama attention=lsg "${lsg[@]}" \
    model.attention.sparsity_type=pooling
python -m lsgbench.bench -m "${common[@]}" bench.mode=both bench.size=tiny model=llama attention=local model.attention.window=512
for m in mistral gemma2 gemma3; do
    python -m lsgbench.bench -m "${common[@]}" bench.mode=both bench.size=tiny model=$m model.attention.sliding_window=257
done
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny model=modernbert
python -m lsgbench.bench -m "${common[@]}" bench.mode=train bench.size=tiny model=modernbert attention=lsg "${lsg[@]}" \
    model.attention.sparsity_type=pooling
generate=(bench.mode=generate bench.size=tiny bench.seq_lens=[4096,16384])
python -m lsgbench.bench -m "${common[@]}" "${generate[@]}" model=llama
python -m lsgbench.bench -m "${common[@]}" "${generate[@]}" model=llama attention=lsg "${lsg[@]}" \
    model.attention.sparsity_type=pooling model.attention.num_global_tokens=1,0  # a sink token; none: a bounded cache
python -m lsgbench.bench -m "${common[@]}" "${generate[@]}" model=llama attention=local model.attention.window=512
for m in mistral gemma3; do
    python -m lsgbench.bench -m "${common[@]}" "${generate[@]}" model=$m model.attention.sliding_window=257
done
python -m lsgbench.report $out/cpu --format md,csv --out $out
