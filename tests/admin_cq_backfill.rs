//! `admin cq-backfill` against real `influxd`: the history it writes for a
//! continuous query is what InfluxDB's own CQ service writes live for the
//! same data (same series, times and values), and what a plain
//! `GROUP BY time()` query computes; a run interrupted after some windows
//! resumes without writing anything twice; names of CQs that do not exist
//! (quotes and newlines included) fail with exit 1 and run nothing; a CQ
//! that groups by local time is refused; and the `cq-backfill` job kind
//! runs the same through a worker, its windows recorded in Redis.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use support::admin::{number_before, Admin, Cluster};
use support::dataset::{Format, Server};
use support::jobs::JobQueue;
use support::Influxd;

const S: i64 = 1_000_000_000;
const INTERVAL: i64 = 2 * S;
const CQ: &str = "CREATE CONTINUOUS QUERY cq ON tele BEGIN SELECT mean(v) AS v, count(v) AS n \
                  INTO tele.autogen.m_2s FROM tele.autogen.m GROUP BY time(2s), host END";

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// The database and the CQ (the CQ service of an `influxd` without it
/// enabled never runs it).
async fn prepare(server: &Server) {
    server.json("CREATE DATABASE tele", None).await;
    server.json(CQ, None).await;
}

/// Lines of `m` for hosts a, b, c every `step` in `[start, end)`, with
/// gaps (each host misses some stretches, longer than a minute) and some
/// points without `v`.
fn lines(start: i64, end: i64, step: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = start;
    while t < end {
        let k = t / step;
        for (h, host) in ["a", "b", "c"].iter().enumerate() {
            let k = k + h as i64 * 7;
            if (t / (100 * S)) % 5 == h as i64 {
                continue; // this host is silent for 100 s of every 500 s
            }
            let field = if k % 11 == 0 {
                format!("w={}", k % 3)
            } else {
                format!("v={}", (k * 37 + h as i64 * 13) % 101) // integers: exact means
            };
            out.push(format!("m,host={host} {field} {t}"));
        }
        t += step;
    }
    out
}

async fn write(server: &Server, lines: &[String]) {
    for batch in lines.chunks(5000) {
        server.write("tele", "autogen", batch.join("\n")).await;
    }
}

/// One aggregated point: (host, time, v, n).
type Point = (String, i64, String, String);

/// The points of `q` (series grouped by host), rows whose every value is null left out.
async fn points(server: &Server, q: &str) -> Vec<Point> {
    let (status, body) = server.raw(q, Some("tele"), Format::Json).await;
    let doc: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 200, "{q}: {doc}");
    assert!(doc["results"][0].get("error").is_none(), "{q}: {doc}");
    let mut out = Vec::new();
    for s in doc["results"][0]["series"].as_array().into_iter().flatten() {
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let at = |name: &str| columns.iter().position(|c| *c == name);
        for row in s["values"].as_array().into_iter().flatten() {
            let value = |name: &str| at(name).map_or(Value::Null, |i| row[i].clone());
            let host = match at("host") {
                Some(i) => row[i].as_str().unwrap().to_string(),
                None => s["tags"]["host"].as_str().unwrap().to_string(),
            };
            let (v, n) = (value("v"), value("n"));
            if v.is_null() && n.is_null() {
                continue;
            }
            out.push((
                host,
                value("time").as_i64().unwrap(),
                v.to_string(),
                n.to_string(),
            ));
        }
    }
    out.sort();
    out
}

/// What the CQ wrote in `[start, end)`.
async fn written(server: &Server, start: i64, end: i64) -> Vec<Point> {
    points(
        server,
        &format!("SELECT * FROM m_2s WHERE time >= {start} AND time < {end}"),
    )
    .await
}

/// What InfluxDB computes for the CQ's SELECT over `[start, end)`.
async fn computed(server: &Server, start: i64, end: i64) -> Vec<Point> {
    computed_by(server, "2s", start, end).await
}

/// What InfluxDB computes for the CQ's SELECT with intervals of `interval`
/// over `[start, end)`, interval by interval (as the CQ service runs it).
async fn computed_by(server: &Server, interval: &str, start: i64, end: i64) -> Vec<Point> {
    points(
        server,
        &format!(
            "SELECT mean(v) AS v, count(v) AS n FROM m WHERE time >= {start} AND time < {end} \
             GROUP BY time({interval}), host fill(none)"
        ),
    )
    .await
}

fn start_pair() -> (Influxd, Influxd) {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let live = s.spawn(Influxd::start_with_cq_service);
            let plain = Influxd::start();
            (live.join().expect("influxd starts"), plain)
        })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn backfilled_history_equals_what_the_cq_writes_live() {
    let (live_node, hist_node) = start_pair();
    let (live, hist) = (Server::of(&live_node), Server::of(&hist_node));
    for server in [&live, &hist] {
        prepare(server).await;
    }
    let now = now_ns();
    let history = (
        (now - 3 * 3600 * S) / INTERVAL * INTERVAL + S / 2,
        now - 3600 * S,
    );
    let old = lines(history.0, history.1, 700_000_000);
    for server in [&live, &hist] {
        write(server, &old).await;
    }
    // recent data, all written before its intervals come: the live CQ
    // computes each of them once it is over
    let t0 = (now_ns() / INTERVAL + 3) * INTERVAL;
    let t1 = t0 + 12 * S;
    let recent = lines(t0, t1, 50_000_000);
    for server in [&live, &hist] {
        write(server, &recent).await;
    }
    assert!(
        now_ns() < t0,
        "writing took too long: the live CQ may have run before its data was in"
    );
    let expected_last = computed(&hist, t1 - INTERVAL, t1).await;
    assert!(!expected_last.is_empty());
    tokio::time::sleep(Duration::from_nanos((t1 - now_ns()).max(0) as u64)).await;
    let done = support::wait_until(Duration::from_secs(20), || async {
        written(&live, t1 - INTERVAL, t1).await.len() == expected_last.len()
    })
    .await;
    assert!(
        done,
        "the live CQ did not run:\n{}",
        live_node.log_tail(4000)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let live_recent = written(&live, t0, t1).await;
    assert!(live_recent.len() >= 6, "{live_recent:?}");
    assert!(written(&live, history.0, history.1).await.is_empty());

    let admin = Admin::with_clusters(&[
        Cluster::new("hist").node("h", &hist.url, "read-write"),
        Cluster::new("live").node("l", &live.url, "read-write"),
    ]);
    // by default: every node of the clusters holding the database (here `hist`)
    let start = (history.0 + 1_000_000).to_string();
    let run = admin
        .run(&[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "cq",
            "--start",
            &start,
            "--end",
            &t1.to_string(),
        ])
        .await;
    run.expect(0);
    let summary = run.stdout.trim();
    assert!(
        summary.contains("aligned to whole 2s intervals"),
        "{summary}"
    );
    assert!(summary.contains("on 1 node,"), "{summary}");

    // the recent intervals: exactly what the CQ wrote live
    assert_eq!(written(&hist, t0, t1).await, live_recent);
    // the history: what InfluxDB computes for the CQ's query
    let aligned_start = history.0 / INTERVAL * INTERVAL;
    let hist_old = written(&hist, aligned_start, history.1 + INTERVAL).await;
    assert!(hist_old.len() > 1000, "{}", hist_old.len());
    assert_eq!(
        hist_old,
        computed(&hist, aligned_start, history.1 + INTERVAL).await
    );
    let all = written(&hist, 0, i64::MAX - 1).await;
    assert_eq!(
        number_before(summary, "points written"),
        Some(all.len() as u64),
        "{summary}"
    );

    // and the live node's history, with --to: then it holds exactly what
    // the other one does
    admin
        .run(&[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "cq",
            "--start",
            &start,
            "--end",
            &t0.to_string(),
            "--to",
            "live",
        ])
        .await
        .expect(0);
    assert_eq!(written(&live, 0, i64::MAX - 1).await, all);
}

/// The state file's entries, after its header.
fn entries(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("the state file");
    text.lines().skip(1).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_run_resumes_without_writing_twice_and_bad_names_run_nothing() {
    let node = tokio::task::block_in_place(Influxd::start);
    let server = Server::of(&node);
    prepare(&server).await;
    let (start, end) = (1_600_000_020 * S, 1_600_000_020 * S + 2 * 3600 * S);
    write(&server, &lines(start, end, 900_000_000)).await;
    let admin = Admin::with_clusters(&[Cluster::new("main").node("n", &server.url, "read-write")]);
    let state = admin.path("cq.state");
    let state_arg = state.display().to_string();
    let (start_arg, end_arg) = (start.to_string(), end.to_string());
    let args = [
        "cq-backfill",
        "--db",
        "tele",
        "--cq",
        "cq",
        "--start",
        &start_arg,
        "--end",
        &end_arg,
        "--state",
        &state_arg,
    ];
    let first = admin.run(&args).await;
    first.expect(0);
    // 3600 intervals of 2s, 1000 per statement
    assert!(
        first
            .stdout
            .contains("4 windows (up to 1000 intervals each)"),
        "{}",
        first.stdout
    );
    let total = number_before(&first.stdout, "points written").unwrap();
    let after_first = written(&server, start, end).await;
    assert_eq!(after_first.len() as u64, total);
    assert_eq!(after_first, computed(&server, start, end).await);

    // as if the run had been killed after two windows
    let lines_written = entries(&state);
    assert_eq!(lines_written.len(), 4, "{lines_written:?}");
    let header = std::fs::read_to_string(&state)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        &state,
        format!("{header}\n{}\n{}\n", lines_written[0], lines_written[1]),
    )
    .unwrap();
    let done_before: u64 = lines_written[..2]
        .iter()
        .map(|l| {
            let entry: Value = serde_json::from_str(l).unwrap();
            entry["detail"]["written"].as_u64().unwrap()
        })
        .sum();
    assert!(done_before > 0 && done_before < total);
    let again = admin.run(&args).await;
    again.expect(0);
    assert!(
        again.stdout.contains("2 skipped as done before"),
        "{}",
        again.stdout
    );
    assert_eq!(
        number_before(&again.stdout, "points written"),
        Some(total - done_before),
        "{}",
        again.stdout
    );
    assert_eq!(entries(&state).len(), 4);
    assert_eq!(written(&server, start, end).await, after_first);
    let third = admin.run(&args).await;
    third.expect(0);
    assert!(
        third.stdout.contains("0 points written"),
        "{}",
        third.stdout
    );
    assert!(third.stdout.contains("4 skipped"), "{}", third.stdout);
    let mut restart = args.to_vec();
    restart.push("--restart");
    let redone = admin.run(&restart).await;
    redone.expect(0);
    assert_eq!(number_before(&redone.stdout, "points written"), Some(total));
    assert_eq!(written(&server, start, end).await, after_first);

    // fill(0) fills the empty intervals between data when several run at
    // once; one by one (as the CQ service runs them) nothing is filled
    server
        .json(
            "CREATE CONTINUOUS QUERY zero ON tele BEGIN SELECT mean(v) AS v, count(v) AS n \
             INTO m_zero FROM m GROUP BY time(1m), host fill(0) END",
            None,
        )
        .await;
    let run = admin
        .run(&[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "zero",
            "--start",
            &start_arg,
            "--end",
            &end_arg,
        ])
        .await;
    run.expect(0);
    assert!(
        run.stdout
            .contains("120 windows (one interval each: fill(0)"),
        "{}",
        run.stdout
    );
    let zero = points(
        &server,
        &format!("SELECT * FROM m_zero WHERE time >= {start} AND time < {end}"),
    )
    .await;
    assert!(!zero.is_empty());
    assert_eq!(zero, computed_by(&server, "1m", start, end).await);

    // names that are not there fail, naming them, and run nothing
    for name in [
        "nope",
        "cq\"; DROP DATABASE tele; --",
        "cq\nDROP DATABASE tele",
        "CQ",
    ] {
        let run = admin
            .run(&[
                "cq-backfill",
                "--db",
                "tele",
                "--cq",
                name,
                "--start",
                &start_arg,
                "--end",
                &end_arg,
            ])
            .await;
        run.expect(1);
        assert!(
            run.stderr.contains("no continuous query") && run.stderr.contains(&format!("{name:?}")),
            "{}",
            run.output()
        );
    }
    let run = admin
        .run(&[
            "cq-backfill",
            "--db",
            "tele'; DROP DATABASE tele",
            "--cq",
            "cq",
            "--start",
            &start_arg,
            "--end",
            &end_arg,
        ])
        .await;
    run.expect(1);
    assert!(server.databases().await.contains(&"tele".to_string()));
    assert_eq!(written(&server, start, end).await, after_first);

    // usage
    for bad in [
        &[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "cq",
            "--start",
            &end_arg,
            "--end",
            &start_arg,
        ][..],
        &[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "cq",
            "--start",
            "yesterday",
            "--end",
            &end_arg,
        ][..],
        &[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "cq",
            "--start",
            &start_arg,
        ][..],
    ] {
        admin.run(bad).await.expect(2);
    }

    // a CQ whose intervals follow local time cannot be aligned: refused
    server
        .json(
            "CREATE CONTINUOUS QUERY local ON tele BEGIN SELECT max(v) INTO m_day FROM m \
             GROUP BY time(1d) tz('Europe/Paris') END",
            None,
        )
        .await;
    let run = admin
        .run(&[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "local",
            "--start",
            &start_arg,
            "--end",
            &end_arg,
        ])
        .await;
    run.expect(1);
    assert!(run.stderr.contains("tz()"), "{}", run.output());
    assert!(points(&server, "SELECT * FROM m_day").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cq_backfill_job_runs_through_a_worker() {
    let node = tokio::task::block_in_place(Influxd::start);
    let server = Server::of(&node);
    prepare(&server).await;
    let (start, end) = (1_500_000_000 * S, 1_500_000_000 * S + 3600 * S);
    write(&server, &lines(start, end, 1_300_000_000)).await;
    let mut q = JobQueue::new(&[Cluster::new("main").node("n", &server.url, "read-write")]);
    let worker = q.worker(&[]);
    let (start_arg, end_arg) = (start.to_string(), end.to_string());
    let id = q
        .enqueue(&[
            "cq-backfill",
            "--db",
            "tele",
            "--cq",
            "cq",
            "--start",
            &start_arg,
            "--end",
            &end_arg,
        ])
        .await;
    let job = q
        .wait_state(
            &id,
            &["done", "failed"],
            Duration::from_secs(60),
            &[&worker],
        )
        .await;
    job.assert_done_once();
    assert_eq!(job.field("kind"), "cq-backfill");
    // 1800 intervals: two windows, each recorded for the one node
    assert_eq!(q.pieces(&id), 2, "{job:#?}");
    assert_eq!(job.progress()["pieces_total"], 2, "{job:#?}");
    let got = written(&server, start, end).await;
    assert!(!got.is_empty());
    assert_eq!(got, computed(&server, start, end).await);
    assert_eq!(
        number_before(job.field("summary"), "points written"),
        Some(got.len() as u64),
        "{job:#?}"
    );
}
