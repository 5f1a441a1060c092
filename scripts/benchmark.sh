#!/usr/bin/env bash
# Runs the benchmarks (backbone speed vs ONNX Runtime, job wall time, ingestion throughput and memory) against
# a throw-away PostgreSQL cluster. Arguments go to the benchmark program: backbone | training | ingestion [--quick] |
# health | trust | tuning [--search-only] [--precision auto|fp32|bf16] | speed | serving [--quick: no soak | --soak-minutes N, default 5] | workload [--minutes N, default 5] [--clients N, default 8] |
# memory [--jobs N] [--images N] | bulk | finetune [--images 1000,10000] [--epochs N] [--overflow].
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
with_throwaway_cluster dotnet run -c Release --project tests/TransferApi.Benchmarks -- "$@"
