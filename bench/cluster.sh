#!/usr/bin/env bash
# Cluster benchmark: events/s from HTTP through NATS JetStream into the
# workers' aggregates, at 1, 2 and 4 partitions (one worker per
# partition), beside the embedded single-node figure in the same run.
#   bench/cluster.sh [seconds] [connections]
#
# Each mode gets a fresh nats-server (private port and store), a fresh
# PostgreSQL database and one `serve` node; the generator (`events`,
# batches of 500, event time "now", so the running experiment counts
# them) sends for [seconds]. Reported per mode: the rate the node
# acknowledged, and the end-to-end rate: acknowledged events divided by
# the time from the first send until the experiment's results (from the
# node, so from the saved and merged partitions in a cluster) count every
# acknowledged exposure (one event in five is one); and the CPU seconds
# each process used over the whole mode (where the time went).
# Everything shares this machine's cores (no pinning): the node, nats-server,
# PostgreSQL, the workers and the generator.
# Needs: /usr/sbin/nats-server, PostgreSQL at 127.0.0.1:5432 (user postgres),
# jq, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SECONDS_RUN=${1:-10}
CONNS=${2:-4}
MODES=${MODES:-"embedded 1 2 4"}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/test}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p switchyard -p switchyard-loadgen --bin switchyard --bin events
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS sy_bench_cluster WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=18480

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
pg_cpu() { # CPU seconds of every postgres process so far
    local t=0 p
    for p in $(pgrep -x postgres); do
        t=$(echo "$t + $(awk -v k="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / k}' /proc/"$p"/stat 2>/dev/null || echo 0)" | bc)
    done
    echo "$t"
}
setup_project() { # prints a server SDK key of bench/production with a running experiment
    api POST /projects '{"key": "bench", "name": "Benchmark"}' >/dev/null || return
    api POST /projects/bench/environments '{"key": "production", "name": "Production"}' >/dev/null || return
    api POST /projects/bench/flags '{"key": "new-checkout", "name": "c", "type": "string",
        "variations": [{"key": "v0", "value": "a"}, {"key": "v1", "value": "b"}],
        "environments": {"production": {"enabled": true, "off_variation": "v0", "fallthrough": {"variation": "v0"}}}}' >/dev/null || return
    api POST /projects/bench/metrics '{"key": "purchase", "kind": "sum", "numerator": {"event": "purchase"}}' >/dev/null || return
    api POST /projects/bench/environments/production/experiments '{"key": "checkout", "flag": "new-checkout", "name": "c",
        "variations": [{"variation": "v0", "weight": 5000}, {"variation": "v1", "weight": 5000}],
        "metrics": ["purchase"], "start": true}' >/dev/null || return
    api POST /api-keys '{"name": "bench", "kind": "server", "project": "bench", "environment": "production"}' | jq -r .secret
}

run_mode() {
    local mode=$1 dir="$WORK/$1"
    mkdir -p "$dir"
    PIDS=()
    local url="http://127.0.0.1:$PORT"
    if [ "$mode" = embedded ]; then
        "$BIN/switchyard" serve --listen "127.0.0.1:$PORT" --ops-listen "127.0.0.1:$((PORT + 1))" \
            --data-dir "$dir/node" >"$dir/node.out" 2>"$dir/node.err" &
        PIDS+=($!)
    else
        local nats_port=$((PORT + 10))
        /usr/sbin/nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" >/dev/null 2>&1 &
        PIDS+=($!)
        wait_port "$nats_port"
        psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS sy_bench_cluster WITH (FORCE)" -c "CREATE DATABASE sy_bench_cluster" >/dev/null
        local db="${PG_ADMIN%/*}/sy_bench_cluster"
        "$BIN/switchyard" serve --listen "127.0.0.1:$PORT" --ops-listen "127.0.0.1:$((PORT + 1))" \
            --data-dir "$dir/node" --store-url "$db" --nats-url "nats://127.0.0.1:$nats_port" \
            --partitions "$mode" >"$dir/node.out" 2>"$dir/node.err" &
        PIDS+=($!)
        wait_port "$PORT" # the node has created the stream
        local w
        for w in $(seq 1 "$mode"); do
            "$BIN/switchyard" worker --listen "127.0.0.1:$((PORT + 20 + w))" --store-url "$db" \
                --nats-url "nats://127.0.0.1:$nats_port" --partitions "$mode" --save-interval 1s >"$dir/worker$w.out" 2>"$dir/worker$w.err" &
            PIDS+=($!)
        done
        local partitions
        for _ in $(seq 100); do
            partitions=$(grep -ho 'partitions=[0-9]*' "$dir"/worker1.err | head -1) && [ -n "$partitions" ] && break
            sleep 0.1
        done
        [ "$partitions" = "partitions=$mode" ] || { echo "the stream has $partitions, not $mode" >&2; exit 1; }
    fi
    wait_port "$PORT"
    for _ in $(seq 100); do ADMIN=$(grep -o 'sy_admin_[A-Za-z0-9_]*' "$dir/node.out" | head -1) && [ -n "$ADMIN" ] && break; sleep 0.1; done
    URL=$url
    local key
    key=$(setup_project)
    sleep 2 # workers take their leases and read the experiment
    local start out accepted done_at pg_before
    pg_before=$(pg_cpu)
    start=$(date +%s.%N)
    out=$("$BIN/events" --url "$url" --key "$key" --seconds "$SECONDS_RUN" --connections "$CONNS" \
        --batch 500 --parse-seconds 0.2 --time-ms now)
    accepted=$(echo "$out" | awk '/accepted durably/ {print $3}')
    local acked exposures shown=0
    # Acknowledged batches (200s) of 500 events, 100 of them exposures.
    acked=$(echo "$out" | awk '/^batches:/ {gsub(/[(]/, "", $3); print ($2 - $3) * 500}')
    exposures=$((acked / 5))
    for _ in $(seq 3000); do
        shown=$(api GET /projects/bench/environments/production/experiments/checkout/results | jq '[.variations[].exposures] | add // 0') || shown=0
        [ "$shown" -ge "$exposures" ] && break
        sleep 0.1
    done
    done_at=$(date +%s.%N)
    [ "$shown" -ge "$exposures" ] || echo "$mode: NOT COMPLETE: only $shown of $exposures exposures shown after 300 s" >&2
    local e2e cpu="" p name
    e2e=$(echo "$acked / ($done_at - $start)" | bc)
    printf '%-9s acknowledged %8.0f events/s; into results %8.0f events/s end to end (%s of %s exposures shown %.1f s after the first send); %s\n' \
        "$mode" "$accepted" "$e2e" "$shown" "$exposures" \
        "$(echo "$done_at - $start" | bc)" "$(echo "$out" | grep 'batch latency')"
    for p in "${PIDS[@]}"; do
        name=$(tr '\0' ' ' </proc/"$p"/cmdline | awk '{n=$1; sub(".*/", "", n); print n "-" $2}')
        cpu+="$name $(awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' /proc/"$p"/stat)s, "
    done
    echo "          CPU seconds: ${cpu%, }, postgres (all processes) $(echo "$(pg_cpu) - $pg_before" | bc)s"
    if [ "$mode" != embedded ]; then
        local w
        for w in $(seq 1 "$mode"); do
            curl -fsS "http://127.0.0.1:$((PORT + 20 + w))/metrics" | awk -v w="$w" \
                '/^switchyard_worker_(events_total|saves_total|save_seconds_total|fetch_seconds_total) / {sub("switchyard_worker_", "", $1); s = s " " $1 "=" $2} END {printf "          worker " w ":" s}'
            echo " (up $(ps -o etimes= -p "${PIDS[$((w + 1))]}" | tr -d ' ') s)"
        done
    fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

echo "cluster benchmark: ${SECONDS_RUN}s of load, $CONNS connections, batches of 500; $(nproc) cores shared by everything"
for m in $MODES; do run_mode "$m"; done
