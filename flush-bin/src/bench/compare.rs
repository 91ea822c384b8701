//! `flush-bench compare --postfix`: the same workloads on Postfix's flush(8)
//! and on flushd, alternately (Postfix, flushd, Postfix, flushd, ...), and one
//! table of medians (issue 5's targets).
//!
//! The Postfix side is a private instance ([`crate::lab`]): Debian's package,
//! its own config and queue directory in a temp dir, loopback only, flush(8)
//! run by master(8) one process per connection as in production (its
//! master.cf process limit is 0, unlimited, which Postfix requires for flush
//! and which covers any concurrency). The flushd side is a fresh flushd on a
//! fresh queue directory for every run, with its defaults, a line-protocol
//! listener and a Postfix-protocol listener. Both queue directories are on
//! the same file system (the temp dir).
//!
//! Neither side has a queue manager: master.cf's `qmgr` service is removed
//! and `public/qmgr` is an endpoint that flush-bench drains ([`QmgrSink`]),
//! by default a UNIX-domain socket as Debian's master.cf declares qmgr, so
//! both servers' triggers succeed and cost what they cost in production
//! (a connection each), and delivered files stay in `incoming/`, where the
//! check looks for them. A real qmgr would move them on to `active/` while
//! the check runs.
//!
//! Before every timed run, the queue directories are emptied (Postfix's by
//! re-creating its directories, flushd's are new) and `sync` writes out
//! what earlier runs left dirty, so no run pays for another's writeback.
//!
//! Every run is checked: all replies OK and, for adds, every ID in its log
//! ([`verify_adds`]); for deliveries, every file in `incoming/` and every log
//! empty ([`Fixture::verify`]). A run that fails its check stops the
//! comparison with an error.

use super::adds::verify_adds;
use super::append_floor::{self, append_floor};
use super::fixture::{self, Fixture, FixtureKind};
use super::flushd::{live_writers, FlushdProcess};
use super::latency::millis;
use super::load::{self, LoadOptions, LoadReport, Target};
use super::memory::{mib, status_kib, ProcessSelector};
use super::mix::Mix;
use super::qmgr::{QmgrKind, QmgrSink};
use super::server_floor::FloorServer;
use super::table::{median, Goal, Row, Unit};
use super::transport::postfix_request;
use crate::lab::{postfix_available, LabOptions, PostfixLab};
use anyhow::{bail, ensure, Context as _, Result};
use flush_proto::request::Verb;
use flush_proto::request::{Purge, SendSite};
use flush_proto::{Request, Status};
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Longest wait for one reply, or for a purge to finish.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a purge's progress is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// How long after the last writer retired the idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(10);
/// Where the deny runs' sites live: a domain no `fast_flush_domains` of a
/// compare run lists (`.invalid` is reserved, RFC 2606).
const UNLISTED_DOMAIN: &str = "unlisted.invalid";

/// How to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The flushd program.
    pub flushd: PathBuf,
    /// Rounds of each workload (each round runs both sides).
    pub rounds: usize,
    /// Smaller sizes, for a smoke run.
    pub quick: bool,
    /// Concurrent clients (and line connections).
    pub concurrency: usize,
    /// Requests in flight per line connection.
    pub window: usize,
    /// Parent domain of the benchmark sites.
    pub domain: String,
    /// What `public/qmgr` is on both sides.
    pub qmgr: QmgrKind,
    /// Only these workloads (all when empty).
    pub only: Vec<Workload>,
}

/// The sizes of the workloads.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Adds over the Postfix protocol.
    pub postfix_adds: u64,
    /// Adds over the line protocol.
    pub line_adds: u64,
    /// Sites of the add runs.
    pub sites: u64,
    /// Sites of the many-sites runs.
    pub many_sites: u64,
    /// Queue files of the send_site run.
    pub send_files: u64,
    /// Logs of the purge run.
    pub purge_logs: u64,
    /// Sites added once before the idle check.
    pub idle_sites: u64,
}

impl Sizes {
    /// Issue 5's sizes.
    pub const FULL: Sizes = Sizes {
        postfix_adds: 50_000,
        line_adds: 1_000_000,
        sites: 1_000,
        many_sites: 100_000,
        send_files: 10_000,
        purge_logs: 10_000,
        idle_sites: 100_000,
    };

    /// A smoke run's sizes.
    pub const QUICK: Sizes = Sizes {
        postfix_adds: 5_000,
        line_adds: 100_000,
        sites: 1_000,
        many_sites: 10_000,
        send_files: 1_000,
        purge_logs: 1_000,
        idle_sites: 10_000,
    };
}

/// The workloads, in the order they run; `--only` picks some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// add over the Postfix protocol (and the memory it takes).
    Add,
    /// add over the line protocol, pipelined.
    Line,
    /// add over both protocols with many sites.
    ManySites,
    /// send_site of present queue files, and the utime + rename floor.
    SendSite,
    /// purge of non-empty logs.
    Purge,
    /// flushd's memory after many sites, then idle (runs once).
    Idle,
}

impl Workload {
    /// Every workload, in order.
    pub const ALL: [Workload; 6] = [
        Workload::Add,
        Workload::Line,
        Workload::ManySites,
        Workload::SendSite,
        Workload::Purge,
        Workload::Idle,
    ];
}

/// Medians of one measure on both sides, over the rounds.
#[derive(Debug, Default, Clone)]
struct Pair {
    postfix: Vec<f64>,
    flushd: Vec<f64>,
}

impl Pair {
    fn postfix(&self) -> Option<f64> {
        median(&self.postfix)
    }
    fn flushd(&self) -> Option<f64> {
        median(&self.flushd)
    }
}

/// Everything measured, before medians.
#[derive(Debug, Default)]
struct Results {
    add_rate: Pair,
    add_p99_ms: Pair,
    add_memory_kib: Pair,
    /// flushd answering DENY over the Postfix protocol: no file work.
    deny_rate: Vec<f64>,
    /// The plain threaded server that only appends, same adds.
    server_floor_rate: Vec<f64>,
    line_rate: Pair,
    line_p99_ms: Pair,
    many_line_rate: Pair,
    many_postfix_rate: Pair,
    /// The plain append loop at the add runs' S, and at the many-sites S.
    append_floor_rate: Vec<f64>,
    many_append_floor_rate: Vec<f64>,
    send_ms: Pair,
    floor_ms: Vec<f64>,
    purge_ms: Pair,
    idle: Option<IdleResult>,
}

/// The memory of a flushd that added many sites once, then idled.
#[derive(Debug, Clone, Copy)]
struct IdleResult {
    rss_after_adds_kib: u64,
    rss_after_idle_kib: u64,
    live_writers_after_idle: u64,
    idle_wait: Duration,
}

/// The runner: the Postfix lab, its qmgr stand-in, and the options.
/// (Fields drop in order: the sink stops before the lab removes its files.)
struct Runner<'a> {
    options: &'a CompareOptions,
    sizes: Sizes,
    lab_sink: QmgrSink,
    lab: PostfixLab,
    lab_selector: ProcessSelector,
}

/// Runs the comparison and returns the table's rows.
///
/// # Errors
/// Not root, Postfix or flushd missing, the lab or a flushd not starting, or
/// any run failing its check.
pub fn run(options: &CompareOptions) -> Result<Vec<Row>> {
    ensure!(
        rustix::process::geteuid().is_root(),
        "compare --postfix runs a private Postfix instance: run it as root"
    );
    ensure!(
        postfix_available(),
        "Postfix is not installed (Debian: apt-get install postfix)"
    );
    ensure!(
        options.flushd.is_file(),
        "flushd not found at {}",
        options.flushd.display()
    );
    ensure!(options.rounds >= 1, "at least one round");
    let sizes = if options.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let mut runner = Runner::start(options, sizes)?;
    let results = runner.run_all()?;
    Ok(rows(&results, sizes, options))
}

impl<'a> Runner<'a> {
    /// Starts the lab without a queue manager, `public/qmgr` drained.
    fn start(options: &'a CompareOptions, sizes: Sizes) -> Result<Runner<'a>> {
        let mut lab = PostfixLab::new(LabOptions {
            domains: vec![options.domain.clone()],
            ..LabOptions::default()
        })
        .context("create the Postfix lab")?;
        remove_service(&lab.config_dir().join("master.cf"), "qmgr")?;
        let lab_sink = QmgrSink::start(lab.queue_dir(), options.qmgr).context("lab public/qmgr")?;
        lab.start().context("start the Postfix lab")?;
        let master = fs::read_to_string(lab.queue_dir().join("pid/master.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .context("lab master pid")?;
        eprintln!(
            "Postfix lab at {} (master pid {master}), flushd {}",
            lab.root().display(),
            options.flushd.display()
        );
        Ok(Runner {
            options,
            sizes,
            lab,
            lab_sink,
            lab_selector: ProcessSelector {
                names: vec!["flush".into(), "master".into()],
                pgid: Some(master),
            },
        })
    }

    fn run_all(&mut self) -> Result<Results> {
        let mut r = Results::default();
        for workload in Workload::ALL {
            if self.options.only.is_empty() || self.options.only.contains(&workload) {
                self.run_workload(workload, &mut r)?;
            }
        }
        Ok(r)
    }

    /// Runs every round of one workload, Postfix then flushd in each.
    fn run_workload(&mut self, workload: Workload, r: &mut Results) -> Result<()> {
        let s = self.sizes;
        let c = self.options.concurrency;
        let rounds = 1..=self.options.rounds;
        match workload {
            Workload::Add => {
                for round in rounds {
                    let label = format!("add, Postfix protocol, C={c}, S={}", s.sites);
                    let p = self.postfix_adds(s.postfix_adds, s.sites)?;
                    progress(round, &label, "Postfix", &describe(&p));
                    r.add_rate.postfix.push(p.rate());
                    r.add_p99_ms.postfix.push(ms(p.latency.p99));
                    r.add_memory_kib.postfix.push(p.memory.pss_kib as f64);
                    let f = self.flushd_adds(Protocol::Postfix, s.postfix_adds, s.sites)?;
                    progress(round, &label, "flushd", &describe(&f));
                    r.add_rate.flushd.push(f.rate());
                    r.add_p99_ms.flushd.push(ms(f.latency.p99));
                    r.add_memory_kib.flushd.push(f.memory.peak_rss_kib() as f64);
                    let d = self.flushd_denied(s.postfix_adds, s.sites)?;
                    progress(round, &label, "flushd, all DENY", &describe(&d));
                    r.deny_rate.push(d.rate());
                    let floor = self.server_floor_adds(s.postfix_adds, s.sites)?;
                    progress(round, &label, "plain threaded server", &describe(&floor));
                    r.server_floor_rate.push(floor.rate());
                }
            }
            Workload::Line => {
                for round in rounds {
                    let w = self.options.window;
                    let label = format!("add, line protocol, {c}x{w}, S={}", s.sites);
                    let f = self.flushd_adds(Protocol::Line, s.line_adds, s.sites)?;
                    progress(round, &label, "flushd", &describe(&f));
                    r.line_rate.flushd.push(f.rate());
                    r.line_p99_ms.flushd.push(ms(f.latency.p99));
                }
            }
            Workload::ManySites => {
                for round in rounds.clone() {
                    let label = format!("add, line protocol, S={}", s.many_sites);
                    let f = self.flushd_adds(Protocol::Line, s.line_adds, s.many_sites)?;
                    progress(round, &label, "flushd", &describe(&f));
                    r.many_line_rate.flushd.push(f.rate());
                    for (sites, rates) in [
                        (s.sites, &mut r.append_floor_rate),
                        (s.many_sites, &mut r.many_append_floor_rate),
                    ] {
                        let rate = append_floor_rate(s.line_adds, sites, &self.options.domain)?;
                        let side = format!("plain append loop, S={}", thousands(sites));
                        progress(round, &label, &side, &format!("{rate:.0}/s"));
                        rates.push(rate);
                    }
                }
                for round in rounds {
                    let label = format!("add, Postfix protocol, S={}", s.many_sites);
                    let p = self.postfix_adds(s.postfix_adds, s.many_sites)?;
                    progress(round, &label, "Postfix", &describe(&p));
                    r.many_postfix_rate.postfix.push(p.rate());
                    let f = self.flushd_adds(Protocol::Postfix, s.postfix_adds, s.many_sites)?;
                    progress(round, &label, "flushd", &describe(&f));
                    r.many_postfix_rate.flushd.push(f.rate());
                }
            }
            Workload::SendSite => {
                let send = Fixture::new(FixtureKind::SendSite, s.send_files, &self.options.domain)
                    .map_err(anyhow::Error::msg)?;
                for round in rounds {
                    let label = format!("send_site, {} files", s.send_files);
                    let p = self.postfix_delivery(&send)?;
                    progress(round, &label, "Postfix", &p.text());
                    r.send_ms.postfix.push(ms(p.took));
                    let f = self.flushd_delivery(&send)?;
                    progress(round, &label, "flushd", &f.text());
                    r.send_ms.flushd.push(ms(f.took));
                    let floor = floor(&send)?;
                    progress(round, &label, "utime+rename floor", &millis(floor));
                    r.floor_ms.push(ms(floor));
                }
            }
            Workload::Purge => {
                let purge = Fixture::new(FixtureKind::Purge, s.purge_logs, &self.options.domain)
                    .map_err(anyhow::Error::msg)?;
                for round in rounds {
                    let label = format!("purge, {} logs", s.purge_logs);
                    let p = self.postfix_delivery(&purge)?;
                    progress(round, &label, "Postfix", &p.text());
                    r.purge_ms.postfix.push(ms(p.took));
                    let f = self.flushd_delivery(&purge)?;
                    progress(round, &label, "flushd", &f.text());
                    r.purge_ms.flushd.push(ms(f.took));
                }
            }
            Workload::Idle => r.idle = Some(self.idle()?),
        }
        Ok(())
    }

    fn load_options(&self, target: Target, requests: u64, sites: u64) -> LoadOptions {
        LoadOptions {
            target,
            mix: Mix::only(Verb::Add),
            concurrency: self.options.concurrency,
            window: self.options.window,
            requests,
            sites,
            domain: self.options.domain.clone(),
            timeout: RUN_TIMEOUT,
            server_pids: Vec::new(),
            pss: None,
        }
    }

    /// Adds to the lab's flush(8), from empty logs; checked.
    fn postfix_adds(&self, requests: u64, sites: u64) -> Result<LoadReport> {
        let queue = self.lab.queue_dir();
        fixture::reset(queue)?;
        settle();
        let mut options =
            self.load_options(Target::Postfix(queue.join("public/flush")), requests, sites);
        options.pss = Some(self.lab_selector.clone());
        let report = load::run(&options)?;
        check_load(&report, requests, "Postfix")?;
        verify_adds(queue, requests, sites, &self.options.domain)
            .map_err(|e| anyhow::anyhow!("Postfix add run incomplete: {e}"))?;
        Ok(report)
    }

    /// Adds to a fresh flushd; checked.
    fn flushd_adds(&self, protocol: Protocol, requests: u64, sites: u64) -> Result<LoadReport> {
        let domain = &self.options.domain;
        self.flushd_load(protocol, requests, sites, domain, |report, queue| {
            check_load(report, requests, "flushd")?;
            verify_adds(queue, requests, sites, domain)
                .map_err(|e| anyhow::anyhow!("flushd add run incomplete: {e}"))
        })
    }

    /// Adds for sites that no `fast_flush_domains` lists, to a fresh flushd:
    /// the cost of its connections and verdicts alone. Checked: every one
    /// answered DENY, no log written.
    fn flushd_denied(&self, requests: u64, sites: u64) -> Result<LoadReport> {
        self.flushd_load(Protocol::Postfix, requests, sites, UNLISTED_DOMAIN, |report, queue| {
            let denied = report.statuses[Status::Deny.index()];
            ensure!(
                denied == requests && report.errors == 0,
                "flushd: {denied} of {requests} requests for {UNLISTED_DOMAIN} answered DENY, {} errors (first: {})",
                report.errors,
                report.first_error.as_deref().unwrap_or("none")
            );
            let logs = fs::read_dir(queue.join("flush"))?.count();
            ensure!(logs == 0, "flushd wrote {logs} logs for denied sites");
            Ok(())
        })
    }

    /// The same adds to the plain threaded server of [`FloorServer`], one
    /// thread per client, on a fresh queue directory; checked.
    fn server_floor_adds(&self, requests: u64, sites: u64) -> Result<LoadReport> {
        let root = scratch_dir("server-floor")?;
        let queue = FlushdProcess::prepare_queue(root.path())?;
        let socket = root.path().join("flush.floor");
        let keep_open = flush_actors::writer::DEFAULT_MAX_OPEN_LOGS;
        let server = FloorServer::start(&socket, &queue, self.options.concurrency, keep_open)
            .context("start the plain threaded server")?;
        settle();
        let report = load::run(&self.load_options(Target::Postfix(socket), requests, sites));
        let failures = server.stop();
        let report = report?;
        check_load(&report, requests, "plain threaded server")?;
        ensure!(
            failures == 0,
            "plain threaded server: {failures} connections failed"
        );
        verify_adds(&queue, requests, sites, &self.options.domain)
            .map_err(|e| anyhow::anyhow!("plain threaded server's adds incomplete: {e}"))?;
        Ok(report)
    }

    /// Runs `requests` adds for `sites` sites of `domain` against a fresh
    /// flushd and checks the outcome with `check(report, queue)`.
    fn flushd_load(
        &self,
        protocol: Protocol,
        requests: u64,
        sites: u64,
        domain: &str,
        check: impl FnOnce(&LoadReport, &Path) -> Result<()>,
    ) -> Result<LoadReport> {
        let root = scratch_dir("flushd")?;
        let queue = FlushdProcess::prepare_queue(root.path())?;
        let _sink = QmgrSink::start(&queue, self.options.qmgr)?;
        let daemon =
            FlushdProcess::start(&self.options.flushd, root.path(), &self.options.domain, &[])?;
        let target = match protocol {
            Protocol::Postfix => Target::Postfix(daemon.postfix_socket()),
            Protocol::Line => Target::Line(daemon.line_address()),
        };
        let mut options = self.load_options(target, requests, sites);
        options.domain = domain.to_string();
        options.server_pids = vec![daemon.pid()];
        settle();
        let report = load::run(&options)?;
        check(&report, &queue).with_context(|| daemon.log_text())?;
        daemon.stop().context("stop flushd")?;
        Ok(report)
    }

    fn postfix_delivery(&self, fixture: &Fixture) -> Result<Delivered> {
        let queue = self.lab.queue_dir();
        fixture::reset(queue)?;
        fixture.build(queue)?;
        self.lab_sink.clear();
        settle();
        let took =
            deliver(&queue.join("public/flush"), queue, fixture).context("Postfix delivery")?;
        Ok(Delivered::after(took, &self.lab_sink))
    }

    /// One delivery of `fixture` by a fresh flushd; checked.
    fn flushd_delivery(&self, fixture: &Fixture) -> Result<Delivered> {
        let root = scratch_dir("flushd")?;
        let queue = FlushdProcess::prepare_queue(root.path())?;
        let sink = QmgrSink::start(&queue, self.options.qmgr)?;
        fixture.build(&queue)?;
        let daemon =
            FlushdProcess::start(&self.options.flushd, root.path(), &self.options.domain, &[])?;
        settle();
        let took = deliver(&daemon.postfix_socket(), &queue, fixture)
            .with_context(|| format!("flushd delivery; its log: {}", daemon.log_text()))?;
        let delivered = Delivered::after(took, &sink);
        daemon.stop().context("stop flushd")?;
        Ok(delivered)
    }

    /// A flushd adds many sites once, then idles until its writers retire.
    fn idle(&self) -> Result<IdleResult> {
        let root = scratch_dir("flushd")?;
        let queue = FlushdProcess::prepare_queue(root.path())?;
        let _sink = QmgrSink::start(&queue, self.options.qmgr)?;
        // The quick run does not wait the default 100 s.
        let overrides = if self.options.quick {
            vec!["max_idle=5s".to_string()]
        } else {
            Vec::new()
        };
        let daemon = FlushdProcess::start(
            &self.options.flushd,
            root.path(),
            &self.options.domain,
            &overrides,
        )?;
        let sites = self.sizes.idle_sites;
        let mut options = self.load_options(Target::Line(daemon.line_address()), sites, sites);
        options.server_pids = vec![daemon.pid()];
        let report = load::run(&options)?;
        check_load(&report, sites, "flushd")?;
        verify_adds(&queue, sites, sites, &self.options.domain).map_err(anyhow::Error::msg)?;
        let rss_after_adds_kib = status_kib(daemon.pid(), "VmRSS")?;
        eprintln!(
            "idle: {sites} sites added once ({}); RSS {}; waiting for max_idle",
            describe(&report),
            mib(rss_after_adds_kib)
        );
        let idle_start = Instant::now();
        let limit = Duration::from_secs(if self.options.quick { 60 } else { 200 });
        let mut live = u64::MAX;
        while idle_start.elapsed() < limit {
            thread::sleep(Duration::from_secs(1));
            live = live_writers(&daemon.stats()?).context("stats without writers.live_writers")?;
            if live == 0 {
                break;
            }
        }
        let idle_wait = idle_start.elapsed();
        let rss_at_zero_kib = status_kib(daemon.pid(), "VmRSS")?;
        // Retired writers stop and free their memory asynchronously, and
        // the allocator returns pages to the system after a delay: measure
        // once that has had time to happen.
        thread::sleep(IDLE_SETTLE);
        let rss_after_idle_kib = status_kib(daemon.pid(), "VmRSS")?;
        eprintln!(
            "idle: after {:.0} s, {live} live writers, RSS {}; {} s later RSS {}",
            idle_wait.as_secs_f64(),
            mib(rss_at_zero_kib),
            IDLE_SETTLE.as_secs(),
            mib(rss_after_idle_kib)
        );
        daemon.stop().context("stop flushd")?;
        Ok(IdleResult {
            rss_after_adds_kib,
            rss_after_idle_kib,
            live_writers_after_idle: live,
            idle_wait,
        })
    }
}

/// A checked delivery: its time, and the qmgr triggers it sent.
#[derive(Debug, Clone, Copy)]
struct Delivered {
    took: Duration,
    triggers: usize,
}

impl Delivered {
    /// Counts the triggers `sink` received, after a moment for the last one
    /// (flushd sends `I` after the files moved).
    fn after(took: Duration, sink: &QmgrSink) -> Delivered {
        thread::sleep(Duration::from_millis(100));
        Delivered {
            took,
            triggers: sink.seen().len(),
        }
    }

    fn text(&self) -> String {
        format!("{} ({} qmgr triggers)", millis(self.took), self.triggers)
    }
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Postfix,
    Line,
}

/// Sends the fixture's request over the Postfix protocol to `socket`, waits
/// until the delivery is complete, checks it, and returns the time from the
/// request to completion.
fn deliver(socket: &Path, queue: &Path, fixture: &Fixture) -> Result<Duration> {
    let request = match fixture.kind {
        FixtureKind::SendSite => Request::SendSite(SendSite::new(fixture.send_site())),
        FixtureKind::Purge => Request::Purge(Purge),
    };
    let mut watch = fixture.watch(queue);
    let start = Instant::now();
    let status = postfix_request(socket, &request, RUN_TIMEOUT)?;
    ensure!(
        status == Status::Ok,
        "{} answered {status}",
        request.to_line()
    );
    // send_site answers after the work; purge answers first and works after.
    while !watch.done() {
        if start.elapsed() > RUN_TIMEOUT {
            bail!(
                "not delivered after {RUN_TIMEOUT:?}: {}",
                fixture.verify(queue)
            );
        }
        thread::sleep(POLL_INTERVAL);
    }
    let took = start.elapsed();
    let check = fixture.verify(queue);
    ensure!(check.complete(), "delivery incomplete: {check}");
    Ok(took)
}

/// The utime + rename loop over a fresh copy of the fixture; checked.
fn floor(fixture: &Fixture) -> Result<Duration> {
    let root = scratch_dir("floor")?;
    let queue = root.path().join("queue");
    fs::create_dir(&queue)?;
    fixture.build(&queue)?;
    settle();
    let took = fixture.floor(&queue)?;
    let check = fixture.verify(&queue);
    ensure!(
        check.moved == fixture.count,
        "floor run incomplete: {check}"
    );
    Ok(took)
}

/// The rate of the plain append loop over a fresh queue directory, with
/// flushd's default number of logs kept open; checked like an add run.
fn append_floor_rate(requests: u64, sites: u64, domain: &str) -> Result<f64> {
    let root = scratch_dir("append-floor")?;
    let queue = FlushdProcess::prepare_queue(root.path())?;
    settle();
    let keep_open = flush_actors::writer::DEFAULT_MAX_OPEN_LOGS;
    let took = append_floor(&queue, requests, sites, domain, keep_open)?;
    verify_adds(&queue, requests, sites, domain)
        .map_err(|e| anyhow::anyhow!("append loop incomplete: {e}"))?;
    Ok(append_floor::rate(requests, took))
}

/// All replies OK and nothing failed.
fn check_load(report: &LoadReport, requests: u64, side: &str) -> Result<()> {
    ensure!(
        report.all_ok(requests),
        "{side}: {} of {requests} requests answered OK, {} errors (first: {})",
        report.statuses[Status::Ok.index()],
        report.errors,
        report.first_error.as_deref().unwrap_or("none")
    );
    Ok(())
}

/// Drops service `name` (and its continuation lines) from master.cf.
fn remove_service(master_cf: &Path, name: &str) -> Result<()> {
    let text = fs::read_to_string(master_cf)?;
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            skipping = line.split_whitespace().next() == Some(name);
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    fs::write(master_cf, out)?;
    Ok(())
}

/// Writes out dirty data, so that the next run does not pay for it.
fn settle() {
    rustix::fs::sync();
}

fn scratch_dir(what: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("flush-bench-{what}."))
        .tempdir()?;
    Ok(dir)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn describe(report: &LoadReport) -> String {
    let mut text = load::brief(report);
    if report.memory.pss_kib > 0 {
        text += &format!(
            ", peak PSS {} ({} processes at most)",
            mib(report.memory.pss_kib),
            report.memory.pss_processes
        );
    }
    if report.memory.hwm_kib > 0 {
        text += &format!(", peak RSS {}", mib(report.memory.peak_rss_kib()));
    }
    text
}

fn progress(round: usize, workload: &str, side: &str, what: &str) {
    eprintln!("round {round}: {workload}: {side}: {what}");
}

/// The table's rows from the medians.
fn rows(r: &Results, s: Sizes, options: &CompareOptions) -> Vec<Row> {
    let c = options.concurrency;
    let w = options.window;
    let n = thousands(s.postfix_adds);
    let sites = thousands(s.sites);
    let many = thousands(s.many_sites);
    let line_n = thousands(s.line_adds);
    let kept = thousands(flush_actors::writer::DEFAULT_MAX_OPEN_LOGS as u64);
    let mut rows = vec![
        Row {
            workload: format!("add, Postfix protocol, C={c}, S={sites}, N={n}: requests/s"),
            reference: r.add_rate.postfix(),
            flushd: r.add_rate.flushd(),
            unit: Unit::Rate,
            goal: Goal::RatioAtLeast(3.0),
        },
        Row {
            workload: "  same run: p99 latency".into(),
            reference: r.add_p99_ms.postfix(),
            flushd: r.add_p99_ms.flushd(),
            unit: Unit::Millis,
            goal: Goal::RatioAtMost(1.0 / 3.0),
        },
        Row {
            workload: "  same run: flushd answering DENY (sites no fast_flush_domains lists: no file work), its connections' own part (reference: Postfix's add)".into(),
            reference: r.add_rate.postfix(),
            flushd: median(&r.deny_rate),
            unit: Unit::Rate,
            goal: Goal::Report,
        },
        Row {
            workload: "  same run: flushd vs a plain server that only appends, the floor (a thread per client; no event loop, actors, batching, matching or memory of IDs; reference: that server)".into(),
            reference: median(&r.server_floor_rate),
            flushd: r.add_rate.flushd(),
            unit: Unit::Rate,
            goal: Goal::Report,
        },
        Row {
            workload: format!(
                "add, line protocol, {c} connections x {w} pipelined, S={sites}, N={line_n}: requests/s (reference: Postfix's add over its protocol)"
            ),
            reference: r.add_rate.postfix(),
            flushd: r.line_rate.flushd(),
            unit: Unit::Rate,
            goal: Goal::RatioAtLeast(50.0),
        },
        Row {
            workload: "  same run: p99 latency (reference: Postfix's add p99)".into(),
            reference: r.add_p99_ms.postfix(),
            flushd: r.line_p99_ms.flushd(),
            unit: Unit::Millis,
            goal: Goal::Below(1.0),
        },
        Row {
            workload: format!(
                "add, line protocol, S={many}, N={line_n}: requests/s (reference: flushd at S={sites})"
            ),
            reference: r.line_rate.flushd(),
            flushd: r.many_line_rate.flushd(),
            unit: Unit::Rate,
            goal: Goal::RatioAtLeast(0.8),
        },
        Row {
            workload: format!(
                "  same: the file system's part, a plain one-thread loop of locked appends ({kept} logs kept open) at S={many} (reference: the loop at S={sites})"
            ),
            reference: median(&r.append_floor_rate),
            flushd: median(&r.many_append_floor_rate),
            unit: Unit::Rate,
            goal: Goal::Report,
        },
        Row {
            workload: format!("add, Postfix protocol, C={c}, S={many}, N={n}: requests/s"),
            reference: r.many_postfix_rate.postfix(),
            flushd: r.many_postfix_rate.flushd(),
            unit: Unit::Rate,
            goal: Goal::Report,
        },
        Row {
            workload: format!("send_site of {} present queue files: time", thousands(s.send_files)),
            reference: r.send_ms.postfix(),
            flushd: r.send_ms.flushd(),
            unit: Unit::Millis,
            goal: Goal::RatioAtMost(1.0),
        },
        Row {
            workload: "  same: flushd vs a plain utime+rename loop (reference: the loop)".into(),
            reference: median(&r.floor_ms),
            flushd: r.send_ms.flushd(),
            unit: Unit::Millis,
            goal: Goal::Report,
        },
        Row {
            workload: format!(
                "purge of {} non-empty logs, until all delivered: time",
                thousands(s.purge_logs)
            ),
            reference: r.purge_ms.postfix(),
            flushd: r.purge_ms.flushd(),
            unit: Unit::Millis,
            goal: Goal::RatioAtMost(0.5),
        },
        Row {
            workload: "memory under the first row: flushd peak RSS (reference: Postfix flush+master peak PSS)".into(),
            reference: r.add_memory_kib.postfix(),
            flushd: r.add_memory_kib.flushd(),
            unit: Unit::KiB,
            goal: Goal::RatioAtMost(1.0),
        },
    ];
    rows.retain(|row| row.flushd.is_some());
    if let Some(idle) = r.idle {
        let idle_sites = thousands(s.idle_sites);
        rows.push(Row {
            workload: format!("memory: flushd RSS after {idle_sites} sites added once"),
            reference: None,
            flushd: Some(idle.rss_after_adds_kib as f64),
            unit: Unit::KiB,
            goal: Goal::AtMost(64.0 * 1024.0),
        });
        rows.push(Row {
            workload: format!(
                "  then idle until no writer is left (max_idle{}; {:.0} s), plus 10 s: RSS",
                if options.quick {
                    " 5s in --quick"
                } else {
                    " 100s"
                },
                idle.idle_wait.as_secs_f64()
            ),
            reference: None,
            flushd: Some(idle.rss_after_idle_kib as f64),
            unit: Unit::KiB,
            goal: Goal::AtMost(64.0 * 1024.0),
        });
        rows.push(Row {
            workload: "  live writers after max_idle".into(),
            reference: None,
            flushd: Some(idle.live_writers_after_idle as f64),
            unit: Unit::Count,
            goal: Goal::AtMost(0.0),
        });
    }
    rows
}

fn thousands(n: u64) -> String {
    super::table::thousands(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_service_and_its_continuation_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("master.cf");
        fs::write(
            &path,
            "pickup unix n - n 60 1 pickup\nqmgr unix n - n 300 1 qmgr\n  -o x=y\nflush unix n - n 1000? 0 flush\n",
        )
        .unwrap();
        remove_service(&path, "qmgr").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "pickup unix n - n 60 1 pickup\nflush unix n - n 1000? 0 flush\n"
        );
    }

    #[test]
    fn rows_use_medians_and_name_their_references() {
        let r = Results {
            add_rate: Pair {
                postfix: vec![10_000.0, 14_000.0, 12_000.0],
                flushd: vec![40_000.0, 36_000.0, 50_000.0],
            },
            line_rate: Pair {
                postfix: vec![],
                flushd: vec![700_000.0],
            },
            deny_rate: vec![45_000.0, 44_000.0, 47_000.0],
            server_floor_rate: vec![60_000.0, 50_000.0, 55_000.0],
            ..Results::default()
        };
        let options = CompareOptions {
            flushd: PathBuf::from("flushd"),
            rounds: 3,
            quick: false,
            concurrency: 16,
            window: 8,
            domain: "bench.test".into(),
            qmgr: QmgrKind::Unix,
            only: Vec::new(),
        };
        let rows = rows(&r, Sizes::FULL, &options);
        assert_eq!(rows[0].reference, Some(12_000.0));
        assert_eq!(rows[0].flushd, Some(40_000.0));
        assert_eq!(rows[0].met(), Some(true));
        // Rows without measurements are left out.
        assert_eq!(rows.len(), 4);
        assert!(rows[1].workload.contains("DENY"));
        assert_eq!(rows[1].reference, Some(12_000.0));
        assert_eq!(rows[1].flushd, Some(45_000.0));
        assert_eq!(rows[1].met(), None);
        assert!(rows[2].workload.contains("only appends"));
        assert_eq!(rows[2].reference, Some(55_000.0));
        assert_eq!(rows[2].flushd, Some(40_000.0));
        assert_eq!(rows[2].met(), None);
        assert!(rows[3].workload.contains("16 connections x 8"));
        assert_eq!(rows[3].reference, Some(12_000.0));
        assert_eq!(rows[3].met(), Some(true));
        assert!(rows.iter().all(|row| row.flushd.is_some()));
    }
}
