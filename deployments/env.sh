# Sourced by the deployment scripts: this checkout (BATCHFLOWS_HOME, the pull step's directory), a Python
# with the project installed (the current one, else the checkout's .venv, made on first use) and the server.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BATCHFLOWS_HOME="$ROOT"
export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:4200/api}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
PYTHON="${PYTHON:-python3}"
if ! (cd "$ROOT" && "$PYTHON" -c "import prefect, tasks.engine.run" 2>/dev/null); then
  source "$ROOT/scripts/venv.sh"
  PYTHON=python
fi
