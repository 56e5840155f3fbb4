#!/usr/bin/env bash
# Set up (first time) and run the demo: generated users -> card-recommendation emulator -> output file.
# Prefect runs ephemerally with its state in a temporary PREFECT_HOME; extra arguments go to `batchflows demo`.
source "$(dirname "$0")/venv.sh"
export PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d -t batchflows-prefect-XXXXXX)}"
cd "$ROOT"
exec batchflows demo "$@"
