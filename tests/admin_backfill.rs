//! `admin backfill` between real `influxd` servers: the copy is exact
//! (every answer of the destination equals the source's, byte for byte,
//! per policy, measurement and shard group), `verify` agrees, a run killed
//! with `kill -9` resumes from its state file to the same end state, and a
//! cluster as the destination fills every write-enabled node.

mod support;

use std::time::{Duration, Instant};

use support::admin::{number_before, parse_rfc3339, window_in, Admin, Cluster, Run};
use support::compare::{assert_same, count_rows, shard_groups, snapshot};
use support::dataset::{self, Big, Format, Server, DB, DB2};
use support::Influxd;

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

/// The summary line of a backfill.
fn summary(run: &Run) -> String {
    run.stdout
        .lines()
        .find(|l| l.starts_with("backfill: "))
        .unwrap_or_else(|| panic!("no summary line:\n{}", run.output()))
        .to_string()
}

/// `dst` holds exactly what `src` holds in `db`.
async fn assert_copied(src: &Server, dst: &Server, db: &str) {
    let groups = shard_groups(src, db).await;
    assert!(!groups.is_empty(), "{db} on the source has no shard groups");
    let expected = snapshot(src, db, &groups).await;
    let actual = snapshot(dst, db, &groups).await;
    assert_same(&expected, &actual);
    assert_eq!(shard_groups(dst, db).await, groups, "shard groups of {db}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_copies_every_point_exactly_and_verify_finds_no_difference() {
    let nodes = start(2);
    let (src, dst) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    let data = dataset::load(&src).await;
    let admin = Admin::new();
    let state = admin.path("backfill.state").display().to_string();
    let args = [
        "backfill",
        "--from",
        &src.spec(),
        "--to",
        &dst.spec(),
        "--state",
        &state,
    ];
    let run = admin.run(&args).await;
    run.expect(0);
    let line = summary(&run);
    assert_eq!(
        number_before(&line, " points,"),
        Some(data.total() as u64),
        "{line}"
    );
    assert!(!line.contains("skipped"), "{line}");

    for db in [DB, DB2] {
        // the source holds the dataset, so the comparison below is not empty
        let groups = shard_groups(&src, db).await;
        assert_eq!(snapshot(&src, db, &groups).await.rows, data.counts(db));
        assert_copied(&src, &dst, db).await;
    }

    let verify = admin
        .run(&["verify", "--from", &src.spec(), "--to", &dst.spec()])
        .await;
    verify.expect(0);
    let verify = admin
        .run(&[
            "verify",
            "--from",
            &src.spec(),
            "--to",
            &dst.spec(),
            "--json",
        ])
        .await;
    verify.expect(0);
    let doc: serde_json::Value = serde_json::from_str(&verify.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", verify.output()));
    assert_eq!(doc["equal"], true, "{doc}");
    assert!(doc["pieces"].as_u64().unwrap_or(0) > 0, "{doc}");
    assert_eq!(
        doc["differences"].as_array().map(Vec::len),
        Some(0),
        "{doc}"
    );

    // the same command again: every piece is done, nothing changes
    let again = admin.run(&args).await;
    again.expect(0);
    let line = summary(&again);
    let pieces = number_before(&line, " pieces").expect("pieces in the summary");
    assert!(pieces > 0, "{line}");
    assert_eq!(
        number_before(&line, " skipped as done before"),
        Some(pieces),
        "{line}"
    );
    assert_copied(&src, &dst, DB).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_of_one_policy_measurement_and_range_copies_only_that() {
    let nodes = start(2);
    let (src, dst) = (Server::of(&nodes[0]), Server::of(&nodes[1]));
    let data = dataset::load(&src).await;
    let admin = Admin::new();
    let (start, end) = (dataset::T2015, dataset::T2020);
    let run = admin
        .run(&[
            "backfill",
            "--from",
            &src.spec(),
            "--to",
            &dst.spec(),
            "--db",
            DB,
            "--rp",
            "autogen",
            "--measurement",
            "cp?",
            "--start",
            "2015-01-01T00:00:00Z",
            "--end",
            &end.to_string(),
        ])
        .await;
    run.expect(0);
    let want = data.count_in(DB, "autogen", "cpu", start, end);
    assert!(want > 0);
    assert_eq!(
        number_before(&summary(&run), " points,"),
        Some(want as u64),
        "{}",
        run.output()
    );
    let count = |rp: &'static str, m: &'static str| {
        let dst = dst.clone();
        async move {
            let q = format!("SELECT * FROM \"dset\".\"{rp}\".\"{m}\" GROUP BY *");
            count_rows(&dst.raw(&q, None, Format::Json).await.1)
        }
    };
    assert_eq!(count("autogen", "cpu").await, want);
    for (rp, m) in [("daily", "cpu"), ("autogen", "dup"), ("autogen", "mixed")] {
        assert_eq!(count(rp, m).await, 0, "{rp}.{m} was copied");
    }
    assert!(
        !dst.databases().await.contains(&DB2.to_string()),
        "--db {DB} also copied {DB2:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_killed_midway_resumes_to_the_same_end_state() {
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

    let admin = Admin::new();
    let state = admin.path("big.state");
    let state_arg = state.display().to_string();
    let args = [
        "backfill",
        "--from",
        &src.spec(),
        "--to",
        &dst.spec(),
        "--db",
        "big",
        "--state",
        &state_arg,
    ];
    let mut child = admin.spawn(&args);
    let pieces_recorded = || {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        // the first line names the work; every complete line after it is a piece
        text.matches('\n').count().saturating_sub(1)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pieces_recorded() == 0 {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the backfill ended before recording a piece"
        );
        assert!(Instant::now() < deadline, "no piece recorded within 30 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the backfill finished before it could be killed: make the data bigger"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let recorded = pieces_recorded();

    let rerun = admin.run(&args).await;
    rerun.expect(0);
    let line = summary(&rerun);
    eprintln!("killed after {recorded} pieces; the rerun: {line}");
    let pieces = number_before(&line, " pieces").expect("pieces in the summary");
    let skipped = number_before(&line, " skipped as done before").unwrap_or(0);
    assert!(
        skipped as usize >= recorded && skipped > 0,
        "{recorded} pieces were recorded before the kill: {line}"
    );
    assert!(
        skipped < pieces,
        "the kill came after the last piece ({recorded} recorded): {line}"
    );
    let copied = number_before(&line, " points,").expect("points in the summary");
    assert!(
        copied > 0 && copied < big.total() as u64,
        "the rerun copied {copied} of {} points: {line}",
        big.total()
    );
    let groups = shard_groups(&src, "big").await;
    assert_eq!(groups.len(), big.groups);
    assert_eq!(shard_groups(&dst, "big").await, groups);
    // whole-range answers only: every field has one type here
    let compared = Instant::now();
    let expected = snapshot(&src, "big", &[]).await;
    assert_eq!(
        expected.rows.values().sum::<usize>(),
        big.total(),
        "the source lacks points"
    );
    assert_same(&expected, &snapshot(&dst, "big", &[]).await);
    eprintln!("compared in {:?}", compared.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_to_a_cluster_name_fills_every_write_enabled_node() {
    let nodes = start(3);
    let src = Server::of(&nodes[0]);
    let replicas = [Server::of(&nodes[1]), Server::of(&nodes[2])];
    dataset::load(&src).await;
    let admin = Admin::with_clusters(&[
        Cluster::new("replicas")
            .node("n1", &replicas[0].url, "read-write")
            .node("n2", &replicas[1].url, "write-only"),
        Cluster::new("old").node("s1", &src.url, "read-write"),
    ]);
    let state = admin.path("cluster.state").display().to_string();
    let run = admin
        .run(&[
            "backfill", "--from", "old/s1", "--to", "replicas", "--state", &state,
        ])
        .await;
    run.expect(0);
    for replica in &replicas {
        for db in [DB, DB2] {
            assert_copied(&src, replica, db).await;
        }
    }
    for node in ["replicas/n1", "replicas/n2"] {
        admin
            .run(&["verify", "--from", "old/s1", "--to", node])
            .await
            .expect(0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_to_a_cluster_with_a_node_down_fails_naming_it_and_a_rerun_completes_it() {
    let nodes = start(3);
    let src = Server::of(&nodes[0]);
    let (up, down) = (Server::of(&nodes[1]), Server::of(&nodes[2]));
    dataset::load(&src).await;
    let admin = Admin::with_clusters(&[Cluster::new("replicas")
        .node("up", &up.url, "read-write")
        .node("down", &down.url, "read-write")]);
    nodes[2].stop();
    let state = admin.path("down.state").display().to_string();
    let args = [
        "backfill",
        "--from",
        &src.spec(),
        "--to",
        "replicas",
        "--state",
        &state,
    ];
    let run = admin.run(&args).await;
    run.expect(1);
    assert!(
        run.output().contains("replicas/down") || run.output().contains(&down.url),
        "the node that is down is not named:\n{}",
        run.output()
    );

    tokio::task::block_in_place(|| nodes[2].start_again());
    admin.run(&args).await.expect(0);
    for replica in [&up, &down] {
        for db in [DB, DB2] {
            assert_copied(&src, replica, db).await;
        }
    }
}

#[test]
fn output_helpers_read_what_the_commands_print() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339("2010-01-01T01:00:00+01:00"),
        Some(dataset::T2010)
    );
    assert_eq!(
        parse_rfc3339("1969-07-20T20:17:40.123456789Z"),
        Some(-14_182_939_876_543_211)
    );
    assert_eq!(parse_rfc3339("2010-01-01"), None);
    let s = "backfill: 1,234 points, 56.0 KiB in 0.3 s (4,000 points/s); 10 pieces, 4 skipped as done before";
    assert_eq!(number_before(s, " points,"), Some(1234));
    assert_eq!(number_before(s, " pieces"), Some(10));
    assert_eq!(number_before(s, " skipped as done before"), Some(4));
    assert_eq!(
        window_in("dset autogen cpu [2014-12-29T00:00:00Z, 2015-01-05T00:00:00Z): 120 vs 100"),
        Some((1_419_811_200_000_000_000, 1_420_416_000_000_000_000))
    );
}
