# Shell functions shared by the benchmarks (benches/backfill.sh,
# benches/rebalance.sh); source it from bash after `set -euo pipefail`.
#
# The influxd functions keep their state in globals the caller sets up:
#   work                  a temp directory (each node gets $work/NAME)
#   node_pid, node_port   associative arrays (declare -A), NAME -> pid / HTTP port
# stop_all_nodes stops every node still running (call it from the EXIT trap).

have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "==> $*"; }

# apt_install PACKAGE...: installs Debian packages (through sudo when not root)
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if have sudo; then sudo=(sudo); else
            echo "error: not root and sudo is not available; as root run: apt-get update && apt-get install -y $*" >&2
            exit 1
        fi
    fi
    ${sudo[@]+"${sudo[@]}"} apt-get update -qq
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# require_tools: influxd, influx, python3, curl, and /usr/bin/time (installed when missing)
require_tools() {
    local tool
    for tool in influxd influx; do
        have "$tool" || { echo "error: $tool not found: apt-get install -y influxdb influxdb-client" >&2; exit 1; }
    done
    for tool in python3 curl; do
        have "$tool" || { echo "error: $tool not found: apt-get install -y $tool" >&2; exit 1; }
    done
    if [[ ! -x /usr/bin/time ]]; then
        say "/usr/bin/time not found (it measures the peak RSS); installing the Debian package time"
        apt_install time
    fi
}

# release_router ROOT: sets $router to BENCH_ROUTER, or builds ROOT's release binary
release_router() {
    if [[ -n ${BENCH_ROUTER:-} ]]; then
        router=$BENCH_ROUTER
    else
        say "cargo build --release"
        (cd "$1" && cargo build --release --quiet --bin influxdb-router)
        router=$1/target/release/influxdb-router
    fi
    unset INFLUXDB_ROUTER_CONFIG
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_node NAME: a fresh influxd with its own directories and free ports
start_node() {
    local name=$1 dir=$work/$1 http rpc
    http=$(free_port) rpc=$(free_port)
    mkdir -p "$dir"
    cat > "$dir/influxd.toml" <<TOML
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$dir/meta"
  logging-enabled = false
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
  # the cache goes to TSM files soon after a load, as old data would be
  cache-snapshot-write-cold-duration = "2s"
[retention]
  enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$http"
  log-enabled = false
[logging]
  level = "error"
  suppress-logo = true
TOML
    influxd run -config "$dir/influxd.toml" > "$dir/influxd.log" 2>&1 &
    node_pid[$name]=$! node_port[$name]=$http
    for _ in $(seq 150); do
        curl -sf -o /dev/null "http://127.0.0.1:$http/ping" && return 0
        kill -0 "${node_pid[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: influxd $name did not start; its log:" >&2
    tail -20 "$dir/influxd.log" >&2
    exit 1
}

# stop_node NAME: stops it and removes its directories
stop_node() {
    local name=$1
    kill "${node_pid[$name]}" 2>/dev/null || true
    wait "${node_pid[$name]}" 2>/dev/null || true
    unset "node_pid[$name]"
    rm -rf "${work:?}/$name"
}

# stop_all_nodes: kills every node still running (directories are left)
stop_all_nodes() {
    local name
    for name in "${!node_pid[@]}"; do kill "${node_pid[$name]}" 2>/dev/null || true; done
    for name in "${!node_pid[@]}"; do wait "${node_pid[$name]}" 2>/dev/null || true; done
}

url() { echo "http://127.0.0.1:${node_port[$1]}"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy ticks of the whole machine (every core)
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
ticks_per_s=$(getconf CLK_TCK)
now() { date +%s.%N; }

# wait_settled DB NAME...: waits (at most 2 minutes) until the files of DB on the
# nodes named stay the same for 3 s: their cache is in TSM files and compacted
wait_settled() {
    local db=$1 last="" stable=0 listing name dirs=()
    shift
    for name in "$@"; do dirs+=("$work/$name/data/$db" "$work/$name/wal/$db"); done
    for _ in $(seq 240); do
        listing=$(find "${dirs[@]}" -type f -printf '%p %s\n' 2>/dev/null | sort | md5sum)
        if [[ $listing == "$last" ]]; then stable=$((stable + 1)); else stable=0; last=$listing; fi
        [[ $stable -ge 6 ]] && break
        sleep 0.5
    done
}

# counts NAME [DB]: every field's count in DB (default bench) on node NAME,
# as sorted "measurement field count" lines
counts() {
    curl -sf "$(url "$1")/query" --data-urlencode "db=${2:-bench}" \
        --data-urlencode 'q=SELECT count(*) FROM /.*/' | python3 -c '
import json, sys
for result in json.load(sys.stdin)["results"]:
    if "error" in result:
        sys.exit("count: " + result["error"])
    for s in result.get("series", []):
        for col, value in zip(s["columns"][1:], s["values"][0][1:]):
            print(s["name"], col.removeprefix("count_"), value)
' | sort
}
