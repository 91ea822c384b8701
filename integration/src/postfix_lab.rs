//! The private Postfix lab, which lives in `flush_bin::lab` (flush-bench's
//! side-by-side runner uses it too); re-exported so tests keep their paths,
//! with the steps that tests against either flush server share.

pub use flush_bin::lab::*;

use std::time::Duration;

/// Sends `ETRN domain` over SMTP, checks the `250` and waits until the queue
/// manager has tried `id` a second time and deferred it again: what the
/// flush server's send_site must bring about (with `queue_run_delay` at
/// 3600s nothing else would retry it so soon).
///
/// # Panics
/// When the session fails, the reply is not 250 or no retry comes in `wait`.
pub fn etrn_and_wait_for_retry(lab: &PostfixLab, domain: &str, id: &str, wait: Duration) {
    let replies = lab
        .smtp_session(&["EHLO lab.test", &format!("ETRN {domain}"), "QUIT"])
        .expect("ETRN session");
    assert!(replies[2].starts_with("250 Queuing started"), "{replies:?}");
    assert!(
        wait_until(wait, || lab.activations(id) == 2 && lab.deferrals(id) == 2),
        "no new delivery attempt after ETRN; maillog:\n{}",
        lab.maillog()
    );
}
