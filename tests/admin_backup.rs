//! `admin backup` and `admin restore` with real `influxd`: the manifest
//! lists gzip line-protocol files with their point counts and SHA-256; a
//! restore (also under another database name, with the continuous queries
//! rewritten to it) gives back exactly what the source held; a damaged or
//! missing file makes `restore` fail naming it before anything is written.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use support::admin::Admin;
use support::compare::{assert_same, count_rows, ident, shard_groups, snapshot};
use support::dataset::{self, Format, Server, DB, DB2};
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

/// One file of a manifest.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    points: u64,
    sha256: String,
}

fn manifest(dir: &Path) -> (Value, Vec<Entry>) {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let files = doc["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files array: {doc}"))
        .iter()
        .map(|f| Entry {
            path: f["path"].as_str().expect("path").to_string(),
            points: f["points"].as_u64().expect("points"),
            sha256: f["sha256"].as_str().expect("sha256").to_lowercase(),
        })
        .collect();
    (doc, files)
}

/// Every file of the manifest exists, matches its checksum and is gzip;
/// returns the sum of the points.
fn check_files(dir: &Path, files: &[Entry]) -> u64 {
    assert!(!files.is_empty());
    for f in files {
        assert!(!Path::new(&f.path).is_absolute(), "{f:?}");
        let bytes = std::fs::read(dir.join(&f.path)).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        let sum: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sum, f.sha256, "checksum of {}", f.path);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{} is not gzip text: {e}", f.path));
        assert_eq!(text.is_empty(), f.points == 0, "{}", f.path);
    }
    files.iter().map(|f| f.points).sum()
}

/// The continuous queries of `db` as (name, query), sorted.
async fn continuous_queries(server: &Server, db: &str) -> Vec<(String, String)> {
    let doc = server.json("SHOW CONTINUOUS QUERIES", None).await;
    let mut out = Vec::new();
    for s in doc["results"][0]["series"].as_array().into_iter().flatten() {
        if s["name"] == db {
            for row in s["values"].as_array().into_iter().flatten() {
                let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
                out.push((text(0), text(1)));
            }
        }
    }
    out.sort();
    out
}

async fn assert_restored(src: &Server, src_db: &str, dst: &Server, dst_db: &str) {
    let groups = shard_groups(src, src_db).await;
    let expected = snapshot(src, src_db, &groups).await;
    assert!(!expected.rows.is_empty());
    let mut actual = snapshot(dst, dst_db, &groups).await;
    actual.db = format!("{dst_db} (restored from {src_db})");
    assert_same(&expected, &actual);
    assert_eq!(shard_groups(dst, dst_db).await, groups);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_then_restore_gives_back_exactly_the_source_also_under_another_name() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    let data = dataset::load(&src).await;
    let admin = Admin::new();
    let out = admin.path("backup");
    let out_arg = out.display().to_string();
    admin
        .run(&["backup", "--from", &src.spec(), "--out", &out_arg])
        .await
        .expect(0);
    let (doc, files) = manifest(&out);
    assert_eq!(check_files(&out, &files), data.total() as u64, "{doc}");
    let text = doc.to_string();
    for word in [DB, DB2, "daily", "short", "cq_cpu", "cq resample"] {
        assert!(text.contains(word), "{word} not in the manifest: {doc}");
    }

    let copy = "dset_copy";
    admin
        .run(&[
            "restore",
            &out_arg,
            "--to",
            &dst.spec(),
            "--db",
            DB,
            "--as",
            copy,
        ])
        .await
        .expect(0);
    assert_eq!(dst.databases().await, vec![copy.to_string()]);
    assert_restored(&src, DB, &dst, copy).await;
    let rewritten: Vec<(String, String)> = continuous_queries(&src, DB)
        .await
        .into_iter()
        .map(|(name, q)| (name, q.replace(DB, copy)))
        .collect();
    assert_eq!(rewritten.len(), 2);
    assert_eq!(continuous_queries(&dst, copy).await, rewritten);

    admin
        .run(&["restore", &out_arg, "--to", &dst.spec()])
        .await
        .expect(0);
    for db in [DB, DB2] {
        assert_restored(&src, db, &dst, db).await;
        assert_eq!(
            continuous_queries(&dst, db).await,
            continuous_queries(&src, db).await
        );
    }

    // a name that needs quoting, in and out
    let other = "copy 2";
    admin
        .run(&[
            "restore",
            &out_arg,
            "--to",
            &dst.spec(),
            "--db",
            DB2,
            "--as",
            other,
        ])
        .await
        .expect(0);
    assert_restored(&src, DB2, &dst, other).await;
    let rewritten: Vec<(String, String)> = continuous_queries(&src, DB2)
        .await
        .into_iter()
        .map(|(name, q)| (name, q.replace(&ident(DB2), &ident(other))))
        .collect();
    assert!(
        rewritten[0].1.contains("\"copy 2\".main.m"),
        "{rewritten:?}"
    );
    assert_eq!(continuous_queries(&dst, other).await, rewritten);
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_refuses_a_damaged_or_missing_file_before_writing_anything() {
    let (a, b) = start_two();
    let (src, dst) = (Server::of(&a), Server::of(&b));
    let data = dataset::load(&src).await;
    let admin = Admin::new();
    let out = admin.path("backup");
    let out_arg = out.display().to_string();
    admin
        .run(&["backup", "--from", &src.spec(), "--out", &out_arg])
        .await
        .expect(0);
    let (_, files) = manifest(&out);
    // the last file: a restore that checks as it goes has written the others
    let victim = files
        .iter()
        .rev()
        .find(|f| f.points > 0)
        .expect("a file with points")
        .clone();
    let name = Path::new(&victim.path)
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .to_string();

    type Damage = fn(&Path);
    let damages: [(&str, Damage); 4] = [
        ("flipped", |p| {
            let mut bytes = std::fs::read(p).expect("read");
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x5a;
            std::fs::write(p, bytes).expect("write");
        }),
        ("truncated", |p| {
            let len = std::fs::metadata(p).expect("metadata").len();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .expect("open");
            file.set_len(len / 2).expect("truncate");
        }),
        ("missing", |p| std::fs::remove_file(p).expect("remove")),
        ("no manifest", |_| {}),
    ];
    for (what, damage) in damages {
        let dir: PathBuf = admin.path(&format!("damaged-{}", what.replace(' ', "-")));
        copy_dir(&out, &dir);
        let named = if what == "no manifest" {
            std::fs::remove_file(dir.join("manifest.json")).expect("remove manifest");
            "manifest.json".to_string()
        } else {
            damage(&dir.join(&victim.path));
            name.clone()
        };
        let run = admin
            .run(&["restore", &dir.display().to_string(), "--to", &dst.spec()])
            .await;
        run.expect(1);
        assert!(
            run.output().contains(&named),
            "{what}: the message does not name {named}:\n{}",
            run.output()
        );
        assert_eq!(
            dst.databases().await,
            Vec::<String>::new(),
            "{what}: restore wrote to DST"
        );
    }

    // a backup of one database and a time range holds just that
    let part = admin.path("part").display().to_string();
    admin
        .run(&[
            "backup",
            "--from",
            &src.spec(),
            "--out",
            &part,
            "--db",
            DB,
            "--start",
            "2015-01-01T00:00:00Z",
            "--end",
            &dataset::T2020.to_string(),
        ])
        .await
        .expect(0);
    let (doc, files) = manifest(Path::new(&part));
    let want = data.count_db_in(DB, dataset::T2015, dataset::T2020);
    assert!(want > 0);
    assert_eq!(check_files(Path::new(&part), &files), want as u64, "{doc}");
    admin
        .run(&["restore", &part, "--to", &dst.spec()])
        .await
        .expect(0);
    assert_eq!(dst.databases().await, vec![DB.to_string()]);
    for ((rp, m), _) in data.counts(DB) {
        let q = format!(
            "SELECT * FROM {}.{}.{} GROUP BY *",
            ident(DB),
            ident(&rp),
            ident(&m)
        );
        let (_, body) = dst.raw(&q, None, Format::Json).await;
        assert_eq!(
            count_rows(&body),
            data.count_in(DB, &rp, &m, dataset::T2015, dataset::T2020),
            "{q}"
        );
    }
}
