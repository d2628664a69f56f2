//! The data commands (`sync-schema`, `backfill`, `verify`, `backup`,
//! `restore`) given bad input: a server that does not answer, wrong
//! credentials, an unknown database, a range that ends before it starts,
//! an unknown `CLUSTER/NODE`. Each fails with exit status 1 (2 for bad
//! usage) and a message naming what failed, and the destination holds
//! nothing: no command leaves a half-done copy behind silently.

mod support;

use support::admin::{Admin, Cluster, Run};
use support::dataset::{self, Server, DB};
use support::{free_port, Influxd};

fn start_two() -> (Influxd, Influxd) {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let a = s.spawn(Influxd::start);
            let b = Influxd::start();
            (a.join().expect("influxd starts"), b)
        })
    })
}

/// `run` failed with `code` and its output names every one of `words`.
fn assert_fails(run: &Run, code: i32, words: &[&str]) {
    run.expect(code);
    let output = run.output();
    for word in words {
        assert!(output.contains(word), "{word:?} not named:\n{output}");
    }
}

async fn assert_empty(dst: &Server, after: &Run) {
    assert_eq!(
        dst.databases().await,
        Vec::<String>::new(),
        "DST holds something after:\n{}",
        after.output()
    );
}

/// The argument lists of the commands that read `from` and write `to`
/// (restore reads the backup in `backup`).
fn commands<'a>(from: &'a str, to: &'a str, backup: &'a str) -> Vec<Vec<&'a str>> {
    vec![
        vec!["sync-schema", "--from", from, "--to", to],
        vec!["backfill", "--from", from, "--to", to],
        vec!["verify", "--from", from, "--to", to],
        vec!["backup", "--from", from, "--out", backup],
        vec!["restore", backup, "--to", to],
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_does_not_answer_is_named_and_nothing_is_written() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    dataset::load(&src).await;
    let admin = Admin::new();
    let good_backup = admin.path("good").display().to_string();
    admin
        .run(&["backup", "--from", &src.spec(), "--out", &good_backup])
        .await
        .expect(0);
    let port = free_port().to_string();
    let closed = format!("http://127.0.0.1:{port}");
    let (from, to) = (src.spec(), dst.spec());

    // an unreachable source (restore has none: its DST is tested below)
    let other_backup = admin.path("never").display().to_string();
    for args in commands(&closed, &to, &other_backup).into_iter().take(4) {
        let run = admin.run(&args).await;
        assert_fails(&run, 1, &[&port]);
        assert_empty(&dst, &run).await;
    }
    assert!(
        !admin.path("never").join("manifest.json").exists(),
        "a backup of nothing was left behind as if complete"
    );
    // an unreachable destination
    for args in commands(&from, &closed, &good_backup) {
        if args[0] == "backup" {
            continue;
        }
        let run = admin.run(&args).await;
        assert_fails(&run, 1, &[&port]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_with_the_servers_answer_and_nothing_is_written() {
    let a = Influxd::start_with_admin("admin", "adm1n").await;
    let b = Influxd::start_with_admin("admin", "adm1n").await;
    let (src, dst) = (
        Server::as_user(&a, "admin", "adm1n"),
        Server::as_user(&b, "admin", "adm1n"),
    );
    dataset::load(&src).await;
    let admin = Admin::new();
    let good_backup = admin.path("good").display().to_string();
    admin
        .run(&["backup", "--from", &src.spec(), "--out", &good_backup])
        .await
        .expect(0);
    let bad_src = Server::as_user(&a, "admin", "b4d-pa55").spec();
    let bad_dst = Server::as_user(&b, "admin", "b4d-pa55").spec();
    let (from, to) = (src.spec(), dst.spec());
    let other_backup = admin.path("never").display().to_string();
    let src_port = a.port().to_string();
    for args in commands(&bad_src, &to, &other_backup).into_iter().take(4) {
        let run = admin.run(&args).await;
        assert_fails(&run, 1, &["401", "authorization failed", &src_port]);
        assert_empty(&dst, &run).await;
        let printed = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !printed.contains("b4d-pa55"),
            "password printed:\n{printed}"
        );
    }
    let dst_port = b.port().to_string();
    for args in commands(&from, &bad_dst, &good_backup) {
        if args[0] == "backup" {
            continue;
        }
        let run = admin.run(&args).await;
        assert_fails(&run, 1, &["401", "authorization failed", &dst_port]);
        assert_empty(&dst, &run).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_databases_and_bad_ranges_are_refused_before_anything_is_written() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    dataset::load(&src).await;
    let admin = Admin::new();
    let (from, to) = (src.spec(), dst.spec());
    let backup = admin.path("b").display().to_string();

    for args in commands(&from, &to, &backup).into_iter().take(4) {
        let run = admin
            .run(&[&args[..], &["--db", "nope"][..]].concat())
            .await;
        assert_fails(&run, 1, &["nope"]);
        assert_empty(&dst, &run).await;
    }
    let inverted = [
        "--start",
        "2020-01-01T00:00:00Z",
        "--end",
        "2010-01-01T00:00:00Z",
    ];
    for args in commands(&from, &to, &backup).into_iter().skip(1).take(3) {
        let run = admin.run(&[&args[..], &inverted[..]].concat()).await;
        assert_fails(&run, 2, &["--start"]);
        assert_empty(&dst, &run).await;
        let run = admin
            .run(&[&args[..], &["--start", "yesterday"][..]].concat())
            .await;
        assert_fails(&run, 2, &["yesterday"]);
        let run = admin
            .run(&[&args[..], &["--frobnicate"][..]].concat())
            .await;
        run.expect(2);
    }

    // restore of a backup that has no such database
    let fresh = admin.path("fresh").display().to_string();
    admin
        .run(&["backup", "--from", &from, "--out", &fresh])
        .await
        .expect(0);
    let run = admin
        .run(&["restore", &fresh, "--to", &to, "--db", "nope"])
        .await;
    assert_fails(&run, 1, &["nope"]);
    assert_empty(&dst, &run).await;

    // a backup into the DIR of the failed `backup --db nope` above: a run
    // that failed before writing anything must not stand in its way
    let run = admin
        .run(&["backup", "--from", &from, "--out", &backup])
        .await;
    assert_eq!(
        run.code,
        0,
        "a failed backup blocks the next one into its DIR:\n{}",
        run.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_retention_policy_is_refused_by_every_command() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    dataset::load(&src).await;
    let admin = Admin::new();
    let (from, to) = (src.spec(), dst.spec());
    // all of them run, to see every one that does not fail
    let backup_rp = admin.path("b-rp").display().to_string();
    let mut silent = Vec::new();
    for args in commands(&from, &to, &backup_rp).into_iter().skip(1).take(3) {
        let run = admin
            .run(&[&args[..], &["--db", DB, "--rp", "nope"][..]].concat())
            .await;
        if run.code != 1 || !run.output().contains("nope") {
            silent.push(run.output());
        }
        assert_empty(&dst, &run).await;
    }
    assert!(
        silent.is_empty(),
        "--rp nope did not fail naming it:\n{}",
        silent.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_cluster_or_node_of_the_configuration_is_named() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    dataset::load(&src).await;
    let admin = Admin::with_clusters(&[
        Cluster::new("main").node("n1", &dst.url, "read-write"),
        Cluster::new("old").node("s1", &src.url, "read-write"),
    ]);
    let backup = admin.path("b").display().to_string();
    for (from, to, named) in [
        ("old/s1", "main/nope", "nope"),
        ("old/s1", "ghost/n1", "ghost"),
        ("ghost/s1", "main/n1", "ghost"),
        ("old/nope", "main/n1", "nope"),
    ] {
        for args in commands(from, to, &backup).into_iter().take(3) {
            let run = admin.run(&args).await;
            assert_fails(&run, 1, &[named]);
            assert_empty(&dst, &run).await;
        }
    }
    // the same names resolve: a backfill by name works
    admin
        .run(&["backfill", "--from", "old/s1", "--to", "main", "--db", DB])
        .await
        .expect(0);
    assert_eq!(dst.databases().await, vec![DB.to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_destination_refuses_fails_with_its_status_and_text() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    dataset::load(&src).await;
    // on DST, `mixed` has a string field `v` where the source has integers
    dst.json("CREATE DATABASE \"dset\"", None).await;
    let line = format!("mixed,kind=int v=\"text\" {}\n", dataset::T2010 + 1);
    dst.write(DB, "autogen", line).await;
    let admin = Admin::new();
    let backup = admin.path("b").display().to_string();
    admin
        .run(&["backup", "--from", &src.spec(), "--out", &backup])
        .await
        .expect(0);
    let port = b.port().to_string();
    for args in [
        vec![
            "backfill",
            "--from",
            &src.spec(),
            "--to",
            &dst.spec(),
            "--db",
            DB,
        ],
        vec!["restore", &backup, "--to", &dst.spec(), "--db", DB],
    ] {
        let run = admin.run(&args).await;
        assert_fails(&run, 1, &["400", "field type conflict", DB, "mixed", &port]);
    }
}
