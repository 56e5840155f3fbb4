#!/usr/bin/env bash
# A worker of the `local` process pool: it polls PREFECT_API_URL and runs each flow run in a new
# process of this checkout's Python, in this checkout. Start as many as you like, on any machine with a
# checkout (each runs its runs in its own checkout). Extra arguments go to `prefect worker start`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec "$PYTHON" -m prefect worker start --pool local --type process "$@"
