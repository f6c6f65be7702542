#!/bin/sh
# The part of the official postgres image's entrypoint that compose.yaml uses, for the
# Debian-built stand-in (deploy/test/postgres.Dockerfile): on an empty $PGDATA, create the
# cluster with POSTGRES_USER as superuser (password POSTGRES_PASSWORD, scram-sha-256 over TCP)
# and the database POSTGRES_DB; then run the server as the postgres user, listening on all
# addresses.
set -eu
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        chown postgres "$pwfile"
        # UTF-8 as the official image's cluster (a bare C locale would make it SQL_ASCII,
        # whose text psycopg hands back as bytes).
        runuser -u postgres -- initdb --username="$user" --pwfile="$pwfile" \
            --encoding=UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ "$db" != postgres ]; then
            runuser -u postgres -- postgres --single -D "$PGDATA" postgres \
                <<SQL >/dev/null
CREATE DATABASE "$db" OWNER "$user";
SQL
        fi
    fi
    exec runuser -u postgres -- "$@" -c listen_addresses='*'
fi
exec "$@"
