# Shared by bench/http.sh and bench/sse.sh (sourced, not run): the admin
# API call and the benchmark environment both measure.

api() { # METHOD PATH [BODY] [extra curl args...]; needs $URL and $ADMIN
    local method=$1 path=$2 body=${3:-}
    shift 3 || shift $#
    curl -fsS -X "$method" "$URL/api/v1$path" -H "Authorization: Bearer $ADMIN" \
        -H 'Content-Type: application/json' ${body:+--data "$body"} "$@"
}

# Project `bench`, environment `production`, 20 string flags of five rules
# each (a document of about 16 KB); prints a new server SDK key of it.
# Fails at the first refused call (command substitution does not inherit
# `set -e`).
create_bench_project() {
    api POST /projects '{"key": "bench", "name": "Benchmark"}' >/dev/null || return
    api POST /projects/bench/environments '{"key": "production", "name": "Production"}' >/dev/null || return
    local i
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
            fallthrough: {variation: "a"}}}}')" >/dev/null || return
    done
    api POST /api-keys '{"name": "bench", "kind": "server", "project": "bench", "environment": "production"}' | jq -r .secret
}
