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

# TLS like RDS's: a server certificate from a CA made here, on first start (or when the
# certificate nears its end), so clients test sslmode=verify-full against the replica.
# The CA's key is thrown away once the certificate is signed: nothing else can be signed
# with it, and no key ever leaves the container's volume (nothing is committed).
TLS_DIR=/var/lib/postgresql/tls      # postgresql.conf names these files
TLS_NAMES="${DB_TLS_NAMES:-db,localhost}"   # the names clients connect to, plus 127.0.0.1
make_tls() {
    if [ -s "$TLS_DIR/server.key" ] && [ -s "$TLS_DIR/ca.crt" ] \
        && openssl x509 -checkend 2592000 -noout -in "$TLS_DIR/server.crt" >/dev/null 2>&1; then
        return 0
    fi
    local work san
    work="$(mktemp -d)"
    san="IP:127.0.0.1$(printf ',DNS:%s' ${TLS_NAMES//,/ })"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=jobtory replica db CA $(openssl rand -hex 4)" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=db" \
        -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
        "$san" >"$work/ext"
    openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 397 -extfile "$work/ext" \
        -out "$work/server.crt" 2>/dev/null
    install -d -o postgres -g postgres -m 0755 "$TLS_DIR"
    install -o postgres -g postgres -m 0600 "$work/server.key" "$TLS_DIR/server.key"
    install -o postgres -g postgres -m 0644 "$work/server.crt" "$work/ca.crt" "$TLS_DIR/"
    rm -rf "$work"
    log "TLS: a new local CA ($TLS_DIR/ca.crt) and a server certificate for $san"
}
make_tls
# The CA's certificate alone, in its own volume (db-ca), on every start (a renewed CA
# included): the app and the fleet's hosts mount it read-only where the spec points
# DB_SSLROOTCERT, and verify this server with sslmode=verify-full, as on RDS. The server's
# key stays in db-tls, which nothing else mounts.
CA_OUT=/var/lib/postgresql/ca
install -d -m 0755 "$CA_OUT"
install -m 0644 "$TLS_DIR/ca.crt" "$CA_OUT/ca.pem.new" && mv "$CA_OUT/ca.pem.new" "$CA_OUT/ca.pem"

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
