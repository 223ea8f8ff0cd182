//! Accommodations: a student's exemptions (a metric off, a weight changed,
//! extra time), each recorded with who granted it, why and when.

use super::{Session, Status, allowed, load, retime, save, text};
use crate::proctoring::ProctoringError;
use crate::proctoring::metrics::{self, Metric};
use crate::proctoring::protocol::{self, Kind};
use crate::proctoring::templates::{self, Template};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Grant {
    MetricOff { metric: Metric },
    Weight { metric: Metric, weight: f64 },
    ExtraTime { minutes: u64 },
}

/// A granted accommodation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accommodation {
    pub grant: Grant,
    pub reason: String,
    pub granted_by: String,
    pub at: u64,
}

/// The template's weights with a session's accommodations applied.
pub fn effective_weights(template: &Template, s: &Session) -> BTreeMap<Metric, f64> {
    let mut weights = template.weights.clone();
    for a in &s.accommodations {
        match a.grant {
            Grant::MetricOff { metric } => {
                weights.remove(&metric);
            }
            Grant::Weight { metric, weight } => {
                weights.insert(metric, weight);
            }
            Grant::ExtraTime { .. } => {}
        }
    }
    weights
}

/// Grants an accommodation; extra time moves the session's end, and the grant
/// is recorded in the protocol.
pub fn accommodate(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    by: &str,
    grant: Grant,
    reason: &str,
    at: u64,
) -> Result<Session, ProctoringError> {
    match grant {
        Grant::Weight { weight, .. } if !weight.is_finite() || !(0.0..=100.0).contains(&weight) => {
            return Err(ProctoringError::invalid(
                "weight",
                "must be between 0 and 100",
            ));
        }
        Grant::ExtraTime { minutes } if minutes == 0 || minutes > 24 * 60 => {
            return Err(ProctoringError::invalid("minutes", "1 minute to 24 hours"));
        }
        _ => {}
    }
    let reason = text("reason", reason, 500)?;
    store.write(|tx| {
        let mut s = load(tx, host_id, id)?
            .ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))?;
        if matches!(s.status, Status::Stopped | Status::Concluded) {
            return Err(ProctoringError::IllegalMove {
                from: s.status.as_str(),
                action: "accommodate",
                allowed: allowed(s.status),
            });
        }
        let before = s
            .ends_at()
            .filter(|_| matches!(s.status, Status::Started | Status::Paused));
        if let Grant::ExtraTime { minutes } = grant {
            s.extra_secs += minutes * 60;
        }
        s.accommodations.push(Accommodation {
            grant: grant.clone(),
            reason: reason.clone(),
            granted_by: by.to_string(),
            at,
        });
        if let Some(t) = templates::version(tx, host_id, &s.template_id, s.template_version)? {
            let score = metrics::score(&s.averages, &effective_weights(&t, &s), t.threshold);
            if s.score.is_some() {
                s.score = Some(score.score);
                s.review = score.review;
            }
        }
        retime(tx, before, &s)?;
        save(tx, &s)?;
        let data = serde_json::json!({ "accommodation": grant, "reason": reason });
        protocol::append(tx, &s.scope(), at, by, Kind::Action, data)?;
        Ok(s)
    })
}
