#!/usr/bin/env bash
# Makes sure this machine can build Loft: Swift 6.x and Debian's OpenBLAS
# (libopenblas-dev), zlib (zlib1g-dev), zstd (libzstd-dev, for Parquet) and SQLite (libsqlite3-dev, the run registry), plus python3 with pip for fetching the model from PyPI.
# Installs the Debian packages when run as root; otherwise names them.
set -euo pipefail

if ! command -v swift >/dev/null 2>&1; then
    echo "error: Swift 6.x is not installed. Install the Swift 6 toolchain for your distribution from swift.org" >&2
    echo "       (Debian/Ubuntu: unpack the tarball and put its usr/bin on PATH), then run this again." >&2
    exit 1
fi
major=$(swift --version 2>&1 | sed -n 's/.*Swift version \([0-9]*\)\..*/\1/p' | head -n1)
if [ -z "$major" ] || [ "$major" -lt 6 ]; then
    echo "error: Loft needs Swift 6.x; found: $(swift --version 2>&1 | head -n1)" >&2
    exit 1
fi

need=()
[ -f /usr/include/x86_64-linux-gnu/cblas.h ] || [ -f /usr/include/aarch64-linux-gnu/cblas.h ] || [ -f /usr/include/cblas.h ] || need+=(libopenblas-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -f /usr/include/zstd.h ] || need+=(libzstd-dev)
[ -f /usr/include/sqlite3.h ] || need+=(libsqlite3-dev)   # the run registry (GRDB)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${need[*]} with apt-get…" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    else
        echo "error: Loft needs these Debian packages: ${need[*]}" >&2
        echo "       run: sudo apt-get install ${need[*]}" >&2
        exit 1
    fi
fi
