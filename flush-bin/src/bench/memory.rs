//! A server's memory while a run goes on, read from /proc.
//!
//! flushd is one long-lived process: its `VmHWM` (peak resident set) at the
//! end of a run is its peak, and `VmRSS` sampled during the run shows the
//! same from outside. Postfix's flush(8) processes come and go (each serves
//! `max_use` clients, then exits), so for them the sampler sums the PSS
//! (`/proc/PID/smaps_rollup`, shared pages divided among their users) of
//! every process with a given name, optionally only in one process group,
//! and keeps the largest sum seen.

use serde_json::{json, Value};
use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How often the sampler reads /proc.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

/// The value in kB of `field` in a /proc file of `Name:   123 kB` lines.
pub fn parse_kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `field` (`VmRSS`, `VmHWM`) of process `pid`, in kB.
///
/// # Errors
/// The process is gone or the field is missing.
pub fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_kib_field(&text, field)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status: no {field}")))
}

/// The PSS of process `pid`, in kB.
///
/// # Errors
/// The process is gone, or its smaps cannot be read (another user's process
/// without privilege).
pub fn pss_kib(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    parse_kib_field(&text, "Pss")
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/smaps_rollup: no Pss")))
}

/// Which processes to sum the PSS of: those whose command name
/// (`/proc/PID/comm`) is one of `names`, and if `pgid` is given, only those
/// in that process group.
#[derive(Debug, Clone, Default)]
pub struct ProcessSelector {
    /// Command names, for example `flush` and `master`.
    pub names: Vec<String>,
    /// Only this process group (a Postfix instance's master), if set.
    pub pgid: Option<i32>,
}

impl ProcessSelector {
    /// The matching processes now.
    pub fn pids(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| self.matches(*pid))
            .collect()
    }

    fn matches(&self, pid: u32) -> bool {
        let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) else {
            return false;
        };
        if !self.names.iter().any(|n| n == comm.trim_end()) {
            return false;
        }
        match self.pgid {
            None => true,
            Some(pgid) => {
                fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| process_group(&stat))
                    == Some(pgid)
            }
        }
    }
}

/// The process group in a `/proc/PID/stat` line (the fifth field; the
/// command name before it is in parentheses and may hold spaces).
fn process_group(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// What a sampler saw, in kB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryPeaks {
    /// Largest sum of `VmRSS` of the given pids over the samples.
    pub rss_kib: u64,
    /// Sum of `VmHWM` of the given pids at the end (their peaks).
    pub hwm_kib: u64,
    /// Largest sum of PSS of the selected processes over the samples.
    pub pss_kib: u64,
    /// Most selected processes alive in one sample.
    pub pss_processes: usize,
}

impl MemoryPeaks {
    /// The peak resident memory of the given pids: `VmHWM` when known, else
    /// the sampled peak.
    pub fn peak_rss_kib(&self) -> u64 {
        self.hwm_kib.max(self.rss_kib)
    }

    /// As JSON (kB).
    pub fn to_json(&self) -> Value {
        json!({
            "rss_peak_kib": self.rss_kib,
            "hwm_kib": self.hwm_kib,
            "pss_peak_kib": self.pss_kib,
            "pss_processes": self.pss_processes,
        })
    }
}

/// A thread that samples memory every [`SAMPLE_INTERVAL`] until stopped.
pub struct MemorySampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<MemoryPeaks>,
    pids: Vec<u32>,
}

impl MemorySampler {
    /// Starts sampling `pids` (RSS) and `selector` (PSS).
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn start(pids: Vec<u32>, selector: Option<ProcessSelector>) -> io::Result<MemorySampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let sampled = pids.clone();
        let handle = thread::Builder::new()
            .name("memory-sampler".into())
            .spawn(move || {
                let mut peaks = MemoryPeaks::default();
                loop {
                    sample(&sampled, selector.as_ref(), &mut peaks);
                    if flag.load(Ordering::Relaxed) {
                        return peaks;
                    }
                    thread::sleep(SAMPLE_INTERVAL);
                }
            })?;
        Ok(MemorySampler { stop, handle, pids })
    }

    /// Takes a last sample and returns the peaks.
    pub fn finish(self) -> MemoryPeaks {
        self.stop.store(true, Ordering::Relaxed);
        let mut peaks = self.handle.join().unwrap_or_default();
        peaks.hwm_kib = self
            .pids
            .iter()
            .filter_map(|pid| status_kib(*pid, "VmHWM").ok())
            .sum();
        peaks
    }
}

fn sample(pids: &[u32], selector: Option<&ProcessSelector>, peaks: &mut MemoryPeaks) {
    let rss: u64 = pids
        .iter()
        .filter_map(|pid| status_kib(*pid, "VmRSS").ok())
        .sum();
    peaks.rss_kib = peaks.rss_kib.max(rss);
    if let Some(selector) = selector {
        let pids = selector.pids();
        // A process may exit between listing and reading: it counts as 0.
        let pss: u64 = pids.iter().filter_map(|pid| pss_kib(*pid).ok()).sum();
        peaks.pss_kib = peaks.pss_kib.max(pss);
        peaks.pss_processes = peaks.pss_processes.max(pids.len());
    }
}

/// `kib` as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_fields() {
        let status = "Name:\tflushd\nVmPeak:\t  3892 kB\nVmHWM:\t    1968 kB\nVmRSS:\t 1900 kB\n";
        assert_eq!(parse_kib_field(status, "VmHWM"), Some(1968));
        assert_eq!(parse_kib_field(status, "VmRSS"), Some(1900));
        assert_eq!(parse_kib_field(status, "VmSwap"), None);
        let rollup = "5610-7fff ---p 0 00:00 0  [rollup]\nRss:   1740 kB\nPss:    411 kB\nPss_Dirty:  116 kB\n";
        assert_eq!(parse_kib_field(rollup, "Pss"), Some(411));
    }

    #[test]
    fn process_group_skips_the_command_name() {
        assert_eq!(process_group("42 (a b) c) S 1 777 777 0"), Some(777));
        assert_eq!(process_group("garbage"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS").unwrap() > 0);
        assert!(pss_kib(me).unwrap() > 0);
        let comm = fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        let pgid = rustix::process::getpgrp().as_raw_nonzero().get();
        let selector = ProcessSelector {
            names: vec![comm.trim_end().to_string()],
            pgid: Some(pgid),
        };
        assert!(selector.pids().contains(&me));
        let sampler = MemorySampler::start(vec![me], Some(selector)).unwrap();
        let peaks = sampler.finish();
        assert!(
            peaks.rss_kib > 0 && peaks.hwm_kib >= peaks.rss_kib / 2,
            "{peaks:?}"
        );
        assert!(peaks.pss_kib > 0 && peaks.pss_processes >= 1, "{peaks:?}");
        let other = ProcessSelector {
            names: vec!["no-such-process-name".into()],
            pgid: None,
        };
        assert!(other.pids().is_empty());
    }
}
