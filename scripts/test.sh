#!/usr/bin/env bash
# Set up (first time) and run the test suite; extra arguments go to pytest.
# The file-metadata oracle test needs Debian's exiftool, ffmpeg and ffprobe: installed here as root.
oracle=()
command -v exiftool >/dev/null || oracle+=(libimage-exiftool-perl)
{ command -v ffmpeg && command -v ffprobe; } >/dev/null || oracle+=(ffmpeg)
if [ ${#oracle[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${oracle[@]}" >/dev/null
  else
    echo "missing test tools: run  sudo apt-get update && sudo apt-get install -y ${oracle[*]}" >&2
    exit 1
  fi
fi
source "$(dirname "$0")/venv.sh"
export PREFECT_HOME="$(mktemp -d -t batchflows-test-prefect-XXXXXX)"
cd "$ROOT"
exec python -m pytest "$@"
