#!/usr/bin/env bash
# Set up (first time) and run the test suite; extra arguments go to pytest.
source "$(dirname "$0")/venv.sh"
export PREFECT_HOME="$(mktemp -d -t batchflows-test-prefect-XXXXXX)"
cd "$ROOT"
exec python -m pytest "$@"
