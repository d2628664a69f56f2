//! The job queue (`admin enqueue`, `admin jobs`, `admin worker`; SPEC
//! section 8, "Jobs") against the machine's Redis and RabbitMQ and real
//! `influxd`, with the binary's workers as child processes: every job runs
//! exactly once, a job whose worker is killed with `kill -9` resumes on
//! another worker to an exact end state, node locks keep jobs on one node
//! apart (and expire when their holder dies), malformed messages are failed
//! or dead-lettered without stopping the worker, `--wait`, `cancel`, the
//! `create-database` kind through a router, and `enqueue` when Redis or
//! RabbitMQ cannot be reached. Each test has a key prefix of its own
//! ([`JobQueue`]) whose keys and queues are removed at its end.

mod support;

use std::time::{Duration, Instant};

use influxdb_router::control::jobs::amqp::Jobs;
use support::admin::{number_before, Cluster};
use support::dataset::{self, Big, Server};
use support::jobs::{now_ms, JobQueue, Settings, Worker, AMQP};
use support::router::RouterBuilder;
use support::{free_port, wait_until, Influxd};

/// `n` fresh `influxd`, started side by side.
fn start(n: usize) -> Vec<Influxd> {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n).map(|_| s.spawn(Influxd::start)).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("influxd starts"))
                .collect()
        })
    })
}

/// A cluster `main` of `nodes`, named `n0`, `n1`, …
fn cluster(nodes: &[&Server]) -> Cluster {
    nodes
        .iter()
        .enumerate()
        .fold(Cluster::new("main"), |c, (i, s)| {
            c.node(&format!("n{i}"), &s.url, "read-write")
        })
}

/// Waits until `worker` consumes from the queue (its log says so).
async fn ready(worker: &Worker) {
    let ok = wait_until(Duration::from_secs(15), || async {
        worker.log_text().contains("waiting for jobs")
    })
    .await;
    assert!(ok, "the worker is not consuming:\n{}", worker.log_text());
}

/// Points of `db` (field `v` of every measurement).
async fn count_points(server: &Server, db: &str) -> u64 {
    let doc = server.json("SELECT count(\"v\") FROM /.*/", Some(db)).await;
    doc.pointer("/results/0/series")
        .and_then(|s| s.as_array())
        .map(|series| {
            series
                .iter()
                .map(|s| {
                    s.pointer("/values/0/1")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0)
}

/// How often `job running` is logged for `id` across `workers`.
fn runs_logged(id: &str, workers: &[&Worker]) -> usize {
    workers
        .iter()
        .map(|w| {
            w.log_text()
                .lines()
                .filter(|l| l.contains("job running") && l.contains(id))
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_jobs_two_workers_every_job_done_exactly_once() {
    let nodes = start(2);
    let (src, dst) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    let data = dataset::load(&src).await;
    let mut q = JobQueue::new(&[cluster(&[&src, &dst])]);
    let (w1, w2) = (q.worker(&[]), q.worker(&[]));
    // both consume before the first job: prefetch 1 gives each one of them
    ready(&w1).await;
    ready(&w2).await;
    let backup_dir = q.admin.path("backup").display().to_string();
    let ids = [
        q.enqueue(&["sync-schema", "--from", "main/n0", "--to", "main/n1"])
            .await,
        q.enqueue(&["backfill", "--from", "main/n0", "--to", "main/n1"])
            .await,
        q.enqueue(&["backup", "--from", "main/n0", "--out", &backup_dir])
            .await,
    ];
    let mut served = Vec::new();
    for id in &ids {
        let job = q
            .wait_state(
                id,
                &["done", "failed"],
                Duration::from_secs(60),
                &[&w1, &w2],
            )
            .await;
        job.assert_done_once();
        assert_eq!(runs_logged(id, &[&w1, &w2]), 1, "{id}");
        served.push(job.field("worker").to_string());
    }
    assert!(
        served.iter().any(|w| w1.is(w)) && served.iter().any(|w| w2.is(w)),
        "one worker served every job: {served:?}"
    );
    // no message is left, acknowledged or not: none runs a second time
    assert_eq!(q.ready(&q.queue()).await, Some(0));
    for id in &ids {
        assert_eq!(runs_logged(id, &[&w1, &w2]), 1, "{id}");
    }

    // the jobs did their work
    q.run(&["verify", "--from", "main/n0", "--to", "main/n1"])
        .await
        .expect(0);
    let manifest = std::fs::read_to_string(q.admin.path("backup").join("manifest.json"))
        .expect("the backup job wrote its manifest");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("JSON");
    assert_eq!(manifest["points"], data.total() as u64);

    // `admin jobs`: newest first, in JSON and as a table
    let listed = q.run(&["jobs", "--json"]).await;
    listed.expect(0);
    let doc: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    let listed: Vec<&str> = doc["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("an id"))
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    let table = q.run(&["jobs"]).await;
    table.expect(0);
    for (id, kind) in ids.iter().zip(["sync-schema", "backfill", "backup"]) {
        let line = table
            .stdout
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed:\n{}", table.stdout));
        assert!(line.contains(kind) && line.contains("done"), "{line}");
    }
    let one = q.run(&["jobs", &ids[1], "--json"]).await;
    one.expect(0);
    let doc: serde_json::Value = serde_json::from_str(&one.stdout).expect("JSON");
    assert_eq!(doc["state"], "done");
    assert_eq!(doc["progress"]["points"], data.total() as u64, "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_whose_worker_is_killed_resumes_on_another_worker_to_an_exact_copy() {
    let nodes = start(2);
    let (src, dst) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    let big = Big {
        measurements: 6,
        groups: 5,
        per_piece: 5_000,
    };
    let loaded = Instant::now();
    dataset::load_big(&src, "big", big).await;
    eprintln!("loaded {} points in {:?}", big.total(), loaded.elapsed());
    let mut q = JobQueue::new(&[cluster(&[&src, &dst])]);
    let mut a = q.worker(&[]);
    ready(&a).await;
    let id = q
        .enqueue(&[
            "backfill", "--from", &src.url, "--to", &dst.url, "--db", "big",
        ])
        .await;
    let began = Instant::now();
    let recorded = wait_until(Duration::from_secs(30), || async { q.pieces(&id) > 0 }).await;
    assert!(recorded, "no piece recorded:\n{}", a.log_text());
    let job = q.job(&id);
    assert_eq!(job.state(), "running", "{job:#?}");
    assert!(a.is(job.field("worker")), "{job:#?}");
    a.kill9();
    let recorded = q.pieces(&id);
    // the dead worker's lock on the destination stays until it expires
    let mut redis = q.redis();
    let lock = q.lock_key(&dst.url);
    let holder: Option<String> = redis::Commands::get(&mut redis, &lock).expect("GET");
    let asked = now_ms();
    let pttl: i64 = redis::Commands::pttl(&mut redis, &lock).expect("PTTL");
    // no earlier than this: PTTL was read after `asked`
    let lock_expires = asked + pttl.max(0) as u64;
    let holder = holder.unwrap_or_else(|| panic!("no lock {lock} while the job runs"));
    assert!(
        holder.contains(&id) && a.is(&holder) && pttl > 0,
        "{holder} {pttl}"
    );
    let job = q.job(&id);
    assert_eq!(
        job.state(),
        "running",
        "the job ended before its worker could be killed: make the data bigger"
    );
    eprintln!("killed after {recorded} pieces, {:?}", began.elapsed());

    let b = q.worker(&[]);
    let job = q
        .wait_state(&id, &["done", "failed"], Duration::from_secs(90), &[&a, &b])
        .await;
    eprintln!("resumed and done after {:?}", began.elapsed());
    assert_eq!(job.state(), "done", "{job:#?}\n{}", b.log_text());
    assert_eq!(job.number("resumes"), 1, "{job:#?}");
    let workers = job.workers();
    assert_eq!(workers.len(), 2, "{job:#?}");
    assert!(a.is(&workers[0]) && b.is(&workers[1]), "{job:#?}");
    let runs = job.runs();
    assert_eq!(runs.len(), 2, "{job:#?}");
    assert_eq!(
        (runs[0].worker.as_str(), runs[0].end_ms),
        (workers[0].as_str(), None),
        "{job:#?}"
    );
    assert_eq!(runs[1].worker, workers[1], "{job:#?}");
    assert!(runs[1].end_ms.is_some(), "{job:#?}");
    // the second run began only once the dead worker's lock had expired
    assert!(
        runs[1].start_ms + 2 >= lock_expires,
        "started at {} while the lock lasted until {lock_expires}: {job:#?}",
        runs[1].start_ms
    );
    assert_eq!(job.field("worker"), workers[1]);

    let summary = job.field("summary");
    let pieces = number_before(summary, " pieces").expect("pieces in the summary");
    let skipped = number_before(summary, " skipped as done before").unwrap_or(0);
    assert!(
        skipped as usize >= recorded && skipped < pieces,
        "{recorded} pieces were recorded before the kill: {summary}"
    );
    assert_eq!(q.pieces(&id) as u64, pieces, "{summary}");

    q.run(&[
        "verify", "--from", &src.url, "--to", &dst.url, "--db", "big",
    ])
    .await
    .expect(0);
    assert_eq!(count_points(&dst, "big").await, big.total() as u64);
    assert_eq!(q.ready(&q.queue()).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_on_the_same_node_never_overlap_and_jobs_on_other_nodes_run_alongside() {
    let nodes = start(3);
    let (src, d1, d2) = (
        Server::of(&nodes[0]),
        Server::of(&nodes[1]),
        Server::of(&nodes[2]),
    );
    let big = Big {
        measurements: 2,
        groups: 2,
        per_piece: 5_000,
    };
    dataset::load_big(&src, "a", big).await;
    dataset::load_big(&src, "b", big).await;
    let mut q = JobQueue::new(&[cluster(&[&src, &d1, &d2])]);
    let backfill = |to: &'static str, db: &'static str| {
        ["backfill", "--from", "main/n0", "--to", to, "--db", db]
    };
    // queued before the worker starts: its three lanes take one each
    let same_a = q.enqueue(&backfill("main/n1", "a")).await;
    let same_b = q.enqueue(&backfill("main/n1", "b")).await;
    let other = q.enqueue(&backfill("main/n2", "a")).await;
    let w = q.worker(&["--concurrency", "3"]);

    // one of the two jobs on n1 waits for the other's lock, naming it
    let mut waited = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while waited.is_none() && Instant::now() < deadline {
        for (id, holder) in [(&same_a, &same_b), (&same_b, &same_a)] {
            let job = q.job(id);
            if job.state() == "waiting" {
                let on = job.field("waiting_for");
                assert!(
                    on.contains(holder.as_str()) && on.contains(&d1.url),
                    "{job:#?}"
                );
                waited = Some(id.clone());
            }
        }
        if q.job(&same_a).state() == "done" && q.job(&same_b).state() == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut jobs = Vec::new();
    for id in [&same_a, &same_b, &other] {
        let job = q
            .wait_state(id, &["done", "failed"], Duration::from_secs(60), &[&w])
            .await;
        job.assert_done_once();
        jobs.push(job);
    }
    let span = |i: usize| {
        let run = &jobs[i].runs()[0];
        (run.start_ms, run.end_ms.expect("ended"))
    };
    let (a, b, c) = (span(0), span(1), span(2));
    eprintln!("runs on n1: {a:?} {b:?}; on n2: {c:?}");
    assert!(
        a.1 <= b.0 || b.1 <= a.0,
        "two jobs on n1 ran at once: {a:?} and {b:?}"
    );
    let overlap = |x: (u64, u64), y: (u64, u64)| x.0 < y.1 && y.0 < x.1;
    assert!(
        overlap(c, a) || overlap(c, b),
        "the job on n2 ran alongside neither job on n1: {c:?} vs {a:?}, {b:?}"
    );
    assert!(
        waited.is_some(),
        "neither job on n1 was seen waiting for the other's lock"
    );
    // locks are released when their jobs end
    assert!(
        !q.keys().iter().any(|k| k.contains(":lock:")),
        "{:?}",
        q.keys()
    );
    for (db, node) in [("a", &d1), ("b", &d1), ("a", &d2)] {
        assert_eq!(count_points(node, db).await, big.total() as u64, "{db}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_left_by_a_dead_holder_expires_and_the_waiting_job_proceeds() {
    let nodes = start(2);
    let (src, dst) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    dataset::load(&src).await;
    let mut q = JobQueue::new(&[cluster(&[&src, &dst])]);
    // what a worker killed while it held the lock leaves behind (TTL 3 s)
    let holder = "job 20000101T000000-dead0000 on ghost-1-000000.0";
    // it expires no earlier than 3 s from here
    let lock_expires = now_ms() + 3000;
    let set: String = redis::cmd("SET")
        .arg(q.lock_key(&dst.url))
        .arg(holder)
        .arg("PX")
        .arg(3000)
        .query(&mut q.redis())
        .expect("SET");
    assert_eq!(set, "OK");
    let w = q.worker(&[]);
    let id = q
        .enqueue(&["sync-schema", "--from", "main/n0", "--to", "main/n1"])
        .await;
    let job = q
        .wait_state(
            &id,
            &["waiting", "running", "done", "failed"],
            Duration::from_secs(15),
            &[&w],
        )
        .await;
    assert_eq!(job.state(), "waiting", "{job:#?}");
    assert!(job.field("waiting_for").contains(holder), "{job:#?}");
    let table = q.run(&["jobs"]).await;
    assert!(
        table.stdout.contains(&format!("waiting for {holder}")),
        "{}",
        table.output()
    );
    let job = q
        .wait_state(&id, &["done", "failed"], Duration::from_secs(20), &[&w])
        .await;
    job.assert_done_once();
    let start = job.runs()[0].start_ms;
    assert!(
        start + 2 >= lock_expires,
        "ran at {start}, before the lock expired at {lock_expires}"
    );
    assert!(
        dst.databases().await.contains(&dataset::DB.to_string()),
        "the schema was not copied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_are_failed_or_dead_lettered_and_the_worker_goes_on() {
    let nodes = start(1);
    let src = Server::of(&nodes[0]);
    dataset::load(&src).await;
    let mut q = JobQueue::new(&[cluster(&[&src])]);
    let p = q.prefix.clone();
    let (kind_id, flags_id, shape_id) = (
        format!("{p}-kind"),
        format!("{p}-flags"),
        format!("{p}-shape"),
    );
    let dead: Vec<Vec<u8>> = vec![
        b"this is not JSON".to_vec(),
        br#"{"id": "cut off"#.to_vec(),
        br#"{"kind":"verify","args":["--from","main/n0","--to","main/n0"]}"#.to_vec(),
        br#"{"id":"no spaces/slashes","kind":"verify","args":[]}"#.to_vec(),
    ];
    let failed = [
        (
            &kind_id,
            format!(r#"{{"id":"{kind_id}","kind":"format-disk","args":[]}}"#),
            "unknown job kind",
        ),
        (
            &flags_id,
            format!(r#"{{"id":"{flags_id}","kind":"backfill","args":["--from","main/n0"]}}"#),
            "--to",
        ),
        (
            &shape_id,
            format!(r#"{{"id":"{shape_id}","kind":7}}"#),
            "malformed job message",
        ),
    ];
    let jobs = Jobs::connect(AMQP, &q.prefix).await.expect("RabbitMQ");
    for body in &dead {
        jobs.publish_raw(body).await.expect("published");
    }
    for (_, body, _) in &failed {
        jobs.publish_raw(body.as_bytes()).await.expect("published");
    }
    jobs.close().await;
    let good = q
        .enqueue(&["verify", "--from", "main/n0", "--to", "main/n0"])
        .await;
    let mut w = q.worker(&[]);
    q.wait_state(&good, &["done", "failed"], Duration::from_secs(30), &[&w])
        .await
        .assert_done_once();
    assert!(
        w.exited().is_none(),
        "the worker stopped:\n{}",
        w.log_text()
    );

    for (id, _, error) in &failed {
        let job = q.job(id);
        assert_eq!(job.state(), "failed", "{job:#?}");
        assert!(job.field("error").contains(error), "{error}: {job:#?}");
        assert!(!job.field("ended_ms").is_empty(), "{job:#?}");
        assert_eq!(job.field("started_ms"), "", "it ran: {job:#?}");
    }
    assert_eq!(q.ready(&q.queue()).await, Some(0));
    assert_eq!(q.drain(&q.dead_queue()).await, dead);
    // every failed job shows in the list
    let listed = q.run(&["jobs", "--json"]).await;
    listed.expect(0);
    for (id, _, _) in &failed {
        assert!(
            listed.stdout.contains(id.as_str()),
            "{id}:\n{}",
            listed.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_wait_exits_with_the_jobs_result() {
    let nodes = start(1);
    let src = Server::of(&nodes[0]);
    dataset::load(&src).await;
    let mut q = JobQueue::with(
        &[cluster(&[&src])],
        Settings {
            max_attempts: 1,
            ..Settings::default()
        },
    );
    let w = q.worker(&[]);
    let good = q
        .run(&[
            "enqueue", "--wait", "verify", "--from", "main/n0", "--to", "main/n0",
        ])
        .await;
    good.expect(0);
    let id = good.stdout.lines().next().unwrap_or("").trim().to_string();
    q.job(&id).assert_done_once();
    assert!(
        good.stdout.contains(q.job(&id).field("summary")),
        "{}",
        good.output()
    );

    let closed = free_port();
    let from = format!("http://127.0.0.1:{closed}");
    let began = Instant::now();
    let bad = q
        .run(&[
            "enqueue", "backfill", "--from", &from, "--to", "main/n0", "--wait",
        ])
        .await;
    bad.expect(1);
    let id = bad.stdout.lines().next().unwrap_or("").trim().to_string();
    let job = q.job(&id);
    assert_eq!(job.state(), "failed", "{job:#?}\n{}", w.log_text());
    assert_eq!(job.number("attempts"), 1, "{job:#?}");
    assert_eq!(job.runs().len(), 1, "{job:#?}");
    let error = job.field("error");
    assert!(error.contains(&closed.to_string()), "{job:#?}");
    assert!(
        bad.stderr.contains(&format!("job {id} failed")) && bad.stderr.contains(error),
        "{}",
        bad.output()
    );
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_queued_job_is_skipped_and_a_cancelled_running_job_stops() {
    let nodes = start(2);
    let (src, dst) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    // long enough (~5 s in a debug build) to outlast the next heartbeat
    let big = Big {
        measurements: 10,
        groups: 6,
        per_piece: 5_000,
    };
    dataset::load_big(&src, "big", big).await;
    let mut q = JobQueue::new(&[cluster(&[&src, &dst])]);

    // queued, no worker yet
    let queued = q
        .enqueue(&[
            "verify", "--from", "main/n0", "--to", "main/n1", "--db", "big",
        ])
        .await;
    let cancel = q.run(&["jobs", "cancel", &queued]).await;
    cancel.expect(0);
    assert!(cancel.stdout.contains("cancelled"), "{}", cancel.output());
    assert_eq!(q.job(&queued).state(), "cancelled");
    let again = q.run(&["jobs", "cancel", &queued]).await;
    again.expect(1);
    assert!(again.stderr.contains("ended"), "{}", again.output());

    let long = q
        .enqueue(&[
            "backfill", "--from", "main/n0", "--to", "main/n1", "--db", "big",
        ])
        .await;
    let w = q.worker(&[]);
    let ok = wait_until(Duration::from_secs(30), || async { q.pieces(&long) > 0 }).await;
    assert!(ok, "the backfill recorded no piece:\n{}", w.log_text());
    let job = q.job(&queued);
    assert_eq!(job.state(), "cancelled", "{job:#?}");
    assert_eq!(
        (
            job.field("started_ms"),
            job.number("attempts"),
            job.runs().len()
        ),
        ("", 0, 0),
        "the cancelled job ran: {job:#?}"
    );

    // running
    let cancel = q.run(&["jobs", "cancel", &long]).await;
    cancel.expect(0);
    assert!(
        cancel.stdout.contains("cancel requested"),
        "{}",
        cancel.output()
    );
    let asked = Instant::now();
    let job = q
        .wait_state(
            &long,
            &["cancelled", "done", "failed"],
            Duration::from_secs(10),
            &[&w],
        )
        .await;
    eprintln!("cancelled {:?} after the request", asked.elapsed());
    assert_eq!(job.state(), "cancelled", "{job:#?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let pieces = q.pieces(&long);
    let total = big.measurements * big.groups;
    assert!(pieces < total, "it finished ({pieces} of {total} pieces)");
    assert!(job.runs()[0].end_ms.is_some(), "{job:#?}");

    // the worker is free again and the backfill's pieces stop
    let next = q
        .enqueue(&["sync-schema", "--from", "main/n0", "--to", "main/n1"])
        .await;
    q.wait_state(&next, &["done", "failed"], Duration::from_secs(20), &[&w])
        .await
        .assert_done_once();
    assert_eq!(q.pieces(&long), pieces, "the cancelled backfill went on");
    assert_eq!(q.ready(&q.queue()).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_database_job_reaches_a_stopped_node_through_the_routers_queue() {
    let nodes = start(2);
    let (up, down) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    let router = RouterBuilder::new()
        .node("n0", &up.url)
        .node("n1", &down.url)
        .start()
        .await;
    let mut q = JobQueue::new(&[cluster(&[&up, &down])]);
    tokio::task::block_in_place(|| nodes[1].stop());
    router.wait_for_health("n1", false).await;
    let w = q.worker(&[]);
    let run = q
        .run(&[
            "enqueue",
            "create-database",
            "--cluster",
            "main",
            "--db",
            "made by job",
            "--duration",
            "30d",
            "--router",
            &router.url(),
            "--wait",
        ])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.output(), w.log_text());
    let id = run.stdout.lines().next().unwrap_or("").trim().to_string();
    q.job(&id).assert_done_once();
    let policies = |server: Server| async move {
        server
            .rows("SHOW RETENTION POLICIES ON \"made by job\"", None)
            .await
            .iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect::<Vec<_>>()
    };
    let want = vec![(
        serde_json::Value::from("autogen"),
        serde_json::Value::from("720h0m0s"),
    )];
    assert!(up.databases().await.contains(&"made by job".to_string()));
    assert_eq!(policies(up.clone()).await, want);

    tokio::task::block_in_place(|| nodes[1].start_again());
    let arrived = wait_until(Duration::from_secs(20), || async {
        down.databases().await.contains(&"made by job".to_string())
    })
    .await;
    assert!(arrived, "the stopped node never got the database");
    assert_eq!(policies(down.clone()).await, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_fails_fast_and_queues_nothing_when_redis_or_rabbitmq_is_unreachable() {
    let node = Cluster::new("main").node("n0", "http://127.0.0.1:9", "read-write");
    let job = ["enqueue", "verify", "--from", "main/n0", "--to", "main/n0"];
    let closed = free_port();

    let q = JobQueue::with(
        std::slice::from_ref(&node),
        Settings {
            redis_url: format!("redis://127.0.0.1:{closed}/0"),
            ..Settings::default()
        },
    );
    let began = Instant::now();
    let run = q.run(&job).await;
    run.expect(1);
    assert!(
        began.elapsed() < Duration::from_secs(7),
        "{:?}",
        began.elapsed()
    );
    assert!(
        run.stderr.contains("Redis") && run.stderr.contains(&format!("127.0.0.1:{closed}")),
        "{}",
        run.output()
    );
    assert_eq!(run.stdout, "", "an id was printed");
    assert_eq!(q.ready(&q.queue()).await, None, "a queue was declared");
    q.run(&["jobs"]).await.expect(1);

    let q = JobQueue::with(
        std::slice::from_ref(&node),
        Settings {
            amqp_url: format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"),
            ..Settings::default()
        },
    );
    let began = Instant::now();
    let run = q.run(&job).await;
    run.expect(1);
    assert!(
        began.elapsed() < Duration::from_secs(7),
        "{:?}",
        began.elapsed()
    );
    assert!(
        run.stderr.contains("RabbitMQ") && run.stderr.contains(&format!("127.0.0.1:{closed}")),
        "{}",
        run.output()
    );
    assert!(
        !run.stderr.contains("guest:guest"),
        "the password is shown: {}",
        run.output()
    );
    assert_eq!(q.keys(), Vec::<String>::new(), "a record was written");

    // a port that takes connections but never answers: the same, after 5 s
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let hung_redis = JobQueue::with(
        std::slice::from_ref(&node),
        Settings {
            redis_url: format!("redis://127.0.0.1:{port}/0"),
            ..Settings::default()
        },
    );
    let hung_amqp = JobQueue::with(
        std::slice::from_ref(&node),
        Settings {
            amqp_url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            ..Settings::default()
        },
    );
    let began = Instant::now();
    let (redis_run, amqp_run) = tokio::join!(hung_redis.run(&job), hung_amqp.run(&job));
    assert!(
        began.elapsed() < Duration::from_secs(9),
        "{:?}",
        began.elapsed()
    );
    for (run, name) in [(redis_run, "Redis"), (amqp_run, "RabbitMQ")] {
        run.expect(1);
        assert!(
            run.stderr.contains(name) && run.stderr.contains(&format!("127.0.0.1:{port}")),
            "{}",
            run.output()
        );
    }
    assert_eq!(
        hung_amqp.keys(),
        Vec::<String>::new(),
        "a record was written"
    );
    assert_eq!(hung_redis.ready(&hung_redis.queue()).await, None);
    drop(silent);

    // bad flags: exit 2 before anything is written or published
    let q = JobQueue::new(std::slice::from_ref(&node));
    for bad in [
        &["enqueue", "backfill", "--from", "main/n0"][..],
        &["enqueue", "backfill", "--from", "x", "--to", "y", "--bogus"][..],
        &["enqueue", "format-disk"][..],
        &["enqueue", "create-database", "--cluster", "main"][..],
        &["enqueue"][..],
    ] {
        let run = q.run(bad).await;
        run.expect(2);
        assert_eq!(run.stdout, "", "{}", run.output());
    }
    let missing = q.run(&["enqueue", "backfill", "--from", "main/n0"]).await;
    assert!(
        missing.stderr.contains("--to"),
        "the missing flag is not named: {}",
        missing.output()
    );
    assert_eq!(q.keys(), Vec::<String>::new(), "a record was written");
    assert_eq!(q.ready(&q.queue()).await, None, "a queue was declared");
}
