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
# CARGO_TARGET_DIR. Targets (BRIEF.md): single-flag OFREP >= 80 % of the
# /healthz rate, p99 < 1 ms at 10 connections; 10k SSE clients; a change
# reaches every client in < 1 s.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
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

api() { # METHOD PATH [BODY] [extra curl args...]
    local method=$1 path=$2 body=${3:-}
    shift 3 || shift $#
    curl -fsS -X "$method" "$URL/api/v1$path" -H "Authorization: Bearer $ADMIN" \
        -H 'Content-Type: application/json' ${body:+--data "$body"} "$@"
}

echo "== creating project bench: 20 flags of five rules each" >&2
api POST /projects '{"key": "bench", "name": "Benchmark"}' >/dev/null
api POST /projects/bench/environments '{"key": "production", "name": "Production"}' >/dev/null
for i in $(seq -w 0 19); do
    api POST /projects/bench/flags "$(jq -n --arg key "bench-flag-$i" '{
      key: $key, name: $key, type: "string",
      variations: [{key: "a", value: "A"}, {key: "b", value: "B"}, {key: "c", value: "C"}],
      environments: {production: {enabled: true, off_variation: "a",
        rules: [
          {conditions: [{attribute: "email", op: "ends_with", value: "@example.com"}], serve: {variation: "b"}},
          {conditions: [{attribute: "country", op: "in", value: ["DE", "FR", "NL", "SE", "NO"]}], serve: {variation: "c"}},
          {conditions: [{attribute: "age", op: "gte", value: 65}], serve: {variation: "b"}},
          {conditions: [{attribute: "app_version", op: "semver_lt", value: "2.0.0"}], serve: {variation: "a"}},
          {conditions: [{attribute: "plan", op: "equals", value: "pro"}],
           serve: {split: {weights: [{variation: "b", weight: 5000}, {variation: "c", weight: 5000}]}}}],
        fallthrough: {variation: "a"}}}}')" >/dev/null
done
SDK_KEY=$(api POST /api-keys '{"name": "bench", "kind": "server", "project": "bench", "environment": "production"}' | jq -r .secret)

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

echo "== SSE: $SSE_CLIENTS concurrent clients, then one change through the API" >&2
ETAG=$(curl -fsS -o /dev/null -D - "$URL/api/v1/projects/bench/flags/bench-flag-19" \
    -H "Authorization: Bearer $ADMIN" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
taskset -c "$LOAD_CPU" "$LOADGEN" --threads 1 sse --url "$URL" -n "$SSE_CLIENTS" \
    -H "Authorization: Bearer $SDK_KEY" --server-pid "$SERVER_PID" --hold 2 \
    --trigger-method PATCH --trigger-path /api/v1/projects/bench/flags/bench-flag-19/environments/production \
    --trigger-body '{"enabled": false}' --trigger-header "Authorization: Bearer $ADMIN" \
    --trigger-header "If-Match: $ETAG" >"$WORK/sse.json"

# Summary: medians over the rounds.
jq -s -r --slurpfile sse "$WORK/sse.json" '
  def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  group_by(.label) | map({key: .[0].label, value: {
      rps: (map(.rps) | median), p50: (map(.latency.p50_ms) | median),
      p99: (map(.latency.p99_ms) | median), cpu: (map(.server_cpu // 0) | median),
      errors: (map(.errors + .unexpected_status) | add), all: (map(.rps | floor))}}) | from_entries
  | . as $r | $sse[0] as $s |
  "",
  "| endpoint | req/s (median of \($r.healthz.all | length)) | rounds | p50 ms | p99 ms | server CPU | errors |",
  "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
  (["healthz", "ofrep-single", "ofrep-bulk"][] as $k | $r[$k] |
    "| \($k) | \(.rps | floor) | \(.all | map(tostring) | join(", ")) | \(.p50 * 1000 | round / 1000) | \(.p99 * 1000 | round / 1000) | \(.cpu * 100 | round) % | \(.errors) |"),
  "",
  "single-flag OFREP / healthz: \($r["ofrep-single"].rps / $r.healthz.rps * 100 | round) %  (target >= 80 %, p99 < 1 ms)",
  "bulk (20 flags) OFREP / healthz: \($r["ofrep-bulk"].rps / $r.healthz.rps * 100 | round) %",
  "SSE: \($s.held) of \($s.clients) clients held (connected in \($s.connect_s * 100 | round / 100) s); server RSS \($s.server_rss_kib_before / 1024 | round) MiB before, \($s.server_rss_kib_held / 1024 | round) MiB holding them (\((($s.server_rss_kib_held - $s.server_rss_kib_before) / ([$s.held, 1] | max)) * 10 | round / 10) KiB per stream)",
  (if $s.change != null then
    "SSE change through the API reached \($s.change.received) of \($s.held) clients: p50 \($s.change.latency.p50_ms | round) ms, p99 \($s.change.latency.p99_ms | round) ms, max \($s.change.latency.max_ms | round) ms (target < 1000 ms)"
   else empty end)
' "$WORK/http.jsonl"
