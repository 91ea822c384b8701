//! `Gateway`: the socket-facing side. It owns the listening sockets and
//! serves every connection on its gateway threads (a [`session::Session`]
//! actor per line connection, a `one_request` task per Postfix one), bounds
//! how many run at once, and at shutdown stops accepting, lets every
//! connection answer what it has read, and removes its UNIX sockets.

mod batch;
pub mod listener;
mod one_request;
pub mod protocol;
pub mod services;
pub mod session;

pub use batch::{AddBatcher, MAX_BATCH};
pub use listener::{bind, Bound, ListenAddr, OwnSocket, SessionLimits};
pub use protocol::{LineProtocol, PostfixProtocol, Shared};
pub use services::{ServiceAddrs, Services, MAX_SEND_FILES_IN_FLIGHT};

use crate::stats::{Counter, Gauge, Mailbox, Report};
use actix::prelude::*;
use flush_proto::request::Verb;
use flush_proto::Status;
use futures_util::future::{join_all, FutureExt};
use serde_json::{Map, Value};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Counters of the gateway and its sessions (one section of `stats`).
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Messages to the gateway actor itself.
    pub mailbox: Mailbox,
    /// Connections open now.
    pub connections_open: Gauge,
    /// Connections accepted since start-up.
    pub connections_total: Counter,
    /// accept() failures.
    pub accept_errors: Counter,
    /// Connections each gateway thread accepted: how the load spreads.
    accepted_by_thread: Vec<Counter>,
    /// Requests by verb (plus one row for undecodable ones) and status.
    requests: [[Counter; 4]; Verb::ALL.len() + 1],
    session_ids: AtomicU64,
}

impl GatewayStats {
    /// Counters for a gateway of `threads` threads.
    pub fn new(threads: usize) -> GatewayStats {
        GatewayStats {
            accepted_by_thread: (0..threads.max(1)).map(|_| Counter::default()).collect(),
            ..GatewayStats::default()
        }
    }

    /// Counts a connection that gateway thread `thread` accepted.
    pub fn accepted_on(&self, thread: usize) {
        if let Some(counter) = self.accepted_by_thread.get(thread) {
            counter.incr();
        }
    }

    /// Counts one answered request; `None` for a line that was not a request.
    pub fn count(&self, verb: Option<Verb>, status: Status) {
        let row = verb.map_or(Verb::ALL.len(), Verb::index);
        self.requests[row][status.index()].incr();
    }

    /// A fresh session id for log lines.
    pub fn next_session_id(&self) -> u64 {
        self.connections_total.incr();
        self.session_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn requests_json(&self) -> (Value, u64) {
        let mut total = 0;
        let mut by_verb = Map::new();
        let names = Verb::ALL.iter().map(|v| v.as_str()).chain(["invalid"]);
        for (name, row) in names.zip(&self.requests) {
            let mut by_status = Map::new();
            for status in Status::ALL {
                let n = row[status.index()].get();
                total += n;
                by_status.insert(status.as_str().to_string(), n.into());
            }
            by_verb.insert(name.to_string(), Value::Object(by_status));
        }
        (Value::Object(by_verb), total)
    }
}

impl Report for GatewayStats {
    fn report(&self) -> Value {
        let mut m = self.mailbox.to_json();
        let (requests, total) = self.requests_json();
        // A session's requests are what the gateway side handles.
        m.insert(
            "handled".into(),
            (self.mailbox.handled_count() + total).into(),
        );
        m.insert(
            "connections_open".into(),
            self.connections_open.get().into(),
        );
        m.insert(
            "connections_total".into(),
            self.connections_total.get().into(),
        );
        m.insert("accept_errors".into(), self.accept_errors.get().into());
        let by_thread: Vec<Value> = self
            .accepted_by_thread
            .iter()
            .map(|c| c.get().into())
            .collect();
        m.insert("accepted_by_thread".into(), by_thread.into());
        m.insert("requests".into(), requests);
        Value::Object(m)
    }
}

/// Stop accepting, finish every session, remove the UNIX sockets; answered
/// when the last session has closed or `grace` has passed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopGateway {
    /// Longest wait for sessions to finish.
    pub grace: Duration,
}

/// A listener and the protocol it speaks.
#[derive(Debug)]
pub enum Listener {
    /// flushd's line protocol.
    Line(Bound),
    /// Postfix's flush protocol.
    Postfix(Bound),
}

impl Listener {
    /// The bound socket.
    pub fn bound(&self) -> &Bound {
        match self {
            Listener::Line(bound) | Listener::Postfix(bound) => bound,
        }
    }

    fn try_clone(&self) -> std::io::Result<Listener> {
        Ok(match self {
            Listener::Line(bound) => Listener::Line(bound.try_clone()?),
            Listener::Postfix(bound) => Listener::Postfix(bound.try_clone()?),
        })
    }
}

/// Owns the listeners and the gateway threads that serve them.
///
/// Every gateway thread accepts on its own duplicate of every listener and
/// runs the sessions it accepted, with its own [`Services`] (and so its own
/// [`AddBatcher`]): a connection lives on one thread from accept to close, and
/// the kernel hands each new connection to whichever thread asks first.
pub struct Gateway {
    listeners: Vec<Listener>,
    threads: Vec<ArbiterHandle>,
    services: ServiceAddrs,
    max_line: usize,
    max_connections: u32,
    limits: SessionLimits,
    own_sockets: Vec<OwnSocket>,
}

impl Gateway {
    /// A gateway serving `listeners` on `threads`; at most `max_connections`
    /// sessions at once, each closed after `idle_timeout` without traffic.
    pub fn new(
        listeners: Vec<Listener>,
        threads: Vec<ArbiterHandle>,
        services: ServiceAddrs,
        stats: Arc<GatewayStats>,
        max_line: usize,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Gateway {
        let max_connections =
            max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Gateway {
            listeners,
            threads,
            services,
            max_line,
            max_connections: u32::try_from(max_connections).unwrap_or(u32::MAX),
            limits: SessionLimits {
                slots: Arc::new(Semaphore::new(max_connections)),
                idle_timeout,
                stop: CancellationToken::new(),
                stats,
            },
            own_sockets: Vec::new(),
        }
    }

    /// Starts gateway thread `n` serving `listeners`.
    fn serve_on(&self, n: usize, thread: &ArbiterHandle, listeners: Vec<Listener>) {
        let (services, max_line, limits) =
            (self.services.clone(), self.max_line, self.limits.clone());
        let started = thread.spawn_fn(move || {
            actix_rt::spawn(serve_thread(n, listeners, services, max_line, limits));
        });
        if !started {
            log::error!("gateway thread {n} is gone");
        }
    }

    fn remove_sockets(&mut self) {
        for socket in self.own_sockets.drain(..) {
            socket.remove();
        }
    }
}

/// Runs gateway thread `n`: its services and an accept loop per listener.
async fn serve_thread(
    n: usize,
    listeners: Vec<Listener>,
    services: ServiceAddrs,
    max_line: usize,
    limits: SessionLimits,
) {
    let shared = Shared {
        services: Rc::new(Services::new(services)),
        stats: Arc::clone(&limits.stats),
    };
    let loops = listeners.into_iter().map(|listener| match listener {
        Listener::Line(bound) => {
            let protocol = LineProtocol {
                shared: shared.clone(),
                max_line,
            };
            listener::accept_loop(n, bound, protocol, limits.clone()).boxed_local()
        }
        Listener::Postfix(bound) => {
            let protocol = PostfixProtocol {
                shared: shared.clone(),
            };
            listener::accept_loop(n, bound, protocol, limits.clone()).boxed_local()
        }
    });
    join_all(loops).await;
}

impl Actor for Gateway {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let listeners = std::mem::take(&mut self.listeners);
        self.own_sockets = listeners
            .iter()
            .filter_map(|l| l.bound().unix_path().and_then(OwnSocket::note))
            .collect();
        let Some((last, others)) = self.threads.split_last() else {
            return;
        };
        // Every other thread gets duplicates; the last takes the originals.
        for (n, thread) in others.iter().enumerate() {
            match listeners.iter().map(Listener::try_clone).collect() {
                Ok(copies) => self.serve_on(n, thread, copies),
                Err(e) => log::error!("gateway thread {n}: cannot share the listeners: {e}"),
            }
        }
        self.serve_on(others.len(), last, listeners);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.limits.stop.cancel();
        self.remove_sockets();
    }
}

impl Handler<StopGateway> for Gateway {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopGateway, _: &mut Context<Self>) -> Self::Result {
        self.limits.stats.mailbox.handled();
        self.limits.stop.cancel();
        self.remove_sockets();
        log::info!(
            "gateway: stopped accepting; finishing {} sessions",
            self.limits.stats.connections_open.get()
        );
        // Every session holds a permit: all of them back means all closed.
        let slots = Arc::clone(&self.limits.slots);
        let all = self.max_connections;
        Box::pin(async move {
            if actix_rt::time::timeout(msg.grace, slots.acquire_many(all))
                .await
                .is_err()
            {
                log::warn!("gateway: sessions still open after {:?}", msg.grace);
            }
        })
    }
}
