#!/usr/bin/env bash
# CI: run a deployment on a Prefect server, print its logs as it goes, exit 0 only if it Completed.
#   bash deployments/run.sh SERVER_URL FLOW/DEPLOYMENT [--param key=value ...] [--watch-timeout SECONDS]
# e.g. bash deployments/run.sh http://127.0.0.1:4200 card-recommendations/sample --param limit=200
# SERVER_URL may end in /api or not. Other options go to `prefect deployment run`.
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '3,4p' "$0" >&2; exit 2; fi
url="${1%/}"
name="$2"
shift 2
export PREFECT_API_URL="${url%/api}/api"
source "$(dirname "$0")/env.sh"
watched="$(mktemp)"
trap 'rm -f "$watched"' EXIT
# --watch exits 1 unless the run ends Completed (Failed, Crashed, Cancelled, or the watch timed out)
if "$PYTHON" -m prefect deployment run "$name" --watch "$@" | tee "$watched"; then
  exit 0
fi
run_id="$(sed -n 's/.*UUID: \([0-9a-f-]*\).*/\1/p' "$watched" | head -n 1)"
if [ -n "$run_id" ]; then  # why it failed: the run's last log lines
  "$PYTHON" -m prefect flow-run logs "$run_id" --tail --num-logs 30 || true
fi
exit 1
