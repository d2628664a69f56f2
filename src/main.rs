//! The `influxdb-router` command: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use influxdb_router::config::{
    self, ConfigSource, LoadedConfig, LogConfig, LogFormat, RouteConfig, RouteTarget,
};
use influxdb_router::control::{self, progress::Display};

#[derive(Debug, Parser)]
#[command(
    name = "influxdb-router",
    version,
    about = "Makes a fleet of InfluxDB 1.x servers look like one"
)]
struct Cli {
    /// Configuration file (default: $INFLUXDB_ROUTER_CONFIG, else the embedded default)
    #[arg(short, long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log line format (default: [log] format, else text)
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the router (the default)
    Serve,
    /// Validate the configuration and print the resolved routing table
    CheckConfig,
    /// Administration commands
    Admin {
        #[command(subcommand)]
        command: Box<AdminCommand>,
    },
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    /// time, level, message and key=value fields
    Text,
    /// one JSON object per line
    Json,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// The routing table in Redis (`[routing] source = "redis"`)
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Nodes, health and queues of one or more routers
    Status {
        /// A router's URL (repeatable; default: this configuration's [server] bind)
        #[arg(long = "router", value_name = "URL")]
        routers: Vec<String>,
        /// Print one JSON document instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Give DST every database, retention policy, continuous query and user of SRC
    SyncSchema(control::sync_schema::SyncSchemaArgs),
    /// Copy points exactly from one node to another node or cluster; resumable
    Backfill(control::backfill::BackfillArgs),
    /// Compare two nodes window by window (counts and a checksum); exit 1 on a difference
    Verify(control::verify::VerifyArgs),
    /// Write a node's data as gzip line-protocol files with a manifest
    Backup(control::backup::BackupArgs),
    /// Load a backup into a node or cluster, optionally under another database name
    Restore(control::restore::RestoreArgs),
    /// Create a database on every node of a cluster (through a router)
    CreateDatabase(control::create_database::CreateDatabaseArgs),
    /// Move a database's measurements to the clusters that own them now, reads intact
    Rebalance(control::rebalance::RebalanceArgs),
    /// Make a replica whole again (write-only, restore, copy, verify), then let it serve reads
    RecoverNode(control::recover_node::RecoverNodeArgs),
    /// Run a continuous query over past time, window by window; resumable
    CqBackfill(control::cq_backfill::CqBackfillArgs),
    /// Put a job on the job queue and print its id (--wait: follow it to its end)
    Enqueue(control::jobs::commands::EnqueueArgs),
    /// List jobs, show one, or cancel one (`jobs cancel ID`)
    Jobs(control::jobs::commands::JobsArgs),
    /// Run jobs from the queue, one at a time per lane
    Worker(control::jobs::worker::WorkerArgs),
}

#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Print the stored version and routing document
    Show {
        #[command(flatten)]
        target: RoutesTarget,
    },
    /// Validate FILE, store it as a new version and notify the routers; the
    /// moves the change implies for data the clusters hold are recorded in it
    Push {
        /// Configuration (or just its routing part) holding the new table
        file: PathBuf,
        #[command(flatten)]
        target: RoutesTarget,
        /// Store FILE as it is, without looking for data the change would move
        #[arg(long)]
        skip_moves: bool,
    },
}

/// Where the routing document lives (default: the configuration's `[routing]`).
#[derive(Debug, Args)]
struct RoutesTarget {
    /// Redis URL (default: routing.redis_url)
    #[arg(long = "redis", value_name = "URL")]
    redis: Option<String>,
    /// RabbitMQ URL (default: routing.amqp_url)
    #[arg(long = "amqp", value_name = "URL")]
    amqp: Option<String>,
    /// Key prefix (default: routing.key_prefix)
    #[arg(long = "key-prefix", value_name = "P")]
    key_prefix: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // logging follows the configuration, so a broken one is reported plainly
    let loaded = match config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("influxdb-router: invalid configuration:\n{e}");
            return ExitCode::from(1);
        }
    };
    let format = match cli.log_format {
        Some(LogFormatArg::Text) => LogFormat::Text,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => loaded.config.log.format,
    };
    init_logging(&loaded.config.log, format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&loaded),
        Command::Serve => serve(loaded),
        Command::Admin { command } => admin(&loaded, *command),
    }
}

/// A runtime for one control-plane command.
fn control_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("influxdb-router: cannot start the runtime: {e}");
            None
        }
    }
}

/// `admin …`: each command's work is in `influxdb_router::control`.
fn admin(loaded: &LoadedConfig, command: AdminCommand) -> ExitCode {
    let config = &loaded.config;
    match command {
        AdminCommand::Routes { command } => routes(loaded, command),
        AdminCommand::Status { routers, json } => admin_status(loaded, &routers, json),
        AdminCommand::SyncSchema(args) => {
            run_control(control::sync_schema::run(config, &args), |report| {
                print!("{}", report.text());
                Ok(())
            })
        }
        AdminCommand::Backfill(args) => run_control(
            control::backfill::run(config, &args, Display::Auto, None),
            |report| {
                println!("{}", report.summary);
                report.outcome()
            },
        ),
        AdminCommand::Verify(args) => {
            let json = args.json;
            run_control(
                control::verify::run(config, &args, Display::Auto),
                |report| {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).unwrap_or_default()
                        );
                    } else {
                        print!("{}", report.text());
                    }
                    report.outcome()
                },
            )
        }
        AdminCommand::Backup(args) => run_control(
            control::backup::run(config, &args, Display::Auto),
            |report| {
                println!("{}", report.summary);
                Ok(())
            },
        ),
        AdminCommand::Restore(args) => run_control(
            control::restore::run(config, &args, Display::Auto, None),
            |report| {
                print!("{}", report.text());
                report.outcome()
            },
        ),
        AdminCommand::CreateDatabase(args) => {
            run_control(control::create_database::run(config, &args), |report| {
                println!("{}", report.summary);
                Ok(())
            })
        }
        AdminCommand::Rebalance(args) => run_control(
            control::rebalance::run(config, &args, Display::Auto, None),
            |report| {
                print!("{}", report.instructions);
                println!("{}", report.summary);
                Ok(())
            },
        ),
        AdminCommand::RecoverNode(args) => run_control(
            control::recover_node::run(config, &args, Display::Auto, None),
            |report| {
                print!("{}", report.text());
                report.outcome()
            },
        ),
        AdminCommand::CqBackfill(args) => run_control(
            control::cq_backfill::run(config, &args, Display::Auto, None),
            |report| {
                println!("{}", report.summary);
                report.outcome()
            },
        ),
        AdminCommand::Enqueue(args) => run_control(
            async {
                let (id, wait) = control::jobs::commands::enqueue(config, &args).await?;
                println!("{id}");
                if wait {
                    let summary = control::jobs::commands::wait(config, &id).await?;
                    println!("{summary}");
                }
                Ok(())
            },
            Ok,
        ),
        AdminCommand::Jobs(args) => {
            run_control(control::jobs::commands::show(config, &args), |text| {
                print!("{text}");
                Ok(())
            })
        }
        AdminCommand::Worker(args) => run_control(control::jobs::worker::run(config, &args), Ok),
    }
}

/// Runs one data command on a runtime of its own and prints what `show`
/// makes of its report; `show` returns the error that ends it, if any.
fn run_control<T>(
    work: impl std::future::Future<Output = Result<T, control::ControlError>>,
    show: impl FnOnce(T) -> Result<(), control::ControlError>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("influxdb-router: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(work).and_then(show) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => control_failed(&e),
    }
}

/// A control-plane error on stderr, as an exit status.
fn control_failed(e: &influxdb_router::control::ControlError) -> ExitCode {
    eprintln!("influxdb-router: {e}");
    ExitCode::from(e.exit_code())
}

fn admin_status(loaded: &LoadedConfig, routers: &[String], json: bool) -> ExitCode {
    let Some(runtime) = control_runtime() else {
        return ExitCode::from(1);
    };
    let report = match runtime.block_on(influxdb_router::control::status::status(
        &loaded.config,
        routers,
    )) {
        Ok(report) => report,
        Err(e) => return control_failed(&e),
    };
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn routes(loaded: &LoadedConfig, command: RoutesCommand) -> ExitCode {
    use influxdb_router::control::routes;
    let Some(runtime) = control_runtime() else {
        return ExitCode::from(1);
    };
    let config = &loaded.config;
    let result = match command {
        RoutesCommand::Show { target } => runtime
            .block_on(routes::show(config, &target.into()))
            .map(|text| print!("{text}")),
        RoutesCommand::Push {
            file,
            target,
            skip_moves,
        } => runtime
            .block_on(routes::push(config, &target.into(), &file, !skip_moves))
            .map(|pushed| {
                println!("{}", pushed.summary);
                if let Some(warning) = pushed.warning {
                    eprintln!("influxdb-router: warning: {warning}");
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => control_failed(&e),
    }
}

impl From<RoutesTarget> for influxdb_router::control::routes::Target {
    fn from(target: RoutesTarget) -> Self {
        influxdb_router::control::routes::Target {
            redis: target.redis,
            amqp: target.amqp,
            key_prefix: target.key_prefix,
        }
    }
}

/// Logs to stderr, one line per event, in `format`, at `[log] level` or
/// `RUST_LOG` when that is set (and valid).
fn init_logging(log: &LogConfig, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .map(|value| EnvFilter::try_new(&value).map_err(|e| format!("{value:?} ({e})")));
    let configured = || EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, bad_env) = match from_env {
        Some(Ok(filter)) => (filter, None),
        Some(Err(problem)) => (configured(), Some(problem)),
        None => (configured(), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .init(),
    }
    if let Some(problem) = bad_env {
        tracing::warn!(rust_log = %problem, level = %log.level, "RUST_LOG is not a valid filter; using [log] level");
    }
}

fn check_config(loaded: &LoadedConfig) -> ExitCode {
    let config = &loaded.config;
    println!("configuration: {} (valid)", loaded.source);
    println!("listen: {}", config.server.bind);
    println!("queues: {}", config.buffer.dir.display());
    println!("default cluster: {}", config.routing.default_cluster);
    for cluster in &config.clusters {
        println!("cluster {} ({} nodes)", cluster.name, cluster.nodes.len());
        for node in &cluster.nodes {
            println!("  {:<20} {:<32} {}", node.name, node.url, node.mode);
        }
    }
    for (i, route) in config.routes.iter().enumerate() {
        println!("route {i}: {}", describe_route(route));
    }
    for (i, m) in config.moves.iter().enumerate() {
        println!(
            "move {i}: database {} measurement {} from {} to {} ({})",
            m.database.as_str(),
            m.measurement.as_ref().map_or("*", |g| g.as_str()),
            m.from,
            m.to,
            m.state.as_str()
        );
    }
    println!("limits: {}", config.limits.describe());
    ExitCode::SUCCESS
}

fn describe_route(route: &RouteConfig) -> String {
    let any = |glob: &Option<influxdb_router::config::glob::Glob>| {
        glob.as_ref().map_or("*".to_string(), |g| g.to_string())
    };
    let target = match &route.target {
        RouteTarget::Cluster(cluster) => format!("cluster {cluster}"),
        RouteTarget::Shard { clusters, .. } => {
            format!("shard by measurement over {}", clusters.join(", "))
        }
    };
    format!(
        "database {} measurement {} -> {target}",
        any(&route.database),
        any(&route.measurement)
    )
}

fn serve(loaded: LoadedConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("influxdb-router: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let source = loaded.source.to_string();
    tracing::info!(config = %source, nodes = loaded.config.node_count(), version = influxdb_router::VERSION, "starting influxdb-router");
    let file = match loaded.source {
        ConfigSource::File(path) | ConfigSource::Env(path) => Some(path),
        ConfigSource::Embedded => None,
    };
    // Install the signal handlers before anything listens: a SIGTERM or SIGHUP that
    // arrives between the first accepted request and the first poll of a lazily
    // created handler would otherwise take the default action and kill the process.
    let signals = {
        let _entered = runtime.enter();
        ShutdownSignals::install()
    };
    let result = runtime.block_on(influxdb_router::server::run(
        loaded.config,
        &source,
        file,
        signals.wait(),
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT handlers, registered at start. SIGHUP is registered too so
/// that it never terminates the process; the routing sources listen for it.
struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
    _hangup: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, signal = name, "cannot install a signal handler");
                None
            }
        };
        ShutdownSignals {
            term: register(SignalKind::terminate(), "SIGTERM"),
            interrupt: register(SignalKind::interrupt(), "SIGINT"),
            _hangup: register(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// Completes on SIGTERM or SIGINT.
    async fn wait(mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => tracing::info!("SIGTERM received, shutting down"),
            _ = next(&mut self.interrupt) => tracing::info!("SIGINT received, shutting down"),
        }
    }
}
