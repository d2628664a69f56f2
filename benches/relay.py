#!/usr/bin/env python3
"""The relay load benchmark: the router against sending straight to a node.

Run through benches/relay.sh, which builds the release binaries and installs
wrk when it is missing. Everything listens on 127.0.0.1 and is stopped at the
end. The router runs alone on core 0 (taskset); the sink nodes
(examples/sink.rs) and wrk share core 1. Each scenario is run --runs times;
every run starts a fresh router (so its peak RSS is that run's), measures
wrk with 32 connections through the router, then the same load straight to
one sink (the baseline), and the table shows medians and their ratio.

Scenarios:
  a  5,000-line (~510 KB) batches to a cluster of 2 nodes
  b  10-line batches to the same cluster
  c  like a, with a shard rule on the database: every line is parsed and the
     batch is split by measurement over two clusters of 2 nodes
  d  like a, with one of the two nodes stalled (accepts, never answers): its
     copy goes to its durable queue; measured once the health checker has
     marked it down; its baseline is scenario a's router figure
  e  a SELECT answered by the node (100 rows of JSON), through the router
     and direct
  f  like b, with coalescing on ([write] coalesce_delay = "1ms"): the small
     writes of the 32 clients go to each node merged
  g  like a, with coalescing on as in f: large batches are not merged, so g
     should match a
  h  Prometheus remote write (/api/v1/prom/write): a snappy protobuf
     WriteRequest of 500 samples (Prometheus's default max_samples_per_send,
     built by examples/prom_body.rs) to the cluster of 2 nodes: checked, then
     forwarded unchanged; shown as samples/s next to the same body sent
     straight to a sink
  i  like h, with the shard rule of c: decompressed, split by metric name
     over two clusters of 2 nodes, each part compressed again
  l  like a, with every [limits] limit on, set so high that nothing is
     refused, and the writes carrying u and p so that the user limit is
     taken too: what the limits cost (compare with a in the same run)

--extra-config FILE appends a TOML file to every router configuration (a
section the scenario does not set itself, like [limits] or [write]).

--big-lines N changes the 5,000 lines of the large batch (a, c, d, g, l), to
see at which body size merging stops paying (against a router build
without a size limit on merged bodies, through BENCH_ROUTER).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# BENCH_ROUTER=/path/to/influxdb-router measures another build (an A/B against an older commit)
ROUTER = os.environ.get("BENCH_ROUTER") or os.path.join(ROOT, "target", "release", "influxdb-router")
SINK = os.path.join(ROOT, "target", "release", "examples", "sink")
PROM_BODY = os.path.join(ROOT, "target", "release", "examples", "prom_body")
PROM_SAMPLES = 500
ROUTER_PORT = 15296
SINK_PORTS = [18201, 18202, 18203, 18204]
STALL_PORT = 18209
CLK_TCK = os.sysconf("SC_CLK_TCK")
MEASUREMENTS = ["cpu", "mem", "disk", "net", "swap", "system", "processes", "kernel"]

WRK_SCRIPT = r"""
local body_file = os.getenv("BENCH_BODY")
if body_file ~= nil and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "text/plain; charset=utf-8"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.stderr:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def write_batch(path, lines, measurements):
    """Line protocol like Telegraf's: ~102 bytes a line, 5 lines in a row of
    one measurement (as one input's gather produces), 8 measurements."""
    base = 1_764_115_200_000_000_000
    with open(path, "w") as f:
        for i in range(lines):
            m = measurements[(i // 5) % len(measurements)]
            f.write(
                f"{m},host=server{i % 50:02d},region=eu-west-{i % 3} "
                f"usage_user={i % 97}.25,system={i % 13}.5,idle={(i * 7) % 100}.75,n={i % 10000}i "
                f"{base + i * 1_000_000}\n"
            )
    return os.path.getsize(path)


# scenario l: limits far above what one core can relay, so none refuses
GENEROUS_LIMITS = """
[limits]
client_requests = "1000000/s"
client_bytes = "1TiB/s"
user_bytes = "1TiB/s"
database_bytes = { "telemetry*" = "1TiB/s", "bench*" = "1TiB/s" }
client_queries = 10000
"""


def config(scenario, work, extra=""):
    return base_config(scenario, work) + extra


def base_config(scenario, work):
    nodes = lambda ports: ", ".join(
        f'{{ name = "n{p}", url = "http://127.0.0.1:{p}" }}' for p in ports
    )
    head = f"""
[server]
bind = "127.0.0.1:{ROUTER_PORT}"
[buffer]
dir = "{work}/queue"
max_size_per_node = "2GiB"
on_full = "drop-oldest"
[log]
level = "warn"
"""
    if scenario in "ci":
        return head + f"""
[routing]
default_cluster = "c1"
[[cluster]]
name = "c1"
nodes = [{nodes(SINK_PORTS[:2])}]
[[cluster]]
name = "c2"
nodes = [{nodes(SINK_PORTS[2:])}]
[[route]]
database = "bench"
shard = ["c1", "c2"]
"""
    if scenario == "d":
        return head + f"""
[write]
timeout = "2s"
[health]
interval = "250ms"
timeout = "200ms"
unhealthy_after = 2
[[cluster]]
name = "main"
nodes = [{nodes([SINK_PORTS[0], STALL_PORT])}]
"""
    if scenario == "l":
        head += GENEROUS_LIMITS
    if scenario in "fg":
        head += """
[write]
coalesce_delay = "1ms"
coalesce_max_bytes = "1MiB"
"""
    return head + f"""
[[cluster]]
name = "main"
nodes = [{nodes(SINK_PORTS[:2])}]
"""


def wait_port(port, deadline=10.0):
    started = time.time()
    while time.time() - started < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {deadline}s")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def wrk(url, body, seconds, script):
    env = dict(os.environ, BENCH_BODY=body or "")
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "--timeout", "10s",
           "-s", script, url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    result = None
    for line in out.stderr.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if result is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    return result


def wait_node_down(deadline=15.0):
    started = time.time()
    while time.time() - started < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ROUTER_PORT}/health", timeout=1) as r:
                doc = json.load(r)
        except urllib.error.HTTPError as e:
            doc = json.load(e)
        except OSError:
            doc = None
        if doc and doc["clusters"][0]["healthy_nodes"] == 1:
            return
        time.sleep(0.05)
    raise RuntimeError("the stalled node was not marked down")


class Router:
    def __init__(self, scenario, work, extra=""):
        shutil.rmtree(f"{work}/queue", ignore_errors=True)
        path = f"{work}/router-{scenario}.toml"
        with open(path, "w") as f:
            f.write(config(scenario, work, extra))
        wrap = []
        if os.environ.get("BENCH_PERF"):
            # profile the router: BENCH_PERF=/tmp/perf.data benches/relay.sh --runs 1 --scenarios a
            # (the CPU and RSS columns are then perf's own, not the router's)
            wrap = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-o",
                    f"{os.environ['BENCH_PERF']}.{scenario}", "--"]
        self.proc = subprocess.Popen(
            wrap + ["taskset", "-c", "0", ROUTER, "serve", "-c", path],
            stdout=subprocess.DEVNULL, stderr=open(f"{work}/router.log", "a"),
        )
        wait_port(ROUTER_PORT)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(scenario, args, work, bodies, script):
    body = {"a": bodies["big"], "b": bodies["small"], "c": bodies["big"], "d": bodies["big"], "e": None,
            "f": bodies["small"], "g": bodies["big"], "h": bodies.get("prom"), "i": bodies.get("prom"),
            "l": bodies["big"]}[scenario]
    size = os.path.getsize(body) if body else 0
    if scenario == "e":
        path = "/query?db=bench&q=SELECT+usage_idle+FROM+cpu+WHERE+time+%3E+now()+-+1h+LIMIT+100"
    elif scenario in "hi":
        path = "/api/v1/prom/write?db=bench"
    elif scenario == "l":
        path = "/write?db=bench&u=bench&p=bench"
    else:
        path = "/write?db=bench"
    router = Router(scenario, work, args.extra)
    try:
        if scenario == "d":
            wait_node_down()
        if args.warmup > 0:
            wrk(f"http://127.0.0.1:{ROUTER_PORT}{path}", body, args.warmup, script)
        before = cpu_ticks(router.proc.pid)
        r = wrk(f"http://127.0.0.1:{ROUTER_PORT}{path}", body, args.duration, script)
        after = cpu_ticks(router.proc.pid)
        rss = peak_rss_kib(router.proc.pid)
        alive = router.proc.poll() is None
    finally:
        router.stop()
    if not alive:
        raise RuntimeError("the router died during the run; see its log")
    d = None
    if scenario != "d":
        d = wrk(f"http://127.0.0.1:{SINK_PORTS[0]}{path}", body, args.duration, script)
    secs = r["duration_us"] / 1e6
    row = {
        "rps": r["requests"] / secs,
        "mbps": r["requests"] * size / secs / 1e6,
        "cpu_ms": (after - before) * 1000 / CLK_TCK / max(r["requests"], 1),
        "rss_mb": rss / 1024,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"],
    }
    if d:
        dsecs = d["duration_us"] / 1e6
        row.update({"direct_rps": d["requests"] / dsecs, "direct_mbps": d["requests"] * size / dsecs / 1e6,
                    "direct_p50_ms": d["p50_us"] / 1000, "direct_p99_ms": d["p99_us"] / 1000})
    if scenario in "hi":
        row["samples_per_s"] = row["rps"] * PROM_SAMPLES
        if d:
            row["direct_samples_per_s"] = row["direct_rps"] * PROM_SAMPLES
    return row


def median_rows(rows):
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before measuring")
    parser.add_argument("--scenarios", default="abcdefghil")
    parser.add_argument("--big-lines", type=int, default=5000, help="lines of the large batch")
    parser.add_argument("--json", help="also write the medians and every run here")
    parser.add_argument("--extra-config", metavar="FILE",
                        help="TOML appended to every router configuration")
    args = parser.parse_args()
    args.extra = ""
    if args.extra_config:
        with open(args.extra_config) as f:
            args.extra = "\n" + f.read()
    if os.cpu_count() < 2:
        sys.exit("this benchmark needs 2 cores (router on core 0, load and sinks on core 1)")

    work = tempfile.mkdtemp(prefix="relay-bench-")
    sinks = subprocess.Popen(
        ["taskset", "-c", "1", SINK] + [f"127.0.0.1:{p}" for p in SINK_PORTS]
        + ["--stall", f"127.0.0.1:{STALL_PORT}"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for p in SINK_PORTS + [STALL_PORT]:
            wait_port(p)
        script = f"{work}/bench.lua"
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        bodies = {"big": f"{work}/big.txt", "small": f"{work}/small.txt"}
        big = write_batch(bodies["big"], args.big_lines, MEASUREMENTS)
        small = write_batch(bodies["small"], 10, MEASUREMENTS)
        print(f"batches: {args.big_lines:,} lines = {big:,} bytes; 10 lines = {small:,} bytes")
        if any(s in "hi" for s in args.scenarios):
            bodies["prom"] = f"{work}/prom.bin"
            made = subprocess.run([PROM_BODY, bodies["prom"], str(PROM_SAMPLES)],
                                  capture_output=True, text=True, check=True)
            print(f"remote write: {made.stdout.strip()}")
        print(f"{args.runs} runs x {args.duration}s per scenario, 32 connections, wrk -t1\n")
        runs = {s: [] for s in args.scenarios}
        for i in range(args.runs):
            for s in args.scenarios:
                row = measure(s, args, work, bodies, script)
                runs[s].append(row)
                print(f"  run {i + 1} {s}: {row['rps']:,.0f} req/s, {row['mbps']:,.0f} MB/s, "
                      f"{row['cpu_ms']:.3f} ms CPU/req, {row['rss_mb']:.1f} MB peak RSS, "
                      f"direct {row.get('direct_rps', 0):,.0f} req/s, errors {row['errors']}", flush=True)
        medians = {s: median_rows(rows) for s, rows in runs.items()}
        report(medians, args.big_lines)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"medians": medians, "runs": runs}, f, indent=1)
    finally:
        sinks.kill()
        sinks.wait()
        shutil.rmtree(work, ignore_errors=True)


def report(medians, big_lines):
    names = {"a": "a {}-line, 2 nodes", "b": "b 10-line, 2 nodes", "c": "c {}-line, split",
             "d": "d {}-line, 1 stalled", "e": "e SELECT 100 rows", "f": "f 10-line, coalesced",
             "g": "g {}-line, coalesced", "h": "h prom write, 2 nodes", "i": "i prom write, split",
             "l": "l {}-line, limits on"}
    names = {s: name.format(big_lines) for s, name in names.items()}
    print("\nmedians                  req/s     MB/s  CPU ms/req  peak RSS   p50 ms   p99 ms | "
          "direct req/s  direct MB/s  direct p99 | ratio")
    for s, m in medians.items():
        if s in "dl" and "a" in medians:
            base, base_name = medians["a"]["rps"], "of a"
        elif "direct_rps" in m:
            base, base_name = m["direct_rps"], "of direct"
        else:
            base, base_name = None, ""
        direct = (f"{m['direct_rps']:12,.0f} {m['direct_mbps']:12,.0f} {m['direct_p99_ms']:11.2f}"
                  if "direct_rps" in m else f"{'':12} {'':12} {'':11}")
        ratio = f"{m['rps'] / base:.2f} {base_name}" if base else ""
        errors = f"  ({m['errors']:.0f} errors)" if m["errors"] else ""
        print(f"{names[s]:<23} {m['rps']:7,.0f} {m['mbps']:8,.0f} {m['cpu_ms']:11.3f} {m['rss_mb']:7.1f}MB "
              f"{m['p50_ms']:8.2f} {m['p99_ms']:8.2f} | {direct} | {ratio}{errors}")
    prom = [s for s in medians if "samples_per_s" in medians[s]]
    if prom:
        print(f"\nPrometheus remote write ({PROM_SAMPLES} samples a request)   samples/s | direct samples/s | ratio")
        for s in prom:
            m = medians[s]
            direct = m.get("direct_samples_per_s")
            print(f"{names[s]:<45} {m['samples_per_s']:11,.0f} | {direct or 0:16,.0f} | "
                  f"{m['samples_per_s'] / direct if direct else 0:.2f}")


if __name__ == "__main__":
    main()
