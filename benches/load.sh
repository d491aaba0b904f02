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
#   CLUSTER=1 benches/load.sh            # also cluster mode (issue 26): the passthrough row on a
#                                        # node sharing a redis-server the script starts, and
#                                        # through 3 such replicas behind nginx (round-robin)
#   PG=1 benches/load.sh                 # also the store on PostgreSQL (issue 27): the passthrough
#                                        # row on a node whose store is a PostgreSQL server the
#                                        # script starts (PG_PORT, default 16391); after the table,
#                                        # the audit rows it wrote per second and its rps against
#                                        # the SQLite passthrough row
#   NO_BUILD=1 benches/load.sh           # use the release binaries as they are
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-2s}
CLUSTER=${CLUSTER:-}
PG=${PG:-}
REL=${CARGO_TARGET_DIR:-target}/release

# shellcheck source=benches/common.sh
. benches/common.sh
need wrk wrk
need nginx nginx-light
if [ -n "$CLUSTER" ]; then need redis-server redis-server; fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin rosetta --example load_upstream --example bare_proxy

work=$(mktemp -d)
# PostgreSQL's folder (PG=1), apart: as root the server runs as `postgres`, which cannot enter
# root's temporary folder.
pgdir=
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    [ -f "$work/lb.pid" ] && kill "$(cat "$work/lb.pid")" 2>/dev/null || true
    # The node first (its last rows), then its database.
    [ -n "${PGN:-}" ] && { wait "$PGN" 2>/dev/null || true; }
    [ -n "$pgdir" ] && { pg_stop "$pgdir"; rm -rf "$pgdir"; }
    rm -rf "$work" /tmp/rosetta-bench.db*
}
trap cleanup EXIT


# The fixed upstream.
"$REL"/examples/load_upstream 127.0.0.1:0 >"$work/up.log" &
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
"$REL"/examples/bare_proxy 127.0.0.1:0 "$UP" >"$work/bare.log" &
BPID=$!
pids+=($BPID)
for _ in $(seq 1 100); do grep -q listening "$work/bare.log" && break; sleep 0.05; done
BARE=$(sed -n 's/listening on //p' "$work/bare.log")

# Rosetta, release build.
ROSETTA__UPSTREAMS__APPDIRECT__URL="http://$UP" \
ROSETTA__UPSTREAMS__LONGJUMP__URL="http://$UP" \
    "$REL"/rosetta serve --config config/bench.toml 2>"$work/rosetta.log" &
RS=$!
pids+=($RS)

AUTH="Authorization: Bearer bench-key"
wait_for "http://$UP/static"
wait_for "http://127.0.0.1:18081/static"
wait_for "http://127.0.0.1:18080/pass/static" "$AUTH"

# Cluster mode (CLUSTER=1): the same build and configuration with `cluster.redis_url` set, on a
# redis-server of its own; one node alone (18082) and three replicas (18083-18085) behind a
# second nginx (18086), all sharing that Redis.
cluster_rows=()
if [ -n "$CLUSTER" ]; then
    REDIS_PORT=${REDIS_PORT:-16390}
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$work" --logfile "$work/redis.log" --daemonize no &
    REDIS_PID=$!
    pids+=($REDIS_PID)
    for _ in $(seq 1 100); do grep -q "Ready to accept" "$work/redis.log" 2>/dev/null && break; sleep 0.05; done
    cluster_node() { # cluster_node N PORT: a node sharing the Redis, its pid in $node_pid
        ROSETTA__LISTEN="127.0.0.1:$2" ROSETTA__ADMIN_LISTEN="127.0.0.1:$(( $2 + 1010 ))" \
        ROSETTA__STORE__PATH="$work/cluster-$1.db" \
        ROSETTA__CLUSTER__REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
        ROSETTA__UPSTREAMS__APPDIRECT__URL="http://$UP" \
        ROSETTA__UPSTREAMS__LONGJUMP__URL="http://$UP" \
            "$REL/rosetta" serve --config config/bench.toml 2>"$work/cluster-$1.log" &
        node_pid=$!
        pids+=($node_pid)
    }
    cluster_node 0 18082
    CN=$node_pid
    replicas=()
    for i in 1 2 3; do cluster_node "$i" $(( 18082 + i )); replicas+=("$node_pid"); done
    cat >"$work/lb.conf" <<NGX
worker_processes auto;
pid $work/lb.pid;
error_log $work/lb.err;
events { worker_connections 4096; }
http {
    access_log off;
    upstream replicas {
        server 127.0.0.1:18083;
        server 127.0.0.1:18084;
        server 127.0.0.1:18085;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:18086;
        location / {
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGX
    "$NGINX" -c "$work/lb.conf" -p "$work"
    for port in 18082 18083 18084 18085 18086; do wait_for "http://127.0.0.1:$port/pass/static" "$AUTH"; done
    LB_WORKERS=$(pgrep -P "$(cat "$work/lb.pid")" | tr '\n' ' ')
    # The Redis's CPU is charged to the rows that use it.
    cluster_rows=(
        "rosetta passthrough, cluster|http://127.0.0.1:18082/pass/static|$AUTH||$CN $REDIS_PID"
        "3 replicas + nginx, cluster|http://127.0.0.1:18086/pass/static|$AUTH||${replicas[*]} $LB_WORKERS $REDIS_PID"
    )
fi

# The store on PostgreSQL (PG=1): the same build and configuration with `store.url` set, on a
# server of its own (durability as shipped: fsync on), one node on 18087.
pg_rows=()
if [ -n "$PG" ]; then
    pgdir=$(mktemp -d -t rosetta-bench-pg.XXXXXX)
    pg_start "$pgdir" "${PG_PORT:-16391}"
    ROSETTA__LISTEN=127.0.0.1:18087 ROSETTA__ADMIN_LISTEN=127.0.0.1:19097 \
    ROSETTA__STORE__PATH="$work/pg-node.db" \
    ROSETTA__STORE__URL="$PG_URL" \
    ROSETTA__UPSTREAMS__APPDIRECT__URL="http://$UP" \
    ROSETTA__UPSTREAMS__LONGJUMP__URL="http://$UP" \
        "$REL/rosetta" serve --config config/bench.toml 2>"$work/pg-node.log" &
    PGN=$!
    pids+=($PGN)
    wait_for "http://127.0.0.1:18087/pass/static" "$AUTH"
    pg_rows=("rosetta passthrough, PostgreSQL|http://127.0.0.1:18087/pass/static|$AUTH||$PGN")
fi
# Audit rows in PostgreSQL, once the node's writer has caught up (two equal counts in a row).
audit_rows() {
    local a b
    b=$($PSQL -d rosetta -qAtX -c "SELECT COUNT(*) FROM audit")
    for _ in $(seq 1 50); do
        sleep 0.3
        a=$b
        b=$($PSQL -d rosetta -qAtX -c "SELECT COUNT(*) FROM audit")
        [ "$a" = "$b" ] && break
    done
    echo "$b"
}

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
    ${cluster_rows[@]+"${cluster_rows[@]}"}
    ${pg_rows[@]+"${pg_rows[@]}"}
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
pg_report=()
for round in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && echo "round $round"
    nginx_rps=""
    sqlite_rps=""
    for row in "${rows[@]}"; do
        IFS='|' read -r name url h1 mode charged <<<"$row"
        wanted "$name" || continue
        # shellcheck disable=SC2086 # the charged pids are a list
        c0=$(ticks $charged)
        next_range "$mode"
        pg_row=
        [[ "$name" == *PostgreSQL ]] && { pg_row=1; r0=$(audit_rows); }
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
        [ "$name" = "rosetta passthrough" ] && sqlite_rps=$rps
        if [ -n "$pg_row" ]; then
            # Rows written during the row (its requests' rows, written by the time the writer
            # is idle again) over the row's duration as wrk measured it.
            r1=$(audit_rows)
            secs=$(awk '/requests in/ { sub(/s,$/, "", $4); print $4 }' <<<"$out")
            pg_report+=("$(awk -v r=$(( r1 - r0 )) -v n="$n" -v s="$secs" -v a="$rps" -v b="${sqlite_rps:-}" 'BEGIN {
                printf "PostgreSQL store: %d audit rows for %d requests in %.2f s: %.0f rows/s written", r, n, s, r / s
                if (b != "") printf "; passthrough rps %.2f × the SQLite store'\''s", a / b
            }')")
        fi
        ratio="-"
        [ -n "$nginx_rps" ] && ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')
        printf "%-34s %10.0f %9s %9s %9s %13s%s\n" "$name" "$rps" "$p50" "$p99" "$ratio" "$cpu" "${non2xx:+  ($non2xx non-2xx)}"
    done
done
echo "rosetta RSS after the run: $(( $(ps -o rss= -p "$RS") / 1024 )) MiB"
if [ -n "$CLUSTER" ]; then
    echo "cluster rows: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') (its CPU charged to them); the 3 replicas share the $(nproc) cores"
fi
if [ -n "$PG" ]; then
    for line in ${pg_report[@]+"${pg_report[@]}"}; do echo "$line"; done
    echo "PostgreSQL $($PSQL -d rosetta -qAtX -c 'SHOW server_version') (fsync on, its CPU not charged to the row), on the same $(nproc) cores;"
    echo "  the rows include those of the $CONNS requests in flight when wrk stops, which it does not count"
fi
