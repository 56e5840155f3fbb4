#!/usr/bin/env bash
# Create the `local` process work pool (once) and deploy every deployment of prefect.yaml to the
# Prefect server at PREFECT_API_URL (default http://127.0.0.1:4200/api). Extra arguments go to `prefect deploy`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
if ! "$PYTHON" -m prefect work-pool inspect local >/dev/null 2>&1; then
  "$PYTHON" -m prefect work-pool create local --type process
fi
cd "$ROOT"
# the pull step keeps {{ $BATCHFLOWS_HOME }}: each worker resolves it to its own checkout
exec env -u BATCHFLOWS_HOME "$PYTHON" -m prefect --no-prompt deploy --all "$@"
