#!/usr/bin/env bash
# How long the router takes to replay 1 GB of queued writes to a node that
# comes back: node B is down while ~1 GB of 5,000-line batches is written
# (consistency any, so every write is answered once B's copy is on disk),
# then B starts and the time until its queue is empty is measured.
#
# Both nodes are the project's write sink (examples/sink.rs), so the figure
# is the router's replay rate, not InfluxDB's ingest rate. Everything runs on
# 127.0.0.1 and is stopped at the end.
#
# Usage: benches/replay-1g.sh [SIZE_MB]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb=${1:-1000}
router_port=15196 a_port=18101 b_port=18102
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin influxdb-router --example sink
router=target/release/influxdb-router
sink=target/release/examples/sink

python3 - "$work/batch.txt" <<'PY'
import sys
lines = [
    f"cpu,host=server{i % 100:03d},region=eu-west,dc=dc{i % 3} "
    f"usage_user={i * 0.37:.2f},usage_system={i * 0.11:.2f},usage_idle={90 - i * 0.01:.2f},load=12i "
    f"{1700000000000000000 + i}"
    for i in range(5000)
]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
batch_bytes=$(stat -c %s "$work/batch.txt")
requests=$(( size_mb * 1000000 / batch_bytes + 1 ))

cat > "$work/router.toml" <<EOF
[server]
bind = "127.0.0.1:$router_port"
[write]
consistency = "any"
[health]
interval = "200ms"
healthy_after = 1
timeout = "500ms"
[buffer]
dir = "$work/queues"
max_size_per_node = "4GiB"
[[cluster]]
name = "main"
nodes = [
  { name = "a", url = "http://127.0.0.1:$a_port" },
  { name = "b", url = "http://127.0.0.1:$b_port" },
]
EOF

"$sink" "127.0.0.1:$a_port" & pids+=($!)
RUST_LOG=warn "$router" -c "$work/router.toml" 2>"$work/router.log" & pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$router_port/ping" >/dev/null && break; sleep 0.1; done

queue() {
    curl -s "http://127.0.0.1:$router_port/status" | python3 -c \
        "import json,sys; print([n['queue'] for n in json.load(sys.stdin)['nodes'] if n['name']=='b'][0]['$1'])"
}

echo "writing $requests batches of $batch_bytes bytes while node b is down"
started=$(date +%s.%N)
seq "$requests" | xargs -P 4 -I{} curl -sf -o /dev/null -XPOST --data-binary @"$work/batch.txt" \
    "http://127.0.0.1:$router_port/write?db=bench"
written=$(date +%s.%N)
bytes=$(queue bytes)
records=$(queue records)
echo "queued for b: $records records, $bytes bytes on disk ($(python3 -c "print(round($written - $started, 1))") s to write)"

"$sink" "127.0.0.1:$b_port" & pids+=($!)
t0=$(date +%s.%N)
while [ "$(queue records)" != "0" ]; do sleep 0.1; done
t1=$(date +%s.%N)
python3 -c "s = $t1 - $t0; print(f'replayed {$bytes / 1e6:.0f} MB ({$records} records) in {s:.1f} s: {$bytes / 1e6 / s:.0f} MB/s (includes up to 0.2 s until the health check sees b up)')"
