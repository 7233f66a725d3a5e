#!/bin/bash
# Make a built release current, or leave the host exactly as it was.
#
#   activate VERSION
#   activate --restart   (same release, changed env file or unit: restart, then /readyz)
#
# 1. Start the release as a candidate (jobtory-candidate@VERSION, 127.0.0.1:8001)
#    and wait for /readyz. Failure: stop it; `current` was never touched.
# 2. Switch the `current` symlink atomically and restart jobtory-gunicorn.
# 3. /readyz of the real service (127.0.0.1:8000). Failure: switch back to the
#    previous release, restart, and exit non-zero (automatic rollback).
# Messages start with "jobtory:" so the deployer can quote the reason.
set -euo pipefail
WAIT="${JOBTORY_READY_TIMEOUT:-60}"    # for the process to answer at all
SETTLE="${JOBTORY_READY_SETTLE:-10}"   # for an answering process to say 200
ROOT="${JOBTORY_ROOT:-/srv/jobtory}"

ready() {  # ready URL: poll until /readyz answers 200. A process that does not answer
    # gets $WAIT seconds; one that answers something else (503: a setting or the
    # database is missing) $SETTLE more, then it is not going to be ready.
    local deadline=$((SECONDS + WAIT)) code
    while [ "$SECONDS" -lt "$deadline" ]; do
        code="$(curl -sS -m 2 -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true)"
        [ "$code" = 200 ] && return 0
        if [ "${code:-000}" != 000 ] && [ "$deadline" -gt $((SECONDS + SETTLE)) ]; then
            deadline=$((SECONDS + SETTLE))
        fi
        sleep 0.2
    done
    return 1
}
why() {  # why URL: the /readyz answer (reasons name settings, never values)
    curl -sS -m 3 "$1" 2>&1 | tr -d '\n' | cut -c1-300 || true
}
warm() {  # warm URL: a few requests at once, so every worker has served one
    local i
    for i in 1 2 3 4 5 6; do curl -sS -m 10 -o /dev/null "$1" 2>/dev/null & done
    wait
}
switch_to() {  # switch_to releases/V: atomic symlink replacement
    ln -sfn "$1" "$ROOT/current.new"
    mv -T "$ROOT/current.new" "$ROOT/current"
}

if [ "${1:-}" = --restart ]; then  # the release stays; its settings changed
    systemctl restart jobtory-gunicorn.service
    if ! ready http://127.0.0.1:8000/readyz; then
        echo "jobtory: gunicorn failed /readyz after its restart: $(why http://127.0.0.1:8000/readyz)" >&2
        exit 5
    fi
    warm http://127.0.0.1:8000/readyz
    echo "jobtory: gunicorn restarted and ready"
    exit 0
fi

VERSION="$1"
REL="$ROOT/releases/$VERSION"
[ -f "$REL/.ready" ] || { echo "jobtory: release $VERSION is not built ($REL/.ready missing)" >&2; exit 2; }
PREV="$(readlink "$ROOT/current" 2>/dev/null || true)"
PREV_VERSION="${PREV##*/}"

# 1. the candidate, before anything changes
CANDIDATE="jobtory-candidate@$VERSION.service"
systemctl reset-failed "$CANDIDATE" 2>/dev/null || true
systemctl start "$CANDIDATE"
if ! ready http://127.0.0.1:8001/readyz; then
    reason="$(why http://127.0.0.1:8001/readyz)"
    systemctl stop "$CANDIDATE" || true
    echo "jobtory: release $VERSION failed /readyz before the switch: ${reason:-no answer}; current stays ${PREV_VERSION:-none}" >&2
    exit 3
fi
systemctl stop "$CANDIDATE"

# 2. switch and restart
switch_to "releases/$VERSION"
systemctl restart jobtory-gunicorn.service

# 3. check the real service; roll back on failure; warm it (no slow first request)
if ! ready http://127.0.0.1:8000/readyz; then
    reason="$(why http://127.0.0.1:8000/readyz)"
    if [ -n "$PREV" ]; then
        switch_to "$PREV"
        systemctl restart jobtory-gunicorn.service
        echo "jobtory: release $VERSION failed /readyz after the switch: ${reason:-no answer}; rolled back to $PREV_VERSION" >&2
    else
        echo "jobtory: release $VERSION failed /readyz after the switch: ${reason:-no answer}; no previous release to roll back to" >&2
    fi
    exit 4
fi
warm http://127.0.0.1:8000/readyz
echo "jobtory: release $VERSION is current (previous: ${PREV_VERSION:-none})"
