#!/usr/bin/env bash
# Data and teacher targets for the Whisper transducer's CPU stage
# (training/recipes/asr_whisper_cpu.toml), on a fresh machine: what the recipe header lists, as
# one resumable script, so a new session spends its minutes training rather than retyping.
#   training/prepare_whisper_cpu.sh            # builds what is missing under $DATA (/work/data)
# Then continue from the shipped model (its weights, tokenizer and step; Adam starts afresh):
#   .venv/bin/minutes train asr --config training/recipes/asr_whisper_cpu.toml \
#       --init-from store/default/8/model.pt --exp-dir /work/data/exp/asr_whisper5
# ~15 min on 2 idle cores. Each step is skipped when its manifest (or the teacher's index) exists;
# a build cut off half-way carries on with --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/work/data}
M=.venv/bin/minutes
corpus=$DATA/corpus

build() {  # build RECIPE OUT [args...]: once, resuming a half-done build
    local recipe=$1 out=$2; shift 2
    if [ -s "$out/.done" ]; then echo "have $out"; return; fi
    local resume=""; [ -d "$out" ] && resume="--resume"
    $M corpus build --recipe "$recipe" --out "$out" --no-progress $resume "$@"
    date > "$out/.done"
}

build real   "$corpus/speechocean762"
build single "$corpus/single"   --hours 5 --seed 0
build single "$corpus/single-b" --hours 5 --seed 1
build native "$corpus/native"
if [ ! -s "$DATA/teacher/whisper-tiny.en/.done" ]; then
    $M train teacher --manifest "$corpus/speechocean762/train.jsonl" \
        --manifest "$corpus/single/train.jsonl" --manifest "$corpus/single-b/train.jsonl" --threads 2
    date > "$DATA/teacher/whisper-tiny.en/.done"
fi
echo "data and teacher targets ready under $DATA"
