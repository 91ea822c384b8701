//! `Gateway`: the socket-facing side. It owns the listening sockets, starts
//! one [`session::Session`] per connection, bounds how many run at once,
//! and at shutdown stops accepting, lets every session answer what it has
//! read, and removes its UNIX sockets.

mod batch;
pub mod listener;
pub mod protocol;
pub mod services;
pub mod session;

pub use batch::AddBatcher;
pub use listener::{bind, Bound, ListenAddr};
pub use protocol::{LineProtocol, PostfixProtocol, Shared};
pub use services::Services;

use crate::stats::{Counter, Gauge, Mailbox, Report};
use actix::prelude::*;
use flush_proto::request::Verb;
use flush_proto::Status;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

/// Default `flush_max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

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
    /// Requests by verb (plus one row for undecodable ones) and status.
    requests: [[Counter; 4]; Verb::ALL.len() + 1],
    session_ids: AtomicU64,
}

impl GatewayStats {
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
        m.insert("requests".into(), requests);
        Value::Object(m)
    }
}

/// A session tells the gateway it is running (so shutdown can reach it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    /// Session id.
    pub id: u64,
    /// Where to say "finish".
    pub finish: Recipient<Finish>,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    /// Session id.
    pub id: u64,
    /// `line` or `postfix`.
    pub protocol: &'static str,
}

/// Asks a session to stop reading, answer what it has read, and close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finish;

/// Stop accepting, finish every session, remove the UNIX sockets; answered
/// when the last session has closed or `grace` has passed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopGateway {
    /// Longest wait for sessions to finish.
    pub grace: Duration,
}

/// A listener and the protocol it speaks.
pub enum Listener {
    /// flushd's line protocol.
    Line(Bound),
    /// Postfix's flush protocol.
    Postfix(Bound),
}

/// Owns the listeners and knows every live session.
pub struct Gateway {
    listeners: Vec<Listener>,
    line: LineProtocol,
    postfix: PostfixProtocol,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    stats: Arc<GatewayStats>,
    accepting: Vec<JoinHandle<()>>,
    socket_paths: Vec<PathBuf>,
    sessions: HashMap<u64, Recipient<Finish>>,
    drained: Vec<oneshot::Sender<()>>,
    stopping: bool,
}

impl Gateway {
    /// A gateway serving `listeners`; at most `max_connections` sessions at once,
    /// each closed after `idle_timeout` without traffic.
    pub fn new(
        listeners: Vec<Listener>,
        shared: Shared,
        max_line: usize,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Gateway {
        let stats = Arc::clone(&shared.stats);
        Gateway {
            listeners,
            line: LineProtocol {
                shared: shared.clone(),
                max_line,
            },
            postfix: PostfixProtocol { shared },
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            idle_timeout,
            stats,
            accepting: Vec::new(),
            socket_paths: Vec::new(),
            sessions: HashMap::new(),
            drained: Vec::new(),
            stopping: false,
        }
    }

    /// Starts accepting on `bound` with `protocol`.
    fn spawn_accept<P: protocol::Protocol + Clone>(
        &mut self,
        bound: Bound,
        protocol: P,
        ctx: &mut Context<Self>,
    ) {
        self.socket_paths
            .extend(bound.unix_path().map(PathBuf::from));
        self.accepting.push(actix_rt::spawn(listener::accept_loop(
            bound,
            protocol,
            ctx.address(),
            Arc::clone(&self.slots),
            Arc::clone(&self.stats),
            self.idle_timeout,
        )));
    }

    fn remove_sockets(&mut self) {
        for path in self.socket_paths.drain(..) {
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!("remove {}: {e}", path.display());
            }
        }
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for listener in std::mem::take(&mut self.listeners) {
            match listener {
                Listener::Line(bound) => self.spawn_accept(bound, self.line.clone(), ctx),
                Listener::Postfix(bound) => self.spawn_accept(bound, self.postfix.clone(), ctx),
            }
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for task in &self.accepting {
            task.abort();
        }
        self.remove_sockets();
    }
}

impl Handler<SessionOpened> for Gateway {
    type Result = ();

    fn handle(&mut self, msg: SessionOpened, _: &mut Context<Self>) {
        self.stats.connections_open.incr();
        if self.stopping {
            // Shutting down: a session that started meanwhile finishes at once.
            msg.finish.do_send(Finish);
        }
        self.sessions.insert(msg.id, msg.finish);
    }
}

impl Handler<SessionClosed> for Gateway {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _: &mut Context<Self>) {
        self.stats.connections_open.decr();
        if self.sessions.remove(&msg.id).is_none() {
            log::debug!("session {} ({}) closed unregistered", msg.id, msg.protocol);
        }
        if self.sessions.is_empty() {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
        }
    }
}

impl Handler<StopGateway> for Gateway {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopGateway, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        for task in self.accepting.drain(..) {
            task.abort();
        }
        self.remove_sockets();
        log::info!(
            "gateway: stopped accepting; finishing {} sessions",
            self.sessions.len()
        );
        for finish in self.sessions.values() {
            finish.do_send(Finish);
        }
        let (tx, rx) = oneshot::channel();
        if self.sessions.is_empty() {
            let _ = tx.send(());
        } else {
            self.drained.push(tx);
        }
        Box::pin(async move {
            if actix_rt::time::timeout(msg.grace, rx).await.is_err() {
                log::warn!("gateway: sessions still open after {:?}", msg.grace);
            }
        })
    }
}
