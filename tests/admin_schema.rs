//! `admin sync-schema` between real `influxd`: the destination ends up with
//! every database, retention policy (settings and default flag) and
//! continuous query of the source, keeps what only it has, and a second run
//! prints "nothing to do" and changes nothing; `--dry-run` and `--db`
//! limit it. With authentication on both sides and an admin source, users
//! and their privileges are copied with the passwords from
//! `--user-password-file`, never printed; a user without a password there
//! is reported as skipped.

mod support;

use serde_json::Value;

use support::admin::{Admin, Cluster};
use support::compare::ident;
use support::dataset::{self, Server, DB, DB2, USERS};
use support::Influxd;

fn start_two() -> (Influxd, Influxd) {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let a = s.spawn(Influxd::start);
            let b = Influxd::start();
            (a.join().expect("influxd starts"), b)
        })
    })
}

/// The retention policies of `db`, sorted by name (empty if no such database).
async fn policies(server: &Server, db: &str) -> Vec<Vec<Value>> {
    if !server.databases().await.iter().any(|d| d == db) {
        return Vec::new();
    }
    let q = format!("SHOW RETENTION POLICIES ON {}", ident(db));
    let mut rows = server.rows(&q, None).await;
    rows.sort_by_key(|r| r[0].to_string());
    rows
}

/// The continuous queries of `db` as (name, query), sorted.
async fn continuous_queries(server: &Server, db: &str) -> Vec<(String, String)> {
    let doc = server.json("SHOW CONTINUOUS QUERIES", None).await;
    let mut out = Vec::new();
    for s in doc["results"][0]["series"].as_array().into_iter().flatten() {
        if s["name"] != db {
            continue;
        }
        for row in s["values"].as_array().into_iter().flatten() {
            let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
            out.push((text(0), text(1)));
        }
    }
    out.sort();
    out
}

/// Users and their grants, where the credentials allow.
async fn users(server: &Server) -> Vec<(String, bool, Vec<Vec<Value>>)> {
    let mut out = Vec::new();
    for row in server.rows("SHOW USERS", None).await {
        let name = row[0].as_str().unwrap_or_default().to_string();
        let mut grants = server
            .rows(&format!("SHOW GRANTS FOR {}", ident(&name)), None)
            .await;
        grants.sort_by_key(|g| g[0].to_string());
        out.push((name, row[1] == true, grants));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Everything sync-schema may touch on `server`, as text.
async fn schema_state(server: &Server, with_users: bool) -> String {
    let mut state = String::new();
    let mut databases = server.databases().await;
    databases.sort();
    for db in &databases {
        state.push_str(&format!(
            "{db}: {:?}\n  cqs {:?}\n  measurements {:?}\n",
            policies(server, db).await,
            continuous_queries(server, db).await,
            server
                .names(&format!("SHOW MEASUREMENTS ON {}", ident(db)), None)
                .await
        ));
    }
    if with_users {
        state.push_str(&format!("users {:?}\n", users(server).await));
    }
    state
}

/// The source's policies and queries of `db` are all on the destination, unchanged.
async fn assert_schema_copied(src: &Server, dst: &Server, db: &str) {
    let on_dst = policies(dst, db).await;
    for rp in policies(src, db).await {
        assert!(
            on_dst.contains(&rp),
            "{db}: policy {rp:?} not on DST: {on_dst:?}"
        );
    }
    let on_dst = continuous_queries(dst, db).await;
    for cq in continuous_queries(src, db).await {
        assert!(on_dst.contains(&cq), "{db}: {cq:?} not on DST: {on_dst:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_schema_copies_policies_and_queries_keeps_the_rest_and_a_second_run_does_nothing() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    dataset::load(&src).await;
    // the destination already has things of its own, and autogen differs
    for q in [
        "CREATE DATABASE \"dst_only\"",
        "CREATE DATABASE \"dset\"",
        "CREATE RETENTION POLICY \"extra_rp\" ON \"dset\" DURATION 48h REPLICATION 1",
        "ALTER RETENTION POLICY \"autogen\" ON \"dset\" SHARD DURATION 1d",
        "CREATE CONTINUOUS QUERY \"dst_cq\" ON \"dset\" BEGIN SELECT count(\"x\") INTO \"y\" FROM \"z\" GROUP BY time(1h) END",
    ] {
        dst.json(q, None).await;
    }
    let extra_rp = policies(&dst, DB)
        .await
        .into_iter()
        .find(|r| r[0] == "extra_rp")
        .expect("extra_rp on DST");
    let dst_cq = continuous_queries(&dst, DB).await;
    let before = schema_state(&dst, false).await;
    let admin = Admin::new();
    let (from, to) = (src.spec(), dst.spec());
    let sync = ["sync-schema", "--from", &from, "--to", &to];

    let dry = admin.run(&[&sync[..], &["--dry-run"][..]].concat()).await;
    dry.expect(0);
    for word in [
        "CREATE DATABASE",
        "second db",
        "CREATE RETENTION POLICY",
        "daily",
        "cq_cpu",
    ] {
        assert!(dry.stdout.contains(word), "{word}:\n{}", dry.output());
    }
    assert_eq!(
        schema_state(&dst, false).await,
        before,
        "--dry-run changed DST"
    );

    admin
        .run(&[&sync[..], &["--db", DB2][..]].concat())
        .await
        .expect(0);
    assert_schema_copied(&src, &dst, DB2).await;
    assert!(
        !policies(&dst, DB).await.iter().any(|r| r[0] == "daily"),
        "--db {DB2:?} also changed {DB:?}"
    );

    let first = admin.run(&sync).await;
    first.expect(0);
    assert!(
        !first.stdout.contains("nothing to do"),
        "{}",
        first.output()
    );
    for db in [DB, DB2] {
        assert_schema_copied(&src, &dst, db).await;
    }
    let mut want = policies(&src, DB).await;
    want.push(extra_rp);
    want.sort_by_key(|r| r[0].to_string());
    assert_eq!(policies(&dst, DB).await, want, "policies of {DB}");
    assert_eq!(policies(&dst, DB2).await, policies(&src, DB2).await);
    assert_eq!(
        continuous_queries(&dst, DB2).await,
        continuous_queries(&src, DB2).await
    );
    let cqs = continuous_queries(&dst, DB).await;
    assert!(cqs.contains(&dst_cq[0]), "dst_cq was dropped: {cqs:?}");
    assert!(dst.databases().await.contains(&"dst_only".to_string()));
    let measurements = dst.names("SHOW MEASUREMENTS ON \"dset\"", None).await;
    assert!(
        measurements.is_empty(),
        "sync-schema copied data: {measurements:?}"
    );

    let after = schema_state(&dst, false).await;
    let second = admin.run(&sync).await;
    second.expect(0);
    assert!(
        second.stdout.contains("nothing to do"),
        "{}",
        second.output()
    );
    for word in ["CREATE", "ALTER", "DROP"] {
        assert!(!second.stdout.contains(word), "{}", second.output());
    }
    assert_eq!(
        schema_state(&dst, false).await,
        after,
        "the second run changed DST"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_schema_copies_users_and_grants_with_the_passwords_given() {
    let a = Influxd::start_with_admin("admin", "adm1n").await;
    let b = Influxd::start_with_admin("admin", "dst-adm1n").await;
    let src = Server::as_user(&a, "admin", "adm1n");
    let dst = Server::as_user(&b, "admin", "dst-adm1n");
    dataset::load(&src).await;
    dataset::create_users(&src).await;
    let admin = Admin::new();
    let passwords = admin.path("passwords.txt");
    std::fs::write(&passwords, dataset::password_file()).expect("password file");
    let passwords = passwords.display().to_string();
    let (from, to) = (src.spec(), dst.spec());
    let sync = [
        "sync-schema",
        "--from",
        &from,
        "--to",
        &to,
        "--user-password-file",
        &passwords,
    ];

    let run = admin.run(&sync).await;
    run.expect(0);
    let output = run.output();
    assert!(run.stdout.contains("***"), "{output}");
    for (_, password) in USERS {
        if let Some(password) = password {
            assert!(!output.contains(password), "password printed:\n{output}");
        }
    }
    assert!(
        output
            .lines()
            .any(|l| l.contains("nopass") && l.to_lowercase().contains("skip")),
        "the user without a password is not reported as skipped:\n{output}"
    );

    let on_src = users(&src).await;
    let on_dst = users(&dst).await;
    for user in on_src.iter().filter(|u| u.0 != "nopass") {
        assert!(on_dst.contains(user), "{user:?} not on DST: {on_dst:?}");
    }
    assert!(
        !on_dst.iter().any(|u| u.0 == "nopass"),
        "nopass was created: {on_dst:?}"
    );
    for db in [DB, DB2] {
        assert_eq!(policies(&dst, db).await, policies(&src, db).await);
        assert_eq!(
            continuous_queries(&dst, db).await,
            continuous_queries(&src, db).await
        );
    }

    // the copied users log in with their passwords, and only with them
    let reader = Server::as_user(&b, "reader", "read-pass");
    reader.json("SHOW MEASUREMENTS ON \"dset\"", None).await;
    let writer = Server::as_user(&b, "writer", "it's:se\"cret");
    writer
        .write(DB, "autogen", "login ok=true 1\n".into())
        .await;
    Server::as_user(&b, "ops", "ops pass")
        .json("SHOW USERS", None)
        .await;
    let wrong = Server::as_user(&b, "reader", "wrong");
    let (status, _) = wrong
        .raw("SHOW DATABASES", None, dataset::Format::Json)
        .await;
    assert_eq!(status, 401);

    let before = schema_state(&dst, true).await;
    let second = admin.run(&sync).await;
    second.expect(0);
    assert!(
        second.stdout.contains("nothing to do"),
        "{}",
        second.output()
    );
    assert_eq!(
        schema_state(&dst, true).await,
        before,
        "the second run changed DST"
    );

    // named through a configuration, the nodes get their cluster's credentials
    let named = Admin::with_clusters(&[
        Cluster::new("new")
            .credentials("admin", "dst-adm1n")
            .node("b", &dst.url, "read-write"),
        Cluster::new("old")
            .credentials("admin", "adm1n")
            .node("a", &src.url, "read-write"),
    ]);
    let sync = [
        "sync-schema",
        "--from",
        "old/a",
        "--to",
        "new/b",
        "--user-password-file",
        &passwords,
    ];
    let third = named.run(&sync).await;
    third.expect(0);
    assert!(third.stdout.contains("nothing to do"), "{}", third.output());
}
