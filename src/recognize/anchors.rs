//! BlazeFace anchors and the decoding of its raw outputs into face candidates.
//!
//! Both BlazeFace models (front 128 and back 256) predict on two grids: 16×16
//! cells with 2 anchors each and 8×8 cells with 6 anchors each, 896 in all.
//! Every anchor has a score logit and 16 regression values: box centre offset,
//! box size, then 6 keypoints, all in input pixels relative to the anchor's
//! centre `(i + 0.5) / grid`.

use super::nms::Candidate;

/// Cells per side and anchors per cell of the two prediction grids.
pub const GRIDS: [(usize, usize); 2] = [(16, 2), (8, 6)];

/// Number of regression values per anchor.
pub const REGRESSION: usize = 16;

/// Anchor centres in normalised input coordinates, in the order the models
/// emit them: grid by grid, row-major cells, the anchors of a cell together.
pub fn anchors() -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(896);
    for (grid, per_cell) in GRIDS {
        for y in 0..grid {
            for x in 0..grid {
                let centre = [
                    (x as f32 + 0.5) / grid as f32,
                    (y as f32 + 0.5) / grid as f32,
                ];
                out.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    out
}

/// Logistic function; the logit is clamped as MediaPipe does so a wild value
/// cannot overflow.
pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp())
}

/// Turns the scores and regressions of all anchors into candidates above
/// `min_score`, in normalised input coordinates (0..1 across the square input).
///
/// `scores` has one logit per anchor; `boxes` has [`REGRESSION`] values per
/// anchor; `input_size` is the model's input side in pixels.
pub fn decode(
    anchors: &[[f32; 2]],
    scores: &[f32],
    boxes: &[f32],
    input_size: f32,
    min_score: f32,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let (Some(&logit), Some(r)) = (
            scores.get(i),
            boxes.get(i * REGRESSION..(i + 1) * REGRESSION),
        ) else {
            break;
        };
        let score = sigmoid(logit);
        if score < min_score {
            continue;
        }
        let cx = anchor[0] + r[0] / input_size;
        let cy = anchor[1] + r[1] / input_size;
        let w = r[2] / input_size;
        let h = r[3] / input_size;
        if w <= 0.0 || h <= 0.0 {
            continue;
        }
        let mut keypoints = [[0.0; 2]; 6];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = [
                anchor[0] + r[4 + 2 * k] / input_size,
                anchor[1] + r[5 + 2 * k] / input_size,
            ];
        }
        out.push(Candidate {
            bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            keypoints,
            score,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_layout_matches_the_models() {
        let a = anchors();
        assert_eq!(a.len(), 896);
        // First grid: 16×16 cells, two anchors per cell at the same centre.
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[1], a[0]);
        assert_eq!(a[2], [1.5 / 16.0, 0.5 / 16.0]);
        // Row 1 of the first grid starts after 16 cells × 2 anchors.
        assert_eq!(a[32], [0.5 / 16.0, 1.5 / 16.0]);
        assert_eq!(a[511], [15.5 / 16.0, 15.5 / 16.0]);
        // Second grid: 8×8 cells, six anchors per cell.
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[517], a[512]);
        assert_eq!(a[518], [1.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[895], [7.5 / 8.0, 7.5 / 8.0]);
    }

    #[test]
    fn sigmoid_is_bounded_and_centred() {
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-6);
        assert!(sigmoid(1e9) <= 1.0 && sigmoid(1e9) > 0.999);
        assert!(sigmoid(-1e9) >= 0.0 && sigmoid(-1e9) < 0.001);
    }

    #[test]
    fn decode_offsets_from_the_anchor_centre() {
        let anchors = anchors();
        let mut scores = vec![-10.0; 896];
        let mut boxes = vec![0.0; 896 * REGRESSION];
        // Anchor 518 sits at (1.5/8, 0.5/8); shift it by (+16, +8) input pixels
        // on a 128 input and give it a 32×64 box and a nose 4 pixels lower.
        let i = 518;
        scores[i] = 5.0;
        let r = &mut boxes[i * REGRESSION..(i + 1) * REGRESSION];
        r[..4].copy_from_slice(&[16.0, 8.0, 32.0, 64.0]);
        r[4 + 2 * 2 + 1] = 4.0;
        let found = decode(&anchors, &scores, &boxes, 128.0, 0.5);
        assert_eq!(found.len(), 1);
        let c = &found[0];
        let (cx, cy) = (1.5 / 8.0 + 16.0 / 128.0, 0.5 / 8.0 + 8.0 / 128.0);
        let expect = [
            cx - 16.0 / 128.0,
            cy - 32.0 / 128.0,
            cx + 16.0 / 128.0,
            cy + 32.0 / 128.0,
        ];
        for (got, want) in c.bbox.iter().zip(expect) {
            assert!((got - want).abs() < 1e-6, "{:?} vs {expect:?}", c.bbox);
        }
        assert!((c.keypoints[2][1] - (0.5 / 8.0 + 4.0 / 128.0)).abs() < 1e-6);
        assert!((c.keypoints[0][0] - 1.5 / 8.0).abs() < 1e-6);
        assert!((c.score - sigmoid(5.0)).abs() < 1e-6);
    }

    #[test]
    fn decode_skips_low_scores_and_short_inputs() {
        let anchors = anchors();
        let scores = vec![0.0; 10]; // sigmoid 0.5 < 0.6
        let boxes = vec![1.0; 10 * REGRESSION];
        assert!(decode(&anchors, &scores, &boxes, 128.0, 0.6).is_empty());
        // Shorter outputs than anchors stop decoding instead of panicking.
        assert_eq!(decode(&anchors, &scores, &boxes, 128.0, 0.4).len(), 10);
    }
}
