//! `DomainList::verdict` against lists of 10, 10,000 and 1,000,000 plain
//! patterns: the time per lookup should not grow with the list.
//!
//! Run: `cargo bench -p flush-actors --bench matcher`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flush_actors::domains::{DomainList, Verdict};
use std::hint::black_box;
use std::time::Duration;

/// `n` distinct domains, spread over a hundred parent domains.
fn list_of(n: usize) -> String {
    let mut s = String::with_capacity(n * 24);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("d{i}.example{}.com", i % 100));
    }
    s
}

fn verdicts(c: &mut Criterion) {
    let mut group = c.benchmark_group("verdict");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in [10usize, 10_000, 1_000_000] {
        let list = match DomainList::parse(&list_of(n), true) {
            Ok(list) => list,
            Err(e) => panic!("list of {n}: {e}"),
        };
        assert_eq!(list.pattern_count(), n);
        // A subdomain of a pattern in the middle of the list (parent match),
        // and a site that matches nothing.
        let eligible = format!("mail.d{}.example{}.com", n / 2, (n / 2) % 100);
        assert!(matches!(list.verdict(&eligible), Verdict::Eligible(_)));
        let denied = "mail.nowhere.example.org";
        assert!(matches!(list.verdict(denied), Verdict::Deny(_)));

        group.bench_with_input(BenchmarkId::new("eligible", n), &eligible, |b, site| {
            b.iter(|| list.verdict(black_box(site)))
        });
        group.bench_with_input(BenchmarkId::new("denied", n), denied, |b, site| {
            b.iter(|| list.verdict(black_box(site)))
        });
    }
    group.finish();
}

criterion_group!(benches, verdicts);
criterion_main!(benches);
