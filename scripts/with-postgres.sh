#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL 15 and
# STRONGROOM_TEST_DATABASE_URL pointing at it (an admin URL: the token-store
# tests create one database per test there).
#
#   scripts/with-postgres.sh cargo test -p token-store
#
# The server listens on 127.0.0.1 only, on the first free port from 55432 up,
# with trust authentication and TLS (its certificate, for 127.0.0.1, is named
# by STRONGROOM_TEST_DATABASE_CA); its data lives in a temporary directory
# that is removed on exit, also when the command fails or the script is
# interrupted.
# The command's exit status is passed through. If
# STRONGROOM_TEST_DATABASE_URL is already set, the command just runs.
#
# Works as root (CI): initdb refuses to run as root, so the server then runs
# as the `postgres` OS user. PG_BIN overrides the binary directory (default
# /usr/lib/postgresql/15/bin, else the newest installed version).
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 <command> [args...]" >&2
    exit 2
fi

if [[ -n "${STRONGROOM_TEST_DATABASE_URL:-}" ]]; then
    exec "$@"
fi

if [[ -z "${PG_BIN:-}" ]]; then
    PG_BIN=/usr/lib/postgresql/15/bin
    if [[ ! -x "$PG_BIN/initdb" ]]; then
        # Another major version from the distribution will do as well.
        newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
        [[ -n "$newest" ]] && PG_BIN=$newest
    fi
fi
for tool in initdb pg_ctl pg_isready; do
    if [[ ! -x "$PG_BIN/$tool" ]]; then
        echo "with-postgres: $PG_BIN/$tool not found (install postgresql-15 or set PG_BIN)" >&2
        exit 1
    fi
done

if [[ $(id -u) -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "with-postgres: running as root needs a 'postgres' OS user to own the server" >&2
        exit 1
    fi
    as_db_user() { runuser -u postgres -- "$@"; }
else
    as_db_user() { "$@"; }
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/strongroom-pg.XXXXXX")
data="$tmp/data"
log="$tmp/server.log"
started=0

cleanup() {
    if [[ $started -eq 1 ]]; then
        as_db_user "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop </dev/null >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$tmp"
fi
chmod 700 "$tmp"

# TLS with a throw-away certificate for 127.0.0.1, so that the tests can
# check a verified TLS connection (sslmode=verify-full) as well as plain ones.
if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$tmp/server.key" -out "$tmp/server.crt" </dev/null >"$tmp/openssl.log" 2>&1; then
    cat "$tmp/openssl.log" >&2
    echo "with-postgres: openssl could not make the server certificate" >&2
    exit 1
fi
chmod 600 "$tmp/server.key"
if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$tmp/server.key" "$tmp/server.crt"
fi
chmod 644 "$tmp/server.crt"

# -U postgres: the superuser name must match the URL below whoever runs initdb.
if ! as_db_user "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    </dev/null >"$tmp/initdb.log" 2>&1; then
    cat "$tmp/initdb.log" >&2
    echo "with-postgres: initdb failed" >&2
    exit 1
fi

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Another process may take a port between the check and the bind, so a failed
# start moves on to the next port.
port=55432
last=$((port + 100))
while :; do
    if [[ $port -gt $last ]]; then
        cat "$log" >&2 2>/dev/null || true
        echo "with-postgres: no free port in 55432-$last" >&2
        exit 1
    fi
    if port_in_use "$port"; then
        port=$((port + 1))
        continue
    fi
    # Durability settings off: this cluster lives for one test run.
    opts="-c listen_addresses=127.0.0.1 -p $port -k $tmp -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on -c ssl_cert_file=$tmp/server.crt -c ssl_key_file=$tmp/server.key"
    if as_db_user "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" \
        start </dev/null >/dev/null 2>&1; then
        started=1
        break
    fi
    if grep -q "could not bind\|Address already in use" "$log" 2>/dev/null; then
        port=$((port + 1))
        continue
    fi
    cat "$log" >&2 2>/dev/null || true
    echo "with-postgres: the server did not start" >&2
    exit 1
done

for _ in $(seq 1 60); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres </dev/null; then
        break
    fi
    sleep 0.5
done
if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres </dev/null; then
    cat "$log" >&2 2>/dev/null || true
    echo "with-postgres: the server is not accepting connections" >&2
    exit 1
fi

export STRONGROOM_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
export STRONGROOM_TEST_DATABASE_CA="$tmp/server.crt"
# For commands that stop and start the server themselves (the outage of
# `make reliability`): pg_ctl -D "$STRONGROOM_TEST_PG_DATA" -o "$STRONGROOM_TEST_PG_OPTS" start,
# as the `postgres` OS user when run as root.
export STRONGROOM_TEST_PG_BIN="$PG_BIN" STRONGROOM_TEST_PG_DATA="$data" \
    STRONGROOM_TEST_PG_OPTS="$opts" STRONGROOM_TEST_PG_LOG="$log"
echo "with-postgres: PostgreSQL on 127.0.0.1:$port (STRONGROOM_TEST_DATABASE_URL=$STRONGROOM_TEST_DATABASE_URL)" >&2

set +e
"$@"
status=$?
set -e
exit $status
