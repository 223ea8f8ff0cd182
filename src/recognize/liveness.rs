//! Active liveness: the browser asks the candidate for a random sequence of
//! head turns and sends the frames; the server estimates the head's yaw in
//! each frame from the detector's keypoints and checks that the turns came
//! in the asked order, with the face back to the camera in between, and that
//! the face stayed the same person throughout. A photo held up to the camera
//! cannot turn; a replayed video does not know the sequence.

use super::detect::Keypoints;
use super::embed::Embedding;
use super::verify::THRESHOLD;
use rand::Rng;
use serde::Serialize;

/// A head turn, to the candidate's own left or right. Frames are the
/// camera's (not mirrored): turning to one's left moves the nose towards
/// the image's right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Turn {
    Left,
    Right,
}

/// Yaw (degrees) beyond which the head counts as turned.
pub const TURNED_DEGREES: f32 = 20.0;
/// Yaw (degrees) within which the head counts as facing the camera.
pub const FACING_DEGREES: f32 = 10.0;

/// A random challenge of `turns` turns (at least two, so that guessing
/// one's way through is unlikely and both directions can be asked).
pub fn challenge(turns: usize) -> Vec<Turn> {
    let mut rng = rand::rng();
    (0..turns.max(2))
        .map(|_| {
            if rng.random_bool(0.5) {
                Turn::Left
            } else {
                Turn::Right
            }
        })
        .collect()
}

/// The main face of one frame.
#[derive(Debug, Clone)]
pub struct Observation {
    pub keypoints: Keypoints,
    pub embedding: Embedding,
}

/// The verdict, with the yaw seen in each frame for the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Liveness {
    pub live: bool,
    /// Turns of the challenge performed in order.
    pub completed: usize,
    /// Why the check failed; absent when it passed.
    pub reason: Option<String>,
    pub yaw: Vec<f32>,
}

/// Yaw in degrees from the keypoints, positive towards the person's left:
/// where the nose sits between the two ear points (half-way when facing the
/// camera), mapped through arcsin as for a point on a turning cylinder.
pub fn yaw(k: &Keypoints) -> f32 {
    let span = k.left_ear[0] - k.right_ear[0];
    if span.abs() < 1e-3 {
        return 0.0;
    }
    let r = (k.nose[0] - k.right_ear[0]) / span;
    (2.0 * r - 1.0).clamp(-1.0, 1.0).asin().to_degrees()
}

/// Checks `frames` (in capture order) against `challenge`.
pub fn check(challenge: &[Turn], frames: &[Observation]) -> Liveness {
    let yaws: Vec<f32> = frames.iter().map(|f| yaw(&f.keypoints)).collect();
    let fail = |completed, reason: String| Liveness {
        live: false,
        completed,
        reason: Some(reason),
        yaw: yaws.clone(),
    };
    if challenge.is_empty() {
        return fail(0, "the challenge has no turn".into());
    }
    // Same person: each frame close to the one before (the face moves
    // little between frames), and every frame facing the camera close to
    // the first one facing it, where embeddings are most reliable.
    let mut reference: Option<&Embedding> = None;
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 && frames[i - 1].embedding.distance(&frame.embedding) > THRESHOLD {
            return fail(
                0,
                format!("frame {}: a different face than frame {i}", i + 1),
            );
        }
        if yaws[i].abs() <= FACING_DEGREES {
            match reference {
                None => reference = Some(&frame.embedding),
                Some(r) if r.distance(&frame.embedding) > THRESHOLD => {
                    return fail(
                        0,
                        format!("frame {}: a different face than at the start", i + 1),
                    );
                }
                Some(_) => {}
            }
        }
    }
    // The sequence: facing, turn, facing, turn, … in the asked order.
    let mut completed = 0;
    let mut facing = false;
    for &y in &yaws {
        if y.abs() <= FACING_DEGREES {
            facing = true;
            continue;
        }
        if y.abs() < TURNED_DEGREES || !facing {
            continue;
        }
        let turn = if y > 0.0 { Turn::Left } else { Turn::Right };
        if turn != challenge[completed] {
            return fail(
                completed,
                format!(
                    "turn {} was to the {:?}, the challenge asked {:?}",
                    completed + 1,
                    turn,
                    challenge[completed]
                ),
            );
        }
        completed += 1;
        facing = false;
        if completed == challenge.len() {
            return Liveness {
                live: true,
                completed,
                reason: None,
                yaw: yaws,
            };
        }
    }
    fail(
        completed,
        format!("{completed} of {} turns were seen", challenge.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keypoints of a face turned by `degrees` (positive: to its left), on
    /// a cylinder of radius 50 px centred at x = 200.
    fn face(degrees: f32) -> Keypoints {
        let shift = 50.0 * degrees.to_radians().sin();
        Keypoints {
            right_eye: [180.0 + shift, 150.0],
            left_eye: [220.0 + shift, 150.0],
            nose: [200.0 + shift, 175.0],
            mouth: [200.0 + shift, 200.0],
            right_ear: [150.0, 165.0],
            left_ear: [250.0, 165.0],
        }
    }

    /// Distinct people as orthogonal unit vectors (distance √2).
    fn person(which: usize) -> Embedding {
        let mut v = vec![0.0; crate::recognize::DIM];
        v[which] = 1.0;
        Embedding(v)
    }

    fn frames(yaws: &[f32], who: &[usize]) -> Vec<Observation> {
        yaws.iter()
            .zip(who)
            .map(|(&y, &p)| Observation {
                keypoints: face(y),
                embedding: person(p),
            })
            .collect()
    }

    #[test]
    fn yaw_is_read_from_the_keypoints() {
        for degrees in [-40.0, -20.0, 0.0, 15.0, 35.0] {
            let y = yaw(&face(degrees));
            assert!((y - degrees).abs() < 0.5, "{degrees}: {y}");
        }
    }

    #[test]
    fn the_asked_sequence_passes() {
        let asked = [Turn::Left, Turn::Right, Turn::Left];
        let yaws = [
            0.0, 5.0, 15.0, 30.0, 12.0, 2.0, -10.0, -28.0, -3.0, 25.0, 0.0,
        ];
        let v = check(&asked, &frames(&yaws, &[1; 11]));
        assert!(v.live, "{v:?}");
        assert_eq!(v.completed, 3);
        assert_eq!(v.yaw.len(), 11);
    }

    #[test]
    fn a_wrong_order_or_a_missing_turn_fails() {
        let asked = [Turn::Left, Turn::Right];
        let v = check(&asked, &frames(&[0.0, -30.0, 0.0, 30.0], &[1; 4]));
        assert!(!v.live && v.completed == 0, "{v:?}");
        assert!(
            v.reason.as_deref().is_some_and(|r| r.contains("Right")),
            "{v:?}"
        );
        // Turning left twice without facing the camera in between is one turn.
        let v = check(
            &[Turn::Left, Turn::Left],
            &frames(&[0.0, 30.0, 25.0, 30.0], &[1; 4]),
        );
        assert!(!v.live && v.completed == 1, "{v:?}");
        // A still photo never turns.
        let v = check(&asked, &frames(&[1.0; 8], &[1; 8]));
        assert!(!v.live && v.completed == 0, "{v:?}");
        assert!(!check(&[], &frames(&[0.0], &[1])).live);
    }

    #[test]
    fn another_face_midway_fails() {
        let asked = [Turn::Left, Turn::Right];
        let yaws = [0.0, 30.0, 0.0, -30.0, 0.0];
        assert!(check(&asked, &frames(&yaws, &[1; 5])).live);
        let v = check(&asked, &frames(&yaws, &[1, 1, 2, 2, 2]));
        assert!(!v.live, "{v:?}");
        assert!(
            v.reason
                .as_deref()
                .is_some_and(|r| r.contains("different face")),
            "{v:?}"
        );
    }

    #[test]
    fn challenges_are_random_and_long_enough() {
        assert!(challenge(0).len() >= 2);
        let many: Vec<_> = (0..20).map(|_| challenge(4)).collect();
        assert!(
            many.iter().any(|c| c != &many[0]),
            "20 identical challenges"
        );
    }
}
