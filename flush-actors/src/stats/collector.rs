//! `StatsCollector`: builds the `stats` dump from every actor's counters.
//!
//! The counters are atomics that each actor updates as it works, so a dump
//! never waits behind a busy actor's mailbox and always shows what is
//! waiting there.

use super::Report;
use actix::prelude::*;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Asks for the dump: one line of JSON.
#[derive(Debug, Message)]
#[rtype(result = "String")]
pub struct Dump;

/// Holds a reference to every actor kind's counters.
pub struct StatsCollector {
    sections: Vec<(&'static str, Arc<dyn Report>)>,
    started: Instant,
    queue_directory: PathBuf,
}

impl StatsCollector {
    /// A collector over `sections` (`gateway`, `matcher`, `writers`, ...).
    pub fn new(sections: Vec<(&'static str, Arc<dyn Report>)>, queue_directory: PathBuf) -> Self {
        StatsCollector {
            sections,
            started: Instant::now(),
            queue_directory,
        }
    }

    /// The dump as a JSON value.
    pub fn snapshot(&self) -> Value {
        let mut m = Map::new();
        m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        m.insert("pid".into(), std::process::id().into());
        m.insert("uptime_s".into(), self.started.elapsed().as_secs().into());
        m.insert(
            "queue_directory".into(),
            self.queue_directory.display().to_string().into(),
        );
        for (name, section) in &self.sections {
            m.insert((*name).to_string(), section.report());
        }
        Value::Object(m)
    }
}

impl Actor for StatsCollector {
    type Context = Context<Self>;
}

impl Handler<Dump> for StatsCollector {
    type Result = String;

    fn handle(&mut self, _: Dump, _: &mut Context<Self>) -> String {
        self.snapshot().to_string()
    }
}
