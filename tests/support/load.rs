//! A steady write + read load against a router, for tests that change
//! things underneath it: every write carries a unique line, and the lines
//! that were answered 204 are remembered so a test can look for each of them
//! on the nodes afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

type Lines = Arc<Mutex<Vec<String>>>;

/// A running load; [`Load::stop`] ends it and reports.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    acked: Lines,
    failures: Lines,
}

/// What a load did.
#[derive(Debug)]
pub struct LoadReport {
    /// The lines of every write answered 204.
    pub acked: Vec<String>,
    /// One entry per request that failed, with its status or error.
    pub failures: Vec<String>,
}

impl Load {
    /// `writers` tasks writing one unique line each to `db`, and as many
    /// reading `SHOW DATABASES`, until stopped.
    pub fn start(url: &str, db: &str, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, failures): (Lines, Lines) = Default::default();
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let write_url = format!("{url}/write?db={db}");
            tasks.push(spawn_writer(
                write_url,
                writer,
                stop.clone(),
                acked.clone(),
                failures.clone(),
            ));
            let read_url = format!("{url}/query?q=SHOW+DATABASES");
            tasks.push(spawn_reader(read_url, stop.clone(), failures.clone()));
        }
        Load {
            stop,
            tasks,
            acked,
            failures,
        }
    }

    /// Stops the load and waits for the requests in flight.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        LoadReport { acked, failures }
    }
}

fn spawn_writer(
    url: String,
    writer: usize,
    stop: Arc<AtomicBool>,
    acked: Lines,
    failures: Lines,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let line = format!("load,writer={writer} v={n}i {n}");
            let sent = client.post(&url).body(format!("{line}\n")).send().await;
            match sent.map(|r| r.status().as_u16()) {
                Ok(204) => acked.lock().unwrap().push(line),
                other => failures
                    .lock()
                    .unwrap()
                    .push(format!("write {line}: {other:?}")),
            }
        }
    })
}

fn spawn_reader(url: String, stop: Arc<AtomicBool>, failures: Lines) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while !stop.load(Ordering::Relaxed) {
            match client.get(&url).send().await.map(|r| r.status().as_u16()) {
                Ok(200) => {}
                other => failures.lock().unwrap().push(format!("read: {other:?}")),
            }
        }
    })
}
