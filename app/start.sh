#!/bin/sh
# Start the jobtory app: apply migrations (serialized across hosts by an advisory
# lock), then replace this shell with gunicorn so it receives SIGTERM directly.
#
# In containers and on EC2 the environment comes from SSM:
#   python -m jobtory_stack.ssm_env --exec -- app/start.sh
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"
"$PYTHON" manage.py migrate --noinput
exec "$PYTHON" -m gunicorn -c gunicorn.conf.py config.wsgi:application
