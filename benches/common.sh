# Helpers the bench scripts source (benches/load.sh, benches/instructions.sh).

# need COMMAND PACKAGE: installs the Debian package when the command is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 (Debian package)…" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q "$2" >/dev/null; else sudo apt-get install -y -q "$2" >/dev/null; fi
}

# wait_for URL [HEADER]: until URL answers 2xx, for up to WAIT_SECONDS (default 10).
wait_for() {
    for _ in $(seq 1 $(( ${WAIT_SECONDS:-10} * 10 ))); do
        if curl -fs -o /dev/null ${2:+-H "$2"} "$1"; then return 0; fi
        sleep 0.1
    done
    echo "not ready: $1" >&2
    exit 1
}

# PostgreSQL for scripts/cluster.sh and `PG=1 benches/load.sh`.
# pg_bin: the server's binaries (pg_config's, else the newest /usr/lib/postgresql/*/bin).
pg_bin() {
    local d
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return; fi
    find /usr/lib/postgresql -path '*/bin/initdb' 2>/dev/null | sort -V | tail -1 | xargs -r dirname
}

# pg_start DIR PORT: a new cluster in DIR (an empty folder of the caller's) on 127.0.0.1:PORT,
# trusting local connections, with a database `rosetta`; sets PG_URL (for ROSETTA__STORE__URL)
# and PSQL (a psql command line for the server). PostgreSQL refuses to run as root: as root it
# runs as the `postgres` user (created when missing), which then owns DIR. Installs the Debian
# package `postgresql` when the server is missing, and stops the cluster the package starts
# (port 5432, not used here). Extra server settings in PG_OPTS (`-c name=value ...`).
pg_start() {
    local dir=$1 port=$2
    PGBIN=$(pg_bin)
    if [ -z "$PGBIN" ]; then
        need pg_ctlcluster postgresql
        local c
        for c in /etc/postgresql/*/main; do
            [ -d "$c" ] && { pg_ctlcluster "$(basename "$(dirname "$c")")" main stop >/dev/null 2>&1 || true; }
        done
        PGBIN=$(pg_bin)
        [ -n "$PGBIN" ] || { echo "error: the PostgreSQL server (initdb, postgres) is not installed" >&2; return 1; }
    fi
    AS_PG=()
    if [ "$(id -u)" = 0 ]; then
        id -u postgres >/dev/null 2>&1 || useradd --system --user-group --no-create-home postgres
        chown postgres: "$dir"
        AS_PG=(runuser -u postgres --)
    fi
    ${AS_PG[@]+"${AS_PG[@]}"} "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1 || { echo "error: initdb failed: $(tail -5 "$dir/initdb.log")" >&2; return 1; }
    ${AS_PG[@]+"${AS_PG[@]}"} "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 20 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 ${PG_OPTS:-}" start >/dev/null \
        || { echo "error: PostgreSQL did not start: $(tail -5 "$dir/postgres.log" 2>/dev/null)" >&2; return 1; }
    PSQL="$PGBIN/psql -h 127.0.0.1 -p $port -U postgres"
    $PSQL -d postgres -qAtX -c "CREATE DATABASE rosetta" >/dev/null
    PG_URL="postgres://postgres@127.0.0.1:$port/rosetta"
}

# pg_stop DIR: stops the server pg_start started in DIR (fast shutdown: sessions ended).
pg_stop() {
    ${AS_PG[@]+"${AS_PG[@]}"} "$PGBIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}
