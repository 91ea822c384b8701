//! `flush-bench load`: C concurrent clients send N requests of a mix and
//! time each one.
//!
//! Over the Postfix protocol each client opens one connection per request,
//! as smtpd, postqueue and the delivery agents do with flush(8). Over the
//! line protocol each client keeps one connection and keeps up to W requests
//! in flight on it. Clients are threads with blocking sockets; they take
//! request indices in small chunks from a shared counter, so all finish at
//! about the same time. A request's latency runs from just before its bytes
//! are written (Postfix protocol: before connecting) to its reply.
//!
//! The run stops at the first failed request (I/O error, timeout, malformed
//! reply): a run that did not do its work is not a result.

use super::latency::{millis, Summary};
use super::memory::{mib, MemoryPeaks, MemorySampler, ProcessSelector};
use super::mix::Mix;
use super::transport::{postfix_request, LineConnection};
use flush_proto::Status;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Most concurrent clients.
pub const MAX_CONCURRENCY: usize = 1024;
/// Largest pipelining window.
pub const MAX_WINDOW: usize = 4096;
/// Most requests in one run (each keeps an 8-byte latency sample).
pub const MAX_REQUESTS: u64 = 20_000_000;
/// Request indices a client takes at a time.
const CHUNK: u64 = 32;

/// Where the requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Postfix-protocol UNIX socket (`public/flush`): one connection per request.
    Postfix(PathBuf),
    /// A line-protocol address (`unix:/path` or `host:port`): persistent,
    /// pipelined connections.
    Line(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Postfix(path) => write!(f, "postfix:{}", path.display()),
            Target::Line(addr) => write!(f, "line:{addr}"),
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where to send.
    pub target: Target,
    /// Which requests.
    pub mix: Mix,
    /// Concurrent clients (line protocol: connections).
    pub concurrency: usize,
    /// Requests in flight per line-protocol connection.
    pub window: usize,
    /// Requests in all.
    pub requests: u64,
    /// Distinct sites.
    pub sites: u64,
    /// Parent domain of the sites.
    pub domain: String,
    /// Longest wait for one reply.
    pub timeout: Duration,
    /// Server processes whose RSS to sample (summed).
    pub server_pids: Vec<u32>,
    /// Processes whose PSS to sample (summed), for servers that fork.
    pub pss: Option<ProcessSelector>,
}

impl LoadOptions {
    /// Checks the bounds of every count.
    ///
    /// # Errors
    /// A count of zero or above its limit.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!("concurrency must be 1..={MAX_CONCURRENCY}"));
        }
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return Err(format!("window must be 1..={MAX_WINDOW}"));
        }
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            return Err(format!("requests must be 1..={MAX_REQUESTS}"));
        }
        if !(1..=u64::from(u32::MAX)).contains(&self.sites) {
            return Err("sites must be at least 1".to_string());
        }
        Ok(())
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests answered.
    pub answered: u64,
    /// Wall-clock time from the first request to the last reply.
    pub elapsed: Duration,
    /// Replies by status, indexed by [`Status::index`].
    pub statuses: [u64; 4],
    /// Requests that failed (the run stops at the first).
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Latency percentiles of the answered requests.
    pub latency: Summary,
    /// The server's memory during the run.
    pub memory: MemoryPeaks,
}

impl LoadReport {
    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.answered as f64 / secs
        } else {
            0.0
        }
    }

    /// Whether all `requests` were answered OK and nothing failed.
    pub fn all_ok(&self, requests: u64) -> bool {
        self.errors == 0 && self.statuses[Status::Ok.index()] == requests
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let statuses: serde_json::Map<String, Value> = Status::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), self.statuses[s.index()].into()))
            .collect();
        json!({
            "answered": self.answered,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "requests_per_s": self.rate(),
            "statuses": statuses,
            "errors": self.errors,
            "first_error": self.first_error,
            "latency": self.latency.to_json(),
            "memory": self.memory.to_json(),
        })
    }

    /// The report for people, a few lines.
    pub fn text(&self, options: &LoadOptions) -> String {
        let mut out = format!(
            "{} requests of {} over {} in {:.3} s: {:.0} requests/s\n",
            self.answered,
            options.mix,
            options.target,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        let statuses: Vec<String> = Status::ALL
            .iter()
            .map(|s| format!("{s} {}", self.statuses[s.index()]))
            .collect();
        out += &format!("replies: {}; errors {}\n", statuses.join(", "), self.errors);
        if let Some(e) = &self.first_error {
            out += &format!("first error: {e}\n");
        }
        out += &format!("latency: {}\n", self.latency.line());
        if !options.server_pids.is_empty() {
            out += &format!(
                "server peak RSS: {} (VmHWM), {} (sampled VmRSS)\n",
                mib(self.memory.hwm_kib),
                mib(self.memory.rss_kib)
            );
        }
        if let Some(selector) = &options.pss {
            out += &format!(
                "peak PSS of {}: {} over at most {} processes\n",
                selector.names.join("+"),
                mib(self.memory.pss_kib),
                self.memory.pss_processes
            );
        }
        out
    }
}

/// What one client thread collected.
#[derive(Default)]
struct ClientResult {
    latencies: Vec<u64>,
    statuses: [u64; 4],
    errors: u64,
    first_error: Option<String>,
}

impl ClientResult {
    fn fail(&mut self, error: io::Error, abort: &AtomicBool) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
        abort.store(true, Ordering::Relaxed);
    }
}

/// Hands out request indices in chunks.
struct Dispenser {
    next: AtomicU64,
    end: u64,
    abort: AtomicBool,
}

impl Dispenser {
    /// The next chunk of indices, or `None` when all are taken or the run aborted.
    fn take(&self) -> Option<std::ops::Range<u64>> {
        if self.abort.load(Ordering::Relaxed) {
            return None;
        }
        let start = self.next.fetch_add(CHUNK, Ordering::Relaxed);
        (start < self.end).then(|| start..(start + CHUNK).min(self.end))
    }
}

/// Runs the load and returns what it did.
///
/// # Errors
/// Invalid options, or a client or sampler thread that cannot be started.
/// Failed requests are not errors: they are counted in the report.
pub fn run(options: &LoadOptions) -> io::Result<LoadReport> {
    options.validate().map_err(io::Error::other)?;
    let dispenser = Arc::new(Dispenser {
        next: AtomicU64::new(0),
        end: options.requests,
        abort: AtomicBool::new(false),
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    let sampler = MemorySampler::start(options.server_pids.clone(), options.pss.clone())?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for n in 0..options.concurrency {
        let shared = Arc::clone(&dispenser);
        let results = Arc::clone(&results);
        let options = options.clone();
        let handle = thread::Builder::new()
            .name(format!("client-{n}"))
            .spawn(move || {
                let result = match &options.target {
                    Target::Postfix(_) => postfix_client(&options, &shared),
                    Target::Line(_) => line_client(&options, &shared),
                };
                if let Ok(mut all) = results.lock() {
                    all.push(result);
                }
            });
        match handle {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                dispenser.abort.store(true, Ordering::Relaxed);
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(e);
            }
        }
    }
    for handle in handles {
        let _ = handle.join();
    }
    let elapsed = started.elapsed();
    let memory = sampler.finish();

    let mut report = LoadReport {
        elapsed,
        memory,
        ..LoadReport::default()
    };
    let mut latencies = Vec::with_capacity(options.requests as usize);
    let all = std::mem::take(&mut *results.lock().map_err(|_| io::Error::other("poisoned"))?);
    for result in all {
        latencies.extend_from_slice(&result.latencies);
        for (total, n) in report.statuses.iter_mut().zip(result.statuses) {
            *total += n;
        }
        report.errors += result.errors;
        if report.first_error.is_none() {
            report.first_error = result.first_error;
        }
    }
    report.answered = latencies.len() as u64;
    report.latency = Summary::from_nanos(&mut latencies);
    Ok(report)
}

/// One Postfix-protocol client: a connection per request.
fn postfix_client(options: &LoadOptions, dispenser: &Dispenser) -> ClientResult {
    let mut result = ClientResult::default();
    let Target::Postfix(path) = &options.target else {
        return result;
    };
    while let Some(chunk) = dispenser.take() {
        for i in chunk {
            let request = options.mix.request(i, options.sites, &options.domain);
            let start = Instant::now();
            match postfix_request(path, &request, options.timeout) {
                Ok(status) => {
                    result.latencies.push(nanos(start.elapsed()));
                    result.statuses[status.index()] += 1;
                }
                Err(e) => {
                    result.fail(e, &dispenser.abort);
                    return result;
                }
            }
        }
    }
    result
}

/// One line-protocol client: a persistent connection with up to `window`
/// requests in flight.
fn line_client(options: &LoadOptions, dispenser: &Dispenser) -> ClientResult {
    let mut result = ClientResult::default();
    let Target::Line(address) = &options.target else {
        return result;
    };
    let mut conn = match LineConnection::connect(address, options.timeout) {
        Ok(conn) => conn,
        Err(e) => {
            result.fail(e, &dispenser.abort);
            return result;
        }
    };
    if let Err(e) = pipeline(options, dispenser, &mut conn, &mut result) {
        result.fail(e, &dispenser.abort);
    }
    result
}

fn pipeline(
    options: &LoadOptions,
    dispenser: &Dispenser,
    conn: &mut LineConnection,
    result: &mut ClientResult,
) -> io::Result<()> {
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(options.window);
    let mut chunk = 0..0;
    loop {
        let mut queued = 0;
        while in_flight.len() + queued < options.window {
            let i = match chunk.next() {
                Some(i) => i,
                None => match dispenser.take() {
                    Some(next) => {
                        chunk = next;
                        continue;
                    }
                    None => break,
                },
            };
            conn.queue(&options.mix.request(i, options.sites, &options.domain))?;
            queued += 1;
        }
        if queued > 0 {
            let sent = Instant::now();
            conn.send()?;
            in_flight.extend(std::iter::repeat_n(sent, queued));
        }
        if in_flight.is_empty() {
            return Ok(());
        }
        let mut extra = false;
        conn.read_replies(|reply| match in_flight.pop_front() {
            Some(sent) => {
                result.latencies.push(nanos(sent.elapsed()));
                result.statuses[reply.status.index()] += 1;
            }
            None => extra = true,
        })?;
        if extra {
            return Err(io::Error::other("more replies than requests"));
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A one-line summary: `14204 req/s, p99 8.70 ms`.
pub fn brief(report: &LoadReport) -> String {
    format!(
        "{:.0} req/s, p99 {}",
        report.rate(),
        millis(report.latency.p99)
    )
}
