#!/usr/bin/env bash
# The `admin rebalance` benchmark: a third cluster joins a shard rule and the
# measurements it now owns are moved to it while a writer keeps writing.
#
# Three local clusters a, b, c (one influxd each) and a release-build router
# following its routing table from Redis (127.0.0.1:6379; change notices over
# RabbitMQ, 127.0.0.1:5672, guest/guest), under a key prefix of its own:
#
#   load     `admin routes push` of a table sharding db bench over a and b;
#            MEASUREMENTS x SERIES x POINTS points (default 40 x 50 x 1,000 =
#            2 million; fields v integer and f float; timestamps over WEEKS
#            weeks) written through the router; then it waits until the
#            influxds have written their cache to TSM files and compacted them
#   phase A  a writer posts WRITER_BATCH-line batches through the router at a
#            steady offered rate (WRITER_RATE points/s; 0: as fast as one
#            connection goes), to every measurement in turn, for PHASE seconds
#   phase B  the same writer keeps running; `admin routes push` of the table
#            sharding bench over a, b and c (the push records a [[move]] for
#            each measurement c now owns), `admin enqueue rebalance --db
#            bench`, and `admin worker --once` runs that job under
#            /usr/bin/time -v; the writer stops a second after the worker ends
#
# It prints the points moved (what the old clusters held of the measurements
# that moved, counted just before the push) and the job's own count of
# points copied, the move's wall time and points/s; the writer's acknowledged
# points/s and batch latencies in phase A and during the move, and their
# ratio; the peak RSS of the router in each phase (VmHWM, reset between
# phases through /proc/PID/clear_refs) and of the worker; CPU seconds of each
# process per phase and the load average before and after. At the end it
# checks that every measurement lives on exactly one cluster, that no
# [[move]] is left in the document, and that the clusters hold exactly the
# points loaded plus those the writer had acknowledged.
#
# Everything listens on 127.0.0.1 on free ports, under one temp directory;
# the influxds, the router and the writer are stopped, and the prefix's Redis
# keys, RabbitMQ queues and exchanges removed at the end. BENCH_ROUTER=path
# measures another router build instead of `cargo build --release` of this tree.
#
# Usage: benches/rebalance.sh [--measurements 40] [--series 50] [--points 1000] [--weeks 3]
#                             [--writer-rate 10000] [--writer-batch 500] [--phase 30]
#                             [--batch 5000] [--keep]
#
# --batch is the lines per request of the load; --keep keeps the temp dir
# (logs of the influxds, the router and the worker; the writer's log).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

measurements=40 series=50 points=1000 weeks=3 writer_rate=10000 writer_batch=500 phase=30 batch=5000 keep=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --measurements) measurements=$2; shift 2 ;;
        --series) series=$2; shift 2 ;;
        --points) points=$2; shift 2 ;;
        --weeks) weeks=$2; shift 2 ;;
        --writer-rate) writer_rate=$2; shift 2 ;;
        --writer-batch) writer_batch=$2; shift 2 ;;
        --phase) phase=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if (( measurements < 3 || measurements > 100 )); then
    echo "error: --measurements must be between 3 and 100" >&2
    exit 2
fi

. benches/lib.sh
require_tools
for tool in redis-cli rabbitmqctl; do
    have "$tool" || { echo "error: $tool not found (it removes the benchmark's Redis keys / RabbitMQ queues)" >&2; exit 1; }
done
redis-cli -h 127.0.0.1 -p 6379 ping > /dev/null 2>&1 \
    || { echo "error: Redis is not running on 127.0.0.1:6379; start it with redis-server --daemonize yes --port 6379" >&2; exit 1; }
(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null \
    || { echo "error: RabbitMQ is not running on 127.0.0.1:5672; start it with rabbitmq-server -detached" >&2; exit 1; }

release_router "$root"

work=$(mktemp -d /tmp/rebalance-bench.XXXXXX)
prefix=rebalance-bench-$$-$(date +%s%N)
declare -A node_pid node_port
router_pid="" writer_pid=""
cleanup() {
    [[ -n $writer_pid ]] && kill "$writer_pid" 2>/dev/null
    [[ -n $router_pid ]] && kill "$router_pid" 2>/dev/null
    [[ -n $writer_pid ]] && wait "$writer_pid" 2>/dev/null
    [[ -n $router_pid ]] && wait "$router_pid" 2>/dev/null
    stop_all_nodes
    # the prefix's Redis keys, the job queues, the routing and dead-letter exchanges
    redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$prefix*" | while read -r key; do
        redis-cli -h 127.0.0.1 -p 6379 del "$key" > /dev/null
    done
    for queue in "$prefix.jobs" "$prefix.jobs.dead"; do
        timeout 30 rabbitmqctl -q delete_queue "$queue" > /dev/null 2>&1 || true
    done
    for exchange in "$prefix.jobs.dead" "$prefix.routing"; do
        timeout 30 rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$exchange\">>), false, <<\"bench\">>)." \
            > /dev/null 2>&1 || true
    done
    if [[ $keep == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

for name in a b c; do start_node "$name"; done

redis_url=redis://127.0.0.1:6379/0
amqp_url=amqp://guest:guest@127.0.0.1:5672/%2f
clusters() {
    local name
    for name in a b c; do
        printf '\n[[cluster]]\nname = "%s"\nnodes = [{ name = "%s1", url = "%s" }]\n' "$name" "$name" "$(url "$name")"
    done
}
routing_source="source = \"redis\"
redis_url = \"$redis_url\"
amqp_url = \"$amqp_url\"
key_prefix = \"$prefix\"
poll_interval = \"1s\""
router_port=$(free_port)
mkdir -p "$work/router" "$work/admin"
{
    printf '[server]\nbind = "127.0.0.1:%s"\n[buffer]\ndir = "%s"\n[health]\ninterval = "500ms"\n' \
        "$router_port" "$work/router/buffer"
    printf '[routing]\ndefault_cluster = "a"\n%s\n' "$routing_source"
    clusters
} > "$work/router.toml"
{
    printf '[buffer]\ndir = "%s"\n[routing]\ndefault_cluster = "a"\n%s\n' "$work/admin/buffer" "$routing_source"
    clusters
} > "$work/admin.toml"
# the routing documents: bench sharded over a and b, then over a, b and c
document() {
    printf '[routing]\ndefault_cluster = "a"\n'
    clusters
    printf '\n[[route]]\ndatabase = "bench"\nshard = [%s]\n' "$1"
}
document '"a", "b"' > "$work/v1.toml"
document '"a", "b", "c"' > "$work/v2.toml"
admin() { "$router" admin -c "$work/admin.toml" "$@"; }
router_url=http://127.0.0.1:$router_port

say "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "$("$router" --version 2>/dev/null || echo "$router"); $(influxd version 2>/dev/null | head -1); key prefix $prefix"
loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)

admin routes push "$work/v1.toml" > "$work/push-v1.out" 2>&1 \
    || { echo "error: admin routes push v1.toml failed:" >&2; cat "$work/push-v1.out" >&2; exit 1; }
RUST_LOG=warn "$router" -c "$work/router.toml" > "$work/router.log" 2>&1 &
router_pid=$!
applied=0
for _ in $(seq 150); do
    version=$(curl -sf "$router_url/status" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["routing"].get("version") or 0)' 2>/dev/null || echo 0)
    if [[ $version -ge 1 ]]; then applied=1; break; fi
    kill -0 "$router_pid" 2>/dev/null || break
    sleep 0.1
done
if (( ! applied )); then
    echo "error: the router did not start or did not apply the routing document from Redis; its log:" >&2
    tail -20 "$work/router.log" >&2
    exit 1
fi

total=$((measurements * series * points))
say "loading $measurements measurements x $series series x $points points = $total points over $weeks weeks through the router"
t0=$(now)
python3 - "$router_url" "$measurements" "$series" "$points" "$weeks" "$batch" <<'PY'
import http.client, os, queue, sys, threading, urllib.parse

base, measurements, series, points, weeks, batch = sys.argv[1], *map(int, sys.argv[2:])
host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port


def post(path, body):
    conn = http.client.HTTPConnection(host, port, timeout=300)
    conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
    answer = conn.getresponse()
    text = answer.read()
    conn.close()
    if answer.status // 100 != 2 or b'"error"' in text:
        sys.exit(f"{path}: HTTP {answer.status}: {text[:300]!r}")


post("/query", "q=CREATE DATABASE bench")
# 2024-01-04T00:00:00Z: WEEKS weeks from here touch WEEKS + 1 of autogen's 7-day shard groups
start = 1704326400 * 10**9
step = weeks * 7 * 86400 * 10**9 // points
keys = [f"m{m:02d},host=host{s:03d},region=region-{s % 5}" for s in range(series) for m in range(measurements)]
bodies = queue.Queue(maxsize=4)


def sender():
    conn = http.client.HTTPConnection(host, port, timeout=300)
    while (body := bodies.get()) is not None:
        conn.request("POST", "/write?db=bench&precision=ns", body)
        answer = conn.getresponse()
        text = answer.read()
        if answer.status != 204:
            print(f"write: HTTP {answer.status}: {text[:300]!r}", file=sys.stderr)
            os._exit(1)


threads = [threading.Thread(target=sender) for _ in range(2)]
for t in threads:
    t.start()
lines = []
for j in range(points):
    t = start + j * step
    for k, key in enumerate(keys):
        v = (j * 7919 + k * 104729) % 100000
        lines.append(f"{key} v={v - 50000}i,f={v / 997:.6f} {t + k}")
        if len(lines) >= batch:
            bodies.put(("\n".join(lines) + "\n").encode())
            lines = []
if lines:
    bodies.put(("\n".join(lines) + "\n").encode())
for t in threads:
    bodies.put(None)
for t in threads:
    t.join()
PY
t1=$(now)
python3 -c "print(f'    loaded in {$t1 - $t0:.1f} s ({$total / ($t1 - $t0):,.0f} points/s, generator included)')"

# as old data would be: in TSM files, compacted (no compaction of the load in phase A)
say "waiting until the files of a and b settle"
wait_settled bench a b

# vcounts NAME...: "measurement count-of-v" lines of the nodes named, summed
vcounts() {
    local name
    for name in "$@"; do counts "$name"; done | awk '$2 == "v" {n[$1] += $3} END {for (m in n) print m, n[m]}' | sort
}
vcounts a b > "$work/loaded"
loaded=$(awk '{n += $2} END {print n + 0}' "$work/loaded")
if [[ $loaded != "$total" ]]; then
    echo "error: a and b hold $loaded points, not $total" >&2
    exit 1
fi
say "a holds $(counts a | awk '$2 == "v"' | wc -l) measurements, b $(counts b | awk '$2 == "v"' | wc -l)"

# snapshot LABEL: the time, the machine's busy ticks and the CPU ticks of each process
snapshot() {
    echo "$1 $(now) $(machine_ticks) $(cpu_ticks "$router_pid") $(cpu_ticks "${node_pid[a]}")" \
        "$(cpu_ticks "${node_pid[b]}") $(cpu_ticks "${node_pid[c]}") $(cpu_ticks "$writer_pid")" >> "$work/snapshots"
}
# peak RSS: VmHWM since the last reset (writing 5 to clear_refs resets it, Linux >= 4.0)
hwm_reset() { echo 5 > "/proc/$router_pid/clear_refs" 2>/dev/null || echo "    (cannot reset the router's VmHWM: its peak is since start)"; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$router_pid/status"; }
rss_load=$(hwm)
hwm_reset

say "phase A: the writer alone for $phase s (offered: $( ((writer_rate)) && echo "$writer_rate points/s" || echo "as fast as one connection goes"), $writer_batch lines a batch)"
cat > "$work/writer.py" <<'PY'
import http.client, signal, sys, time

host, port, rate, batch, measurements, log_path = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), sys.argv[6]
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
conn = http.client.HTTPConnection(host, port, timeout=60)
log = open(log_path, "w", buffering=1)
base = time.time_ns()
interval = batch / rate if rate > 0 else 0
due = time.monotonic()
seq = 0
while not stop:
    if interval:
        # a steady offered rate: batch k is due at start + k * interval; a late one goes at once
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        due += interval
    body = "".join(
        f"m{i % measurements:02d},writer=w{i % 10} v={i}i,f={i}.5 {base + i}\n" for i in range(seq, seq + batch)
    ).encode()
    sent = time.time()
    try:
        conn.request("POST", "/write?db=bench&precision=ns", body)
        answer = conn.getresponse()
        answer.read()
        status = answer.status
    except (OSError, http.client.HTTPException):
        status = 0
        conn.close()
        conn = http.client.HTTPConnection(host, port, timeout=60)
    log.write(f"{sent:.6f} {time.time():.6f} {batch} {status}\n")
    seq += batch
PY
python3 "$work/writer.py" 127.0.0.1 "$router_port" "$writer_rate" "$writer_batch" "$measurements" "$work/writer.log" &
writer_pid=$!
# phase A starts with the writer's first acknowledged batch (not with Python's start)
for _ in $(seq 200); do
    [[ -s $work/writer.log ]] && break
    kill -0 "$writer_pid" 2>/dev/null || { echo "error: the writer stopped" >&2; exit 1; }
    sleep 0.05
done
: > "$work/snapshots"
snapshot a0
sleep "$phase"
snapshot a1
rss_a=$(hwm)
hwm_reset
kill -0 "$writer_pid" 2>/dev/null || { echo "error: the writer stopped" >&2; exit 1; }

say "phase B: push the table with c, enqueue rebalance --db bench, admin worker --once (the writer keeps writing)"
vcounts a b > "$work/before-push"
snapshot p0
admin routes push "$work/v2.toml" > "$work/push-v2.out" 2>&1 \
    || { echo "error: admin routes push v2.toml failed:" >&2; cat "$work/push-v2.out" >&2; exit 1; }
snapshot p1
recorded=$(redis-cli -h 127.0.0.1 -p 6379 get "$prefix:routing" | grep -c '^\[\[move\]\]' || true)
say "the push recorded $recorded move(s): $(grep -m1 'move(s)' "$work/push-v2.out" || tail -1 "$work/push-v2.out")"
if (( recorded == 0 )); then echo "error: no move recorded; nothing to measure" >&2; exit 1; fi
job=$(admin enqueue rebalance --db bench 2> "$work/enqueue.err" | head -1) \
    || { echo "error: admin enqueue failed:" >&2; cat "$work/enqueue.err" >&2; exit 1; }
[[ -n $job ]] || { echo "error: admin enqueue printed no job id:" >&2; cat "$work/enqueue.err" >&2; exit 1; }
snapshot b0
if ! RUST_LOG=info /usr/bin/time -v -o "$work/worker.time" "$router" admin -c "$work/admin.toml" worker --once \
    > "$work/worker.out" 2> "$work/worker.log"; then
    echo "error: admin worker --once failed (job $job):" >&2
    tail -20 "$work/worker.log" >&2
    redis-cli -h 127.0.0.1 -p 6379 hgetall "$prefix:job:$job" >&2
    exit 1
fi
snapshot b1
rss_b=$(hwm)
sleep 1
snapshot w1
kill "$writer_pid"
wait "$writer_pid" || true
writer_pid=""
state=$(redis-cli -h 127.0.0.1 -p 6379 hget "$prefix:job:$job" state)
summary=$(redis-cli -h 127.0.0.1 -p 6379 hget "$prefix:job:$job" summary)
if [[ $state != done ]]; then
    echo "error: job $job is $state, not done: $summary" >&2
    exit 1
fi
attempts=$(redis-cli -h 127.0.0.1 -p 6379 hget "$prefix:job:$job" attempts)
resumes=$(redis-cli -h 127.0.0.1 -p 6379 hget "$prefix:job:$job" resumes)
echo "    job $job: $summary (attempts $attempts, resumes $resumes)"
if grep -Eq ' (WARN|ERROR) ' "$work/worker.log"; then
    echo "    the worker's warnings and errors:"
    grep -E ' (WARN|ERROR) ' "$work/worker.log" | cut -c1-400 | sed 's/^/      /'
fi
loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)

# the end state: each measurement on exactly one cluster, every point there once
left=$(redis-cli -h 127.0.0.1 -p 6379 get "$prefix:routing" | grep -c '^\[\[move\]\]' || true)
if (( left != 0 )); then echo "error: $left [[move]] entries are left in the routing document" >&2; exit 1; fi
for name in a b c; do counts "$name" | awk -v c="$name" '$2 == "v" {print $1, c, $3}'; done > "$work/after"
acked=$(awk '$4 == 204 {n += $3} END {print n + 0}' "$work/writer.log")
failed=$(awk '$4 != 204 {n += 1} END {print n + 0}' "$work/writer.log")
python3 - "$work" "$total" "$acked" "$failed" "$measurements" <<'PY'
import sys
from collections import defaultdict

work, total, acked, failed, measurements = sys.argv[1], *map(int, sys.argv[2:])
where, points = defaultdict(list), 0
for line in open(f"{work}/after"):
    m, cluster, n = line.split()
    where[m].append(cluster)
    points += int(n)
problems = [f"{m} is on {', '.join(c)}" for m, c in sorted(where.items()) if len(c) != 1]
if len(where) != measurements:
    problems.append(f"{len(where)} measurements, not {measurements}")
if failed:
    problems.append(f"{failed} of the writer's batches were not acknowledged")
if points != total + acked:
    problems.append(f"the clusters hold {points:,} points, not {total:,} loaded + {acked:,} acknowledged")
if problems:
    sys.exit("error: " + "; ".join(problems))
on_c = sum(1 for c in where.values() if c == ["c"])
print(f"    checked: each of the {measurements} measurements on one cluster ({on_c} on c), "
      f"{points:,} points = {total:,} loaded + {acked:,} written by the writer")
PY

python3 - "$work" "$ticks_per_s" "$phase" "$rss_load" "$rss_a" "$rss_b" "$loadavg_before" "$loadavg_after" \
    "$writer_rate" "$writer_batch" "$summary" <<'PY'
import re, sys

work, tps, phase = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rss_load, rss_a, rss_b = (int(x) for x in sys.argv[4:7])
loadavg_before, loadavg_after, rate, batch = sys.argv[7], sys.argv[8], int(sys.argv[9]), int(sys.argv[10])
copied = re.search(r"(\d+) points copied", sys.argv[11])
copied = int(copied.group(1)) if copied else None
snap = {}
for line in open(f"{work}/snapshots"):
    label, t, *ticks = line.split()
    snap[label] = (float(t), [int(x) / tps for x in ticks])
moved = {line.split()[0] for line in open(f"{work}/after") if line.split()[1] == "c"}
before = {m: int(n) for m, n in (line.split() for line in open(f"{work}/before-push"))}
moved_points = sum(before.get(m, 0) for m in moved)
time_v = {}
for line in open(f"{work}/worker.time"):
    key, _, value = line.strip().rpartition(": ")
    time_v[key] = value
worker_cpu = float(time_v["User time (seconds)"]) + float(time_v["System time (seconds)"])
worker_rss = int(time_v["Maximum resident set size (kbytes)"])
wall = snap["b1"][0] - snap["b0"][0]
push = snap["p1"][0] - snap["p0"][0]
batches = [tuple(map(float, line.split())) for line in open(f"{work}/writer.log")]


def writer(t0, t1):
    done = [b for b in batches if t0 <= b[1] < t1]
    ok = sum(b[2] for b in done if b[3] == 204)
    lat = sorted((b[1] - b[0]) * 1000 for b in batches if t0 <= b[0] < t1)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    return ok / (t1 - t0), len(done), pct(0.5), pct(0.99), lat[-1] if lat else float("nan")


def cpu(a, b):
    (t0, x0), (t1, x1) = snap[a], snap[b]
    d = [y - x for x, y in zip(x0, x1)]
    machine, router, na, nb, nc, wr = d
    return t1 - t0, router, na, nb, nc, wr, machine


wa = writer(snap["a0"][0], snap["a1"][0])
wb = writer(snap["b0"][0], snap["b1"][0])
offered = f"{rate:,} points/s offered" if rate else "closed loop (one connection)"
print(f"\nrebalance of {len(moved)} measurements, {moved_points:,} points (held by a and b just before the push; "
      f"load average before {loadavg_before}, after {loadavg_after})")
print(f"  move      {wall:6.1f} s  {moved_points / wall:9,.0f} points/s moved  (admin worker --once wall time; "
      f"the push before it {push:.1f} s)")
if copied is not None:
    print(f"            the job counted {copied:,} points copied ({copied / wall:,.0f} points/s): the writer's points "
          f"written to the old cluster meanwhile and pieces copied again are in it")
print(f"  worker    peak RSS {worker_rss / 1024:.1f} MB, CPU {worker_cpu:.2f} s")
print(f"  writer    {offered}, {batch} lines a batch:")
print(f"    phase A (alone, {phase:.0f} s)   {wa[0]:9,.0f} points/s  latency p50 {wa[2]:.1f} ms, p99 {wa[3]:.1f} ms, max {wa[4]:.1f} ms")
print(f"    phase B (during the move) {wb[0]:9,.0f} points/s  latency p50 {wb[2]:.1f} ms, p99 {wb[3]:.1f} ms, max {wb[4]:.1f} ms")
print(f"    ratio B/A: throughput {wb[0] / wa[0]:.2f}, p50 latency {wb[2] / wa[2]:.2f}, p99 latency {wb[3] / wa[3]:.2f}")
print(f"  router    peak RSS: load {rss_load / 1024:.1f} MB, phase A {rss_a / 1024:.1f} MB, phase B {rss_b / 1024:.1f} MB")
print("  CPU s:                    router  influxd a  influxd b  influxd c  writer  worker  machine (the rest: other load)")
for name, (a, b), extra in (("phase A", ("a0", "a1"), None), ("phase B", ("b0", "b1"), worker_cpu)):
    t, router, na, nb, nc, wr, machine = cpu(a, b)
    w = f"{extra:6.1f}" if extra is not None else "     -"
    other = max(machine - router - na - nb - nc - wr - (extra or 0), 0)
    print(f"    {name} ({t:5.1f} s)   {router:6.1f}   {na:8.1f}   {nb:8.1f}   {nc:8.1f}  {wr:6.1f}  {w}  {machine:6.1f}"
          f"  ({machine / t:.2f} cores busy; other load {other / t:.2f} cores)")
PY
