//! c5, "the same face found in another session": the reference faces of a
//! host kept in memory as one flat array, searched exhaustively.
//!
//! An exhaustive scan is exact (no face under the threshold is missed, as
//! an approximate index could) and linear in the host's faces: one dot
//! product of 192 floats per stored face. The search runs once per face
//! check, not per snapshot. `cargo test --lib -j 2 search_scales --
//! --nocapture` prints the time per search at 1k, 10k and 100k faces.
//!
//! A host's faces are loaded from the store on its first search and kept
//! in step by [`FaceIndex::put`] after each durable write; the store stays
//! the truth, so a restart loses nothing.

use super::host_references;
use crate::recognize::{DIM, Embedding};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// A stored face close to the one searched for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Match {
    pub session: String,
    pub student: String,
    pub distance: f32,
}

/// The reference faces of one host.
#[derive(Default)]
pub struct HostFaces {
    slots: HashMap<String, usize>,
    /// (session, student) per slot.
    owners: Vec<(String, String)>,
    /// `DIM` floats per slot, unit vectors.
    data: Vec<f32>,
}

impl HostFaces {
    /// Adds or replaces the reference face of `session`.
    pub fn put(&mut self, session: &str, student: &str, e: &Embedding) {
        if e.0.len() != DIM {
            return;
        }
        match self.slots.get(session) {
            Some(&i) => {
                self.owners[i].1 = student.to_string();
                self.data[i * DIM..(i + 1) * DIM].copy_from_slice(&e.0);
            }
            None => {
                self.slots.insert(session.to_string(), self.owners.len());
                self.owners.push((session.to_string(), student.to_string()));
                self.data.extend_from_slice(&e.0);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Faces within `threshold` (Euclidean distance) of `probe`, nearest
    /// first, leaving out `student`'s own sessions (a student sitting two
    /// exams is no violation).
    pub fn search(&self, probe: &Embedding, threshold: f32, student: &str) -> Vec<Match> {
        if probe.0.len() != DIM {
            return Vec::new();
        }
        // For unit vectors d² = 2 − 2·dot: compare dot products, no root.
        let min_dot = 1.0 - threshold * threshold / 2.0;
        let mut found: Vec<Match> = self
            .data
            .chunks_exact(DIM)
            .enumerate()
            .filter_map(|(i, v)| {
                let dot: f32 = v.iter().zip(&probe.0).map(|(a, b)| a * b).sum();
                (dot >= min_dot).then_some((i, dot))
            })
            .filter(|(i, _)| self.owners[*i].1 != student)
            .map(|(i, dot)| Match {
                session: self.owners[i].0.clone(),
                student: self.owners[i].1.clone(),
                distance: (2.0 - 2.0 * dot).max(0.0).sqrt(),
            })
            .collect();
        found.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        found
    }
}

/// The faces of every host searched so far.
#[derive(Default)]
pub struct FaceIndex {
    hosts: Mutex<HashMap<String, Arc<RwLock<HostFaces>>>>,
}

impl FaceIndex {
    /// The faces of `host_id`, loaded from `store` on first use (blocking).
    pub fn host(
        &self,
        store: &dyn Store,
        host_id: &str,
    ) -> Result<Arc<RwLock<HostFaces>>, StoreError> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = hosts.get(host_id) {
            return Ok(h.clone());
        }
        // Loaded under the lock, so a face recorded meanwhile is either in
        // the scan or put after it, never lost between the two.
        let mut faces = HostFaces::default();
        for (session, student, e) in host_references(store, host_id)? {
            faces.put(&session, &student, &e);
        }
        let h = Arc::new(RwLock::new(faces));
        hosts.insert(host_id.to_string(), h.clone());
        Ok(h)
    }

    /// Keeps a loaded host in step with a reference face just stored; a
    /// host not loaded yet reads it from the store when first searched.
    pub fn put(&self, host_id: &str, session: &str, student: &str, e: &Embedding) {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = hosts.get(host_id) {
            h.write()
                .unwrap_or_else(PoisonError::into_inner)
                .put(session, student, e);
        }
    }

    /// Drops a host's faces from memory, after an erasure removed some from
    /// the store; the next search reloads what is left.
    pub fn forget(&self, host_id: &str) {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(host_id);
    }

    /// Searches `host_id`'s faces (see [`HostFaces::search`]), leaving out
    /// `session` itself.
    pub fn search(
        &self,
        store: &dyn Store,
        host_id: &str,
        session: &str,
        student: &str,
        probe: &Embedding,
        threshold: f32,
    ) -> Result<Vec<Match>, StoreError> {
        let h = self.host(store, host_id)?;
        let faces = h.read().unwrap_or_else(PoisonError::into_inner);
        let mut found = faces.search(probe, threshold, student);
        found.retain(|m| m.session != session);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognize::THRESHOLD;
    use rand::Rng;

    fn random_face(rng: &mut impl Rng) -> Embedding {
        let mut v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        Embedding(v)
    }

    /// `e` moved by a small random step and renormalised: the same person
    /// on another photo.
    fn nearby(e: &Embedding, rng: &mut impl Rng) -> Embedding {
        let mut v: Vec<f32> =
            e.0.iter()
                .map(|x| x + rng.random_range(-0.02..0.02))
                .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        Embedding(v)
    }

    #[test]
    fn finds_the_same_face_of_another_student_only() {
        let mut rng = rand::rng();
        let mut faces = HostFaces::default();
        let ann = random_face(&mut rng);
        faces.put("s1", "ann", &ann);
        faces.put("s2", "bob", &random_face(&mut rng));
        faces.put("s3", "ann", &nearby(&ann, &mut rng));
        let probe = nearby(&ann, &mut rng);
        // Ann's own sessions are not a violation.
        assert!(faces.search(&probe, THRESHOLD, "ann").is_empty());
        // Someone else with Ann's face is.
        let found = faces.search(&probe, THRESHOLD, "eve");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].distance <= found[1].distance);
        assert!(found.iter().all(|m| m.student == "ann"));
        // Replacing a session's face moves it, it does not add one.
        faces.put("s1", "ann", &random_face(&mut rng));
        assert_eq!(faces.len(), 3);
        assert_eq!(faces.search(&probe, THRESHOLD, "eve").len(), 1);
    }

    /// Prints the time per search at 1k, 10k and 100k stored faces; the
    /// planted face must be found at every size.
    #[test]
    fn search_scales_linearly() {
        let mut rng = rand::rng();
        let target = random_face(&mut rng);
        let mut faces = HostFaces::default();
        faces.put("planted", "ann", &target);
        let mut report = Vec::new();
        for size in [1_000, 10_000, 100_000] {
            while faces.len() < size {
                let n = faces.len();
                faces.put(&format!("s{n}"), &format!("u{n}"), &random_face(&mut rng));
            }
            let probe = nearby(&target, &mut rng);
            let rounds = (1_000_000 / size).clamp(3, 200);
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                let found = faces.search(&probe, THRESHOLD, "eve");
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].session, "planted");
            }
            let micros = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            report.push(format!("{size} faces: {micros:.0} µs per search"));
        }
        eprintln!(
            "c5 search ({} build): {}",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            report.join(", ")
        );
    }
}
