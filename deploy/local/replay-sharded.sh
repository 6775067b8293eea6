#!/usr/bin/env bash
# Replay SNAPSHOTS in N shards as N local processes, then merge them with `parevm report`:
# what the Kubernetes and Slurm recipes do across machines, on one. CI runs it on the
# mainnet blocks. Usage: deploy/local/replay-sharded.sh PAREVM SNAPSHOTS N OUT
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: $0 PAREVM SNAPSHOTS N OUT" >&2
    exit 2
fi
parevm=$1 snapshots=$2 shards=$3 out=$4
mkdir -p "$out"
pids=()
for ((i = 0; i < shards; i++)); do
    "$parevm" replay "$snapshots" --shard "$i/$shards" --threads 1 \
        --jsonl "$out/shard-$i.jsonl" >"$out/shard-$i.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
files=()
for ((i = 0; i < shards; i++)); do
    files+=("$out/shard-$i.jsonl")
done
"$parevm" report "${files[@]}" || status=1
exit "$status"
