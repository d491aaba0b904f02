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
