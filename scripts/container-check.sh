#!/usr/bin/env bash
# Builds the repository's Dockerfile, unchanged, with Debian's own container
# tools (buildah, podman) and checks that the image works: its user, entry
# point, volume and ports, that `influxdb-router --version` runs in it, and
# that the router it starts answers GET /ping with 204 while running as uid
# 10001, then stops cleanly on SIGTERM.
#
# On a machine with Docker and a reachable image registry none of this
# machinery is needed:
#
#   docker build -t influxdb-router .
#
# Why the base images are built here: the machines this project is developed
# and tested on have no Docker daemon and reach no image registry, only the
# Debian archive and the language package registries. So the two images the
# Dockerfile starts FROM are made locally, under the names it expects, and
# nothing is ever pulled (--pull=never):
#
#   debian:<release>-slim  debootstrap --variant=minbase from the Debian mirror
#                          this machine's apt uses, trimmed and configured like
#                          the official slim image (no docs, man pages or
#                          locales, apt caches cleaned), imported as a
#                          one-layer image.
#   rust:<ver>-<release>   FROM that debian image: gcc, libc6-dev, make,
#                          pkg-config, git, curl, ca-certificates from apt, and
#                          this machine's own Rust toolchain of that version
#                          (toolchains cannot be downloaded here) laid out as in
#                          the official image (RUSTUP_HOME=/usr/local/rustup,
#                          CARGO_HOME=/usr/local/cargo on PATH). When this
#                          machine trusts extra CA certificates (those in
#                          /usr/local/share/ca-certificates, e.g. for a
#                          TLS-intercepting proxy in front of the crate
#                          registry) they are added to this build-stage image
#                          only, so that cargo can fetch crates; the runtime
#                          image does not get them.
#
# Both are kept between runs (REBUILD_BASES=1 makes them again). The image
# under test is then built from the repository with `buildah build`, exactly
# as `docker build` would, and run with podman on the host network, bound to
# 127.0.0.1 only.
#
# Sandbox workarounds, all overridable through the environment:
#   RUNTIME=runc     crun refuses hybrid cgroup v1/v2 hierarchies.
#   ULIMIT_NOFILE, ULIMIT_NPROC
#                    explicit limits no higher than this shell's: without
#                    CAP_SYS_RESOURCE the OCI runtime cannot raise them to
#                    podman's defaults.
#   STORAGE_DRIVER   unset: containers/storage's default (overlay); set it to
#                    vfs where overlay mounts are not allowed.
#
# Other settings: IMAGE (default localhost/influxdb-router:test), WORK (scratch
# directory, default /var/tmp/influxdb-router-container-check, never inside
# the repository), CONTEXT=worktree|head (build from the working tree, the
# default, or from a `git archive HEAD` export that ignores uncommitted
# edits), KEEP_IMAGE=1 (keep the image under test afterwards; by default it is
# removed, the base images are kept), DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR
# (default: taken from this machine's apt sources).
#
# Usage (as root, on Debian): scripts/container-check.sh
# Prints PASS or FAIL per check and a summary; exits non-zero on any failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-localhost/influxdb-router:test}
WORK=${WORK:-/var/tmp/influxdb-router-container-check}
CONTEXT=${CONTEXT:-worktree}
KEEP_IMAGE=${KEEP_IMAGE:-0}
REBUILD_BASES=${REBUILD_BASES:-0}
RUNTIME=${RUNTIME:-runc}
STORAGE_DRIVER=${STORAGE_DRIVER:-}

# The bases the Dockerfile names, from its ARG defaults.
arg_default() { sed -n "s/^ARG $1=\(.*\)$/\1/p" "$REPO/Dockerfile" | head -n1; }
RUST_VERSION=$(arg_default RUST_VERSION)
DEBIAN_RELEASE=$(arg_default DEBIAN_RELEASE)
: "${RUST_VERSION:?no ARG RUST_VERSION default in Dockerfile}"
: "${DEBIAN_RELEASE:?no ARG DEBIAN_RELEASE default in Dockerfile}"
DEBIAN_BASE=docker.io/library/debian:${DEBIAN_RELEASE}-slim
RUST_BASE=docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE}

ULIMIT_NOFILE=${ULIMIT_NOFILE:-$(ulimit -Hn)}
[[ $ULIMIT_NOFILE == unlimited || $ULIMIT_NOFILE -gt 1048576 ]] && ULIMIT_NOFILE=1048576
ULIMIT_NPROC=${ULIMIT_NPROC:-$(ulimit -Hu)}
# podman itself runs with at most 32768 processes, so its runtime cannot set more.
[[ $ULIMIT_NPROC == unlimited || $ULIMIT_NPROC -gt 32768 ]] && ULIMIT_NPROC=32768

STORE=()
[[ -n $STORAGE_DRIVER ]] && STORE=(--storage-driver "$STORAGE_DRIVER")
LIMITS=(--ulimit "nofile=$ULIMIT_NOFILE:$ULIMIT_NOFILE" --ulimit "nproc=$ULIMIT_NPROC:$ULIMIT_NPROC")
BUILD=(buildah "${STORE[@]}" build --pull=never --network host --runtime "$RUNTIME" "${LIMITS[@]}")
PODMAN=(podman "${STORE[@]}" --runtime "$RUNTIME")

START=$SECONDS
RESULTS=()
FAILED=0
CONTAINER=""
pass() { RESULTS+=("PASS  $1"); echo "PASS  $1"; }
fail() { RESULTS+=("FAIL  $1"); echo "FAIL  $1" >&2; FAILED=1; }
step() { echo; echo "=== $* ($((SECONDS - START))s)"; }
have() { command -v "$1" >/dev/null 2>&1; }

cleanup() {
    local rc=$?
    set +e
    if [[ -n $CONTAINER ]]; then
        "${PODMAN[@]}" rm -f -v "$CONTAINER" >/dev/null 2>&1
    fi
    if [[ $KEEP_IMAGE != 1 ]] && "${PODMAN[@]}" image exists "$IMAGE" 2>/dev/null; then
        "${PODMAN[@]}" rmi "$IMAGE" >/dev/null 2>&1 && echo "removed $IMAGE (KEEP_IMAGE=1 keeps it)"
    fi
    rm -rf "$WORK/run" "$WORK/context"
    echo
    echo "=== summary ($((SECONDS - START))s)"
    printf '%s\n' ${RESULTS[@]+"${RESULTS[@]}"}
    if [[ $rc -ne 0 ]]; then
        echo "FAIL  aborted (exit $rc) before all checks ran; see the output above"
        FAILED=1
    fi
    if [[ $FAILED -eq 0 ]]; then
        echo "RESULT: PASS"
        exit 0
    fi
    echo "RESULT: FAIL"
    exit 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $(id -u) -ne 0 ]]; then
    echo "error: run as root (buildah/podman rootful, debootstrap, apt-get)" >&2
    exit 1
fi
case "$WORK" in
    "$REPO"|"$REPO"/*) echo "error: WORK must be outside the repository" >&2; exit 1 ;;
esac
mkdir -p "$WORK"

# ---------------------------------------------------------------- 1. tools
step "tools"
missing=()
for t in buildah:buildah podman:podman debootstrap:debootstrap "$RUNTIME:$RUNTIME" \
    curl:curl python3:python3 update-ca-certificates:ca-certificates; do
    have "${t%%:*}" || missing+=("${t#*:}")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
buildah --version
podman --version
"$RUNTIME" --version | head -n1

# --------------------------------------------------------- 2a. debian base
# The mirrors this machine's apt uses (deb822 or one-line sources).
apt_uris() {
    cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' |
        tr ' ' '\n' | sed 's:/*$::' | grep -E "$1" | head -n1
}

build_debian_base() {
    local mirror=${DEBIAN_MIRROR:-$(apt_uris '/debian$')}
    local security=${DEBIAN_SECURITY_MIRROR:-$(apt_uris '/debian-security$')}
    [[ -n $mirror ]] || { echo "error: no Debian mirror in /etc/apt; set DEBIAN_MIRROR" >&2; return 1; }
    [[ -n $security ]] || security=${mirror}-security
    local root=$WORK/debian-rootfs
    rm -rf "$root"
    echo "debootstrap --variant=minbase $DEBIAN_RELEASE from $mirror"
    debootstrap --variant=minbase "$DEBIAN_RELEASE" "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/debootstrap.log" >&2; return 1; }

    # What the official slim image (debuerreotype) configures and trims.
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $DEBIAN_RELEASE $DEBIAN_RELEASE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $DEBIAN_RELEASE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/groff/* "$root"/usr/share/lintian/*
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -f "$root/etc/resolv.conf" "$root/etc/machine-id"
    : >"$root/etc/hostname"

    tar -C "$root" --numeric-owner -cf "$WORK/debian-rootfs.tar" .
    "${PODMAN[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        --change "LABEL org.opencontainers.image.description=\"local stand-in for $DEBIAN_BASE, made by scripts/container-check.sh\"" \
        "$WORK/debian-rootfs.tar" "$DEBIAN_BASE"
    rm -rf "$root" "$WORK/debian-rootfs.tar"
}

# ----------------------------------------------------------- 2b. rust base
build_rust_base() {
    local rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
    local rustup_bin
    rustup_bin=$(command -v rustup || true)
    [[ -n $rustup_bin ]] || { echo "error: rustup not found on this machine" >&2; return 1; }
    rustup_bin=$(readlink -f "$rustup_bin")
    # This machine's toolchain of the Dockerfile's Rust version (not a nightly).
    local tc="" full="" triple="" d v
    for d in "$rustup_home"/toolchains/*/; do
        d=$(readlink -f "$d")
        [[ $(basename "$d") == nightly* || ! -x $d/bin/rustc ]] && continue
        v=$("$d/bin/rustc" -vV 2>/dev/null) || continue
        full=$(sed -n 's/^release: //p' <<<"$v")
        if [[ $full == "$RUST_VERSION" || $full == "$RUST_VERSION".* ]]; then
            tc=$d
            triple=$(sed -n 's/^host: //p' <<<"$v")
            break
        fi
    done
    [[ -n $tc ]] || { echo "error: no Rust $RUST_VERSION toolchain under $rustup_home/toolchains" >&2; return 1; }
    echo "toolchain: $tc (rustc $full, $triple)"

    local ctx=$WORK/rust-ctx name=$full-$triple
    rm -rf "$ctx"
    mkdir -p "$ctx/rustup/toolchains" "$ctx/cargo-bin"
    # Hard links where possible: the toolchain is over a gigabyte with its docs.
    cp -al "$tc" "$ctx/rustup/toolchains/$name" 2>/dev/null || cp -a "$tc" "$ctx/rustup/toolchains/$name"
    rm -rf "$ctx/rustup/toolchains/$name/share/doc"
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
        "$name" >"$ctx/rustup/settings.toml"
    cp "$rustup_bin" "$ctx/cargo-bin/rustup"

    local extra_ca=""
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        mkdir -p "$ctx/extra-ca"
        cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/"
        extra_ca='COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates'
        echo "adding this machine's extra CA certificates to the build-stage base: $(cd "$ctx/extra-ca" && echo *.crt)"
    fi
    cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN_BASE
LABEL org.opencontainers.image.description="local stand-in for $RUST_BASE, made by scripts/container-check.sh"
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make pkg-config git curl \\
    && rm -rf /var/lib/apt/lists/*
$extra_ca
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$full
COPY rustup /usr/local/rustup
COPY cargo-bin/rustup /usr/local/cargo/bin/rustup
RUN set -eux; cd /usr/local/cargo/bin; \\
    for t in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-gdbgui rust-lldb; do \\
        ln -s rustup "\$t"; \\
    done; \\
    chmod -R a+w /usr/local/rustup /usr/local/cargo; \\
    rustup --version; cargo --version; rustc --version
EOF
    "${BUILD[@]}" -t "$RUST_BASE" "$ctx"
    rm -rf "$ctx"
}

if [[ $REBUILD_BASES == 1 ]]; then
    "${PODMAN[@]}" rmi -f "$RUST_BASE" "$DEBIAN_BASE" >/dev/null 2>&1 || true
fi
step "base image $DEBIAN_BASE"
if "${PODMAN[@]}" image exists "$DEBIAN_BASE"; then
    echo "present (REBUILD_BASES=1 makes it again)"
else
    build_debian_base
fi
step "base image $RUST_BASE"
if "${PODMAN[@]}" image exists "$RUST_BASE"; then
    echo "present (REBUILD_BASES=1 makes it again)"
else
    build_rust_base
fi

# ------------------------------------------------------------------ 3. build
step "build $IMAGE from $REPO/Dockerfile (context: $CONTEXT)"
case "$CONTEXT" in
    worktree)
        ctx=$REPO
        changed=$(git -C "$REPO" status --porcelain -- Dockerfile .dockerignore Cargo.toml Cargo.lock \
            src benches deploy/container 2>/dev/null || true)
        if [[ -n $changed ]]; then
            echo "note: building uncommitted changes (CONTEXT=head builds HEAD):"
            echo "$changed"
        fi
        ;;
    head)
        ctx=$WORK/context
        rm -rf "$ctx"
        mkdir -p "$ctx"
        git -C "$REPO" archive HEAD | tar -x -C "$ctx"
        echo "commit $(git -C "$REPO" rev-parse --short HEAD)"
        ;;
    *) echo "error: CONTEXT must be worktree or head" >&2; exit 1 ;;
esac
build_start=$SECONDS
"${BUILD[@]}" -t "$IMAGE" -f "$ctx/Dockerfile" "$ctx"
pass "image builds ($((SECONDS - build_start))s)"

# ------------------------------------------------------------- 4. inspect
step "inspect $IMAGE"
inspect() { "${PODMAN[@]}" image inspect "$IMAGE" --format "$1"; }
expect() { # NAME ACTUAL EXPECTED
    if [[ $2 == "$3" ]]; then pass "$1: $2"; else fail "$1: got '$2', want '$3'"; fi
}
expect "user" "$(inspect '{{.Config.User}}')" "10001:10001"
expect "entrypoint" "$(inspect '{{json .Config.Entrypoint}}')" '["/usr/local/bin/influxdb-router"]'
expect "cmd" "$(inspect '{{json .Config.Cmd}}')" '["serve","--config","/etc/influxdb-router/config.toml"]'
expect "volume" "$(inspect '{{json .Config.Volumes}}')" '{"/var/lib/influxdb-router":{}}'
expect "expose" "$(inspect '{{json .Config.ExposedPorts}}')" '{"5096/tcp":{},"8089/udp":{}}'
expect "workdir" "$(inspect '{{.Config.WorkingDir}}')" "/var/lib/influxdb-router"
expect "stopsignal" "$(inspect '{{.Config.StopSignal}}')" "SIGTERM"
size=$(inspect '{{.Size}}')
echo "image size: $((size / 1000000)) MB ($size bytes)"
"${PODMAN[@]}" images

# ---------------------------------------------------------------- 4. run
step "run"
version=$("${PODMAN[@]}" run --rm --pull never --network none "${LIMITS[@]}" "$IMAGE" --version 2>&1) || true
if [[ $version == influxdb-router* ]]; then pass "--version: $version"; else fail "--version: '$version'"; fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
NODE_PORT=$(free_port) # nothing listens there: the node is simply down
mkdir -p "$WORK/run"
cat >"$WORK/run/config.toml" <<EOF
[server]
bind = "127.0.0.1:$PORT"
shutdown_timeout = "5s"

[buffer]
dir = "/var/lib/influxdb-router"

[[cluster]]
name = "default"
nodes = [
  { name = "local", url = "http://127.0.0.1:$NODE_PORT" },
]
EOF
chmod 0644 "$WORK/run/config.toml"
CONTAINER=influxdb-router-check-$$
"${PODMAN[@]}" run -d --name "$CONTAINER" --pull never --network host "${LIMITS[@]}" \
    -v "$WORK/run/config.toml:/etc/influxdb-router/config.toml:ro" "$IMAGE" >/dev/null
echo "started $CONTAINER: router on 127.0.0.1:$PORT"

code=000
for _ in $(seq 1 60); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/ping" || true)
    [[ $code == 204 ]] && break
    [[ $("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$CONTAINER") == true ]] || break
    sleep 0.5
done
curl -si --max-time 2 "http://127.0.0.1:$PORT/ping" | tr -d '\r' || true
if [[ $code == 204 ]]; then pass "GET /ping: 204"; else fail "GET /ping: $code"; fi

pid=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$CONTAINER")
if [[ $pid -gt 0 && -r /proc/$pid/status ]]; then
    uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
    gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
    echo "host pid $pid ($(cat "/proc/$pid/comm")): uid $uids, gid $gids"
    expect "process uid (real effective saved fs)" "$uids" "10001 10001 10001 10001"
    expect "process gid" "$gids" "10001 10001 10001 10001"
else
    fail "container process not found (pid '$pid')"
fi
"${PODMAN[@]}" top "$CONTAINER" user group pid args || true
queue=$("${PODMAN[@]}" exec "$CONTAINER" stat -c '%u:%g %a' /var/lib/influxdb-router 2>&1 || true)
expect "volume owner and mode" "$queue" "10001:10001 700"

stop_start=$SECONDS
"${PODMAN[@]}" stop -t 45 "$CONTAINER" >/dev/null
exit_code=$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$CONTAINER")
echo "stopped in $((SECONDS - stop_start))s; last log lines:"
"${PODMAN[@]}" logs "$CONTAINER" 2>&1 | tail -n 5
expect "exit code after SIGTERM" "$exit_code" "0"
