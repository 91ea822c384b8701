//! Wiring: start every actor for one queue directory, and stop them in order.
//!
//! `flush-bin` parses arguments and configuration, binds nothing itself, and
//! calls [`start`]; tests call it the same way.

use crate::config::Config;
use crate::domains::DomainError;
use crate::gateway::{
    self, Bound, Gateway, GatewayStats, ListenAddr, Listener, OwnSocket, ServiceAddrs, StopGateway,
    MAX_SEND_FILES_IN_FLIGHT,
};
use crate::janitor::{Janitor, JanitorSettings, JanitorStats};
use crate::matcher::{DomainMatcher, MatcherStats, Reload};
use crate::queue::QueueLayout;
use crate::stats::{Report, StatsCollector, Tracked};
use crate::trigger::{self, TriggerStats};
use crate::writer::{CloseAll, OpenFileBudget, WriterLimits, WriterRegistry, WriterStats};
use actix::prelude::*;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Semaphore;

/// How long shutdown waits for sessions to answer what they have read.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What to serve, besides the configuration.
#[derive(Debug)]
pub struct ServerOptions {
    /// The validated configuration.
    pub config: Config,
    /// Line-protocol listeners.
    pub listen: Vec<ListenAddr>,
    /// Postfix-protocol listeners (UNIX socket paths).
    pub postfix_listen: Vec<PathBuf>,
    /// A Postfix-protocol socket inherited from master(8).
    pub inherited_postfix: Option<std::os::unix::net::UnixListener>,
    /// Longest line-protocol request.
    pub max_line: usize,
    /// Arbiters (threads) that run log writers.
    pub writer_threads: usize,
    /// Arbiters (threads) that accept connections and run their sessions.
    pub gateway_threads: usize,
    /// Logfiles kept open between requests.
    pub max_open_logs: usize,
    /// Writers alive at once.
    pub max_writers: usize,
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// `fast_flush_domains` could not be loaded (the error names it).
    #[error(transparent)]
    Domains(#[from] DomainError),
    /// A listener could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The queue directory could not be opened.
    #[error("queue directory {path}: {source}")]
    QueueDirectory {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A running server.
pub struct Server {
    gateway: Addr<Gateway>,
    registry: Addr<WriterRegistry>,
    matcher: Tracked<DomainMatcher, MatcherStats>,
    gateway_arbiters: Vec<Arbiter>,
    writer_arbiters: Vec<Arbiter>,
    gateway_stats: Arc<GatewayStats>,
}

/// Starts every actor on the current actix system.
///
/// # Errors
/// The domain list cannot be loaded or a listener cannot be bound; nothing is
/// left running then.
pub async fn start(options: ServerOptions) -> Result<Server, StartError> {
    let config = &options.config;
    // What can fail for reasons of configuration comes before the sockets
    // are bound, so that a refusal leaves no dead socket behind.
    let matcher_stats = Arc::new(MatcherStats::default());
    let matcher = DomainMatcher::new(config, Arc::clone(&matcher_stats))?;
    let layout = QueueLayout::new(
        config.queue_directory.clone(),
        &config.hash_queue_names,
        config.hash_queue_depth,
    );
    let flush_dir = layout.flush_dir();
    let trigger_stats = Arc::new(TriggerStats::default());
    let trigger = trigger::start(layout, Arc::clone(&trigger_stats)).map_err(|source| {
        StartError::QueueDirectory {
            path: config.queue_directory.clone(),
            source,
        }
    })?;

    let mut listeners = Vec::new();
    let wanted = (options.listen.iter().cloned().map(|a| (a, false))).chain(
        options
            .postfix_listen
            .iter()
            .map(|p| (ListenAddr::Unix(p.clone()), true)),
    );
    for (addr, postfix) in wanted {
        match bind_or_explain(&addr).await {
            Ok(bound) if postfix => listeners.push(Listener::Postfix(bound)),
            Ok(bound) => listeners.push(Listener::Line(bound)),
            Err(e) => {
                // Those bound already would be left behind as dead sockets.
                let bound_paths = listeners.iter().filter_map(|l| l.bound().unix_path());
                for socket in bound_paths.filter_map(OwnSocket::note) {
                    socket.remove();
                }
                return Err(e);
            }
        }
    }
    if let Some(std_listener) = options.inherited_postfix {
        std_listener
            .set_nonblocking(true)
            .map_err(|source| StartError::Bind {
                addr: "inherited socket".into(),
                source,
            })?;
        // Not ours to remove: master(8) owns the path.
        listeners.push(Listener::Postfix(Bound::Unix(std_listener, PathBuf::new())));
    }

    let matcher = matcher.start();
    let trigger = Tracked::new(trigger, Arc::clone(&trigger_stats), |s: &TriggerStats| {
        &s.mailbox
    });

    let arbiters: Vec<Arbiter> = (0..options.writer_threads.max(1))
        .map(|_| Arbiter::new())
        .collect();
    let writer_stats = Arc::new(WriterStats::default());
    let registry = WriterRegistry::new(
        flush_dir.clone(),
        arbiters.iter().map(Arbiter::handle).collect(),
        trigger.clone(),
        OpenFileBudget::new(options.max_open_logs),
        WriterLimits {
            max_idle: config.max_idle,
            max_writers: options.max_writers,
        },
        Arc::clone(&writer_stats),
    )
    .start();
    let registry_tracked = Tracked::new(
        registry.clone(),
        Arc::clone(&writer_stats),
        |s: &WriterStats| &s.registry,
    );

    let janitor_stats = Arc::new(JanitorStats::default());
    let janitor = Janitor::new(
        JanitorSettings {
            flush_dir,
            refresh_time: config.fast_flush_refresh_time,
            purge_time: config.fast_flush_purge_time,
            refresh_interval: config.flush_refresh_interval,
        },
        registry_tracked.clone(),
        Arc::clone(&janitor_stats),
    )
    .start();

    let gateway_stats = Arc::new(GatewayStats::new(options.gateway_threads));
    let sections: Vec<(&'static str, Arc<dyn Report>)> = vec![
        ("gateway", gateway_stats.clone()),
        ("matcher", matcher_stats.clone()),
        ("writers", writer_stats.clone()),
        ("trigger", trigger_stats.clone()),
        ("janitor", janitor_stats.clone()),
    ];
    let stats = StatsCollector::new(sections, config.queue_directory.clone()).start();

    let matcher = Tracked::new(matcher, matcher_stats, |s: &MatcherStats| &s.mailbox);
    let services = ServiceAddrs {
        matcher: matcher.clone(),
        registry: registry_tracked,
        trigger,
        janitor: Tracked::new(janitor, janitor_stats, |s: &JanitorStats| &s.mailbox),
        stats,
        send_files: Arc::new(Semaphore::new(MAX_SEND_FILES_IN_FLIGHT)),
    };
    // The first gateway thread is this one, beside the matcher and the
    // registry: its batches reach them without a thread hop.
    let gateway_arbiters: Vec<Arbiter> = (1..options.gateway_threads.max(1))
        .map(|_| Arbiter::new())
        .collect();
    let gateway_threads = std::iter::once(Arbiter::current())
        .chain(gateway_arbiters.iter().map(Arbiter::handle))
        .collect();
    let gateway = Gateway::new(
        listeners,
        gateway_threads,
        services,
        Arc::clone(&gateway_stats),
        options.max_line,
        config.flush_max_connections,
        config.ipc_timeout,
    )
    .start();
    Ok(Server {
        gateway,
        registry,
        matcher,
        gateway_arbiters,
        writer_arbiters: arbiters,
        gateway_stats,
    })
}

async fn bind_or_explain(addr: &ListenAddr) -> Result<Bound, StartError> {
    let bound = gateway::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    log::info!("listening on {addr}");
    Ok(bound)
}

impl Server {
    /// Re-reads `fast_flush_domains` (SIGHUP); the matcher logs the outcome.
    pub fn reload(&self) {
        let reload = self.matcher.send(Reload);
        actix_rt::spawn(async move {
            if let Ok(Err(e)) = reload.await {
                log::warn!("reload: {e}");
            }
        });
    }

    /// The gateway's counters (open and accepted connections): master(8)
    /// mode reads them to exit after `max_idle` without a connection.
    pub fn gateway_stats(&self) -> Arc<GatewayStats> {
        Arc::clone(&self.gateway_stats)
    }

    /// Stops accepting, lets sessions answer what they have read, writes and
    /// closes every log, then stops the writer threads.
    pub async fn shutdown(self) {
        self.gateway_stats.mailbox.queued();
        let stop = StopGateway {
            grace: SHUTDOWN_GRACE,
        };
        if self.gateway.send(stop).await.is_err() {
            self.gateway_stats.mailbox.dropped();
        }
        stop_arbiters(self.gateway_arbiters).await;
        let _ = self.registry.send(CloseAll).await;
        stop_arbiters(self.writer_arbiters).await;
        log::info!("all logs closed");
    }
}

/// Stops `arbiters` and waits for their threads to end.
async fn stop_arbiters(arbiters: Vec<Arbiter>) {
    for arbiter in &arbiters {
        arbiter.stop();
    }
    for arbiter in arbiters {
        let _ = actix_rt::task::spawn_blocking(move || arbiter.join()).await;
    }
}
