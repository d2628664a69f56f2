#!/usr/bin/env bash
# The `admin backfill` benchmark: loads SERIES x POINTS points (default
# 200 x 10,000 = 2 million; 4 measurements, fields of all four types: float,
# integer, string, boolean; timestamps spread over WEEKS weeks, so over
# several shard groups) into one influxd (SRC), then, --runs times:
#
#   backfill  `influxdb-router admin backfill` SRC -> a fresh influxd, under
#             /usr/bin/time -v (wall time, the router's CPU and peak RSS)
#   baseline  export SRC's files + `influx -import` into another fresh influxd,
#             the two steps timed together
#
# and after each copy checks that the copy holds exactly SRC's count of every
# field. The order of the two alternates from run to run. It prints each run
# and the medians: points/s of both and their ratio, the router's peak RSS,
# the CPU seconds per million points of every process involved (the router,
# SRC's and DST's influxd; the export, influx -import, DST's influxd), which
# the machine's other load hardly changes, and the CPU the rest of the
# machine used meanwhile, in cores, which is what skews the wall-clock figures.
#
# The export step is `influx_inspect export` when that is on PATH (or given as
# INFLUX_INSPECT=path). Debian's influxdb packages do not ship influx_inspect,
# so otherwise it is benches/tsm-export (a stand-in with the same output,
# reading the TSM files and WAL with influxd's own storage code from Debian's
# golang-github-influxdb-influxdb-dev), built here with Debian's Go.
#
# Everything listens on 127.0.0.1 on free ports, under one temp directory,
# and is stopped and removed at the end. BENCH_ROUTER=path measures another
# router build instead of `cargo build --release` of this tree.
#
# Usage: benches/backfill.sh [--series 200] [--points 10000] [--weeks 3] [--runs 3]
#                            [--batch 10000] [--no-baseline] [--keep]
#
# --batch is the lines per request when loading SRC. --no-baseline skips
# export + import (to see, say, that the router's peak RSS does not grow with
# the size); --keep keeps the temp dir (influxd logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

series=200 points=10000 weeks=3 runs=3 batch=10000 keep=0 baseline=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --series) series=$2; shift 2 ;;
        --points) points=$2; shift 2 ;;
        --weeks) weeks=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --no-baseline) baseline=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

. benches/lib.sh
require_tools

# the export step of the baseline
export_name=none
if (( baseline )); then
    inspect=${INFLUX_INSPECT:-$(command -v influx_inspect || true)}
    if [[ -n $inspect ]]; then
        export_cmd=("$inspect" export)
        export_name="influx_inspect export"
    else
        tsm_export=$root/target/bench-tools/tsm-export
        if [[ ! -x $tsm_export || $root/benches/tsm-export/main.go -nt $tsm_export ]]; then
            if ! have go || [[ ! -d /usr/share/gocode/src/github.com/influxdata/influxdb/tsdb/engine/tsm1 ]]; then
                say "influx_inspect is not installed (Debian does not package it): building the stand-in" \
                    "benches/tsm-export, which needs the Debian packages golang-go and golang-github-influxdb-influxdb-dev"
                apt_install golang-go golang-github-influxdb-influxdb-dev
            fi
            say "building benches/tsm-export against Debian's influxdb 1.x source"
            mkdir -p "$root/target/bench-tools/gopath"
            (cd "$root/benches/tsm-export" && GO111MODULE=off GOFLAGS= CGO_ENABLED=0 \
                GOPATH="$root/target/bench-tools/gopath:/usr/share/gocode" \
                GOCACHE="$root/target/bench-tools/gocache" go build -o "$tsm_export" .)
        fi
        export_cmd=("$tsm_export")
        export_name="tsm-export (influx_inspect export stand-in)"
    fi
fi

release_router "$root"

work=$(mktemp -d /tmp/backfill-bench.XXXXXX)
declare -A node_pid node_port
cleanup() {
    stop_all_nodes
    if [[ $keep == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

check_copy() {
    local name=$1 what=$2
    counts "$name" > "$work/counts-$name"
    if ! cmp -s "$work/counts-src" "$work/counts-$name"; then
        echo "error: $what: the copy's field counts differ from SRC's:" >&2
        diff "$work/counts-src" "$work/counts-$name" | head -20 >&2
        exit 1
    fi
}

say "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "$("$router" --version 2>/dev/null || echo "$router"); $(influxd version 2>/dev/null | head -1); export: $export_name"

start_node src
total=$((series * points))
say "loading $series series x $points points = $total points (4 fields each) over $weeks weeks into SRC"
t0=$(now)
python3 - "$(url src)" "$series" "$points" "$weeks" "$batch" <<'PY'
import http.client, os, queue, sys, threading, urllib.parse

base, series, points, weeks, batch = sys.argv[1], *map(int, sys.argv[2:])
host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port


def post(path, body):
    conn = http.client.HTTPConnection(host, port, timeout=300)
    conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
    answer = conn.getresponse()
    text = answer.read()
    conn.close()
    if answer.status // 100 != 2:
        sys.exit(f"{path}: HTTP {answer.status}: {text[:300]!r}")


post("/query", "q=CREATE DATABASE bench")
measurements = ["cpu", "disk", "net", "app"]
states = ["ok", "warn", "crit", "down, \\\"hard\\\""]
# 2024-01-04T00:00:00Z, a Thursday: autogen's 7-day shard groups start on
# Mondays, so 3 weeks from here touch 4 of them
start = 1704326400 * 10**9
step = weeks * 7 * 86400 * 10**9 // points
keys = [
    f"{measurements[s % 4]},host=host{s:04d},region=region-{s % 5},rack=r{s % 17}"
    for s in range(series)
]
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
    for s, key in enumerate(keys):
        v = (j * 7919 + s * 104729) % 100000
        lines.append(
            f'{key} value={v / 997:.6f},count={v - 50000}i,state="{states[v % 4]}",up={"t" if v % 3 else "f"} {t + s * 1013}'
        )
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

# let SRC write its cache to TSM files and finish compacting: the export reads files
say "waiting until SRC's files settle"
wait_settled bench src
counts src > "$work/counts-src"
counted=$(awk '$2 == "value" {n += $3} END {print n + 0}' "$work/counts-src")
if [[ $counted != "$total" ]]; then
    echo "error: SRC holds $counted points, not $total" >&2
    cat "$work/counts-src" >&2
    exit 1
fi
shards=$(find "$work/src/data/bench/autogen" -mindepth 1 -maxdepth 1 -type d | wc -l)
say "SRC: $counted points in $shards shards, $(du -sm "$work/src/data/bench" | cut -f1) MB of TSM files," \
    "$(find "$work/src/wal/bench" -name '*.wal' -size +0 | wc -l) WAL segments with data"

# one_backfill RUN: admin backfill SRC -> a fresh influxd; appends "backfill ..." to $results
one_backfill() {
    local run=$1 m0 s0 d0 t0 m1 s1 d1 t1 rss_kb router_cpu
    start_node dst
    m0=$(machine_ticks) s0=$(cpu_ticks "${node_pid[src]}") d0=$(cpu_ticks "${node_pid[dst]}") t0=$(now)
    if ! /usr/bin/time -v -o "$work/time.txt" "$router" admin backfill --from "$(url src)" --to "$(url dst)" \
        --db bench --state "$work/state-$run.json" > "$work/backfill.out" 2> "$work/backfill.err"; then
        echo "error: admin backfill failed:" >&2
        tail -20 "$work/backfill.err" >&2
        exit 1
    fi
    t1=$(now) m1=$(machine_ticks) s1=$(cpu_ticks "${node_pid[src]}") d1=$(cpu_ticks "${node_pid[dst]}")
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    router_cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$work/time.txt")
    check_copy dst "run $run: backfill"
    stop_node dst
    echo "  run $run backfill: $(tail -1 "$work/backfill.out")"
    python3 - "$run" "$total" "$ticks_per_s" "$t0" "$t1" "$m0" "$m1" "$s0" "$s1" "$d0" "$d1" "$router_cpu" "$rss_kb" \
        >> "$results" <<'PY'
import sys
run, total, tps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t0, t1, m0, m1, s0, s1, d0, d1, router, rss_kb = map(float, sys.argv[4:])
wall, src, dst = t1 - t0, (s1 - s0) / tps, (d1 - d0) / tps
other = max((m1 - m0) / tps - src - dst - router, 0) / wall
print(f"backfill {wall:.3f} {total / wall:.0f} {router:.2f} {src:.2f} {dst:.2f} {other:.2f} {rss_kb:.0f}")
print(f"  run {run} backfill: {wall:.1f} s, {total / wall:,.0f} points/s, peak RSS {rss_kb / 1024:.1f} MB; CPU s: "
      f"router {router:.2f}, SRC influxd {src:.2f}, DST influxd {dst:.2f}; other load {other:.2f} cores", file=sys.stderr)
PY
}

# one_baseline RUN: export SRC's files, influx -import them into a fresh influxd
one_baseline() {
    local run=$1 m0 s0 d0 t0 m1 s1 d1 t1 t_mid export_mb
    start_node base
    m0=$(machine_ticks) s0=$(cpu_ticks "${node_pid[src]}") d0=$(cpu_ticks "${node_pid[base]}") t0=$(now)
    /usr/bin/time -f '%U %S %M' -o "$work/export.time" "${export_cmd[@]}" -datadir "$work/src/data" \
        -waldir "$work/src/wal" -database bench -out "$work/export.txt" > "$work/export.log" 2>&1 \
        || { cat "$work/export.log" >&2; exit 1; }
    t_mid=$(now)
    /usr/bin/time -f '%U %S %M' -o "$work/import.time" influx -host 127.0.0.1 -port "${node_port[base]}" \
        -import -path "$work/export.txt" -precision ns > "$work/import.log" 2>&1 \
        || { tail -20 "$work/import.log" >&2; exit 1; }
    t1=$(now) m1=$(machine_ticks) s1=$(cpu_ticks "${node_pid[src]}") d1=$(cpu_ticks "${node_pid[base]}")
    if ! grep -q 'Failed 0 inserts' "$work/import.log"; then
        echo "error: influx -import reported failed inserts:" >&2
        tail -5 "$work/import.log" >&2
        exit 1
    fi
    export_mb=$(( $(stat -c %s "$work/export.txt") / 1000000 ))
    check_copy base "run $run: export + import"
    stop_node base
    rm -f "$work/export.txt"
    python3 - "$run" "$total" "$ticks_per_s" "$t0" "$t_mid" "$t1" "$m0" "$m1" "$s0" "$s1" "$d0" "$d1" \
        "$(cat "$work/export.time")" "$(cat "$work/import.time")" "$export_mb" >> "$results" <<'PY'
import sys
run, total, tps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t0, t_mid, t1, m0, m1, s0, s1, d0, d1 = map(float, sys.argv[4:13])
exp_u, exp_s, _ = map(float, sys.argv[13].split())
imp_u, imp_s, _ = map(float, sys.argv[14].split())
export_mb = sys.argv[15]
wall, dst = t1 - t0, (d1 - d0) / tps
exporter, importer = exp_u + exp_s, imp_u + imp_s
other = max((m1 - m0) / tps - (s1 - s0) / tps - dst - exporter - importer, 0) / wall
print(f"baseline {wall:.3f} {total / wall:.0f} {t_mid - t0:.2f} {t1 - t_mid:.2f} {exporter:.2f} {importer:.2f} {dst:.2f} {other:.2f}")
print(f"  run {run} baseline: {wall:.1f} s (export {t_mid - t0:.1f} s, {export_mb} MB; import {t1 - t_mid:.1f} s), "
      f"{total / wall:,.0f} points/s; CPU s: export {exporter:.2f}, influx -import {importer:.2f}, "
      f"DST influxd {dst:.2f}; other load {other:.2f} cores", file=sys.stderr)
PY
}

results=$work/results
: > "$results"
say "$runs runs; the order of backfill and baseline alternates, as the machine's other load drifts"
for run in $(seq "$runs"); do
    if (( baseline == 0 )); then one_backfill "$run"
    elif (( run % 2 )); then one_backfill "$run"; one_baseline "$run"
    else one_baseline "$run"; one_backfill "$run"; fi
done

python3 - "$results" "$total" "$export_name" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import statistics, sys

total, export_name, loadavg = int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = {"backfill": [], "baseline": []}
for line in open(sys.argv[1]):
    kind, *values = line.split()
    rows[kind].append(list(map(float, values)))
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items() if v}
bf_s, bf_rate, router, src, dst, bf_other, rss_kb = med["backfill"]
per_m = 1e6 / total
bf_cpu = router + src + dst
print(f"\nmedians of {len(rows['backfill'])} runs, {total:,} points (load average at the end: {loadavg})")
print(f"  admin backfill   {bf_s:6.1f} s {bf_rate:9,.0f} points/s  peak RSS {rss_kb / 1024:.1f} MB  other load {bf_other:.2f} cores")
print(f"     CPU s per million points: router {router * per_m:.2f}, SRC influxd (reads) {src * per_m:.2f}, "
      f"DST influxd (writes) {dst * per_m:.2f}; total {bf_cpu * per_m:.2f}")
print(f"  with both cores to itself, backfill would need at least max(total CPU / 2, SRC's reads) = "
      f"{max(bf_cpu / 2, src):.1f} s: at most {total / max(bf_cpu / 2, src):,.0f} points/s on this machine")
if not rows["baseline"]:
    sys.exit(0)
bl_s, bl_rate, bl_export, bl_import, exporter, importer, bl_dst, bl_other = med["baseline"]
bl_cpu = exporter + importer + bl_dst
print(f"  export + import  {bl_s:6.1f} s {bl_rate:9,.0f} points/s  ({export_name} {bl_export:.1f} s + influx -import "
      f"{bl_import:.1f} s)  other load {bl_other:.2f} cores")
print(f"     CPU s per million points: export {exporter * per_m:.2f}, influx -import {importer * per_m:.2f}, "
      f"DST influxd (writes) {bl_dst * per_m:.2f}; total {bl_cpu * per_m:.2f}")
print(f"  ratio: backfill's points/s = {bf_rate / bl_rate:.2f}x the baseline's; its CPU per point = "
      f"{bf_cpu / bl_cpu:.2f}x the baseline's")
PY
