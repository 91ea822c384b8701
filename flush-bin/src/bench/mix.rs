//! The request mix of a load run (`--mix add=90,send_site=10`) and the
//! request each index stands for.
//!
//! Request `i` is a pure function of `i`, the mix and the number of sites, so
//! any number of clients can take indices in any order and the work can be
//! checked afterwards: the verb cycles through the mix by weight, the site is
//! `i mod S` (every site gets the same share), the queue ID is
//! [`names::queue_id`]`(i)`.

use super::names;
use flush_proto::request::Verb;
use flush_proto::request::{Add, Purge, Refresh, SendFile, SendSite};
use flush_proto::Request;

/// The verbs a mix may hold (`stats` is not a flush request).
const MIX_VERBS: [Verb; 5] = [
    Verb::Add,
    Verb::SendSite,
    Verb::SendFile,
    Verb::Refresh,
    Verb::Purge,
];

/// The largest weight accepted for one verb (keeps the cycle short).
pub const MAX_WEIGHT: u32 = 10_000;

/// Weighted verbs, in the order they were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Verb, u32)>,
    total: u32,
}

impl Mix {
    /// Parses `verb=weight[,verb=weight...]`; a verb without `=weight` has
    /// weight 1. Verbs: add, send_site, send_file, refresh (or rfrsh), purge.
    ///
    /// # Errors
    /// An unknown verb, a verb given twice, a weight that is not a number in
    /// 1..=[`MAX_WEIGHT`], or an empty mix.
    pub fn parse(spec: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Verb, u32)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight: u32 = weight
                        .trim()
                        .parse()
                        .map_err(|_| format!("{part}: weight is not a number"))?;
                    (name.trim(), weight)
                }
                None => (part, 1),
            };
            let verb = Verb::from_name(name)
                .filter(|v| MIX_VERBS.contains(v))
                .ok_or_else(|| {
                    format!("{name}: not one of add, send_site, send_file, refresh, purge")
                })?;
            if !(1..=MAX_WEIGHT).contains(&weight) {
                return Err(format!("{part}: weight must be 1..={MAX_WEIGHT}"));
            }
            if weights.iter().any(|(v, _)| *v == verb) {
                return Err(format!("{name} given twice"));
            }
            weights.push((verb, weight));
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err("empty mix".to_string());
        }
        Ok(Mix { weights, total })
    }

    /// A mix of one verb.
    pub fn only(verb: Verb) -> Mix {
        Mix {
            weights: vec![(verb, 1)],
            total: 1,
        }
    }

    /// Whether every request of this mix is an `add`.
    pub fn adds_only(&self) -> bool {
        self.weights.iter().all(|(v, _)| *v == Verb::Add)
    }

    /// The verb of request `i`: the mix's verbs in turn, each as many times
    /// in a row as its weight.
    pub fn verb(&self, i: u64) -> Verb {
        let mut slot = (i % u64::from(self.total)) as u32;
        for (verb, weight) in &self.weights {
            if slot < *weight {
                return *verb;
            }
            slot -= weight;
        }
        // Unreachable: the weights sum to `total`.
        Verb::Add
    }

    /// Request `i` of a run over `sites` sites under `domain`.
    pub fn request(&self, i: u64, sites: u64, domain: &str) -> Request {
        let site = || names::site(i % sites.max(1), domain);
        match self.verb(i) {
            Verb::SendSite => Request::SendSite(SendSite::new(site())),
            Verb::SendFile => Request::SendFile(SendFile::new(names::queue_id(i))),
            Verb::Refresh => Request::Refresh(Refresh),
            Verb::Purge => Request::Purge(Purge),
            Verb::Add | Verb::Stats => Request::Add(Add::new(site(), names::queue_id(i))),
        }
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(v, w)| format!("{v}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_cycles_by_weight() {
        let mix = Mix::parse("add=3, send_site=1,rfrsh").unwrap();
        let verbs: Vec<Verb> = (0..10).map(|i| mix.verb(i)).collect();
        use Verb::*;
        assert_eq!(
            verbs,
            [Add, Add, Add, SendSite, Refresh, Add, Add, Add, SendSite, Refresh]
        );
        assert_eq!(mix.to_string(), "add=3,send_site=1,refresh=1");
        assert!(!mix.adds_only());
        assert!(Mix::parse("add=100").unwrap().adds_only());
    }

    #[test]
    fn rejects_bad_mixes() {
        for bad in [
            "",
            "add=0",
            "add=x",
            "stats=1",
            "fly=1",
            "add,add",
            "add=10001",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_a_function_of_the_index() {
        let mix = Mix::parse("add=1,send_site=1,send_file=1,purge=1").unwrap();
        assert_eq!(
            mix.request(0, 10, "bench.test").to_line(),
            format!("add s0.bench.test {}", names::queue_id(0))
        );
        assert_eq!(
            mix.request(13, 10, "bench.test").to_line(),
            "send_site s3.bench.test"
        );
        assert_eq!(
            mix.request(2, 10, "bench.test").to_line(),
            format!("send_file {}", names::queue_id(2))
        );
        assert_eq!(mix.request(3, 10, "bench.test").to_line(), "purge");
        // Zero sites behaves as one rather than dividing by zero.
        assert_eq!(
            Mix::only(Verb::SendSite).request(5, 0, "d.test").to_line(),
            "send_site s0.d.test"
        );
    }
}
