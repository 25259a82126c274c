#!/usr/bin/env bash
# HTTP benchmark of the evaluation path, in one run on one machine:
#
#   1. the server's trivial endpoint (GET /healthz), the baseline;
#   2. OFREP single-flag evaluation of a flag with five rules;
#   3. OFREP bulk evaluation of 20 such flags;
#   4. how many concurrent SSE clients the server holds, its memory, and
#      how long one config change made through the API takes to reach all.
#
# The server runs on one core (`taskset -c $SERVER_CPU`, one runtime
# thread), the load generator (crates/loadgen) on another. Rates are
# compared within the run, as medians over $ROUNDS interleaved rounds,
# because this machine is shared and noisy. Loopback only; bounded in time
# (about ROUNDS * 3 * (DURATION + 1) s plus the SSE phase).
#
# Environment: DURATION (s, default 10), CONNECTIONS (10), ROUNDS (3),
# SSE_CLIENTS (10000), PORT (18080), SERVER_CPU (0), LOAD_CPU (1),
# WRK_ROUNDS (0: no wrk cross-check), RELAY_ROUNDS (0: no relay phase; else a
# `switchyard relay` of the bench environment on $SERVER_CPU, and rounds of
# OFREP single through it beside the server's own), CARGO_TARGET_DIR. Targets (BRIEF.md):
# single-flag OFREP >= 80 % of the /healthz rate, p99 < 1 ms at 10
# connections; 10k SSE clients; a change reaches every client in < 1 s.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-10}
ROUNDS=${ROUNDS:-3}
SSE_CLIENTS=${SSE_CLIENTS:-10000}
PORT=${PORT:-18080}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
URL="http://127.0.0.1:$PORT"

for tool in curl jq taskset; do
    command -v "$tool" >/dev/null || { echo "bench/http.sh needs $tool" >&2; exit 1; }
done

echo "== building release binaries" >&2
(cd "$ROOT" && cargo build --release -q -p switchyard -p switchyard-loadgen)
SERVER_BIN="$TARGET_DIR/release/switchyard"
LOADGEN="$TARGET_DIR/release/switchyard-loadgen"

# 10k streams need 10k sockets in the server and in the load generator.
ulimit -n "$(( SSE_CLIENTS * 2 + 4096 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [[ -n "${RELAY_PID:-}" ]] && kill -0 "$RELAY_PID" 2>/dev/null; then
        kill "$RELAY_PID" 2>/dev/null || true
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting the server on CPU $SERVER_CPU" >&2
RUST_LOG=warn taskset -c "$SERVER_CPU" "$SERVER_BIN" serve \
    --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --demo --threads 1 \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.err" >&2; exit 1; }
    sleep 0.1
done
ADMIN=$(awk '$1 ~ /^sy_/ {print $1; exit}' "$WORK/serve.out")
[[ -n "$ADMIN" ]] || { echo "no admin key in the server's output" >&2; cat "$WORK/serve.out" >&2; exit 1; }


echo "== creating project bench: 20 flags of five rules each" >&2
SDK_KEY=$(create_bench_project)

# The context misses the first four rules and lands in the fifth rule's split.
CONTEXT='{"context": {"targetingKey": "user-48213", "email": "someone@customer.org", "country": "US", "age": 34, "app_version": "2.4.1", "plan": "pro"}}'
ofrep() { curl -fsS -X POST "$URL$1" -H "Authorization: Bearer $SDK_KEY" -H 'Content-Type: application/json' --data "$CONTEXT"; }
for _ in $(seq 1 100); do
    [[ $(ofrep /ofrep/v1/evaluate/flags 2>/dev/null | jq '.flags | length' 2>/dev/null || echo 0) == 20 ]] && break
    sleep 0.1
done
echo "single: $(ofrep /ofrep/v1/evaluate/flags/bench-flag-00)" >&2
[[ $(ofrep /ofrep/v1/evaluate/flags | jq '[.flags[] | select(.reason == "SPLIT")] | length') == 20 ]] \
    || { echo "bulk evaluation does not serve 20 flags from their fifth rule" >&2; exit 1; }

load() { # LABEL PATH [loadgen args...]
    local label=$1 path=$2
    shift 2
    taskset -c "$LOAD_CPU" "$LOADGEN" http --url "$URL" --path "$path" --label "$label" \
        --connections "$CONNECTIONS" --duration "$DURATION" --warmup 1 --server-pid "$SERVER_PID" "$@" \
        >>"$WORK/http.jsonl"
}
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round of $ROUNDS: $CONNECTIONS connections, $DURATION s each" >&2
    load healthz /healthz
    load ofrep-single /ofrep/v1/evaluate/flags/bench-flag-00 --method POST --body "$CONTEXT" \
        -H "Authorization: Bearer $SDK_KEY" --expect-status 200
    load ofrep-bulk /ofrep/v1/evaluate/flags --method POST --body "$CONTEXT" \
        -H "Authorization: Bearer $SDK_KEY" --expect-status 200
done

# Cross-check with an independent generator: wrk (C, one thread, same
# pinning and connections), /healthz then OFREP single, $WRK_ROUNDS rounds.
# Skipped when WRK_ROUNDS=0; wrk must be installed otherwise.
WRK_ROUNDS=${WRK_ROUNDS:-0}
: >"$WORK/wrk.txt"
if (( WRK_ROUNDS > 0 )); then
    command -v wrk >/dev/null || { echo "WRK_ROUNDS needs wrk (apt-get install -y wrk)" >&2; exit 1; }
    cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$CONTEXT'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $SDK_KEY"
LUA
    wrk_rps() { awk '/Requests\/sec/ {print $2}'; }
    for round in $(seq 1 "$WRK_ROUNDS"); do
        echo "== wrk round $round of $WRK_ROUNDS" >&2
        h=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$URL/healthz" | wrk_rps)
        s=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/post.lua" \
            "$URL/ofrep/v1/evaluate/flags/bench-flag-00" | wrk_rps)
        echo "$h $s" >>"$WORK/wrk.txt"
    done
fi

# The relay: same flag, same context, same pinning; the server keeps its
# core (it is idle but for the relay's one stream) and the relay shares it.
RELAY_ROUNDS=${RELAY_ROUNDS:-0}
RELAY_PID=""
: >"$WORK/relay.jsonl"
if (( RELAY_ROUNDS > 0 )); then
    RELAY_PORT=$(( PORT + 1 ))
    RELAY_URL="http://127.0.0.1:$RELAY_PORT"
    RELAY_KEY=$(api POST /api-keys '{"name": "relay", "kind": "server", "project": "bench", "environment": "production"}' | jq -r .secret)
    echo "== starting a relay on CPU $SERVER_CPU" >&2
    SWITCHYARD_RELAY_KEYS=$RELAY_KEY RUST_LOG=warn taskset -c "$SERVER_CPU" "$SERVER_BIN" relay \
        --upstream "$URL" --data-dir "$WORK/relay" --listen "127.0.0.1:$RELAY_PORT" --threads 1 \
        >"$WORK/relay.out" 2>"$WORK/relay.err" &
    RELAY_PID=$!
    for _ in $(seq 1 300); do
        [[ $(curl -fsS "$RELAY_URL/readyz" 2>/dev/null | jq -r .status 2>/dev/null) == ready ]] && break
        kill -0 "$RELAY_PID" 2>/dev/null || { cat "$WORK/relay.err" >&2; exit 1; }
        sleep 0.1
    done
    [[ $(curl -fsS -X POST "$RELAY_URL/ofrep/v1/evaluate/flags/bench-flag-00" -H "Authorization: Bearer $SDK_KEY" \
        -H 'Content-Type: application/json' --data "$CONTEXT") == $(ofrep /ofrep/v1/evaluate/flags/bench-flag-00) ]] \
        || { echo "the relay does not answer as the server does" >&2; exit 1; }
    relay_load() { # LABEL URL PID PATH [loadgen args...]
        local label=$1 url=$2 pid=$3 path=$4
        shift 4
        taskset -c "$LOAD_CPU" "$LOADGEN" http --url "$url" --path "$path" --label "$label" \
            --connections "$CONNECTIONS" --duration "$DURATION" --warmup 1 --server-pid "$pid" "$@" \
            >>"$WORK/relay.jsonl"
    }
    for round in $(seq 1 "$RELAY_ROUNDS"); do
        echo "== relay round $round of $RELAY_ROUNDS" >&2
        relay_load server-single "$URL" "$SERVER_PID" /ofrep/v1/evaluate/flags/bench-flag-00 --method POST \
            --body "$CONTEXT" -H "Authorization: Bearer $SDK_KEY" --expect-status 200
        relay_load relay-single "$RELAY_URL" "$RELAY_PID" /ofrep/v1/evaluate/flags/bench-flag-00 --method POST \
            --body "$CONTEXT" -H "Authorization: Bearer $SDK_KEY" --expect-status 200
        relay_load relay-healthz "$RELAY_URL" "$RELAY_PID" /healthz
    done
    kill "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
fi

echo "== SSE: $SSE_CLIENTS concurrent clients, then one change through the API" >&2
ETAG=$(curl -fsS -o /dev/null -D - "$URL/api/v1/projects/bench/flags/bench-flag-19" \
    -H "Authorization: Bearer $ADMIN" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
taskset -c "$LOAD_CPU" "$LOADGEN" --threads 1 sse --url "$URL" -n "$SSE_CLIENTS" \
    -H "Authorization: Bearer $SDK_KEY" --server-pid "$SERVER_PID" --hold 2 \
    --trigger-method PATCH --trigger-path /api/v1/projects/bench/flags/bench-flag-19/environments/production \
    --trigger-body '{"enabled": false}' --trigger-header "Authorization: Bearer $ADMIN" \
    --trigger-header "If-Match: $ETAG" >"$WORK/sse.json"

# Summary: each round's rates side by side, the ratios within each round,
# and their medians. A round in which the server got less than 90 % of its
# core was slowed by other processes on the machine; it is marked.
jq -s -r --slurpfile sse "$WORK/sse.json" '
  def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  def r0: . * 10 | round / 10;
  def r3: . * 1000 | round / 1000;
  [range(0; length; 3) as $i | .[$i:$i + 3] | map({key: .label, value: .}) | from_entries
   | {h: .healthz, s: .["ofrep-single"], b: .["ofrep-bulk"]}
   | . + {single_ratio: (.s.rps / .h.rps), bulk_ratio: (.b.rps / .h.rps),
          min_cpu: ([.h.server_cpu, .s.server_cpu, .b.server_cpu] | map(. // 1) | min),
          gen_cpu: [.h.loadgen_cpu, .s.loadgen_cpu] | map(. // 0)}] as $rounds
  | $sse[0] as $sse
  | "",
    "| round | healthz req/s | OFREP single req/s | single / healthz | single p50 / p99 ms | OFREP bulk (20 flags) req/s | bulk / healthz | bulk p99 ms | healthz p99 ms | server CPU (min) | loadgen CPU healthz / single |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ($rounds | to_entries[] | .key as $k | .value |
      "| \($k + 1)\(if .min_cpu < 0.9 then " (contended)" else "" end) | \(.h.rps | floor) | \(.s.rps | floor) | \(.single_ratio * 100 | r0) % | \(.s.latency.p50_ms | r3) / \(.s.latency.p99_ms | r3) | \(.b.rps | floor) | \(.bulk_ratio * 100 | r0) % | \(.b.latency.p99_ms | r3) | \(.h.latency.p99_ms | r3) | \(.min_cpu * 100 | round) % | \(.gen_cpu[0] * 100 | round) % / \(.gen_cpu[1] * 100 | round) % |"),
    "",
    "median over \($rounds | length) rounds: healthz \($rounds | map(.h.rps) | median | floor) req/s, OFREP single \($rounds | map(.s.rps) | median | floor) req/s, bulk \($rounds | map(.b.rps) | median | floor) req/s",
    "median single / healthz: \($rounds | map(.single_ratio) | median * 100 | r0) % (target >= 80 %); median single p99: \($rounds | map(.s.latency.p99_ms) | median | r3) ms (target < 1 ms)",
    "median bulk / healthz: \($rounds | map(.bulk_ratio) | median * 100 | r0) %; errors: \($rounds | map(.h.errors + .s.errors + .b.errors + .h.unexpected_status + .s.unexpected_status + .b.unexpected_status) | add)",
    (if ($rounds | map(select(.min_cpu >= 0.9)) | length) > 0 then
      "uncontended rounds only: single / healthz \($rounds | map(select(.min_cpu >= 0.9) | .single_ratio) | median * 100 | r0) %, single p99 \($rounds | map(select(.min_cpu >= 0.9) | .s.latency.p99_ms) | median | r3) ms"
     else "no uncontended round: the machine was busy; rerun when it is quiet" end),
    "",
    "SSE: \($sse.held) of \($sse.clients) clients held (connected in \($sse.connect_s | r0) s), \($sse.held_at_end) still held at the end; server RSS \($sse.server_rss_kib_before / 1024 | round) MiB before, \($sse.server_rss_kib_held / 1024 | round) MiB holding them (\((($sse.server_rss_kib_held - $sse.server_rss_kib_before) / ([$sse.held, 1] | max)) | r0) KiB per stream)",
    (if $sse.change != null then
      "SSE: one change through the API reached \($sse.change.received) of \($sse.held) clients: p50 \($sse.change.latency.p50_ms | round) ms, p99 \($sse.change.latency.p99_ms | round) ms, max \($sse.change.latency.max_ms | round) ms (target < 1000 ms)"
     else empty end)
' "$WORK/http.jsonl"

if [[ -s "$WORK/relay.jsonl" ]]; then
    echo
    jq -s -r '
      def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
      def r0: . * 10 | round / 10;
      [range(0; length; 3) as $i | .[$i:$i + 3] | map({key: .label, value: .}) | from_entries
       | {s: .["server-single"], r: .["relay-single"], h: .["relay-healthz"]}] as $rounds
      | ($rounds | to_entries[] | .key as $k | .value |
          "relay round \($k + 1): OFREP single on the server \(.s.rps | floor) req/s, through the relay \(.r.rps | floor) req/s (\(.r.rps / .s.rps * 100 | r0) %), relay p99 \(.r.latency.p99_ms) ms; relay /healthz \(.h.rps | floor) req/s; errors \(.s.errors + .r.errors + .h.errors + .s.unexpected_status + .r.unexpected_status + .h.unexpected_status)"),
        "median relay / server OFREP single over \($rounds | length) rounds: \($rounds | map(.r.rps / .s.rps) | median * 100 | r0) %; relay single / relay healthz \($rounds | map(.r.rps / .h.rps) | median * 100 | r0) %"
    ' "$WORK/relay.jsonl"
fi

if [[ -s "$WORK/wrk.txt" ]]; then
    echo
    awk '{ printf "wrk round %d: healthz %d req/s, OFREP single %d req/s, single / healthz %.1f %%\n", NR, $1, $2, 100 * $2 / $1 }' "$WORK/wrk.txt"
    n=$(wc -l <"$WORK/wrk.txt")
    median=$(awk '{ print $2 / $1 }' "$WORK/wrk.txt" | sort -g | sed -n "$(( (n + 1) / 2 ))p")
    awk -v m="$median" -v n="$n" 'BEGIN { printf "wrk median single / healthz over %d rounds: %.1f %%\n", n, 100 * m }'
fi
