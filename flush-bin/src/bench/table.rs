//! The side-by-side table: medians over rounds, ratios, targets and whether
//! each was met, printed as Markdown.

use std::fmt::Write as _;

/// What a row's numbers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Requests per second.
    Rate,
    /// Milliseconds.
    Millis,
    /// Kibibytes (printed as MiB).
    KiB,
    /// A plain count.
    Count,
}

/// A row's target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// flushd / reference must be at least this.
    RatioAtLeast(f64),
    /// flushd / reference must be at most this.
    RatioAtMost(f64),
    /// flushd's value must be below this (in the row's unit).
    Below(f64),
    /// flushd's value must be at most this (in the row's unit).
    AtMost(f64),
    /// Reported, no target.
    Report,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was measured, and against what.
    pub workload: String,
    /// The reference's median (Postfix's, unless the workload says otherwise).
    pub reference: Option<f64>,
    /// flushd's median.
    pub flushd: Option<f64>,
    /// Unit of both.
    pub unit: Unit,
    /// The target.
    pub goal: Goal,
}

impl Row {
    /// flushd / reference, when both are known and the reference is not 0.
    pub fn ratio(&self) -> Option<f64> {
        match (self.reference, self.flushd) {
            (Some(r), Some(f)) if r != 0.0 => Some(f / r),
            _ => None,
        }
    }

    /// Whether the target was met; `None` without a target or the numbers.
    pub fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Goal::RatioAtMost(x) => self.ratio().map(|r| r <= x),
            Goal::Below(x) => self.flushd.map(|f| f < x),
            Goal::AtMost(x) => self.flushd.map(|f| f <= x),
            Goal::Report => None,
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// `value` in `unit`, for people.
pub fn format_value(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "—".to_string();
    };
    match unit {
        Unit::Rate => format!("{}/s", thousands(v.round() as u64)),
        Unit::Millis if v < 1.0 => format!("{v:.3} ms"),
        Unit::Millis if v < 100.0 => format!("{v:.2} ms"),
        Unit::Millis if v < 10_000.0 => format!("{v:.0} ms"),
        Unit::Millis => format!("{:.1} s", v / 1000.0),
        Unit::KiB => format!("{:.1} MiB", v / 1024.0),
        Unit::Count => thousands(v.round() as u64),
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_goal(goal: Goal, unit: Unit) -> String {
    match goal {
        Goal::RatioAtLeast(x) => format!("≥ {}x", trim_float(x)),
        Goal::RatioAtMost(x) => format!("≤ {}x", trim_float(x)),
        Goal::Below(x) => format!("< {}", format_value(Some(x), unit)),
        Goal::AtMost(x) => format!("≤ {}", format_value(Some(x), unit)),
        Goal::Report => "(reported)".to_string(),
    }
}

fn trim_float(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | reference (Postfix unless noted) | flushd | ratio | target | met |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in rows {
        let ratio = row
            .ratio()
            .map_or("—".to_string(), |r| format!("{}x", ratio_text(r)));
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.workload,
            format_value(row.reference, row.unit),
            format_value(row.flushd, row.unit),
            ratio,
            format_goal(row.goal, row.unit),
            met
        );
    }
    out
}

fn ratio_text(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn ratios_and_verdicts() {
        let mut row = Row {
            workload: "add".into(),
            reference: Some(10_000.0),
            flushd: Some(35_000.0),
            unit: Unit::Rate,
            goal: Goal::RatioAtLeast(3.0),
        };
        assert_eq!(row.ratio(), Some(3.5));
        assert_eq!(row.met(), Some(true));
        row.goal = Goal::RatioAtMost(1.0);
        assert_eq!(row.met(), Some(false));
        row.goal = Goal::Below(1.0);
        row.unit = Unit::Millis;
        row.flushd = Some(0.7);
        assert_eq!(row.met(), Some(true));
        row.reference = None;
        assert_eq!(row.ratio(), None);
        row.goal = Goal::RatioAtLeast(1.0);
        assert_eq!(row.met(), None);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(format_value(Some(13_702.4), Unit::Rate), "13,702/s");
        assert_eq!(format_value(Some(0.4123), Unit::Millis), "0.412 ms");
        assert_eq!(format_value(Some(143.2), Unit::Millis), "143 ms");
        assert_eq!(format_value(Some(13_500.0), Unit::Millis), "13.5 s");
        assert_eq!(format_value(Some(18_432.0), Unit::KiB), "18.0 MiB");
        assert_eq!(format_value(None, Unit::Count), "—");
        let rows = [Row {
            workload: "purge".into(),
            reference: Some(1350.0),
            flushd: Some(900.0),
            unit: Unit::Millis,
            goal: Goal::RatioAtMost(0.5),
        }];
        let table = markdown(&rows);
        assert!(
            table.ends_with("| purge | 1350 ms | 900 ms | 0.67x | ≤ 0.5x | **no** |\n"),
            "{table}"
        );
    }
}
