//! `flush-bench`: load generator for flush servers, fixtures for delivery
//! runs, and the side-by-side benchmark against Postfix's flush(8).
//!
//! - `load`: a request mix from C clients, over Postfix's protocol (one
//!   connection per request) or the line protocol (pipelined);
//! - `fixture` / `verify`: deferred queue files and logs to deliver, and the
//!   check that they were;
//! - `floor`: the utime + rename loop a delivery cannot beat;
//! - `append-floor`: the locked appends of an add run in a plain loop;
//! - `server-floor`: a plain threaded server that only appends, to load;
//! - `compare --postfix`: Postfix's flush(8) and flushd, alternately, one table.

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use flush_bin::bench::adds::verify_adds;
use flush_bin::bench::append_floor::{self, append_floor};
use flush_bin::bench::compare::{self, CompareOptions, Workload};
use flush_bin::bench::fixture::{Fixture, FixtureKind};
use flush_bin::bench::flushd::sibling_flushd;
use flush_bin::bench::latency::millis;
use flush_bin::bench::load::{self, LoadOptions, Target};
use flush_bin::bench::memory::ProcessSelector;
use flush_bin::bench::mix::Mix;
use flush_bin::bench::names::DEFAULT_DOMAIN;
use flush_bin::bench::qmgr::QmgrKind;
use flush_bin::bench::server_floor::FloorServer;
use flush_bin::bench::table;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Command line of flush-bench.
#[derive(Debug, Parser)]
#[command(
    name = "flush-bench",
    version,
    about = "Benchmark flush servers (flushd, Postfix's flush(8)) and compare them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a request mix and report requests/s, latency percentiles and memory.
    Load(LoadArgs),
    /// Build deferred queue files and the logs that list them.
    Fixture(FixtureArgs),
    /// Check that a fixture was delivered: every file in incoming/, every log empty.
    Verify(FixtureArgs),
    /// Time a plain utime + rename loop over a fixture's files (the file-system floor).
    Floor(FixtureArgs),
    /// Time the appends of an add run in a plain one-thread loop (the file-system floor of adds).
    AppendFloor(AppendFloorArgs),
    /// Serve adds over the Postfix protocol with a plain threaded server that only appends (the server floor), until interrupted.
    ServerFloor(ServerFloorArgs),
    /// Run the workloads on a private Postfix and on flushd, alternately, and print one table.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Postfix-protocol socket (public/flush): one connection per request.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "line",
        required_unless_present = "line"
    )]
    postfix_socket: Option<PathBuf>,
    /// Line-protocol address (unix:/path, /path or host:port): persistent, pipelined connections.
    #[arg(long, value_name = "ADDR")]
    line: Option<String>,
    /// Request mix: verb=weight,... (add, send_site, send_file, refresh, purge).
    #[arg(long, default_value = "add=100")]
    mix: String,
    /// Concurrent clients (line protocol: connections).
    #[arg(short = 'c', long, default_value_t = 16)]
    concurrency: usize,
    /// Requests in flight per line-protocol connection.
    #[arg(short = 'w', long, default_value_t = 8)]
    window: usize,
    /// Requests in all.
    #[arg(short = 'n', long, default_value_t = 50_000)]
    requests: u64,
    /// Distinct sites (s0.DOMAIN ... s<S-1>.DOMAIN; request i uses site i mod S).
    #[arg(short = 's', long, default_value_t = 1_000)]
    sites: u64,
    /// Parent domain of the sites; list it in fast_flush_domains.
    #[arg(long, default_value = DEFAULT_DOMAIN)]
    domain: String,
    /// Longest wait for one reply, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Server process whose RSS to sample (repeatable; summed).
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Sum the PSS of all processes with this name (repeatable), e.g. flush and master.
    #[arg(long = "pss-name", value_name = "NAME")]
    pss_names: Vec<String>,
    /// Only count --pss-name processes in this process group (a Postfix master's pid).
    #[arg(long, value_name = "PGID", requires = "pss_names")]
    pss_pgid: Option<i32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// One site whose log lists every queue file.
    SendSite,
    /// One site (and log) per queue file.
    Purge,
}

#[derive(Debug, Args)]
struct FixtureArgs {
    /// The queue directory (must exist).
    #[arg(long, value_name = "DIR")]
    queue: PathBuf,
    /// What the fixture is for.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Queue files.
    #[arg(short = 'k', long, default_value_t = 10_000)]
    count: u64,
    /// Parent domain of the sites.
    #[arg(long, default_value = DEFAULT_DOMAIN)]
    domain: String,
}

#[derive(Debug, Args)]
struct AppendFloorArgs {
    /// The queue directory (its flush/ must exist; start from empty logs).
    #[arg(long, value_name = "DIR")]
    queue: PathBuf,
    /// Appends in all.
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    requests: u64,
    /// Distinct sites (append i goes to site i mod S, as in `load`).
    #[arg(short = 's', long, default_value_t = 1_000)]
    sites: u64,
    /// Logs kept open between appends (flushd's default --max-open-logs).
    #[arg(long, default_value_t = flush_actors::writer::DEFAULT_MAX_OPEN_LOGS)]
    keep_open: usize,
    /// Parent domain of the sites.
    #[arg(long, default_value = DEFAULT_DOMAIN)]
    domain: String,
}

#[derive(Debug, Args)]
struct ServerFloorArgs {
    /// The queue directory (its flush/ must exist).
    #[arg(long, value_name = "DIR")]
    queue: PathBuf,
    /// The UNIX socket to listen on (must not exist).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Serving threads: one per concurrent client leaves nobody waiting.
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Logs kept open between appends (flushd's default --max-open-logs).
    #[arg(long, default_value_t = flush_actors::writer::DEFAULT_MAX_OPEN_LOGS)]
    keep_open: usize,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Compare with a private instance of Postfix's flush(8) (required: the only reference).
    #[arg(long, required = true)]
    postfix: bool,
    /// The flushd program (default: the one beside flush-bench).
    #[arg(long, value_name = "PATH")]
    flushd: Option<PathBuf>,
    /// Rounds of each workload (at least 3 for the table; --quick: 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Smaller workloads and one round: a smoke run.
    #[arg(long)]
    quick: bool,
    /// Concurrent clients and line connections.
    #[arg(short = 'c', long, default_value_t = 16)]
    concurrency: usize,
    /// Requests in flight per line connection.
    #[arg(short = 'w', long, default_value_t = 8)]
    window: usize,
    /// Parent domain of the sites.
    #[arg(long, default_value = DEFAULT_DOMAIN)]
    domain: String,
    /// What public/qmgr is on both sides, drained by flush-bench: unix (a
    /// socket, as Debian's master.cf declares qmgr) or fifo (Postfix's stock).
    #[arg(long, value_enum, default_value_t = QmgrArg::Unix)]
    qmgr: QmgrArg,
    /// Only these workloads (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Workload>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum QmgrArg {
    /// A UNIX-domain socket.
    Unix,
    /// A FIFO.
    Fifo,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flush-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Load(args) => load_command(args),
        Command::Fixture(args) => {
            let fixture = fixture_of(&args)?;
            fixture
                .build(&args.queue)
                .with_context(|| format!("build fixture in {}", args.queue.display()))?;
            println!(
                "built {} queue files in {}/deferred and {} log(s) in {}/flush",
                fixture.count,
                args.queue.display(),
                match fixture.kind {
                    FixtureKind::SendSite => 1,
                    FixtureKind::Purge => fixture.count,
                },
                args.queue.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            let check = fixture_of(&args)?.verify(&args.queue);
            println!("{check}");
            Ok(if check.complete() {
                ExitCode::SUCCESS
            } else {
                println!("NOT delivered");
                ExitCode::FAILURE
            })
        }
        Command::Floor(args) => {
            let took = fixture_of(&args)?.floor(&args.queue)?;
            println!("utime + rename of {} files: {}", args.count, millis(took));
            Ok(ExitCode::SUCCESS)
        }
        Command::AppendFloor(args) => {
            let took = append_floor(
                &args.queue,
                args.requests,
                args.sites,
                &args.domain,
                args.keep_open,
            )?;
            verify_adds(&args.queue, args.requests, args.sites, &args.domain)
                .map_err(|e| anyhow::anyhow!("appends incomplete: {e}"))?;
            println!(
                "{} appends over {} sites ({} kept open): {}, {:.0}/s",
                args.requests,
                args.sites,
                args.keep_open
                    .min(usize::try_from(args.sites).unwrap_or(usize::MAX)),
                millis(took),
                append_floor::rate(args.requests, took)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ServerFloor(args) => {
            let _server =
                FloorServer::start(&args.socket, &args.queue, args.threads, args.keep_open)
                    .with_context(|| format!("listen on {}", args.socket.display()))?;
            eprintln!(
                "serving adds on {} with {} threads; interrupt to stop",
                args.socket.display(),
                args.threads
            );
            // The threads serve until the process is interrupted.
            loop {
                std::thread::park();
            }
        }
        Command::Compare(args) => compare_command(args),
    }
}

fn fixture_of(args: &FixtureArgs) -> Result<Fixture> {
    let kind = match args.kind {
        Kind::SendSite => FixtureKind::SendSite,
        Kind::Purge => FixtureKind::Purge,
    };
    Fixture::new(kind, args.count, &args.domain).map_err(anyhow::Error::msg)
}

fn load_command(args: LoadArgs) -> Result<ExitCode> {
    let target = match (args.postfix_socket, args.line) {
        (Some(path), None) => Target::Postfix(path),
        (None, Some(addr)) => Target::Line(addr),
        _ => bail!("give one of --postfix-socket and --line"),
    };
    let options = LoadOptions {
        target,
        mix: Mix::parse(&args.mix).map_err(anyhow::Error::msg)?,
        concurrency: args.concurrency,
        window: args.window,
        requests: args.requests,
        sites: args.sites,
        domain: args.domain,
        timeout: Duration::from_secs(args.timeout.max(1)),
        server_pids: args.server_pids,
        pss: (!args.pss_names.is_empty()).then_some(ProcessSelector {
            names: args.pss_names,
            pgid: args.pss_pgid,
        }),
    };
    options.validate().map_err(anyhow::Error::msg)?;
    let report = load::run(&options)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.text(&options));
    }
    Ok(if report.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn compare_command(args: CompareArgs) -> Result<ExitCode> {
    let flushd = match args.flushd.or_else(sibling_flushd) {
        Some(path) => path,
        None => bail!("flushd not found beside flush-bench; give --flushd PATH"),
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let options = CompareOptions {
        flushd,
        rounds,
        quick: args.quick,
        concurrency: args.concurrency,
        window: args.window,
        domain: args.domain,
        qmgr: match args.qmgr {
            QmgrArg::Unix => QmgrKind::Unix,
            QmgrArg::Fifo => QmgrKind::Fifo,
        },
        only: args.only,
    };
    let rows = compare::run(&options)?;
    println!(
        "\nflush-bench compare --postfix{}: {} round(s), medians\n",
        if args.quick { " --quick" } else { "" },
        rounds
    );
    print!("{}", table::markdown(&rows));
    Ok(ExitCode::SUCCESS)
}
