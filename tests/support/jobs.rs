//! The job-queue tests' harness (`admin enqueue|jobs|worker`): a key prefix
//! of their own on the machine's Redis (127.0.0.1:6379) and RabbitMQ
//! (127.0.0.1:5672, guest/guest) whose keys, queues and exchange go away on
//! drop ([`JobQueue`]), worker processes that log to a file and are killed
//! on drop ([`Worker`]), and readers of the job records ([`Job`]) and of the
//! queues (message counts, dead letters).
//!
//! A missing Redis or RabbitMQ fails the test with how to start it.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::Value;

use super::admin::{Admin, Cluster, Run};

pub const REDIS: &str = "redis://127.0.0.1:6379/0";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Fails the test with how to start a server that is not running.
pub fn require_servers() {
    let up = |port: u16| {
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_ok()
    };
    assert!(
        up(6379),
        "Redis is not running on 127.0.0.1:6379; start it with `redis-server --daemonize yes --port 6379`"
    );
    assert!(
        up(5672),
        "RabbitMQ is not running on 127.0.0.1:5672; start it with `rabbitmq-server -detached` (user guest/guest)"
    );
}

/// Milliseconds since 1970 (the clock job records use).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A key prefix of its own, its configuration file and its cleanup.
pub struct JobQueue {
    pub prefix: String,
    pub admin: Admin,
    redis: redis::Client,
    workers: usize,
}

/// What goes in the configuration besides the clusters.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job_lock_ttl: &'static str,
    pub max_attempts: u32,
    pub redis_url: String,
    pub amqp_url: String,
    /// More `[routing]` lines (like `poll_interval = "1s"`).
    pub routing_extra: &'static str,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            job_lock_ttl: "3s",
            max_attempts: 3,
            redis_url: REDIS.into(),
            amqp_url: AMQP.into(),
            routing_extra: "",
        }
    }
}

impl JobQueue {
    /// A fresh prefix with `clusters` in its configuration (lock TTL 3 s).
    pub fn new(clusters: &[Cluster]) -> JobQueue {
        JobQueue::with(clusters, Settings::default())
    }

    pub fn with(clusters: &[Cluster], settings: Settings) -> JobQueue {
        require_servers();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("jobs-test-{}-{nanos}", std::process::id());
        let routing = format!(
            "redis_url = {:?}\namqp_url = {:?}\nkey_prefix = {prefix:?}\n{}\n",
            settings.redis_url, settings.amqp_url, settings.routing_extra
        );
        let control = format!(
            "\n[control]\njob_lock_ttl = {:?}\nmax_attempts = {}\n",
            settings.job_lock_ttl, settings.max_attempts
        );
        let admin = Admin::with_clusters_and(clusters, &routing, &control);
        JobQueue {
            prefix,
            admin,
            redis: redis::Client::open(REDIS).expect("a Redis URL"),
            workers: 0,
        }
    }

    pub fn redis(&self) -> redis::Connection {
        self.redis
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("a Redis connection")
    }

    pub fn queue(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.jobs.dead", self.prefix)
    }

    pub fn lock_key(&self, node_base: &str) -> String {
        format!("{}:lock:{node_base}", self.prefix)
    }

    /// `admin ARGS` with this configuration.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.admin.run(args).await
    }

    /// `admin enqueue JOB…`, which must succeed; the job's id.
    pub async fn enqueue(&self, job: &[&str]) -> String {
        let mut args = vec!["enqueue"];
        args.extend_from_slice(job);
        let run = self.run(&args).await;
        run.expect(0);
        let id = run.stdout.lines().next().unwrap_or("").trim().to_string();
        assert!(
            !id.is_empty() && !id.contains(' '),
            "no job id:\n{}",
            run.output()
        );
        id
    }

    /// Starts `admin worker EXTRA…`, logging to a file of its own.
    pub fn worker(&mut self, extra: &[&str]) -> Worker {
        self.workers += 1;
        let log = self.admin.path(&format!("worker-{}.log", self.workers));
        let mut args = vec!["worker"];
        args.extend_from_slice(extra);
        let child = self.admin.spawn_logged(&args, &log);
        Worker {
            pid: child.id(),
            child: Some(child),
            log,
        }
    }

    /// Job `id`'s record as it is now (empty when there is none).
    pub fn job(&self, id: &str) -> Job {
        let fields: BTreeMap<String, String> =
            redis::Commands::hgetall(&mut self.redis(), format!("{}:job:{id}", self.prefix))
                .expect("HGETALL");
        Job {
            id: id.to_string(),
            fields,
        }
    }

    /// How many pieces job `id` has recorded as finished.
    pub fn pieces(&self, id: &str) -> usize {
        redis::Commands::hlen(
            &mut self.redis(),
            format!("{}:job:{id}:pieces", self.prefix),
        )
        .expect("HLEN")
    }

    /// Every Redis key of this prefix.
    pub fn keys(&self) -> Vec<String> {
        redis::Commands::keys(&mut self.redis(), format!("{}*", self.prefix)).expect("KEYS")
    }

    /// Polls job `id` until its state is one of `states`; panics after
    /// `timeout` with the record and the workers' logs.
    pub async fn wait_state(
        &self,
        id: &str,
        states: &[&str],
        timeout: Duration,
        workers: &[&Worker],
    ) -> Job {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id);
            if states.contains(&job.state()) {
                return job;
            }
            if Instant::now() >= deadline {
                let logs: String = workers.iter().map(|w| w.log_text()).collect();
                panic!(
                    "job {id} is not {states:?} after {timeout:?}: {:#?}\n--- worker logs ---\n{logs}",
                    job.fields
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages ready on queue `name`; `None` when it does not exist.
    pub async fn ready(&self, name: &str) -> Option<u32> {
        let connection = amqp().await;
        let channel = connection.create_channel().await.expect("a channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let count = channel
            .queue_declare(name, passive, FieldTable::default())
            .await
            .ok()
            .map(|q| q.message_count());
        let _ = connection.close(200, "bye").await;
        count
    }

    /// Takes every message from queue `name` (acknowledged): their bodies.
    pub async fn drain(&self, name: &str) -> Vec<Vec<u8>> {
        let connection = amqp().await;
        let channel = connection.create_channel().await.expect("a channel");
        let mut bodies = Vec::new();
        while let Some(message) = channel
            .basic_get(name, BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|e| panic!("basic.get on {name}: {e}"))
        {
            bodies.push(message.delivery.data);
        }
        let _ = connection.close(200, "bye").await;
        bodies
    }
}

async fn amqp() -> lapin::Connection {
    lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .expect("a RabbitMQ connection (guest/guest on 127.0.0.1:5672)")
}

impl Drop for JobQueue {
    fn drop(&mut self) {
        // best effort: the keys, both queues and the dead-letter exchange
        if let Ok(mut conn) = self.redis.get_connection() {
            let keys: Vec<String> =
                redis::Commands::keys(&mut conn, format!("{}*", self.prefix)).unwrap_or_default();
            for key in keys {
                let _: Result<(), _> = redis::Commands::del(&mut conn, key);
            }
        }
        let (queue, dead) = (self.queue(), self.dead_queue());
        // the routing exchange, declared by commands that publish notices
        let routing = format!("{}.routing", self.prefix);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let props = lapin::ConnectionProperties::default();
                let Ok(connection) = lapin::Connection::connect(AMQP, props).await else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for q in [&queue, &dead] {
                        let _ = channel.queue_delete(q, QueueDeleteOptions::default()).await;
                    }
                    let _ = channel.exchange_delete(&dead, Default::default()).await;
                    let _ = channel.exchange_delete(&routing, Default::default()).await;
                    let _ = channel.close(200, "bye").await;
                }
                let _ = connection.close(200, "bye").await;
            });
        })
        .join();
    }
}

/// An `admin worker` process, killed on drop.
pub struct Worker {
    pub pid: u32,
    child: Option<Child>,
    log: PathBuf,
}

impl Worker {
    /// `kill -9`: no chance to acknowledge, release or record anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().expect("try_wait")
    }

    /// Whether `worker_id` (from a record) names this process.
    pub fn is(&self, worker_id: &str) -> bool {
        worker_id.contains(&format!("-{}-", self.pid))
    }

    pub fn log_text(&self) -> String {
        format!(
            "[worker {}]\n{}",
            self.pid,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A job's record: the fields of its Redis hash.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

/// One run of a job: which worker, from when to when (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpan {
    pub worker: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
}

impl Job {
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn state(&self) -> &str {
        self.field("state")
    }

    pub fn number(&self, name: &str) -> u64 {
        self.field(name)
            .parse()
            .unwrap_or_else(|_| panic!("{name} of job {} is not a number: {self:#?}", self.id))
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_str(self.field(name))
            .unwrap_or_else(|e| panic!("{name} of job {} is not JSON ({e}): {self:#?}", self.id))
    }

    pub fn workers(&self) -> Vec<String> {
        self.json("workers")
            .as_array()
            .unwrap_or_else(|| panic!("workers is not a list: {self:#?}"))
            .iter()
            .map(|w| w.as_str().expect("a worker id").to_string())
            .collect()
    }

    pub fn runs(&self) -> Vec<RunSpan> {
        self.json("runs")
            .as_array()
            .unwrap_or_else(|| panic!("runs is not a list: {self:#?}"))
            .iter()
            .map(|r| RunSpan {
                worker: r["worker"].as_str().expect("a run's worker").to_string(),
                start_ms: r["start_ms"].as_u64().expect("a run's start_ms"),
                end_ms: r["end_ms"].as_u64(),
            })
            .collect()
    }

    pub fn progress(&self) -> Value {
        self.json("progress")
    }

    /// Asserts what every job that ran to `done` in one go has: one run by
    /// one worker, one attempt, no resume, times in order, a summary.
    pub fn assert_done_once(&self) {
        let job = self;
        assert_eq!(job.state(), "done", "{job:#?}");
        assert_eq!(job.number("attempts"), 1, "{job:#?}");
        assert_eq!(job.number("resumes"), 0, "{job:#?}");
        assert_eq!(job.field("error"), "", "{job:#?}");
        assert!(!job.field("summary").is_empty(), "{job:#?}");
        assert!(!job.field("kind").is_empty(), "{job:#?}");
        let workers = job.workers();
        assert_eq!(workers.len(), 1, "{job:#?}");
        assert_eq!(job.field("worker"), workers[0], "{job:#?}");
        let runs = job.runs();
        assert_eq!(runs.len(), 1, "{job:#?}");
        assert_eq!(runs[0].worker, workers[0], "{job:#?}");
        let (created, started, ended) = (
            job.number("created_ms"),
            job.number("started_ms"),
            job.number("ended_ms"),
        );
        assert!(
            created <= started && started <= ended && job.number("heartbeat_ms") >= started,
            "{job:#?}"
        );
        assert_eq!(runs[0].start_ms, started, "{job:#?}");
        assert_eq!(runs[0].end_ms, Some(ended), "{job:#?}");
        assert!(job.progress().is_object(), "{job:#?}");
    }
}
