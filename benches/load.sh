#!/usr/bin/env bash
# Load benchmark (issue 7): one run, one table. Starts a fixed upstream (examples/load_upstream),
# nginx as a plain keep-alive reverse proxy to it, and Rosetta (release, config/bench.toml), then
# drives each with wrk and prints rps, p50 and p99 beside the ratio to nginx, and the CPU time the
# server under test spent per request.
#   benches/load.sh                      # 10 s per row, 32 connections, 1 wrk thread
#   ROUNDS=3 benches/load.sh             # the table three times (rows drift on a shared machine)
#   DURATION=5s CONNS=64 benches/load.sh
#   ONLY='passthrough|cache' benches/load.sh   # some rows (nginx's is always run, for the ratio)
#   WARMUP=0 benches/load.sh             # no unmeasured warm-up run per row first (default 2s)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-2s}

# shellcheck source=benches/common.sh
. benches/common.sh
need wrk wrk
need nginx nginx-light
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet --bin rosetta --example load_upstream --example bare_proxy

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work" /tmp/rosetta-bench.db*
}
trap cleanup EXIT


# The fixed upstream.
target/release/examples/load_upstream 127.0.0.1:0 >"$work/up.log" &
UPID=$!
pids+=($UPID)
for _ in $(seq 1 100); do grep -q listening "$work/up.log" && break; sleep 0.05; done
UP=$(sed -n 's/listening on //p' "$work/up.log")

# nginx as its users would run it: one worker per core, keep-alive to the upstream.
cat >"$work/nginx.conf" <<NGX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    upstream up { server $UP; keepalive 64; }
    server {
        listen 127.0.0.1:18081;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGX
"$NGINX" -c "$work/nginx.conf" -p "$work"

# The floor: hyper's server and pooled client and nothing else (examples/bare_proxy.rs).
target/release/examples/bare_proxy 127.0.0.1:0 "$UP" >"$work/bare.log" &
BPID=$!
pids+=($BPID)
for _ in $(seq 1 100); do grep -q listening "$work/bare.log" && break; sleep 0.05; done
BARE=$(sed -n 's/listening on //p' "$work/bare.log")

# Rosetta, release build.
ROSETTA__UPSTREAMS__APPDIRECT__URL="http://$UP" \
ROSETTA__UPSTREAMS__LONGJUMP__URL="http://$UP" \
    target/release/rosetta serve --config config/bench.toml 2>"$work/rosetta.log" &
RS=$!
pids+=($RS)

AUTH="Authorization: Bearer bench-key"
wait_for "http://$UP/static"
wait_for "http://127.0.0.1:18081/static"
wait_for "http://127.0.0.1:18080/pass/static" "$AUTH"

CID=6e0f3b4a-0000-4000-8000-000000000002
# Translated rows ask for a company the bench key reaches (tenancy checks it) with a query of
# their own each time (wrk script): every request is a cache miss that really runs the route,
# never one folded into another's by coalescing. Each wrk run (warm-up, every round) and each of
# its threads starts its own range of numbers, so no run asks for what an earlier one left in
# the cache.
cat >"$work/vary.lua" <<'LUA'
local threads = 0
setup = function(thread)
    thread:set("tid", threads)
    threads = threads + 1
end
local n = 0
init = function(args)
    n = tonumber(args[1] or "0") + (tid or 0) * 10000000
end
-- {m} and {t}: an AppDirect company and a LongJump tenant the bench key reaches (the canned
-- root's 1,000 customers, in turn); {n}: the request's number, which keeps its cache key apart.
request = function()
    n = n + 1
    local path = string.gsub(wrk.path, "{n}", string.format("%d", n))
    path = string.gsub(path, "{m}", string.format("%012d", 1000 + n % 1000))
    path = string.gsub(path, "{t}", string.format("%d", 2000000000 + n % 1000))
    return wrk.format(nil, path)
end
LUA
# name|url|header|mode|pids whose CPU the row is charged
NGINX_WORKERS=$(pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ')
rows=(
    "direct upstream|http://$UP/static|||$UPID"
    "nginx proxy|http://127.0.0.1:18081/static|||$NGINX_WORKERS"
    "hyper-only proxy (bare_proxy)|http://$BARE/static|||$BPID"
    "rosetta passthrough|http://127.0.0.1:18080/pass/static|$AUTH||$RS"
    "rosetta V1→AppDirect (jq)|http://127.0.0.1:18080/companies/6e0f3b4a-0000-4000-8000-{m}?r={n}|$AUTH|vary|$RS"
    "rosetta V1→LongJump (XML→JSON)|http://127.0.0.1:18080/lj/companies/{t}?r={n}|$AUTH|vary|$RS"
    "rosetta cache hit|http://127.0.0.1:18080/companies/$CID|$AUTH||$RS"
)

# CPU time (user + system, all threads) the given processes have used, in clock ticks. Steadier
# than rps on a shared machine: the load generator and the upstream share the cores, so a
# server's rps moves with them, while the CPU it spends per request is its own.
TICK=$(getconf CLK_TCK)
ticks() { local s=0 p; for p in "$@"; do s=$(( s + $(awk '{ print $14 + $15 }' "/proc/$p/stat") )); done; echo "$s"; }

# wrk latency figures to milliseconds.
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }

# One wrk run against a row: drive DURATION URL HEADER MODE. A vary row asks for ids from
# $offset on (each of its threads 10^7 further), which the caller moves on before each run, as
# drive runs in a subshell; 12 digits leave room for 999 runs of up to 100 threads.
offset=0
drive() {
    local args=(--latency -t"$THREADS" -c"$CONNS" -d"$1")
    [ -n "${3:-}" ] && args+=(-H "$3")
    [ "${4:-}" = vary ] && args+=(-s "$work/vary.lua")
    args+=("$2")
    [ "${4:-}" = vary ] && args+=(-- "$offset")
    wrk "${args[@]}"
}
next_range() { [ "$1" = vary ] && offset=$(( offset + 1000000000 )); return 0; }
wanted() { [ -z "${ONLY:-}" ] || [ "$1" = "nginx proxy" ] || grep -Eq "$ONLY" <<<"$1"; }

# Every server first gets an unmeasured run (upstream connections opened, allocator and caches
# warm), so the first row of the first round is not charged for its server's start.
if [ "$WARMUP" != 0 ]; then
    for row in "${rows[@]}"; do
        IFS='|' read -r name url h1 mode charged <<<"$row"
        wanted "$name" || continue
        next_range "$mode"
        drive "$WARMUP" "$url" "$h1" "$mode" >/dev/null
    done
fi

echo "wrk -t$THREADS -c$CONNS -d$DURATION on $(nproc) cores, $(uname -srm)"
printf "%-34s %10s %9s %9s %9s %13s\n" "target" "rps" "p50 ms" "p99 ms" "× nginx" "cpu µs/req"
for round in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && echo "round $round"
    nginx_rps=""
    for row in "${rows[@]}"; do
        IFS='|' read -r name url h1 mode charged <<<"$row"
        wanted "$name" || continue
        # shellcheck disable=SC2086 # the charged pids are a list
        c0=$(ticks $charged)
        next_range "$mode"
        out=$(drive "$DURATION" "$url" "$h1" "$mode")
        # shellcheck disable=SC2086
        c1=$(ticks $charged)
        n=$(awk '/requests in/ { print $1 }' <<<"$out")
        cpu=$(awk -v t=$(( c1 - c0 )) -v n="$n" -v hz="$TICK" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
        rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
        p50=$(ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
        p99=$(ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
        non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
        [ "$name" = "nginx proxy" ] && nginx_rps=$rps
        ratio="-"
        [ -n "$nginx_rps" ] && ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')
        printf "%-34s %10.0f %9s %9s %9s %13s%s\n" "$name" "$rps" "$p50" "$p99" "$ratio" "$cpu" "${non2xx:+  ($non2xx non-2xx)}"
    done
done
echo "rosetta RSS after the run: $(( $(ps -o rss= -p "$RS") / 1024 )) MiB"
