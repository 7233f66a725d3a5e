#!/bin/bash
# db entrypoint (runs as root under tini, drops to the postgres user):
# on the first start of an empty volume, initdb and create the app's role and
# database with the credentials `init` wrote to the secrets volume (0600 files,
# mounted read-only at /secrets). The password never goes on a command line.
set -euo pipefail
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
SECRETS="${SECRETS_DIR:-/secrets}"
CONF=/etc/jobtory-db/postgresql.conf
log() { echo "db-entrypoint: $*" >&2; }
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

install -d -o postgres -g postgres -m 2775 /var/run/postgresql
install -d -o postgres -g postgres -m 0755 /run/jobtory-db
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"

[ -s /generated/postgresql.conf ] || { log "/generated/postgresql.conf is missing: the config service renders it"; exit 1; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    for f in db_password db_user db_name; do
        [ -s "$SECRETS/$f" ] || { log "$SECRETS/$f is missing: the init service writes it"; exit 1; }
    done
    db_user="$(cat "$SECRETS/db_user")"
    db_name="$(cat "$SECRETS/db_name")"
    log "empty data directory: initdb, role $db_user, database $db_name"
    as_pg initdb -D "$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    # a temporary server on the unix socket only
    as_pg pg_ctl -D "$PGDATA" -w -t 60 -o "-c config_file=$CONF -c listen_addresses=''" start >/dev/null
    sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }
    ident_quote() { printf '"%s"' "${1//\"/\"\"}"; }
    {
        echo "SET password_encryption = 'scram-sha-256';"
        printf 'CREATE ROLE %s LOGIN PASSWORD %s;\n' "$(ident_quote "$db_user")" "$(sql_quote "$(cat "$SECRETS/db_password")")"
        printf 'CREATE DATABASE %s OWNER %s;\n' "$(ident_quote "$db_name")" "$(ident_quote "$db_user")"
        printf 'REVOKE ALL ON DATABASE %s FROM PUBLIC;\n' "$(ident_quote "$db_name")"
    } | as_pg psql -q -v ON_ERROR_STOP=1 -X -d postgres >/dev/null
    as_pg pg_ctl -D "$PGDATA" -w -t 60 -m fast stop >/dev/null
    log "initialised"
fi
# for the healthcheck (names only, never the password)
if [ -s "$SECRETS/db_name" ]; then cp "$SECRETS/db_name" /run/jobtory-db/db_name; fi
chmod 0644 /run/jobtory-db/db_name 2>/dev/null || true

if [ "${1:-}" = postgres ]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
fi
exec "$@"
