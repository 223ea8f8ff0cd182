//! Face verification in the vendor's answer shape.
//!
//! `distance` is the Euclidean distance between unit embeddings (0–2),
//! `threshold` the largest distance still accepted as the same person,
//! `verified` whether the distance is within it. `confidence` (0–100) is how
//! sure the verdict is: a logistic of the distance's margin to the threshold,
//! 50 at the threshold itself. `similar` (0–100) is the cosine similarity as a
//! percentage, floored at 0, for people who read a score rather than a verdict.

use super::embed::Embedding;
use serde::Serialize;

/// Distance threshold: the fewest misclassified pairs over all 400 ORL
/// photos (1,800 same-person and 78,000 different-person pairs) fall at 0.90.
/// Erring low favours rejecting an impostor over accepting one: a false
/// reject costs a proctor's look, a false accept lets someone else sit the
/// exam. `tests/it/recognize.rs` asserts the split on the committed subset.
pub const THRESHOLD: f32 = 0.9;

/// Steepness of the confidence curve: a margin of 0.15 in distance, about
/// the spread of same-person distances on the labelled set, gives ~95 %.
const CONFIDENCE_SLOPE: f32 = 20.0;

/// The vendor's verification answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Verification {
    pub verified: bool,
    pub distance: f32,
    pub threshold: f32,
    pub confidence: f32,
    pub similar: f32,
}

impl Verification {
    /// Compares two embeddings against `threshold`.
    pub fn compare(a: &Embedding, b: &Embedding, threshold: f32) -> Verification {
        Self::from_distance(a.distance(b), threshold)
    }

    pub fn from_distance(distance: f32, threshold: f32) -> Verification {
        let margin = (threshold - distance).abs();
        let confidence = 100.0 / (1.0 + (-CONFIDENCE_SLOPE * margin).exp());
        // For unit vectors, cos = 1 − d²/2.
        let cosine = 1.0 - distance * distance / 2.0;
        Verification {
            verified: distance <= threshold,
            distance: round(distance, 4),
            threshold,
            confidence: round(confidence, 1),
            similar: round((cosine * 100.0).max(0.0), 1),
        }
    }
}

fn round(x: f32, digits: i32) -> f32 {
    let f = 10f32.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_and_scores() {
        let v = Verification::from_distance(0.2, 1.0);
        assert!(v.verified);
        assert!(v.confidence > 99.0);
        assert_eq!(v.similar, 98.0);
        let v = Verification::from_distance(1.0, 1.0);
        assert!(v.verified, "the threshold itself is accepted");
        assert_eq!(v.confidence, 50.0);
        let v = Verification::from_distance(1.3, 1.0);
        assert!(!v.verified);
        assert!(v.confidence > 99.0);
        assert_eq!(v.similar, 15.5);
        let v = Verification::from_distance(2.0, 1.0);
        assert_eq!(v.similar, 0.0, "opposite vectors floor at 0");
    }

    #[test]
    fn serialises_in_the_vendor_shape() {
        let v = Verification::from_distance(0.5, 1.0);
        let json = serde_json::to_value(v).expect("json");
        let keys: Vec<_> = json.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys.len(), 5);
        for k in ["verified", "distance", "threshold", "confidence", "similar"] {
            assert!(json.get(k).is_some(), "missing {k}");
        }
        assert_eq!(json["verified"], true);
    }
}
