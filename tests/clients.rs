//! Real clients against the router in front of two real `influxd` nodes:
//! the `influx` CLI and the python `influxdb` library must work as they do
//! against InfluxDB itself.

mod support;

use std::process::Command;

use support::router::two_influxd as two_nodes;

fn run(program: &str, args: &[&str], hint: &str) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); {hint}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {stdout}{stderr}"
    );
    stdout
}

const INFLUX_HINT: &str =
    "install it with `apt-get install influxdb-client`, or run ./scripts/test.sh";

#[tokio::test(flavor = "multi_thread")]
async fn influx_cli_creates_writes_and_reads_through_the_router() {
    let (a, b, router) = two_nodes().await;
    let port = router.router.addr().port().to_string();
    let influx = move |args: &[&str]| {
        let mut all = vec!["-host", "127.0.0.1", "-port", &port];
        all.extend_from_slice(args);
        run("influx", &all, INFLUX_HINT)
    };
    let cli = tokio::task::spawn_blocking(move || {
        influx(&["-execute", "CREATE DATABASE cli"]);
        influx(&[
            "-database",
            "cli",
            "-execute",
            "INSERT temp,room=kitchen celsius=21.5,door=true",
        ]);
        influx(&[
            "-database",
            "cli",
            "-execute",
            "INSERT temp,room=cellar celsius=12",
        ]);
        let databases = influx(&["-execute", "SHOW DATABASES", "-format", "csv"]);
        let rows = influx(&[
            "-database",
            "cli",
            "-execute",
            "SELECT count(*) FROM temp",
            "-format",
            "csv",
        ]);
        (databases, rows)
    });
    let (databases, rows) = cli.await.unwrap();
    assert!(
        databases.lines().any(|l| l == "databases,cli"),
        "{databases}"
    );
    assert!(rows.lines().any(|l| l == "temp,0,2,1"), "{rows}");
    for node in [&a, &b] {
        let answer = node
            .query("SELECT room, celsius FROM temp", Some("cli"))
            .await;
        assert_eq!(
            answer
                .pointer("/results/0/series/0/values")
                .and_then(|v| v.as_array())
                .map(Vec::len),
            Some(2)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_influxdb_client_works_as_against_influxdb() {
    let (a, _b, router) = two_nodes().await;
    let script = format!(
        "{}/tests/clients/python_client.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let port = router.router.addr().port().to_string();
    let hint = "the python `influxdb` client is needed: `python3 -m pip install influxdb`, or run ./scripts/test.sh";
    let check = Command::new("python3")
        .args(["-c", "import influxdb"])
        .status();
    assert!(check.map(|s| s.success()).unwrap_or(false), "{hint}");
    let out =
        tokio::task::spawn_blocking(move || run("python3", &[&script, "127.0.0.1", &port], hint))
            .await
            .unwrap();
    assert!(out.contains("all checks passed"), "{out}");
    assert!(
        !a.databases().await.contains(&"pyclient".to_string()),
        "the client dropped its database on every node"
    );
}
