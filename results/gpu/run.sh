#!/usr/bin/env bash
# One-command GPU verification: every check and measurement lsgbench needs a GPU for, written to OUT_DIR.
#
#   bash results/gpu/run.sh OUT_DIR                          # one CUDA GPU; about 10 minutes on an H100
#   bash results/gpu/run.sh OUT_DIR --device cpu --quick     # CPU dry run, small shapes (the slow tests run it)
#
# What the machine needs: torch, transformers and numpy. The rest comes as wheels made on a machine with
# network (pure-Python or manylinux wheels, for the GPU machine's Python version; the default is 3.12):
#   bash results/gpu/wheels.sh results/gpu/wheels 3.12
# and carried to results/gpu/wheels (or WHEELS=dir); this script installs what is missing from there with
# pip --no-index. The wheels: hydra-core 1.3.2, omegaconf 2.3.0, antlr4-python3-runtime 4.9.3 (built:
# PyPI has only its source), accelerate, datasets, matplotlib, pytest and their dependencies.
#
# Steps, most important first, each with a time limit inside a total budget (9 minutes; the dry run 15); a
# step that fails or times out is logged and the next one runs; report and targets always run:
#   1. environment.json          device and library versions
#   2. kernel_check.{json,md}    every fast kernel (blocks and flex) vs its float64 reference in fp32 and
#                                bf16, fwd and bwd, beside full SDPA's own error at the same dtype
#   3. bench/<step>/*.json       attention alone, base shape (12 x 64), bf16, 16,384 tokens per batch at
#                                1k/4k/16k: full SDPA; LSG pooling and stride; local sliding and disjoint;
#                                whole base models, train and infer: RoBERTa (SDPA), HF Longformer, HF
#                                BigBird, LSG-RoBERTa (b=128 s=128 f=4 g=1, pooling and stride); then LSG
#                                and local with backend=flex; generation at 4k and 16k source tokens, 64
#                                new tokens, greedy and beam 4 (BART, LSG-BART, LED, BigBird-Pegasus,
#                                LongT5, PEGASUS-X); decoder*: decoder-only models with their language-
#                                modelling head, train and infer (Llama full, LSG and local causal; Mistral;
#                                Gemma-2; Gemma-3) and greedy generation, prefill and decode timed apart, with the
#                                KV cache's size; modernbert*: ModernBERT, its own attention and converted to LSG;
#                                RoBERTa and LSG at 512; LSG inference with flex; local RoBERTa
#   4. runs/                     a short pipeline run on the device (tiny LSG-RoBERTa on synth_keys, bf16)
#   5. logs/pytest_gpu.txt       the gpu-marked tests; then bench/model_qa*: a training step with the
#                                question-answering head (RoBERTa, Longformer with global attention on the
#                                question, BigBird, LSG) at 1k/4k/16k; bench/model_mlm*: a masked-LM training
#                                step (the pretraining objective) of RoBERTa, Longformer, BigBird, local and LSG
#   6. report/                   the report's tables and plots over all benchmark rows and the run
#   7. targets.md, summary.md    the GPU targets computed from the rows; each step's status and time
set -uo pipefail
if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: bash results/gpu/run.sh OUT_DIR [--device cpu] [--quick]" >&2; exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd); shift
device=cuda quick=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        *) echo "unknown option $1; use --device cpu|cuda and --quick" >&2; exit 2 ;;
    esac
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
python=${PYTHON:-python}

wheels=${WHEELS:-$repo/results/gpu/wheels}
if ! $python -c "import hydra, accelerate, datasets, matplotlib, pytest" 2>/dev/null; then
    [[ -d $wheels ]] || { echo "missing packages and no wheels at $wheels: see the header of $0" >&2; exit 2; }
    $python -m pip install --no-index --find-links "$wheels" "hydra-core==1.3.2" "omegaconf==2.3.0" accelerate \
        datasets matplotlib pytest >"$out/pip.txt" 2>&1 || { echo "pip install failed: $out/pip.txt" >&2; exit 2; }
fi

# Sizes: the real run at base size and 16,384 tokens per batch; the dry run tiny and short.
if [[ $quick == 1 ]]; then
    lens="[256,512]" tokens=512 size=tiny gen_lens="[256]" new=4 limit=300 dtype=fp32 budget=900
    pipeline=(task.synthetic.n_train=64 task.synthetic.n_test=32 trainer.args.num_train_epochs=1)
    flex_types=pooling flex_lens="[256]"  # FlexAttention compiles per shape: one point on a CPU
    lsg=(model.attention.block_size=32 model.attention.sparse_block_size=32 model.attention.sparsity_factor=4)
    local_knobs=(model.attention.window=64 model.attention.block_size=32)
else
    lens="[1024,4096,16384]" tokens=16384 size=base gen_lens="[4096,16384]" new=64 limit=240 dtype=bf16 budget=540
    pipeline=()
    flex_types=pooling,stride flex_lens=$lens
    lsg=(model.attention.block_size=128 model.attention.sparse_block_size=128 model.attention.sparsity_factor=4)
    local_knobs=(model.attention.window=256 model.attention.block_size=128)
fi
[[ $device == cpu ]] && dtype=fp32  # bf16 autocast on CPU measures nothing a GPU user needs
common=(bench.device=$device bench.dtype=$dtype bench.seq_lens=$lens bench.tokens_per_batch=$tokens
        bench.size=$size bench.warmup=1 bench.repeats=3 paths.cache_dir=$out/cache
        "hydra.sweep.dir=$out/hydra/\${now:%H-%M-%S-%f}" "hydra.run.dir=$out/hydra/\${now:%H-%M-%S-%f}")

summary=$out/summary.md
printf '# GPU verification\n\nOUT_DIR: %s  device: %s  quick: %s  commit: %s\n\n| step | status | seconds |\n|---|---|---|\n' \
    "$out" "$device" "$quick" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$summary"
deadline=$((SECONDS + budget))
step() {  # step NAME LIMIT_S COMMAND...: run within the limit and what is left of the budget, log to
          # OUT_DIR/logs/NAME.txt, record status and time. Steps named final_* run whatever is left.
    local name=$1 limit=$2 start=$SECONDS status; shift 2
    if [[ $name != final_* ]]; then
        (( limit = limit < deadline - SECONDS ? limit : deadline - SECONDS ))
        if (( limit < 20 )); then echo "| $name | skipped: the ${budget} s budget is spent | 0 |" >>"$summary"; return; fi
    fi
    echo "== $name (at most $limit s)" >&2
    timeout "$limit" "$@" >"$out/logs/$name.txt" 2>&1
    case $? in 0) status=ok ;; 124) status="timed out after ${limit} s" ;; *) status="failed (see logs/$name.txt)" ;; esac
    echo "| $name | $status | $((SECONDS - start)) |" >>"$summary"
    echo "   $status, $((SECONDS - start)) s" >&2
}
mkdir -p "$out/logs" "$out/bench" "$out/runs"

step environment 60 $python -c "
import json, sys, lsgbench.record as r
env = r.environment(); env['device'] = env['gpu'] or 'cpu'
json.dump(env, open(sys.argv[1], 'w'), indent=1)" "$out/environment.json"
step kernel_check $limit $python -m lsgbench.kernel_check --device $device --out "$out" $([[ $quick == 1 ]] && echo --quick)

# Most important first: the budget may run out before the last steps.
bench() { step "$1" $limit $python -m lsgbench.bench -m "${common[@]}" bench.out=$out/bench/$1 "${@:2}"; }
bench attention_full bench.mode=attention model=roberta
bench attention_lsg bench.mode=attention model=lsg_roberta "${lsg[@]}" model.attention.sparsity_type=pooling,stride \
    model.attention.backend=blocks
bench attention_local bench.mode=attention model=local_roberta "${local_knobs[@]}" model.attention.mode=sliding,disjoint \
    model.attention.backend=blocks
bench model_full bench.mode=both model=roberta,longformer,bigbird
bench model_lsg bench.mode=both model=lsg_roberta "${lsg[@]}" model.attention.sparsity_type=pooling,stride \
    model.attention.backend=blocks   # training applies attention dropout (0.1), which FlexAttention lacks
bench attention_flex bench.mode=attention bench.seq_lens=$flex_lens model.attention.backend=flex \
    model=lsg_roberta "${lsg[@]}" model.attention.sparsity_type=$flex_types
bench attention_local_flex bench.mode=attention bench.seq_lens=$flex_lens model.attention.backend=flex \
    model=local_roberta "${local_knobs[@]}" model.attention.mode=sliding,disjoint
bench generate bench.mode=generate bench.seq_lens=$gen_lens bench.new_tokens=$new bench.beams=[1,4] \
    model=bart,lsg_bart,led,bigbird_pegasus,longt5_tglobal,pegasus_x
bench decoder bench.mode=both model=llama,mistral,gemma2,gemma3
bench decoder_lsg bench.mode=both model=llama attention=lsg "${lsg[@]}" model.attention.sparsity_type=pooling \
    model.attention.backend=blocks
bench decoder_local bench.mode=both model=llama attention=local "${local_knobs[@]}" model.attention.backend=blocks
bench decoder_generate bench.mode=generate bench.seq_lens=$gen_lens bench.new_tokens=$new \
    model=llama,mistral,gemma3
bench decoder_generate_lsg bench.mode=generate bench.seq_lens=$gen_lens bench.new_tokens=$new model=llama \
    attention=lsg "${lsg[@]}" model.attention.sparsity_type=pooling model.attention.num_global_tokens=1,0
bench decoder_generate_local bench.mode=generate bench.seq_lens=$gen_lens bench.new_tokens=$new model=llama \
    attention=local "${local_knobs[@]}"
bench modernbert bench.mode=both model=modernbert
bench modernbert_lsg bench.mode=both model=modernbert attention=lsg "${lsg[@]}" model.attention.sparsity_type=pooling \
    model.attention.backend=blocks
bench model_512 bench.mode=both model=roberta bench.seq_lens=[512]
bench model_lsg_512 bench.mode=both model=lsg_roberta "${lsg[@]}" model.attention.sparsity_type=pooling \
    model.attention.backend=blocks bench.seq_lens=[512]
bench model_lsg_flex bench.mode=infer model=lsg_roberta "${lsg[@]}" model.attention.sparsity_type=pooling \
    model.attention.backend=flex bench.seq_lens=$flex_lens
bench model_local bench.mode=both model=local_roberta "${local_knobs[@]}" model.attention.mode=sliding,disjoint
step pipeline $limit $python -m lsgbench experiment=quickstart trainer=default trainer.device=$device \
    model=lsg_roberta model.max_length=1024 model.attention.block_size=64 model.attention.sparse_block_size=64 \
    task.synthetic.doc_words=800 "${pipeline[@]}" paths.store_dir=$out/runs paths.cache_dir=$out/cache \
    "hydra.run.dir=$out/hydra/pipeline"
if [[ $device == cuda ]]; then
    step pytest_gpu $limit $python -m pytest -m gpu -q -p no:cacheprovider tests
fi
bench model_qa bench.mode=train bench.task_kind=question_answering model=roberta,longformer,bigbird
bench model_qa_lsg bench.mode=train bench.task_kind=question_answering model=lsg_roberta "${lsg[@]}" \
    model.attention.sparsity_type=pooling model.attention.backend=blocks
bench model_mlm bench.mode=train bench.task_kind=masked_lm model=roberta,longformer,bigbird,local_roberta
bench model_mlm_lsg bench.mode=train bench.task_kind=masked_lm model=lsg_roberta "${lsg[@]}" \
    model.attention.sparsity_type=pooling model.attention.backend=blocks
step final_report 300 $python -m lsgbench.report "$out/bench" "$out/runs" --format md,csv --out "$out/report"
step final_targets 60 $python results/gpu/targets.py "$out/bench" "$out/targets.md"
cat "$summary" "$out/targets.md" 2>/dev/null
echo "everything is in $out"
