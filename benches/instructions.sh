#!/usr/bin/env bash
# Instructions per request under callgrind (valgrind, Debian package, installed when missing):
# the hyper-only proxy (examples/bare_proxy) and Rosetta (release, config/bench.toml) behind the
# same fixed upstream as benches/load.sh, each request row driven by wrk (8 connections) for a
# fixed time after a warm-up, with the counters zeroed in between. Unlike requests per second
# this does not drift with the machine or its neighbours, so a change of a few percent shows;
# it counts work, not time (a cache miss or a lock wait costs nothing here), so confirm a gain
# with benches/load.sh or an alternating wrk run.
#   benches/instructions.sh                        # bare proxy, passthrough, hit
#   ONLY='hit' benches/instructions.sh             # some rows
#   DURATION=30s benches/instructions.sh
# The serving tasks and the audit writer are shown apart: at the few thousand requests per
# second valgrind allows, the writer commits a few rows at a time, so its share is larger here
# than under load (where it writes 64 rows per statement).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
ONLY=${ONLY:-}

# shellcheck source=benches/common.sh
. benches/common.sh
# valgrind starts a process slowly.
WAIT_SECONDS=60
need wrk wrk
need valgrind valgrind

cargo build --release --quiet --bin rosetta --example load_upstream --example bare_proxy

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && cp -r "$work" "$KEEP"
    rm -rf "$work" /tmp/rosetta-instructions.db*
}
trap cleanup EXIT

target/release/examples/load_upstream 127.0.0.1:0 >"$work/up.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/up.log" && break; sleep 0.05; done
UP=$(sed -n 's/listening on //p' "$work/up.log")
AUTH="Authorization: Bearer bench-key"


# measure NAME PID URL [HEADER]: instructions per request of the row, by thread (callgrind
# writes one file per thread). The store's threads run SQLite and no tokio task; in these rows
# (a declared key, no quotas) only the audit writer of them has work.
measure() {
    local name=$1 pid=$2 url=$3 header=${4:-}
    wrk -t1 -c8 -d3s ${header:+-H "$header"} "$url" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    local out
    out=$(wrk -t1 -c8 -d"$DURATION" ${header:+-H "$header"} "$url")
    rm -f "$work"/cg.out.*
    callgrind_control -d "$pid" >/dev/null 2>&1
    local n serving=0 writer=0 f t
    n=$(awk '/requests in/ { print $1 }' <<<"$out")
    for f in "$work"/cg.out.*; do
        t=$(awk '/^totals:/ { print $2 }' "$f")
        if grep -q "sqlite3_step" "$f" && ! grep -q "tokio::runtime" "$f"; then
            writer=$((writer + t))
        else
            serving=$((serving + t))
        fi
    done
    awk -v n="$n" -v s="$serving" -v w="$writer" -v name="$name" \
        'BEGIN { printf "| %s | %d | %.0f | %.0f | %.0f |\n", name, n, s / n, w / n, (s + w) / n }'
}

echo "| row | requests | serving (instructions/request) | store threads (audit writer) | whole process |"
echo "| --- | ---: | ---: | ---: | ---: |"

if [ -z "$ONLY" ] || [[ "bare proxy" =~ $ONLY ]]; then
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg.out" \
        target/release/examples/bare_proxy 127.0.0.1:0 "$UP" >"$work/bare.log" 2>"$work/bare.err" &
    BPID=$!
    pids+=($BPID)
    for _ in $(seq 1 600); do grep -q listening "$work/bare.log" && break; sleep 0.1; done
    BARE=$(sed -n 's/listening on //p' "$work/bare.log")
    wait_for "http://$BARE/static"
    measure "hyper-only proxy (bare_proxy)" "$BPID" "http://$BARE/static"
    kill "$BPID" 2>/dev/null || true
fi

ROSETTA__LISTEN=127.0.0.1:18380 ROSETTA__ADMIN_LISTEN=127.0.0.1:19380 \
    ROSETTA__STORE__PATH=/tmp/rosetta-instructions.db \
    ROSETTA__UPSTREAMS__APPDIRECT__URL="http://$UP" ROSETTA__UPSTREAMS__LONGJUMP__URL="http://$UP" \
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg.out" \
    target/release/rosetta serve --config config/bench.toml >"$work/rosetta.log" 2>&1 &
RS=$!
pids+=($RS)
wait_for "http://127.0.0.1:18380/pass/static" "$AUTH"
rows=(
    "rosetta passthrough|http://127.0.0.1:18380/pass/static"
    "rosetta cache hit|http://127.0.0.1:18380/companies/6e0f3b4a-0000-4000-8000-000000000002"
)
for row in "${rows[@]}"; do
    IFS='|' read -r name url <<<"$row"
    if [ -n "$ONLY" ] && ! [[ "$name" =~ $ONLY ]]; then continue; fi
    measure "$name" "$RS" "$url" "$AUTH"
done
