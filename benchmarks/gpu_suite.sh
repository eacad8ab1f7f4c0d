#!/usr/bin/env bash
# Every GPU figure in one prepared, offline run, within 8 minutes on one H200
# (benchmarks/RESULTS.md, "GPU suite"): writes benchmarks/results/gpu-<date>.json and appends a
# table to benchmarks/RESULTS.md.
#
#   benchmarks/gpu_suite.sh                         # on the GPU machine
#   benchmarks/gpu_suite.sh --cpu-smoke --out DIR   # the same code, tiny sizes, CPU, ~1-2 min
#
# Run the smoke first wherever the code changed: GPU minutes are never spent on a typo. Nothing
# here reaches the network: models are built from their published architectures
# (model.pretrained=false), text comes bundled, the tokenizer is trained on it. PYTHON picks
# the interpreter (default: python3 on PATH, with torch built for the machine's CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false WANDB_MODE=offline PYTHONUNBUFFERED=1
# torch.cuda.is_available() through NVML: a CUDA query in the parent must not spoil the forks
export PYTORCH_NVML_BASED_CUDA_CHECK=1
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" benchmarks/gpu_suite.py "$@"
