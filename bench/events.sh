#!/usr/bin/env bash
# Event ingestion benchmark: the server pinned to core 0, the load generator
# to core 1 (loopback only). Prints the durably accepted rate, the p99 batch
# latency, and the ratio to serde_json's raw parse rate of the same batches
# measured by the generator in the same run.
#   bench/events.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-10}
CONNS=${2:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p switchyard-server --example events_server
cargo build --release -q -p switchyard-loadgen --bin events
DATA=$(mktemp -d)
OUT=$(mktemp)
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA" "$OUT"' EXIT
SWITCHYARD_THREADS=1 taskset -c 0 "$CARGO_TARGET_DIR/release/examples/events_server" "$DATA" >"$OUT" 2>/dev/null &
SERVER=$!
for _ in $(seq 100); do grep -q '^READY' "$OUT" && break; sleep 0.1; done
read -r _ URL KEY < <(grep '^READY' "$OUT")
echo "server: $URL (core 0), data in $DATA ($(df -T "$DATA" | awk 'NR==2{print $2}'))"
taskset -c 1 "$CARGO_TARGET_DIR/release/events" --url "$URL" --key "$KEY" \
  --seconds "$SECONDS_RUN" --connections "$CONNS" --batch 500
echo "log size: $(du -sh "$DATA/events/log" | cut -f1)"
