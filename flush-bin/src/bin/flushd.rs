//! `flushd`: the fast flush daemon.
//!
//! Reads Postfix's main.cf, validates it in full, takes the queue
//! directory's lock, starts the actors and serves until SIGTERM or SIGINT;
//! SIGHUP reloads `fast_flush_domains`. Started by Postfix's master(8) from
//! master.cf, it serves the socket master passes instead (see
//! `flush_bin::master`).

use anyhow::{bail, Context as _, Result};
use clap::{CommandFactory, Parser};
use flush_actors::config::{parse_override, Config};
use flush_actors::gateway::ListenAddr;
use flush_actors::server::{self, ServerOptions};
use flush_bin::logging::{self, Route, Tag};
use flush_bin::master::{self, DaemonOptions, MasterMode};
use flush_bin::{demo, queue_lock};
use flush_proto::line::DEFAULT_MAX_LINE;
use std::path::PathBuf;
use std::process::ExitCode;

/// Messages are allocated on the gateway's thread and freed on the writers'
/// threads; mimalloc handles that pattern far better than glibc's malloc
/// (measured: a third of the gateway thread's time went to malloc/free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line of flushd.
#[derive(Debug, Parser)]
#[command(
    name = "flushd",
    version,
    about = "Fast flush server for Postfix mail queues"
)]
struct Args {
    /// Postfix configuration directory (main.cf is read from it; a missing file means defaults).
    #[arg(short = 'c', long = "config-dir", default_value = "/etc/postfix")]
    config_dir: PathBuf,
    /// Override a main.cf parameter, as every Postfix daemon accepts.
    #[arg(short = 'o', value_name = "NAME=VALUE")]
    overrides: Vec<String>,
    /// Line-protocol listener: unix:/path or host:port (repeatable).
    /// Default: unix:$queue_directory/public/flush.line.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<String>,
    /// Postfix-protocol listener (repeatable). Default: $queue_directory/public/flush.
    #[arg(long = "postfix-listen", value_name = "PATH")]
    postfix_listen: Vec<PathBuf>,
    /// Do not listen for Postfix clients (run beside Postfix's own flush(8)).
    #[arg(long = "no-postfix-listen", conflicts_with = "postfix_listen")]
    no_postfix_listen: bool,
    /// Run on a demo queue directory (created if missing) where example.com is eligible.
    #[arg(long)]
    demo: Option<Option<PathBuf>>,
    /// Longest line-protocol request, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE)]
    max_line: usize,
    /// Threads that write logfiles (default: one per core).
    #[arg(long)]
    writer_threads: Option<usize>,
    /// Threads that accept connections and serve them. The first is the one
    /// the matcher and the writer registry run on; more help only where cores
    /// are free (each extra thread adds a thread hop per batch).
    #[arg(long, default_value_t = 1)]
    gateway_threads: usize,
    /// Logfiles kept open between requests.
    #[arg(long, default_value_t = flush_actors::writer::DEFAULT_MAX_OPEN_LOGS)]
    max_open_logs: usize,
    /// Log writers alive at once; past that the least recently used retire.
    #[arg(long, default_value_t = flush_actors::writer::DEFAULT_MAX_WRITERS)]
    max_writers: usize,
    /// Log where Postfix's daemons log (postlogd if main.cf sets
    /// maillog_file, else syslog), not to stderr. Always so under master(8).
    #[arg(long)]
    postfix_log: bool,
}

fn main() -> ExitCode {
    // First of all: the descriptors master(8) may have passed.
    let under_master = master::spawned_by_master();
    let inherited = master::detect();
    let started = inherited.and_then(|inherited| match inherited {
        None => Ok((Args::parse(), None)),
        Some(inherited) => master_args(inherited).map(|(args, mode)| (args, Some(mode))),
    });
    let verbose = match &started {
        Ok((_, Some(mode))) => mode.options.verbose,
        _ => 0,
    };
    let level = if verbose > 0 { "debug" } else { "info" };
    logging::init(level);
    if under_master {
        // Until main.cf is read (and for a bad command line), log where
        // master's environment says: stderr is /dev/null.
        let syslog_name = std::env::var("MAIL_LOGTAG").unwrap_or_else(|_| "postfix".into());
        logging::route_to(
            Route::from_environment(),
            Tag::new(&syslog_name, &program()),
        );
    }
    let code = match started.and_then(|(args, master)| run(args, master)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::fatal(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    };
    log::logger().flush();
    code
}

/// The file name this program was started as (`flush` when installed under
/// that name in daemon_directory).
fn program() -> String {
    std::env::args_os()
        .next()
        .map(|arg0| arg0.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flushd".to_string())
}

/// Under master(8): Postfix's daemon options from the command line, flushd's
/// own `--long` options through clap, the config directory from `MAIL_CONFIG`.
fn master_args(inherited: master::Inherited) -> Result<(Args, MasterMode)> {
    let command = Args::command();
    let takes_value = |name: &str| {
        command
            .get_arguments()
            .any(|a| a.get_long() == Some(name) && a.get_action().takes_values())
    };
    let options = DaemonOptions::parse(std::env::args_os().skip(1), takes_value)?;
    options.check()?;
    let clap_args = std::iter::once("flushd".into()).chain(options.flushd_args.iter().cloned());
    let mut args = Args::try_parse_from(clap_args)?;
    if args.demo.is_some() {
        bail!("--demo makes no sense under master(8)");
    }
    args.config_dir = master::config_dir(&args.config_dir);
    // What Postfix daemons define for main.cf and master.cf's `-o` values
    // (`-o syslog_name=postfix/$service_name`).
    args.overrides = vec![
        format!(
            "service_name={}",
            options.service_name.as_deref().unwrap_or("flush")
        ),
        format!("process_name={}", logging::program_name(&program())),
    ];
    args.overrides.extend(options.overrides.iter().cloned());
    Ok((args, MasterMode::new(inherited, options)))
}

fn run(args: Args, mut master: Option<MasterMode>) -> Result<()> {
    let mut overrides = Vec::new();
    for spec in &args.overrides {
        overrides.push(parse_override(spec)?);
    }
    let config_dir = match &args.demo {
        Some(dir) => demo::prepare(dir.clone())?,
        None => args.config_dir.clone(),
    };
    let config = Config::load(&config_dir, &overrides)?;
    if master.is_some() || args.postfix_log {
        let syslog_name = config.expanded("syslog_name")?;
        logging::route_to(
            Route::for_daemon(&config)?,
            Tag::new(&syslog_name, &program()),
        );
    }
    if let Some(mode) = &master {
        log::info!("started by master(8): {}", mode.describe());
    }
    let queue = config.queue_directory.clone();
    if !queue.is_dir() {
        bail!(
            "queue_directory {}: not a readable directory",
            queue.display()
        );
    }
    std::fs::read_dir(&queue).with_context(|| format!("queue_directory {}", queue.display()))?;
    let _lock = match &master {
        None => queue_lock::acquire(&queue)?,
        Some(mode) => {
            // The pid/ directory is root's: lock first, then become mail_owner.
            let lock = master::lock_queue(&queue, master::LOCK_WAIT)?;
            if mode.options.unprivileged {
                master::drop_privileges(&config)?;
            }
            lock
        }
    };
    queue_lock::ensure_flush_dir(&queue)?;
    let fd_limit = queue_lock::raise_open_file_limit();
    let max_open_logs =
        queue_lock::open_logs_within(fd_limit, args.max_open_logs, config.flush_max_connections);
    if max_open_logs < args.max_open_logs {
        log::warn!(
            "keeping at most {max_open_logs} logfiles open, not {}: the open-file limit is {} \
             and {} connections may be open",
            args.max_open_logs,
            fd_limit.unwrap_or(0),
            config.flush_max_connections
        );
    }

    let listen = if args.listen.is_empty() && master.is_some() {
        Vec::new() // under master(8): only the inherited socket
    } else if args.listen.is_empty() {
        vec![ListenAddr::Unix(queue.join("public/flush.line"))]
    } else {
        args.listen
            .iter()
            .map(|s| ListenAddr::parse(s))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?
    };
    let postfix_listen = match (args.no_postfix_listen, args.postfix_listen.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) if master.is_some() => Vec::new(),
        (false, true) => vec![queue.join("public/flush")],
        (false, false) => args.postfix_listen.clone(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = ServerOptions {
        config,
        listen,
        postfix_listen,
        inherited_postfix: master.as_mut().and_then(MasterMode::take_listener),
        max_line: args.max_line,
        writer_threads: args.writer_threads.unwrap_or(cores),
        gateway_threads: args.gateway_threads,
        max_open_logs,
        max_writers: args.max_writers,
    };
    actix_rt::System::new().block_on(serve(options, master))
}

/// Runs the server until SIGTERM or SIGINT, or under master(8) until master
/// goes away or `max_idle` passes without a connection.
async fn serve(options: ServerOptions, master: Option<MasterMode>) -> Result<()> {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let max_idle = options.config.max_idle;
    let server = server::start(options).await?;
    log::info!("flushd {} ready", env!("CARGO_PKG_VERSION"));
    let stats = server.gateway_stats();
    let master_exit = async move {
        match master {
            Some(mut mode) => mode.supervise(max_idle, stats).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(master_exit);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            why = &mut master_exit => {
                log::info!("leaving master(8)'s service: {why}");
                break;
            }
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading fast_flush_domains");
                server.reload();
            }
        }
    }
    log::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
