#!/usr/bin/env bash
# Runs the scaling driver over the three loader-benchmark data sets and prints its table, plus the
# CPU it ran on. Needs build/scaling/loader_scaling (build.sh) and build/scaling/data/ (prepare_data.sh).
#
#   bash benchmarks/scaling/run.sh 1,2,4,8,12,16    # thread counts; default 1,2
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-1,2}
bin=build/scaling/loader_scaling
data=build/scaling/data
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|Socket\(s\)|L3 cache|CPU max MHz)' || true
"$bin" --label default_gop --threads "$threads" "$data"/*_default_gop.mp4
"$bin" --label g16 --threads "$threads" "$data"/*_g16.mp4 | grep -v '^#'
"$bin" --label tfrecord --threads "$threads" "$data"/videos3.tfrecord | grep -v '^#'
