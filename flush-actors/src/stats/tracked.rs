//! An actor address that keeps its actor's mailbox gauge honest.
//!
//! actix does not expose how many messages wait in a mailbox. Every message to
//! a counted actor goes through [`Tracked::send`], which marks it queued; the
//! handler marks it handled, and a message lost to a closed mailbox is marked
//! dropped. The difference is what `stats` reports as `mailbox`.

use super::Mailbox;
use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, MailboxError, Message};
use std::future::Future;
use std::sync::Arc;

/// Picks an actor's [`Mailbox`] counters out of its stats.
pub type MailboxOf<S> = fn(&S) -> &Mailbox;

/// An [`Addr`] paired with the stats of the actor it points to.
pub struct Tracked<A: Actor, S: Send + Sync + 'static> {
    addr: Addr<A>,
    stats: Arc<S>,
    mailbox: MailboxOf<S>,
}

impl<A: Actor, S: Send + Sync + 'static> Clone for Tracked<A, S> {
    fn clone(&self) -> Self {
        Tracked {
            addr: self.addr.clone(),
            stats: Arc::clone(&self.stats),
            mailbox: self.mailbox,
        }
    }
}

impl<A: Actor, S: Send + Sync + 'static> Tracked<A, S> {
    /// Pairs an address with its actor's stats and the mailbox counters in them.
    pub fn new(addr: Addr<A>, stats: Arc<S>, mailbox: MailboxOf<S>) -> Self {
        Tracked {
            addr,
            stats,
            mailbox,
        }
    }

    /// The plain address (for messages that are not counted, e.g. shutdown).
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }

    /// The actor's stats.
    pub fn stats(&self) -> &Arc<S> {
        &self.stats
    }

    /// Sends a message and counts it. A full mailbox does not hold it back
    /// for long: actix queues it past the capacity once the send is polled.
    ///
    /// # Errors
    /// The mailbox is closed (the actor stopped) or the request timed out.
    pub fn send<M>(&self, msg: M) -> impl Future<Output = Result<M::Result, MailboxError>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        let pick = self.mailbox;
        pick(&self.stats).queued();
        let stats = Arc::clone(&self.stats);
        let request = self.addr.send(msg);
        async move {
            let result = request.await;
            if result.is_err() {
                pick(&stats).dropped();
            }
            result
        }
    }
}
