#!/usr/bin/env bash
# The project's one test command.
#
# 1. Makes sure InfluxDB 1.x (`influxd`, `influx`) is installed, installing the
#    Debian packages `influxdb` and `influxdb-client` with apt-get if not. The
#    integration tests start their own `influxd` instances on ephemeral ports
#    of 127.0.0.1 (see tests/support); no system InfluxDB service is needed or
#    used.
#    Likewise `dnsmasq` (Debian package `dnsmasq-base`: the binary without a
#    system service), the real DNS server the DNS SRV discovery test starts
#    on a free loopback port.
#    Likewise `prometheus` (Debian package `prometheus`), the real
#    Prometheus server tests/prometheus.rs starts as the remote write and
#    remote read client.
#    Likewise `systemd-analyze` (Debian package `systemd`), which verifies
#    the systemd unit in tests/deploy.rs, and the PyPI package
#    `kubernetes-validate`, which checks the Kubernetes manifests offline.
#    And the system root certificates (Debian package `ca-certificates`),
#    which https:// nodes are verified against.
# 2. Runs `cargo test --all-targets --no-fail-fast "$@"`, then
#    `cargo test --doc`, and fails if either failed.
#
# Usage: ./scripts/test.sh [extra cargo test arguments, e.g. -- --nocapture]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

have() { command -v "$1" >/dev/null 2>&1; }

# Runs `apt-get update` and `apt-get install -y PACKAGES...` as root, through
# sudo when not root; without either it says what to run and exits.
sudo=()
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        if have sudo; then
            sudo=(sudo)
        else
            echo "error: not root and sudo is not available; as root run:" >&2
            echo "  apt-get update && apt-get install -y $*" >&2
            exit 1
        fi
    fi
    ${sudo[@]+"${sudo[@]}"} apt-get update
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

if ! have cargo; then
    echo "error: cargo not found on PATH (install Rust from https://rustup.rs)" >&2
    exit 1
fi

if ! have influxd || ! have influx; then
    echo "==> influxd/influx not found on PATH."
    echo "    The integration tests run real InfluxDB 1.x servers; installing the Debian"
    echo "    packages influxdb and influxdb-client with apt-get."
    apt_install influxdb influxdb-client
    # The package may have started its own service. The tests never use it
    # (they start private instances on ephemeral ports), so stop and disable
    # the one this script just caused to exist.
    if have systemctl && [[ -d /run/systemd/system ]] \
        && systemctl is-active --quiet influxdb 2>/dev/null; then
        echo "==> stopping the influxdb system service started by the package (the tests do not need it)"
        ${sudo[@]+"${sudo[@]}"} systemctl disable --now influxdb || true
    fi
    if ! have influxd || ! have influx; then
        echo "error: influxd/influx still not on PATH after installing influxdb influxdb-client" >&2
        exit 1
    fi
fi

# The DNS SRV test (tests/dns_srv.rs) runs a real dnsmasq on 127.0.0.1; the
# dnsmasq-base package has the binary without a system service. It lives in
# /usr/sbin, which is not on every user's PATH.
if ! have dnsmasq && [[ ! -x /usr/sbin/dnsmasq ]]; then
    echo "==> dnsmasq not found; installing the Debian package dnsmasq-base with apt-get."
    apt_install dnsmasq-base
    if ! have dnsmasq && [[ ! -x /usr/sbin/dnsmasq ]]; then
        echo "error: dnsmasq still not found after installing dnsmasq-base" >&2
        exit 1
    fi
fi

# The remote storage tests (tests/prometheus.rs) run a real Prometheus server
# on a free loopback port as the client. The package also installs a system
# service; the tests never use it, so stop the one this script caused to exist.
if ! have prometheus; then
    echo "==> prometheus not found; installing the Debian package prometheus with apt-get."
    apt_install prometheus
    if have systemctl && [[ -d /run/systemd/system ]] \
        && systemctl is-active --quiet prometheus 2>/dev/null; then
        echo "==> stopping the prometheus system service started by the package (the tests do not need it)"
        ${sudo[@]+"${sudo[@]}"} systemctl disable --now prometheus || true
    fi
    if ! have prometheus; then
        echo "error: prometheus still not on PATH after installing prometheus" >&2
        exit 1
    fi
fi

# The deployment test (tests/deploy.rs) verifies systemd/influxdb-router.service
# with systemd-analyze (already there on any systemd host).
if [[ ! -x /usr/bin/systemd-analyze && ! -x /bin/systemd-analyze ]]; then
    echo "==> systemd-analyze not found; installing the Debian package systemd with apt-get."
    apt_install systemd
    if [[ ! -x /usr/bin/systemd-analyze && ! -x /bin/systemd-analyze ]]; then
        echo "error: systemd-analyze still not found after installing systemd" >&2
        exit 1
    fi
fi

# https:// nodes without a ca_file are verified against the system roots; a
# unit test (src/tls.rs) loads them, from the Debian package ca-certificates.
if [[ ! -s /etc/ssl/certs/ca-certificates.crt ]]; then
    echo "==> system root certificates not found; installing the Debian package ca-certificates with apt-get."
    apt_install ca-certificates
fi

# The client tests drive the router with the python `influxdb` library, as
# applications do; install it from PyPI when it is missing.
if ! have python3; then
    echo "error: python3 not found on PATH (the client tests need it: apt-get install -y python3 python3-pip)" >&2
    exit 1
fi
if ! python3 -c "import influxdb" >/dev/null 2>&1; then
    echo "==> installing the python influxdb client (python3 -m pip install influxdb)"
    python3 -m pip install --quiet --disable-pip-version-check influxdb \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages influxdb
fi
# The Kubernetes manifests are checked against Kubernetes' schemas, which the
# PyPI package kubernetes-validate carries (it works offline).
if ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
    echo "==> installing kubernetes-validate (python3 -m pip install kubernetes-validate)"
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages kubernetes-validate
fi

echo "==> influxdb-router tests"
echo "    cargo:   $(cargo --version)"
echo "    influxd: $(command -v influxd) ($(influxd version 2>/dev/null | head -n1 || echo 'version unknown'))"
echo "    runs:    cargo test --all-targets --no-fail-fast $*"
echo "             cargo test --doc"
echo

status=0
echo "==> cargo test --all-targets --no-fail-fast $*"
cargo test --all-targets --no-fail-fast "$@" || status=$?

echo
echo "==> cargo test --doc"
cargo test --doc || status=$?

# The harness kills every influxd it starts, even on panics; say so loudly if
# one escaped anyway (their configs live in influxd-test-* temp dirs; another
# test run going on at the same time would show up here too).
if have pgrep && leftovers=$(pgrep -f -- '-config .*/influxd-test-[^/]*/influxd\.toml'); then
    echo "warning: test influxd processes still running: $(echo "$leftovers" | tr '\n' ' ')" >&2
fi

echo
if [[ $status -eq 0 ]]; then
    echo "==> all tests passed"
else
    echo "==> tests FAILED (exit status $status)" >&2
fi
exit "$status"
