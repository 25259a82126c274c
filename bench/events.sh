#!/usr/bin/env bash
# Event ingestion benchmark: the server pinned to core 0, the load generator
# to core 1 (loopback only). Prints the durably accepted rate, the p99 batch
# latency, and the ratio to serde_json's raw parse rate of the same batches
# measured by the generator in the same run.
#   bench/events.sh [seconds] [connections]
#
# MODE=pinned (default): server on core 0 with one runtime thread, the
#   generator on core 1: what one core of server buys.
# MODE=shared: server with two runtime threads on both cores, sharing them
#   with the generator: the whole machine, as the issue's target states it
#   ("over 1M events/s on this 2-core machine, with the generator running on
#   the same machine").
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
MODE=${MODE:-pinned}
case "$MODE" in
  pinned) SERVER_CPUS=0; THREADS=1; LOAD_CPUS=1 ;;
  shared) SERVER_CPUS=0,1; THREADS=2; LOAD_CPUS=0,1 ;;
  *) echo "MODE must be pinned or shared" >&2; exit 2 ;;
esac
SWITCHYARD_THREADS=$THREADS taskset -c "$SERVER_CPUS" "$CARGO_TARGET_DIR/release/examples/events_server" "$DATA" >"$OUT" 2>/dev/null &
SERVER=$!
for _ in $(seq 100); do grep -q '^READY' "$OUT" && break; sleep 0.1; done
read -r _ URL KEY < <(grep '^READY' "$OUT")
echo "mode $MODE: server on cores $SERVER_CPUS ($THREADS threads), generator on cores $LOAD_CPUS"
echo "server: $URL, data in $DATA ($(df -T "$DATA" | awk 'NR==2{print $2}'))"
taskset -c "$LOAD_CPUS" "$CARGO_TARGET_DIR/release/events" --url "$URL" --key "$KEY" \
  --seconds "$SECONDS_RUN" --connections "$CONNS" --batch 500
echo "log size: $(du -sh "$DATA/events/log" | cut -f1)"
