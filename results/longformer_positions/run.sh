#!/usr/bin/env bash
# The shape of the Longformer paper's Table 5 at small scale (CPU): a tiny RoBERTa (1,000-token BPE vocabulary)
# MLM-pretrained at 512 tokens on the WikiText sample (1,500 steps, batch 8, lr 3e-3), converted to 2,048 tokens with
# full attention (local windows wider than the input), LSG and local windows of 256, its 512 positions copied
# (tiled) or drawn at random. For each: the masked-LM loss at 2,048 before any further training, after 100 steps of
# continued pretraining (batch 2 x 2,048, lr 1e-3), and (copied positions) with only the position table trained for
# those steps. Every figure is on the sample's 15 test articles under one fixed corruption. Two runs at a time, one
# thread each. Needs ../shared/data/wikitext. Regenerate: bash results/longformer_positions/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/longformer_positions
data=(task=wikitext103 task.data_dir=../shared/data/wikitext model=roberta model.init=random model.size=tiny
      model.tokenizer_vocab_size=1000 trainer=cpu paths.store_dir=$out/runs)
python -m lsgbench "${data[@]}" model.max_length=512 trainer.args.max_steps=1500 trainer.args.per_device_train_batch_size=8 \
    trainer.args.learning_rate=3e-3 hydra.run.dir=outputs/longformer_positions/roberta_512
base=$(python -c "import json; print(json.load(open('outputs/longformer_positions/roberta_512/run_record.json'))['run_id'])")
long=("${data[@]}" model.pretrained=run:$base model.init=pretrained model.max_length=2048
      trainer.args.max_steps=100 trainer.args.per_device_train_batch_size=2 trainer.args.learning_rate=1e-3)
variants=("attention=local model.attention.window=4096" "attention=lsg" "attention=local model.attention.window=256")
export OMP_NUM_THREADS=1
n=0
for variant in "${variants[@]}"; do
  for init in copy random; do
    for trainable in none all $([ $init = copy ] && echo positions); do
      python -m lsgbench "${long[@]}" $variant model.position_init=$init trainer.trainable=$trainable \
          hydra.run.dir=outputs/longformer_positions/$n &
      n=$((n + 1)); if (( n % 2 == 0 )); then wait; fi
    done
  done
done
wait
python -m lsgbench.report $out/runs --by model,attention,max_length --format md,csv --out $out
