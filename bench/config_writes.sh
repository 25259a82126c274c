#!/usr/bin/env bash
# How the latency of one configuration write grows with the size of the
# environment it changes. Every write compiles the affected environment's
# whole document (in the store, to refuse what the evaluator would reject)
# and the writing node recompiles its snapshot before it answers
# (read-your-writes), so a write costs O(flags in the environment); this
# script shows whether that holds (linear) or degrades (quadratic).
#
# For each size in $SIZES it fills the `default` project's `development`
# environment with flags of five rules each (enabled there), then times
# $WRITES sequential flag creations and reports the median and p90 latency,
# and the median per thousand flags. Release build, embedded SQLite store,
# loopback. Environment: SIZES ("500 1000 2000"), WRITES (30), PORT (18090),
# PARALLEL (4, writers while filling), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SIZES:-"500 1000 2000"}
WRITES=${WRITES:-30}
PORT=${PORT:-18090}
PARALLEL=${PARALLEL:-4}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
URL="http://127.0.0.1:$PORT"

for tool in curl jq xargs; do
    command -v "$tool" >/dev/null || { echo "bench/config_writes.sh needs $tool" >&2; exit 1; }
done

echo "== building the release binary" >&2
(cd "$ROOT" && cargo build --release -q -p switchyard)
SERVER_BIN="$TARGET_DIR/release/switchyard"

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

RUST_LOG=warn "$SERVER_BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -sf "$URL/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
KEY=$(grep -o 'sy_admin_[A-Za-z0-9_]*' "$WORK/serve.out" "$WORK/serve.err" | head -n1 | cut -d: -f2)
[[ -n "$KEY" ]] || { echo "no admin key printed" >&2; cat "$WORK/serve.err" >&2; exit 1; }
export KEY URL

# One boolean flag with five rules, on in development.
flag_body() {
    local key=$1 rules="" i
    for i in 1 2 3 4 5; do
        rules+="{\"conditions\":[{\"attribute\":\"country\",\"op\":\"in\",\"value\":[\"c$i\",\"d$i\",\"e$i\"]}],\"serve\":{\"variation\":\"on\"}},"
    done
    rules=${rules%,}
    printf '{"key":"%s","name":"%s","type":"boolean","variations":[{"key":"on","value":true},{"key":"off","value":false}],"environments":{"development":{"enabled":true,"off_variation":"off","rules":[%s],"fallthrough":{"variation":"off"}}}}' \
        "$key" "$key" "$rules"
}
export -f flag_body

create() {
    flag_body "$1" | curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        --data-binary @- "$URL/api/v1/projects/default/flags"
}
export -f create

have=0
printf '%8s %12s %12s %16s\n' flags median_ms p90_ms median_ms_per_1k
for size in $SIZES; do
    seq "$have" $(( size - 1 )) | sed 's/^/fill-/' | xargs -P "$PARALLEL" -I{} bash -c 'create {}' \
        | awk '$1 != 201 { bad++ } END { if (bad) { print bad " fill writes failed" > "/dev/stderr"; exit 1 } }'
    have=$size
    times=$(for i in $(seq 1 "$WRITES"); do create "probe-$size-$i"; done \
        | awk '$1 != 201 { print "write failed: " $0 > "/dev/stderr"; exit 1 } { print $2 * 1000 }' | sort -n)
    have=$(( have + WRITES ))
    median=$(echo "$times" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    p90=$(echo "$times" | awk '{ a[NR] = $1 } END { print a[int(NR * 0.9 + 0.5)] }')
    printf '%8d %12.1f %12.1f %16.2f\n' "$size" "$median" "$p90" "$(echo "$median * 1000 / $size" | bc -l)"
done
