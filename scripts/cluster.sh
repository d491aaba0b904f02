#!/usr/bin/env bash
# Three Rosetta replicas on one machine, to try cluster mode (README "Cluster mode"): one
# redis-server, one PostgreSQL server (a fresh `initdb` in the temporary folder), the sample
# backends of `rosetta demo`, three `rosetta serve` nodes sharing the Redis and the PostgreSQL
# store (users, keys, audit: one set; each node has its own ports and spill file) and nginx in
# front of them, round-robin, on one port. Prints curl lines; Ctrl-C stops everything and
# removes the temporary folders.
#   scripts/cluster.sh
#   REDIS_PORT=6390 PG_PORT=6391 LB_PORT=8180 NODE_PORT=8181 ADMIN_PORT=9181 scripts/cluster.sh  # the defaults
#   NO_BUILD=1 scripts/cluster.sh      # use the release binary as it is
#   KEEP=1 scripts/cluster.sh          # keep the temporary folders (logs) after it stops
# Nodes listen on NODE_PORT, +1, +2 (admin APIs on ADMIN_PORT, +1, +2). Logs are kept in the
# temporary folder the script prints. Needs redis-server, nginx and the PostgreSQL server
# (Debian packages redis-server, nginx-light and postgresql: installed when missing). As root,
# PostgreSQL runs as the `postgres` user (it refuses to run as root); otherwise as the
# invoking user.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT=${REDIS_PORT:-6390}
PG_PORT=${PG_PORT:-6391}
LB_PORT=${LB_PORT:-8180}
NODE_PORT=${NODE_PORT:-8181}
ADMIN_PORT=${ADMIN_PORT:-9181}
REL=${CARGO_TARGET_DIR:-target}/release

# shellcheck source=benches/common.sh
. benches/common.sh
installed_redis=
command -v redis-server >/dev/null 2>&1 || installed_redis=1
need redis-server redis-server
# The package's own service listens on 6379, which nothing here uses: not left running.
[ -n "$installed_redis" ] && { service redis-server stop >/dev/null 2>&1 || true; }
need nginx nginx-light
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin rosetta

work=$(mktemp -d -t rosetta-cluster.XXXXXX)
# PostgreSQL's own folder: as root the server runs as `postgres`, which cannot enter root's
# temporary folder.
pgdir=$(mktemp -d -t rosetta-cluster-pg.XXXXXX)
pids=()
pg_started=
cleanup() {
    trap - EXIT INT TERM
    set +e
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
    # SIGTERM: the nodes drain and flush their stores, the demo removes its own.
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    # PostgreSQL last: the nodes' final audit rows go to it as they stop.
    [ -n "$pg_started" ] && pg_stop "$pgdir"
    [ -n "${KEEP:-}" ] || rm -rf "$work" "$pgdir"
    echo "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "error: $*" >&2; exit 1; }
# until FILE PATTERN: waits (10 s at most) for a line in a log.
until_logged() {
    for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    fail "nothing matching '$2' in $1: $(tail -5 "$1" 2>/dev/null)"
}

# A port already in use (an earlier run still up?) is named now, not after a timeout.
for port in "$REDIS_PORT" "$PG_PORT" "$LB_PORT" $(seq "$NODE_PORT" $((NODE_PORT + 2))) $(seq "$ADMIN_PORT" $((ADMIN_PORT + 2))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "port $port is in use: set REDIS_PORT, PG_PORT, LB_PORT, NODE_PORT or ADMIN_PORT"
    fi
done

# Redis: nothing saved, its own folder.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --logfile "$work/redis.log" --daemonize no &
pids+=($!)
until_logged "$work/redis.log" "Ready to accept connections"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# PostgreSQL: a new cluster in its own folder, on 127.0.0.1 only, trusting local connections
# (a try-out, not a deployment), and the database the nodes share.
pg_started=1
pg_start "$pgdir" "$PG_PORT" || fail "PostgreSQL did not start (above)"
STORE_URL=$PG_URL

# The sample backends: `rosetta demo` serves them (and a gateway of its own, on any free port,
# not used here); its banner says where they listen.
ROSETTA__LISTEN=127.0.0.1:0 ROSETTA__ADMIN_LISTEN=127.0.0.1:0 ROSETTA__LOG__LEVEL=warn \
    "$REL/rosetta" demo --config config/rosetta.toml >"$work/demo.out" 2>"$work/demo.log" &
pids+=($!)
until_logged "$work/demo.out" "^  fusion "
backend() { sed -n "s/^  $1 *\(http[^ ]*\).*/\1/p" "$work/demo.out"; }
APPDIRECT=$(backend appdirect)
REDAPI=$(backend redapi)
LONGJUMP=$(backend longjump)
FUSION=$(backend fusion)

# One API key for every node (user demo of company northwind, as in `rosetta demo`): the
# shipped configuration with the key's SHA-256 in `identity.static_keys`.
KEY="rk-cluster-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
sed -e "s|^mappings_dir = .*|mappings_dir = \"$PWD/mappings\"|" \
    -e "s|^static_keys = \[\]|static_keys = [{ sha256 = \"$SHA\", user = \"demo\", company = \"northwind\", roles = [\"PARTNER\"] }]|" \
    config/rosetta.toml >"$work/rosetta.toml"
grep -q "$SHA" "$work/rosetta.toml" || fail "config/rosetta.toml has no 'static_keys = []' line to fill"
ADMIN_PASSWORD="cluster-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"

nodes=()
for i in 0 1 2; do
    port=$((NODE_PORT + i))
    admin=$((ADMIN_PORT + i))
    ROSETTA__LISTEN="127.0.0.1:$port" \
    ROSETTA__ADMIN_LISTEN="127.0.0.1:$admin" \
    ROSETTA__STORE__PATH="$work/node$((i + 1)).db" \
    ROSETTA__STORE__URL="$STORE_URL" \
    ROSETTA__CLUSTER__REDIS_URL="$REDIS_URL" \
    ROSETTA__ADMIN__BOOTSTRAP_USER=admin \
    ROSETTA__ADMIN__BOOTSTRAP_PASSWORD="$ADMIN_PASSWORD" \
    ROSETTA__UPSTREAMS__APPDIRECT__URL="$APPDIRECT" \
    ROSETTA__UPSTREAMS__REDAPI__URL="$REDAPI" \
    ROSETTA__UPSTREAMS__REDAPI__AUTH__TOKEN_URL="$REDAPI/oauth2/token" \
    ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_ID=rosetta-demo \
    ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_SECRET=demo-secret \
    ROSETTA__UPSTREAMS__LONGJUMP__URL="$LONGJUMP" \
    ROSETTA__UPSTREAMS__FUSION__URL="$FUSION" \
    ROSETTA__UPSTREAMS__FUSION__AUTH__VALUE="Bearer fusion-demo-token" \
    ROSETTA__UPSTREAMS__FUSION__VARS__DRAAS_INSTANCE=demo \
    ROSETTA__UPSTREAMS__FUSION__VARS__GROUP=f0510000-0000-4000-8000-000000000900 \
        "$REL/rosetta" serve --config "$work/rosetta.toml" 2>"$work/node$((i + 1)).log" &
    pids+=($!)
    nodes+=("127.0.0.1:$port")
    # Node 1 makes the schema and the admin user; the others then find them.
    [ "$i" = 0 ] && wait_for "http://127.0.0.1:$ADMIN_PORT/v1/version"
done
for i in 1 2; do wait_for "http://127.0.0.1:$((ADMIN_PORT + i))/v1/version"; done

# nginx as the invoking user, everything in the temporary folder; each answer names the node.
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<NGX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
    access_log $work/nginx.access.log;
    # Nothing buffered to files: the workers may run as another user than the folder's.
    client_body_buffer_size 1m;
    proxy_max_temp_file_size 0;
    upstream rosetta {
        server ${nodes[0]};
        server ${nodes[1]};
        server ${nodes[2]};
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$LB_PORT;
        location / {
            proxy_pass http://rosetta;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$remote_addr;
            add_header X-Cluster-Node \$upstream_addr always;
        }
    }
}
NGX
"$NGINX" -c "$work/nginx.conf" -p "$work/nginx" -e "$work/nginx.err"
LB="http://127.0.0.1:$LB_PORT"
wait_for "$LB/companies" "Authorization: Bearer $KEY"

H="-H 'Authorization: Bearer $KEY'"
C=6e0f3b4a-0000-4000-8000-000000000001
cat <<TXT
Rosetta cluster (temporary folder $work)
  balancer   $LB  (nginx, round-robin)
  nodes      http://${nodes[0]}  http://${nodes[1]}  http://${nodes[2]}
  admin      http://127.0.0.1:$ADMIN_PORT  :$((ADMIN_PORT + 1))  :$((ADMIN_PORT + 2))  (user admin, password $ADMIN_PASSWORD)
  redis      $REDIS_URL  (ROSETTA__CLUSTER__REDIS_URL of every node)
  postgres   $STORE_URL  (ROSETTA__STORE__URL of every node; data in $pgdir)
  backends   appdirect $APPDIRECT  redapi $REDAPI  longjump $LONGJUMP  fusion $FUSION
  API key    $KEY   (user demo, company northwind, on every node)

Try:
  # One V1 call through the balancer (X-Cluster-Node: the node that answered)
  curl -si $H $LB/companies/$C
  # Six calls: one bucket for the user on Redis (burst 20, 5/s), so RateLimit-Remaining falls
  # across the nodes (19, 18, 17, ...), not once per node
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - $H $LB/companies | grep -iE '^(x-cluster-node|ratelimit-remaining):' | tr -d '\r' | paste -sd' '; done
  # Past the burst: 429 in the V1 dialect, whichever node answers
  for i in \$(seq 1 30); do curl -s -o /dev/null -w '%{http_code} ' $H $LB/companies; done; echo
  # One node directly
  curl -s $H http://${nodes[1]}/companies
  # What the nodes keep in Redis
  redis-cli -p $REDIS_PORT --scan --pattern 'rosetta:*'
  # One store: a company and a user made through node 1's admin API...
  curl -s -u admin:$ADMIN_PASSWORD -H 'Content-Type: application/json' -d '{"key":"acme","detail":null}' http://127.0.0.1:$ADMIN_PORT/v1/companies
  curl -s -u admin:$ADMIN_PASSWORD -H 'Content-Type: application/json' -d '{"username":"ann","password":"s3cret-pass","company_key":"acme","roles":["ADMIN"],"timezone":0}' http://127.0.0.1:$ADMIN_PORT/v1/users
  # ...authenticate through node 2 at once
  curl -si -u ann:s3cret-pass http://${nodes[1]}/companies/$C
  # The audit trail of all three nodes: one table in PostgreSQL
  $PSQL -d rosetta -c 'SELECT id, time_ms, username, service, operation, status FROM audit ORDER BY time_ms DESC LIMIT 10'
  # A node's health: Redis, the invalidation bus and the audit writer as this node sees them
  curl -s -u admin:$ADMIN_PASSWORD http://127.0.0.1:$ADMIN_PORT/health

Ctrl-C stops everything.
TXT
wait
