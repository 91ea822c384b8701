//! The DomainMatcher actor through its messages: verdicts, reloads on
//! request and on file changes, and a broken new list keeping the old one.
#![allow(clippy::unwrap_used)]

use actix::Actor;
use flush_actors::config::Config;
use flush_actors::domains::Verdict;
use flush_actors::matcher::{DomainMatcher, MatchSite, MatcherStats, Reload};
use flush_actors::stats::Report;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn write_main_cf(dir: &Path, domains: &str) {
    let text = format!(
        "compatibility_level = 3.6\nqueue_directory = {}/queue\nfast_flush_domains = {domains}\n",
        dir.display()
    );
    // Write then rename, as an editor or configuration tool would.
    let tmp = dir.join("main.cf.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("main.cf")).unwrap();
}

fn start(dir: &Path, check: Duration) -> (actix::Addr<DomainMatcher>, Arc<MatcherStats>) {
    let config = Config::load(dir, &[]).unwrap();
    let stats = Arc::new(MatcherStats::default());
    let matcher = DomainMatcher::new(&config, Arc::clone(&stats))
        .unwrap()
        .with_check_interval(check);
    (matcher.start(), stats)
}

async fn ask(addr: &actix::Addr<DomainMatcher>, stats: &MatcherStats, site: &str) -> Verdict {
    stats.mailbox.queued();
    addr.send(MatchSite::new(site)).await.unwrap()
}

fn eligible(path: &str) -> Verdict {
    Verdict::Eligible(flush_actors::domains::SitePath::from_file_name(path).unwrap())
}

const SLOW: Duration = Duration::from_secs(3600);

#[actix::test]
async fn verdicts_through_messages() {
    let dir = tempfile::tempdir().unwrap();
    write_main_cf(dir.path(), "!bad.example.com, example.com, nosuch:table");
    let (addr, stats) = start(dir.path(), SLOW);

    assert_eq!(
        ask(&addr, &stats, "Mail.Example.com").await,
        eligible("mail_example_com")
    );
    assert!(matches!(
        ask(&addr, &stats, "x.bad.example.com").await,
        Verdict::Deny(_)
    ));
    assert!(matches!(
        ask(&addr, &stats, "other.org").await,
        Verdict::Fail(_)
    ));
    assert!(matches!(ask(&addr, &stats, "").await, Verdict::Bad(_)));

    let r = stats.report();
    assert_eq!(r["handled"], 4);
    assert_eq!(r["mailbox"], 0);
    assert_eq!(r["lookups"], 4);
    assert_eq!(r["denied"], 1);
    assert_eq!(r["failed"], 1);
    assert_eq!(r["bad"], 1);
    assert_eq!(r["patterns"], 3);
    assert_eq!(r["reloads"], 0);
    assert!(r["last_reload_unix"].as_i64().unwrap() > 1_600_000_000);
}

#[actix::test]
async fn reload_swaps_the_list_after_main_cf_changes() {
    let dir = tempfile::tempdir().unwrap();
    write_main_cf(dir.path(), "example.com");
    let (addr, stats) = start(dir.path(), SLOW);
    assert!(matches!(
        ask(&addr, &stats, "other.org").await,
        Verdict::Deny(_)
    ));

    write_main_cf(dir.path(), "other.org, more.org");
    stats.mailbox.queued();
    addr.send(Reload).await.unwrap().unwrap();

    assert_eq!(ask(&addr, &stats, "other.org").await, eligible("other_org"));
    assert!(matches!(
        ask(&addr, &stats, "example.com").await,
        Verdict::Deny(_)
    ));
    let r = stats.report();
    assert_eq!(r["reloads"], 1);
    assert_eq!(r["reload_errors"], 0);
    assert_eq!(r["patterns"], 2);
}

#[actix::test]
async fn a_broken_new_list_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    write_main_cf(dir.path(), "example.com");
    let (addr, stats) = start(dir.path(), SLOW);

    for broken in ["other.org, !", "${unclosed", "$loop\nloop = $loop"] {
        write_main_cf(dir.path(), broken);
        stats.mailbox.queued();
        let err = addr.send(Reload).await.unwrap().unwrap_err();
        assert!(err.to_string().starts_with("configuration:"), "{err}");
        assert_eq!(
            ask(&addr, &stats, "a.example.com").await,
            eligible("a_example_com")
        );
        assert!(matches!(
            ask(&addr, &stats, "other.org").await,
            Verdict::Deny(_)
        ));
    }
    let r = stats.report();
    assert_eq!(r["reloads"], 0);
    assert_eq!(r["reload_errors"], 3);
    assert_eq!(r["errors"], 3);
    assert_eq!(r["patterns"], 1);
}

/// Waits (bounded) until `site` gets a verdict that satisfies `want`.
async fn eventually(
    addr: &actix::Addr<DomainMatcher>,
    stats: &MatcherStats,
    site: &str,
    want: impl Fn(&Verdict) -> bool,
) -> Verdict {
    let mut last = ask(addr, stats, site).await;
    for _ in 0..200 {
        if want(&last) {
            return last;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
        last = ask(addr, stats, site).await;
    }
    last
}

#[actix::test]
async fn reloads_on_its_own_when_a_list_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("flush_domains");
    std::fs::write(&list, "first.example\n").unwrap();
    write_main_cf(dir.path(), &list.display().to_string());
    let (addr, stats) = start(dir.path(), Duration::from_millis(50));
    assert_eq!(
        ask(&addr, &stats, "first.example").await,
        eligible("first_example")
    );

    std::fs::write(&list, "second.example\nthird.example\n").unwrap();
    let v = eventually(&addr, &stats, "second.example", |v| {
        matches!(v, Verdict::Eligible(_))
    })
    .await;
    assert_eq!(v, eligible("second_example"));
    assert!(matches!(
        ask(&addr, &stats, "first.example").await,
        Verdict::Deny(_)
    ));
    assert!(stats.report()["reloads"].as_u64().unwrap() >= 1);

    // main.cf itself is watched too.
    write_main_cf(dir.path(), "fourth.example");
    let v = eventually(&addr, &stats, "fourth.example", |v| {
        matches!(v, Verdict::Eligible(_))
    })
    .await;
    assert_eq!(v, eligible("fourth_example"));
}

#[actix::test]
async fn a_list_file_that_appears_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("later");
    write_main_cf(dir.path(), &format!("{}, static:x", list.display()));
    let (addr, stats) = start(dir.path(), Duration::from_millis(50));
    // Unreadable file first in the list: FAIL, and the list still loaded.
    assert!(matches!(
        ask(&addr, &stats, "a.example").await,
        Verdict::Fail(_)
    ));

    std::fs::write(&list, "!a.example\n").unwrap();
    let v = eventually(&addr, &stats, "a.example", |v| {
        matches!(v, Verdict::Deny(_))
    })
    .await;
    assert!(matches!(v, Verdict::Deny(_)), "{v:?}");
    assert_eq!(ask(&addr, &stats, "b.example").await, eligible("b_example"));
}
