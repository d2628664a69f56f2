#!/usr/bin/env bash
# The relay load benchmark (see benches/relay.py for what it measures):
# builds the router and the sink node in release mode, installs wrk from
# Debian's packages when it is missing, and runs the scenarios a to i and l.
#
# Usage: benches/relay.sh [--runs 3] [--duration 10] [--scenarios abcdefghil] [--big-lines 5000]
#                         [--extra-config FILE] [--json FILE]        (--help: what each scenario is)
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
for tool in taskset python3; do
    if ! have "$tool"; then
        echo "error: $tool not found (taskset: apt-get install -y util-linux; python3: apt-get install -y python3)" >&2
        exit 1
    fi
done
if ! have wrk; then
    echo "==> wrk not found; installing the Debian package wrk with apt-get"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if have sudo; then sudo=(sudo); else
            echo "error: not root and sudo is not available; as root run: apt-get update && apt-get install -y wrk" >&2
            exit 1
        fi
    fi
    ${sudo[@]+"${sudo[@]}"} apt-get update
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
fi

cargo build --release --quiet --bin influxdb-router --example sink --example prom_body
echo "==> $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
exec python3 benches/relay.py "$@"
