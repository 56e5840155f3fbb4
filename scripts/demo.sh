#!/usr/bin/env bash
# Set up (first time) and run the demo: generated users -> card-recommendation emulator -> output file.
# Prefect's state goes to a temporary PREFECT_HOME, with a server for this run only (no shared server
# is left behind for a home nobody reuses); extra arguments go to `batchflows demo`.
source "$(dirname "$0")/venv.sh"
export PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d -t batchflows-prefect-XXXXXX)}"
export BATCHFLOWS_SERVER_IDLE_MINUTES="${BATCHFLOWS_SERVER_IDLE_MINUTES:-0}"
cd "$ROOT"
exec batchflows demo "$@"
