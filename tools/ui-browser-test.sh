#!/usr/bin/env bash
# The UI's real-browser test: installs headless Chromium and its driver
# (Debian's chromium, chromium-driver) and Selenium (PyPI) when missing, then
# drives `loft ui` through tools/ui-browser-test.py. Screenshots land in
# outputs/ui-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${need[*]} with apt-get…" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    else
        echo "error: the browser test needs: ${need[*]} (sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
fi
python3 -c "import selenium" 2>/dev/null || python3 -m pip install -q selenium >&2
loft=${LOFT_BIN:-.build/release/loft}
[ -x "$loft" ] || swift build -c release --product loft >&2
tools/fetch-model.sh >/dev/null
exec python3 tools/ui-browser-test.py "$loft" "$@"
