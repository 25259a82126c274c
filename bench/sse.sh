#!/usr/bin/env bash
# Server-sent-event streams at scale, in one run on one machine:
#
#   1. N concurrent SDK streams (`/sdk/v1/stream`) held by one server: the
#      server's resident memory per stream (RSS with them held, less RSS
#      before, over N), and the load generator's own;
#   2. one config change made through the API, and the time it takes to
#      reach every held stream (p50 / p99 / max, counted per client from
#      the moment the change request was sent).
#
# The environment streamed is the one `bench/http.sh` uses (20 flags of
# five rules, a document of about 16 KB), so figures compare with its SSE
# phase. Clients are bare sockets (crates/loadgen, `sse`), spread over
# source addresses 127.0.0.1..127.0.0.K (one per 20,000 clients: an
# address has about 28,000 ephemeral ports).
#
# File descriptors: the server raises its own soft limit to the hard limit
# at start and logs it; this script raises its soft limit for the load
# generator. One process can hold at most `ulimit -Hn` sockets, so
# CLIENTS above what the hard limit allows (less 300 for the server's own
# files) is lowered, and said so; raise the hard limit (as root:
# `prlimit --nofile=250000:250000 --pid $$`, or limits.conf) to hold
# 100,000.
#
# A stream asked as a connection's first request takes the server's lean
# path (crates/server/src/net/sse.rs); MODES=lean,hyper also runs each
# count with a `GET /healthz` sent first on every connection, so that
# hyper serves the streams, for comparison. MODES=relay holds the streams
# on a `switchyard relay` of the environment (on $SERVER_CPU, beside the
# server it syncs from) and makes the change on the server: the relay's
# memory per stream, and the time from the change to every client of the
# relay.
#
# Environment: CLIENTS (comma-separated counts, one run each, default
# 10000,100000), MODES (lean), PORT (18090), SERVER_CPU (0), LOAD_CPU (1),
# THREADS (server runtime threads, 1), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
CLIENTS=${CLIENTS:-10000,100000}
PORT=${PORT:-18090}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
THREADS=${THREADS:-1}
MODES=${MODES:-lean}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
URL="http://127.0.0.1:$PORT"

for tool in curl jq taskset; do
    command -v "$tool" >/dev/null || { echo "bench/sse.sh needs $tool" >&2; exit 1; }
done

echo "== building release binaries" >&2
(cd "$ROOT" && cargo build --release -q -p switchyard -p switchyard-loadgen)
SERVER_BIN="$TARGET_DIR/release/switchyard"
LOADGEN="$TARGET_DIR/release/switchyard-loadgen"

HARD=$(ulimit -Hn)
[[ "$HARD" == unlimited ]] && HARD=1048576
ulimit -n "$HARD"

WORK=$(mktemp -d)
SERVER_PID=""
RELAY_PID=""
stop_server() {
    if [[ -n "$RELAY_PID" ]] && kill -0 "$RELAY_PID" 2>/dev/null; then
        kill "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
    fi
    RELAY_PID=""
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT


run() { # CLIENTS MODE
    local n=$1 mode=$2 room=$(( HARD - 300 ))
    local before=()
    [[ "$mode" == hyper ]] && before=(--before-path /healthz)
    if (( n > room )); then
        echo "== $n streams need $n descriptors in one process; the hard limit is $HARD: holding $room instead" >&2
        n=$room
    fi
    rm -rf "$WORK/data" "$WORK/relay"
    echo "== starting the server on CPU $SERVER_CPU ($THREADS runtime threads)" >&2
    RUST_LOG=info taskset -c "$SERVER_CPU" "$SERVER_BIN" serve \
        --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --threads "$THREADS" \
        >"$WORK/serve.out" 2>"$WORK/serve.err" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.err" >&2; exit 1; }
        sleep 0.1
    done
    grep -o 'open-file limit[^$]*' "$WORK/serve.err" | head -1 | sed 's/^/server: /' >&2 || true
    ADMIN=$(awk '$1 ~ /^sy_/ {print $1; exit}' "$WORK/serve.out")
    [[ -n "$ADMIN" ]] || { echo "no admin key in the server's output" >&2; exit 1; }

    local key etag
    key=$(create_bench_project)
    etag=$(curl -fsS -o /dev/null -D - "$URL/api/v1/projects/bench/flags/bench-flag-19" \
        -H "Authorization: Bearer $ADMIN" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
    local doc
    doc=$(curl -fsS "$URL/sdk/v1/config" -H "Authorization: Bearer $key" | wc -c)

    local stream_url=$URL holder=$SERVER_PID
    if [[ "$mode" == relay ]]; then
        local relay_port=$(( PORT + 1 ))
        stream_url="http://127.0.0.1:$relay_port"
        SWITCHYARD_RELAY_KEYS=$key RUST_LOG=info taskset -c "$SERVER_CPU" "$SERVER_BIN" relay \
            --upstream "$URL" --data-dir "$WORK/relay" --listen "127.0.0.1:$relay_port" \
            --threads "$THREADS" >"$WORK/relay.out" 2>"$WORK/relay.err" &
        RELAY_PID=$!
        for _ in $(seq 1 300); do
            [[ $(curl -fsS "$stream_url/readyz" 2>/dev/null | jq -r .status 2>/dev/null) == ready ]] && break
            kill -0 "$RELAY_PID" 2>/dev/null || { cat "$WORK/relay.err" >&2; exit 1; }
            sleep 0.1
        done
        holder=$RELAY_PID
    fi

    echo "== $n streams, $mode path (document $doc bytes)" >&2
    taskset -c "$LOAD_CPU" "$LOADGEN" --threads 1 sse --url "$stream_url" -n "$n" "${before[@]}" \
        -H "Authorization: Bearer $key" --server-pid "$holder" --hold 2 --trigger-url "$URL" \
        --trigger-method PATCH --trigger-path /api/v1/projects/bench/flags/bench-flag-19/environments/production \
        --trigger-body '{"enabled": false}' --trigger-header "Authorization: Bearer $ADMIN" \
        --trigger-header "If-Match: $etag" \
        | jq -c --argjson doc "$doc" --arg mode "$mode" '. + {document_bytes: $doc, mode: $mode}' >>"$WORK/sse.jsonl"
    stop_server
}

IFS=, read -ra COUNTS <<<"$CLIENTS"
IFS=, read -ra MODE_LIST <<<"$MODES"
for n in "${COUNTS[@]}"; do
    for mode in "${MODE_LIST[@]}"; do
        run "$n" "$mode"
    done
done

echo
jq -r '
  def r1: . * 10 | round / 10;
  "\(.mode) path: \(.held) of \(.clients) streams held (\(.sources) source addresses, connected in \(.connect_s | r1) s, \(.held_at_end) at the end, \(.dropped) dropped): the process holding them (the relay on the relay path) \(.server_rss_kib_before / 1024 | r1) MiB before, \(.server_rss_kib_held / 1024 | r1) MiB holding them = \(.server_kib_per_stream | r1) KiB per stream; load generator \(.loadgen_kib_per_stream | r1) KiB per stream",
  (if .change != null then
     "  one change (document \(.document_bytes) bytes) reached \(.change.received) of \(.held): p50 \(.change.latency.p50_ms | round) ms, p99 \(.change.latency.p99_ms | round) ms, max \(.change.latency.max_ms | round) ms (target < 1000 ms); CPU meanwhile: server \(.change.server_cpu_s) s, load generator \(.change.loadgen_cpu_s) s"
   else empty end)
' "$WORK/sse.jsonl"
