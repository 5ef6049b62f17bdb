#!/usr/bin/env bash
# Train the default transducer on a lent accelerator machine (see training/recipes/asr_gpu.toml).
# That machine has torch/torchaudio/sentencepiece (WER falls back to torchaudio's edit distance
# without jiwer). The feature packs travel in .pka/ (train*.json|xz, dev*.json|xz): a call carries
# at most 64 MiB with the repository, and carried folders do not survive to the next call.
#   training/gpu_job.sh smoke        # check CUDA, 40 steps
#   training/gpu_job.sh train MIN    # the recipe for MIN minutes, then weights -> $OUT in shards
#   RECIPE=training/recipes/asr_whisper_gpu.toml training/gpu_job.sh train MIN
#                                    # the Whisper-initialised model from store/default/6 (packs made
#                                    # with `python -m training.featpack --features whisper`)
set -euo pipefail
mode=${1:-smoke}
minutes=${2:-8}
recipe=${RECIPE:-training/recipes/asr_gpu.toml}
out=${OUT:-/tmp/out}
mkdir -p "$out"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
packs=$(ls .pka/train*.json | sed 's/\.json$//' | paste -sd, -)
devs=$(ls .pka/dev*.json | sed 's/\.json$//' | paste -sd, -)
echo "packs: $packs dev: $devs"
nvidia-smi -L || true
python3 -c "import torch, torchaudio; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__, 'cuda', torch.cuda.is_available())"
if [ "$mode" = smoke ]; then
  python3 -m training.cli asr --config "$recipe" --device cuda --exp-dir .exp/smoke \
    --feature-packs "$packs" --dev-packs "$devs" --dev-utts 32 --max-steps 40 --ctc-only-steps 10 --eval-minutes 0.25 --log-every 10 \
    2>&1 | cut -c1-300 | tee "$out/smoke.log"
  exit 0
fi
python3 -m training.cli asr --config "$recipe" --device cuda --exp-dir .exp/asr_gpu \
  --feature-packs "$packs" --dev-packs "$devs" --max-minutes "$minutes" 2>&1 | grep --line-buffered -v "^$" | cut -c1-400 | tee "$out/train.log"
cp .exp/asr_gpu/train_log.jsonl "$out/"
python3 -m training.transfer split .exp/asr_gpu/best.pt "$out/best" --max-mb 12
python3 -m training.transfer split .exp/asr_gpu/last.pt "$out/last" --max-mb 12
ls -la "$out" "$out"/*
