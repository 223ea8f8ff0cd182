//! Templates: which addons a session uses, which metrics count with which
//! weight, the review threshold and the sampling period. Every change makes a
//! new version; a session keeps the version it was created with.

use super::ProctoringError;
use super::metrics::Metric;
use crate::store::{ReadTx, Scan, Store, StoreError, catalog};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Switchable parts of the proctoring panel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Addons {
    pub webcam: bool,
    pub microphone: bool,
    pub screen: bool,
    /// Identity check before the exam: a photo of the student's face,
    /// kept as the session's reference face (c4 on snapshots, c5 across
    /// the host's sessions).
    pub face_check: bool,
    /// Identity check: a photo of an ID document whose face must match the
    /// reference face (needs `face_check`).
    pub id_document: bool,
    /// Identity check: a random head-turn challenge (needs `face_check`,
    /// whose face must be the one turning).
    pub liveness: bool,
    pub chat: bool,
    pub recording: bool,
    pub lock_on_violation: bool,
    /// With `lock_on_violation`: the codes whose violation in a period
    /// (a value above 0) locks the student's screen; empty means every code
    /// the browser measures.
    pub lock_on: Vec<Metric>,
    pub second_camera: bool,
    /// The exam page shown beside the proctoring panel.
    pub exam_url: Option<String>,
}

/// When a session concludes by itself (marked automatic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoConclusion {
    /// At stop, a score at or above this concludes positive.
    pub positive_at_or_above: Option<f64>,
    /// At stop, a score below this concludes negative.
    pub negative_below: Option<f64>,
}

/// A template version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub host_id: String,
    pub id: String,
    pub version: u32,
    pub name: String,
    pub addons: Addons,
    pub weights: BTreeMap<Metric, f64>,
    pub threshold: f64,
    pub period_secs: u32,
    pub auto_conclusion: Option<AutoConclusion>,
    pub created_by: String,
    pub created_at: u64,
}

/// What an administrator sends.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub addons: Addons,
    #[serde(default)]
    pub weights: BTreeMap<Metric, f64>,
    pub threshold: Option<f64>,
    pub period_secs: Option<u32>,
    pub auto_conclusion: Option<AutoConclusion>,
}

/// The weights and settings a session gets when nothing else is said.
pub fn default_weights() -> BTreeMap<Metric, f64> {
    Metric::ALL.into_iter().map(|m| (m, 0.1)).collect()
}

fn key(host_id: &str, id: &str, version: u32) -> Vec<u8> {
    let mut k = format!("{host_id}\0{id}\0").into_bytes();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn validate(input: &TemplateInput) -> Result<(), ProctoringError> {
    let bad = |field: &str, m: &str| Err(ProctoringError::invalid(field, m));
    if input.name.trim().is_empty() || input.name.chars().count() > 200 {
        return bad("name", "must be 1 to 200 characters");
    }
    if let Some(id) = &input.id
        && (id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return bad("id", "1 to 64 letters, digits, - or _");
    }
    if input
        .weights
        .values()
        .any(|w| !w.is_finite() || *w < 0.0 || *w > 100.0)
    {
        return bad("weights", "each weight must be between 0 and 100");
    }
    if input.threshold.is_some_and(|t| !(0.0..=100.0).contains(&t)) {
        return bad("threshold", "must be between 0 and 100");
    }
    if input.period_secs.is_some_and(|p| !(1..=3600).contains(&p)) {
        return bad("period_secs", "must be 1 to 3600 seconds");
    }
    if let Some(m) = input.addons.lock_on.iter().find(|m| m.server_side()) {
        return Err(ProctoringError::invalid(
            "addons.lock_on",
            format!("{m} is measured by the server; only browser codes lock the screen"),
        ));
    }
    if let Some(url) = &input.addons.exam_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return bad("addons.exam_url", "must be an http(s) URL");
    }
    // Both compare with the face photo's reference face.
    for (on, field) in [
        (input.addons.id_document, "addons.id_document"),
        (input.addons.liveness, "addons.liveness"),
    ] {
        if on && !input.addons.face_check {
            return bad(
                field,
                "needs addons.face_check (it is compared with the face photo)",
            );
        }
    }
    Ok(())
}

/// The newest version of a template.
pub fn latest(tx: &dyn ReadTx, host_id: &str, id: &str) -> Result<Option<Template>, StoreError> {
    let prefix = format!("{host_id}\0{id}\0").into_bytes();
    let rows = tx.scan(catalog::TEMPLATES, &Scan::prefix(&prefix).rev().limit(1))?;
    Ok(rows
        .first()
        .and_then(|(_, v)| serde_json::from_slice(v).ok()))
}

/// One version of a template.
pub fn version(
    tx: &dyn ReadTx,
    host_id: &str,
    id: &str,
    version: u32,
) -> Result<Option<Template>, StoreError> {
    tx.get_json(catalog::TEMPLATES, &key(host_id, id, version))
}

/// Saves a new version (version 1 for a new id).
pub fn save(
    store: &dyn Store,
    host_id: &str,
    by: &str,
    input: &TemplateInput,
) -> Result<Template, ProctoringError> {
    validate(input)?;
    let id = input.id.clone().unwrap_or_else(|| {
        crate::auth::random_token(6)
            .to_ascii_lowercase()
            .replace('_', "-")
    });
    store.write(|tx| {
        let next = latest(tx, host_id, &id)?.map_or(1, |t| t.version + 1);
        let template = Template {
            host_id: host_id.to_string(),
            id: id.clone(),
            version: next,
            name: input.name.trim().to_string(),
            addons: input.addons.clone(),
            weights: if input.weights.is_empty() {
                default_weights()
            } else {
                input.weights.clone()
            },
            threshold: input.threshold.unwrap_or(70.0),
            period_secs: input.period_secs.unwrap_or(10),
            auto_conclusion: input.auto_conclusion.clone(),
            created_by: by.to_string(),
            created_at: crate::auth::now_secs(),
        };
        tx.put_json(catalog::TEMPLATES, &key(host_id, &id, next), &template)?;
        Ok(template)
    })
}

/// The newest version of every template of a host.
pub fn list(store: &dyn Store, host_id: &str) -> Result<Vec<Template>, ProctoringError> {
    let prefix = format!("{host_id}\0").into_bytes();
    let mut newest: BTreeMap<String, Template> = BTreeMap::new();
    for (_, v) in store.scan(catalog::TEMPLATES, &Scan::prefix(&prefix))? {
        if let Ok(t) = serde_json::from_slice::<Template>(&v) {
            newest.insert(t.id.clone(), t);
        }
    }
    Ok(newest.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn input(id: &str, threshold: f64) -> TemplateInput {
        TemplateInput {
            id: Some(id.into()),
            name: "Final exam".into(),
            addons: Addons {
                webcam: true,
                ..Addons::default()
            },
            weights: BTreeMap::from([(Metric::B2, 0.5)]),
            threshold: Some(threshold),
            period_secs: None,
            auto_conclusion: None,
        }
    }

    #[test]
    fn versions_accumulate_and_old_ones_stay_readable() {
        let store = MemoryStore::new();
        let v1 = save(&store, "h1", "adm", &input("final", 70.0)).unwrap();
        let v2 = save(&store, "h1", "adm", &input("final", 80.0)).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        let store: &dyn Store = &store;
        let old = store
            .read(|tx| version(tx, "h1", "final", 1))
            .unwrap()
            .unwrap();
        assert_eq!(old.threshold, 70.0);
        let listed = list(store, "h1").unwrap();
        assert_eq!((listed.len(), listed[0].version), (1, 2));
        assert!(list(store, "h2").unwrap().is_empty());
    }

    #[test]
    fn bad_templates_are_named() {
        let store = MemoryStore::new();
        let mut i = input("x", 150.0);
        assert!(
            matches!(save(&store, "h1", "a", &i), Err(ProctoringError::Invalid { field, .. }) if field == "threshold")
        );
        i.threshold = None;
        i.weights.insert(Metric::C1, -1.0);
        assert!(
            matches!(save(&store, "h1", "a", &i), Err(ProctoringError::Invalid { field, .. }) if field == "weights")
        );
    }

    #[test]
    fn identity_checks_build_on_the_face_photo() {
        let store = MemoryStore::new();
        let mut i = input("id", 70.0);
        i.addons.liveness = true;
        assert!(
            matches!(save(&store, "h1", "a", &i), Err(ProctoringError::Invalid { field, .. }) if field == "addons.liveness")
        );
        i.addons.liveness = false;
        i.addons.id_document = true;
        assert!(
            matches!(save(&store, "h1", "a", &i), Err(ProctoringError::Invalid { field, .. }) if field == "addons.id_document")
        );
        i.addons.face_check = true;
        i.addons.liveness = true;
        let t = save(&store, "h1", "a", &i).unwrap();
        assert!(t.addons.face_check && t.addons.id_document && t.addons.liveness);
        // Templates stored before the liveness switch existed still read.
        let old: Addons = serde_json::from_str(r#"{"webcam":true,"face_check":true}"#).unwrap();
        assert!(!old.liveness);
    }
}
