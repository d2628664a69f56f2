//! `admin verify` between two real `influxd` loaded with the same dataset
//! (no backfill involved): equal servers exit 0; after points are deleted
//! or a series dropped on the destination it exits 1 and names exactly the
//! windows that hold them, as text and as JSON; its filters (`--db`,
//! `--rp`, `--measurement`, `--start`/`--end`, `--window`) narrow what it
//! compares.

mod support;

use serde_json::Value;

use support::admin::{parse_rfc3339, window_in, Admin, Run};
use support::compare::{shard_groups, Group};
use support::dataset::{self, Server, DB, WEIRD};
use support::Influxd;

const HOUR: i64 = 3_600_000_000_000;

fn start_two() -> (Influxd, Influxd) {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let a = s.spawn(Influxd::start);
            let b = Influxd::start();
            (a.join().expect("influxd starts"), b)
        })
    })
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", run.output()))
}

/// The differences of a `--json` answer as (measurement, rp, start, end, src, dst).
fn differences(doc: &Value) -> Vec<(String, String, i64, i64, u64, u64)> {
    let list = doc["differences"]
        .as_array()
        .unwrap_or_else(|| panic!("no differences array: {doc}"));
    let mut out: Vec<_> = list
        .iter()
        .map(|d| {
            let time = |k: &str| {
                parse_rfc3339(d[k].as_str().unwrap_or_default())
                    .unwrap_or_else(|| panic!("{k} is not RFC 3339: {d}"))
            };
            assert_eq!(d["db"], DB, "{d}");
            (
                d["measurement"].as_str().unwrap_or_default().to_string(),
                d["rp"].as_str().unwrap_or_default().to_string(),
                time("start"),
                time("end"),
                d["src_points"].as_u64().unwrap_or_else(|| panic!("{d}")),
                d["dst_points"].as_u64().unwrap_or_else(|| panic!("{d}")),
            )
        })
        .collect();
    out.sort();
    out
}

/// The autogen shard group of `db` on `src` that holds `time`.
async fn group_of(src: &Server, time: i64) -> Group {
    shard_groups(src, DB)
        .await
        .into_iter()
        .find(|g| g.rp == "autogen" && g.start <= time && time < g.end)
        .unwrap_or_else(|| panic!("no autogen shard group holds {time}"))
}

/// The numbers in `line`, separators removed.
fn numbers(line: &str) -> Vec<u64> {
    line.replace(',', "")
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_the_window_where_points_were_deleted_on_dst() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    let data = dataset::load(&src).await;
    dataset::load(&dst).await;
    let admin = Admin::new();
    let (from, to) = (src.spec(), dst.spec());
    admin
        .run(&["verify", "--from", &from, "--to", &to])
        .await
        .expect(0);

    let (start, end) = (dataset::T2015 + 10 * HOUR, dataset::T2015 + 20 * HOUR);
    let deleted = data.count_in(DB, "autogen", "cpu", start, end);
    assert_eq!(deleted, 20);
    let q = format!("DELETE FROM \"cpu\" WHERE time >= {start} AND time < {end}");
    dst.json(&q, Some(DB)).await;
    let group = group_of(&src, start).await;
    let src_points = data.count_in(DB, "autogen", "cpu", group.start, group.end) as u64;
    let dst_points = src_points - deleted as u64;

    let run = admin.run(&["verify", "--from", &from, "--to", &to]).await;
    run.expect(1);
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| window_in(l).is_some())
        .collect();
    assert_eq!(lines.len(), 1, "one window differs:\n{}", run.output());
    let line = lines[0];
    for word in [DB, "autogen", "cpu"] {
        assert!(line.contains(word), "{word} not in {line:?}");
    }
    assert_eq!(window_in(line), Some((group.start, group.end)), "{line}");
    let n = numbers(line);
    assert!(
        n.contains(&src_points) && n.contains(&dst_points),
        "{src_points} and {dst_points} points not in {line:?}"
    );

    let run = admin
        .run(&["verify", "--from", &from, "--to", &to, "--db", DB, "--json"])
        .await;
    run.expect(1);
    let doc = json(&run);
    assert_eq!(doc["equal"], false, "{doc}");
    assert!(doc["pieces"].as_u64().unwrap_or(0) > 1, "{doc}");
    assert_eq!(
        differences(&doc),
        vec![(
            "cpu".into(),
            "autogen".into(),
            group.start,
            group.end,
            src_points,
            dst_points
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_lists_every_window_of_a_series_dropped_on_dst() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    let data = dataset::load(&src).await;
    dataset::load(&dst).await;
    let q = format!(
        "DROP SERIES FROM \"{}\" WHERE \"t k=1\" = 'v,a l=x'",
        WEIRD.replace('"', "\\\"")
    );
    dst.json(&q, Some(DB)).await;
    let admin = Admin::new();
    let run = admin
        .run(&[
            "verify",
            "--from",
            &src.spec(),
            "--to",
            &dst.spec(),
            "--db",
            DB,
            "--json",
        ])
        .await;
    run.expect(1);
    let mut expected = Vec::new();
    for g in shard_groups(&src, DB).await {
        let n = data.count_in(DB, &g.rp, WEIRD, g.start, g.end) as u64;
        if n > 0 {
            expected.push((WEIRD.to_string(), g.rp, g.start, g.end, n, 0));
        }
    }
    assert_eq!(
        expected.len(),
        2,
        "the dataset puts {WEIRD:?} in two groups"
    );
    expected.sort();
    assert_eq!(differences(&json(&run)), expected, "{}", run.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_compares_only_what_its_filters_select() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    let data = dataset::load(&src).await;
    dataset::load(&dst).await;
    let (start, end) = (dataset::T2015 + 10 * HOUR, dataset::T2015 + 20 * HOUR);
    let q = format!("DELETE FROM \"cpu\" WHERE time >= {start} AND time < {end}");
    dst.json(&q, Some(DB)).await;
    let admin = Admin::new();
    let (from, to) = (src.spec(), dst.spec());
    let verify = |extra: &'static [&'static str]| {
        let mut args = vec!["verify", "--from", from.as_str(), "--to", to.as_str()];
        args.extend_from_slice(extra);
        let admin = &admin;
        async move { admin.run(&args).await }
    };
    // the deleted points are outside each of these selections
    for extra in [
        &["--rp", "daily"][..],
        &["--measurement", "dup*"],
        &["--db", dataset::DB2],
        &["--start", "2020-01-01T00:00:00Z"],
        &["--end", "1420070400000000000"],
    ] {
        verify(extra).await.expect(0);
    }
    // and inside these
    verify(&["--measurement", "c?u", "--rp", "autogen"])
        .await
        .expect(1);
    verify(&[
        "--start",
        "2015-01-01T12:00:00Z",
        "--end",
        "2015-01-02T00:00:00Z",
    ])
    .await
    .expect(1);

    // one-hour windows: each differing window is an hour at most, and
    // together they hold exactly the deleted points
    let run = verify(&[
        "--db",
        DB,
        "--measurement",
        "cpu",
        "--window",
        "1h",
        "--json",
    ])
    .await;
    run.expect(1);
    let found = differences(&json(&run));
    let deleted = data.count_in(DB, "autogen", "cpu", start, end) as u64;
    let missing: u64 = found.iter().map(|d| d.4 - d.5).sum();
    assert_eq!(missing, deleted, "{found:?}");
    for (m, rp, w_start, w_end, src_n, dst_n) in &found {
        assert_eq!((m.as_str(), rp.as_str()), ("cpu", "autogen"));
        assert!(w_end - w_start <= HOUR, "window longer than 1h: {found:?}");
        assert!(*w_start < end && *w_end > start, "{found:?}");
        assert_eq!(
            *src_n,
            data.count_in(DB, "autogen", "cpu", *w_start, *w_end) as u64
        );
        assert!(dst_n < src_n);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_changed_values_and_times_with_the_same_point_counts() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    let data = dataset::load(&src).await;
    dataset::load(&dst).await;
    let point = |m: &str| {
        data.points
            .iter()
            .find(|p| p.measurement == m && p.time > dataset::T2015)
            .unwrap_or_else(|| panic!("a {m} point after 2015"))
            .clone()
    };
    // one value overwritten (same series and time)
    let cpu = point("cpu");
    dst.write(DB, "autogen", cpu.line.replacen("usage=", "usage=1", 1))
        .await;
    // one point moved by a nanosecond
    let dup = point("dup");
    let q = format!(
        "DELETE FROM \"dup\" WHERE time >= {t} AND time <= {t}",
        t = dup.time
    );
    dst.json(&q, Some(DB)).await;
    let moved = dup
        .line
        .replace(&dup.time.to_string(), &(dup.time + 1).to_string());
    dst.write(DB, "autogen", moved).await;
    let count = "SELECT count(*) FROM \"dset\".\"autogen\".\"dup\"";
    assert_eq!(src.rows(count, None).await, dst.rows(count, None).await);

    let run = Admin::new()
        .run(&[
            "verify",
            "--from",
            &src.spec(),
            "--to",
            &dst.spec(),
            "--json",
        ])
        .await;
    run.expect(1);
    let mut expected = Vec::new();
    for p in [&cpu, &dup] {
        let g = group_of(&src, p.time).await;
        let n = data.count_in(DB, "autogen", p.measurement, g.start, g.end) as u64;
        expected.push((p.measurement.to_string(), g.rp, g.start, g.end, n, n));
    }
    expected.sort();
    assert_eq!(differences(&json(&run)), expected, "{}", run.output());
}
