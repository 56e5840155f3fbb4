#!/usr/bin/env bash
# Set up (first time) and run the test suite; extra arguments go to pytest.
set -euo pipefail
# Debian tools the tests drive: chromium (the Prefect UI test, through playwright, no browser
# download), exiftool, ffmpeg and ffprobe (the file-metadata oracle test). Installed here as root.
missing=()
command -v exiftool >/dev/null || missing+=(libimage-exiftool-perl)
{ command -v ffmpeg && command -v ffprobe; } >/dev/null || missing+=(ffmpeg)
browser=()
[ -x /usr/bin/chromium ] || browser+=(chromium)  # with its recommended fonts: the UI test takes screenshots
if [ $((${#missing[@]} + ${#browser[@]})) -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing test tools: run  sudo apt-get update && sudo apt-get install -y ${browser[*]} ${missing[*]}" >&2
    exit 1
  fi
  echo "installing test tools: ${browser[*]} ${missing[*]}" >&2
  apt-get update -qq
  [ ${#browser[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${browser[@]}" >/dev/null
  [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
source "$(dirname "$0")/venv.sh"
export PREFECT_HOME="$(mktemp -d -t batchflows-test-prefect-XXXXXX)"
cd "$ROOT"
exec python -m pytest "$@"
