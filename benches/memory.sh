#!/usr/bin/env bash
# Memory bound (issue 7): Rosetta's RSS after REQUESTS requests spread over USERS distinct users,
# each with an API key and a daily quota in the store, half of the requests on the passthrough
# route and half on V1 companies.get for a new company each time (rate-limit buckets, quota
# usage, the auth cache and the read cache all fill). Prints the requests made and the RSS.
#   benches/memory.sh                          # 1,000,000 requests, 100,000 users
#   REQUESTS=200000 USERS=20000 benches/memory.sh
#   QUOTAS=0 benches/memory.sh                 # the same users without quotas
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-1000000}
USERS=${USERS:-100000}
CONNS=${CONNS:-32}
QUOTAS=${QUOTAS:-1}
command -v wrk >/dev/null || { echo "needs wrk (benches/load.sh installs it)" >&2; exit 1; }
cargo build --release --quiet --bin rosetta --example load_upstream

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

target/release/examples/load_upstream 127.0.0.1:0 >"$work/up.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/up.log" && break; sleep 0.05; done
UP=$(sed -n 's/listening on //p' "$work/up.log")
export ROSETTA__UPSTREAMS__APPDIRECT__URL="http://$UP" ROSETTA__STORE__PATH="$work/mem.db"

wait_health() {
    for _ in $(seq 1 200); do curl -fs -o /dev/null http://127.0.0.1:19090/health && return 0; sleep 0.05; done
    echo "rosetta did not start" >&2; exit 1
}

# First start creates the store's schema; then the users go in directly (the admin API would
# spend minutes on 200,000 calls that are not what is measured).
target/release/rosetta serve --config config/bench.toml 2>"$work/rosetta.log" &
RS=$!
wait_health
kill -TERM $RS; wait $RS || true
python3 - "$work/mem.db" "$USERS" "$QUOTAS" <<'PY'
import hashlib, json, sqlite3, sys
db, users, with_quotas = sys.argv[1], int(sys.argv[2]), sys.argv[3] != "0"
c = sqlite3.connect(db)
c.execute("INSERT OR IGNORE INTO companies (key, detail, enabled) VALUES ('memco', NULL, 1)")
quota = json.dumps([{"service": s, "methods": [{"method_group": "READ", "points_per_day": 1000000}]}
                    for s in ("BENCH", "REDAPI_V1")])
c.executemany(
    "INSERT INTO users (username, name, email, phone, company_key, enabled, roles, timezone, password_hash)"
    " VALUES (?, NULL, NULL, NULL, 'memco', 1, 'USER', 0, NULL)",
    ((f"mu{i}",) for i in range(users)))
c.executemany(
    "INSERT INTO api_keys (id, username, prefix, hash, created_ms, expires_ms, revoked)"
    " VALUES (?, ?, ?, ?, 0, NULL, 0)",
    ((f"k{i}", f"mu{i}", f"mkey-{i}"[:8], hashlib.sha256(f"mkey-{i}".encode()).hexdigest())
     for i in range(users)))
if with_quotas:
    c.executemany("INSERT INTO quotas (username, from_day, to_day, services) VALUES (?, '', '', ?)",
                  ((f"mu{i}", quota) for i in range(users)))
c.commit()
PY

target/release/rosetta serve --config config/bench.toml 2>"$work/rosetta.log" &
RS=$!
pids+=($RS)
wait_health
# One decimal: the bound is 64 MiB, and a floor would read 64.9 as 64.
rss() { ps -o rss= -p "$RS" | awk '{ printf "%.1f", $1 / 1024 }'; }
echo "users: $USERS (quotas: $QUOTAS); RSS at start: $(rss) MiB"

cat >"$work/mix.lua" <<LUA
local n = math.random(0, 1000000000)
request = function()
    n = n + 1
    local user = n % $USERS
    local path
    if n % 2 == 0 then path = "/pass/static"
    else path = string.format("/companies/6e0f3b4a-0000-4000-8000-%012d?r=%d", 1000 + n % 1000, n) end
    return wrk.format("GET", path, { ["Authorization"] = "Bearer mkey-" .. user })
end
LUA
done_requests=0
non2xx=0
while [ "$done_requests" -lt "$REQUESTS" ]; do
    out=$(wrk -t1 -c"$CONNS" -d10s -s "$work/mix.lua" "http://127.0.0.1:18080")
    done_requests=$(( done_requests + $(awk '/requests in/ { print $1 }' <<<"$out") ))
    bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
    non2xx=$(( non2xx + ${bad:-0} ))
    echo "  $done_requests requests, RSS $(rss) MiB"
done
echo "after $done_requests requests over $USERS users ($non2xx non-2xx): RSS $(rss) MiB"
