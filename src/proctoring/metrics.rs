//! The vendor's metric codes, per-period values, and the credibility score
//! `E = max(0, 100 − Σ w_k · x_k)` with every term shown (DESIGN §3).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The fifteen metric codes, kept so integrators' reports map one to one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    B1,
    B2,
    B3,
    C1,
    C2,
    C3,
    C4,
    C5,
    K1,
    M1,
    M2,
    N1,
    N2,
    S1,
    S2,
}

impl Metric {
    pub const ALL: [Metric; 15] = [
        Metric::B1,
        Metric::B2,
        Metric::B3,
        Metric::C1,
        Metric::C2,
        Metric::C3,
        Metric::C4,
        Metric::C5,
        Metric::K1,
        Metric::M1,
        Metric::M2,
        Metric::N1,
        Metric::N2,
        Metric::S1,
        Metric::S2,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Metric::B1 => "b1",
            Metric::B2 => "b2",
            Metric::B3 => "b3",
            Metric::C1 => "c1",
            Metric::C2 => "c2",
            Metric::C3 => "c3",
            Metric::C4 => "c4",
            Metric::C5 => "c5",
            Metric::K1 => "k1",
            Metric::M1 => "m1",
            Metric::M2 => "m2",
            Metric::N1 => "n1",
            Metric::N2 => "n2",
            Metric::S1 => "s1",
            Metric::S2 => "s2",
        }
    }

    /// What the metric means, for reports.
    pub fn meaning(self) -> &'static str {
        match self {
            Metric::B1 => "browser not supported",
            Metric::B2 => "focus moved to another window",
            Metric::B3 => "full-screen mode left",
            Metric::C1 => "webcam disabled",
            Metric::C2 => "face not visible or not looking at the camera",
            Metric::C3 => "several faces in front of the camera",
            Metric::C4 => "face does not match the profile photo",
            Metric::C5 => "the same face found in another session",
            Metric::K1 => "atypical keystroke rhythm",
            Metric::M1 => "microphone muted or silent",
            Metric::M2 => "conversation or noise in the background",
            Metric::N1 => "no network connection",
            Metric::N2 => "no connection to the second camera",
            Metric::S1 => "screen not shared",
            Metric::S2 => "second display used",
        }
    }

    /// Whether the server measures it (recognition, heartbeats) rather than
    /// the browser; browsers may not report these.
    pub fn server_side(self) -> bool {
        matches!(
            self,
            Metric::C2 | Metric::C3 | Metric::C4 | Metric::C5 | Metric::N1 | Metric::N2
        )
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.code().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("{s:?} is not a metric code (b1..s2)"))
    }
}

/// Accumulates the samples of one period: a value 0–100 per metric is the
/// share of samples that were violations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Period {
    counts: BTreeMap<Metric, (u32, u32)>,
}

impl Period {
    pub fn add(&mut self, metric: Metric, violation: bool) {
        let c = self.counts.entry(metric).or_default();
        c.1 += 1;
        if violation {
            c.0 += 1;
        }
    }

    /// The period's values; metrics without samples are absent.
    pub fn values(&self) -> BTreeMap<Metric, f64> {
        self.counts
            .iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(m, (v, n))| (*m, 100.0 * f64::from(*v) / f64::from(*n)))
            .collect()
    }
}

/// Running per-metric averages over periods (`x_k`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    /// Sum of period values and number of periods, per metric.
    sums: BTreeMap<Metric, (f64, u64)>,
}

impl Averages {
    pub fn add_period(&mut self, values: &BTreeMap<Metric, f64>) {
        for (m, v) in values {
            let e = self.sums.entry(*m).or_default();
            e.0 += v.clamp(0.0, 100.0);
            e.1 += 1;
        }
    }

    pub fn get(&self, metric: Metric) -> f64 {
        self.sums
            .get(&metric)
            .filter(|(_, n)| *n > 0)
            .map_or(0.0, |(s, n)| s / *n as f64)
    }

    pub fn all(&self) -> BTreeMap<Metric, f64> {
        self.sums.keys().map(|m| (*m, self.get(*m))).collect()
    }
}

/// One term of the score: weight times average.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Term {
    pub metric: Metric,
    pub meaning: &'static str,
    pub weight: f64,
    pub average: f64,
    pub penalty: f64,
}

/// The score with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub score: f64,
    pub terms: Vec<Term>,
    pub threshold: f64,
    /// Below the threshold: flagged for a proctor's review.
    pub review: bool,
}

/// `E = max(0, 100 − Σ w_k · x_k)`, rounded to two decimals; weights of
/// metrics absent from `weights` are 0.
pub fn score(averages: &Averages, weights: &BTreeMap<Metric, f64>, threshold: f64) -> Score {
    let terms: Vec<Term> = Metric::ALL
        .into_iter()
        .filter_map(|metric| {
            let weight = *weights.get(&metric)?;
            let average = averages.get(metric);
            Some(Term {
                metric,
                meaning: metric.meaning(),
                weight,
                average,
                penalty: weight * average,
            })
        })
        .collect();
    let total: f64 = terms.iter().map(|t| t.penalty).sum();
    let score = ((100.0 - total).max(0.0) * 100.0).round() / 100.0;
    Score {
        score,
        review: score < threshold,
        terms,
        threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.code().parse::<Metric>().unwrap(), m);
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.code())
            );
        }
        assert!("x9".parse::<Metric>().is_err());
    }

    #[test]
    fn period_values_are_shares_of_violating_samples() {
        let mut p = Period::default();
        for v in [true, false, false, true] {
            p.add(Metric::B2, v);
        }
        p.add(Metric::C1, false);
        let values = p.values();
        assert_eq!(values[&Metric::B2], 50.0);
        assert_eq!(values[&Metric::C1], 0.0);
        assert!(!values.contains_key(&Metric::M1));
    }

    #[test]
    fn score_explains_every_term_and_clamps_at_zero() {
        let mut avg = Averages::default();
        avg.add_period(&BTreeMap::from([(Metric::B2, 50.0), (Metric::C2, 20.0)]));
        avg.add_period(&BTreeMap::from([(Metric::B2, 0.0)]));
        let weights = BTreeMap::from([(Metric::B2, 0.5), (Metric::C2, 1.0)]);
        let s = score(&avg, &weights, 80.0);
        // b2 average 25 × 0.5 = 12.5; c2 average 20 × 1.0 = 20.
        assert_eq!(s.score, 67.5);
        assert!(s.review);
        assert_eq!(s.terms.len(), 2);
        assert_eq!(s.terms[0].penalty, 12.5);
        let heavy = BTreeMap::from([(Metric::B2, 10.0)]);
        assert_eq!(score(&avg, &heavy, 50.0).score, 0.0);
    }
}
