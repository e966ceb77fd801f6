#!/usr/bin/env bash
# The test command: installs what the build needs, fetches the real model the
# tests use, and runs every test in a release build (numeric code is far too
# slow in debug builds; -enable-testing lets tests see internal symbols).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/fetch-model.sh >/dev/null
swift test -c release -Xswiftc -enable-testing "$@"
