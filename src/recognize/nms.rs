//! Non-maximum suppression for BlazeFace candidates.
//!
//! BlazeFace fires on several neighbouring anchors for one face. MediaPipe
//! blends overlapping candidates weighted by score ("weighted NMS"), which
//! steadies the box and keypoints from frame to frame; plain NMS keeps only
//! the best candidate of each cluster.

/// One detection before or after suppression, in any consistent coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// `[x0, y0, x1, y1]`.
    pub bbox: [f32; 4],
    /// The six BlazeFace keypoints as `[x, y]`.
    pub keypoints: [[f32; 2]; 6],
    pub score: f32,
}

/// Intersection over union of two boxes; 0 for degenerate boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// How overlapping candidates are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// Score-weighted average of each cluster, with the cluster's best score.
    Weighted,
    /// The best candidate of each cluster.
    Hard,
}

/// Suppresses candidates overlapping a better one by more than `threshold`
/// IoU; returns the survivors, best first.
pub fn suppress(
    mut candidates: Vec<Candidate>,
    threshold: f32,
    mode: Suppression,
) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !candidates.is_empty() {
        let best = candidates[0].bbox;
        let (cluster, rest): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|c| iou(&best, &c.bbox) > threshold || c.bbox == best);
        candidates = rest;
        out.push(match mode {
            Suppression::Hard => cluster[0].clone(),
            Suppression::Weighted => blend(&cluster),
        });
    }
    out
}

/// Score-weighted mean of a non-empty cluster sorted best first.
fn blend(cluster: &[Candidate]) -> Candidate {
    let total: f32 = cluster.iter().map(|c| c.score).sum();
    let mut bbox = [0.0; 4];
    let mut keypoints = [[0.0; 2]; 6];
    for c in cluster {
        let w = c.score / total;
        for (acc, v) in bbox.iter_mut().zip(c.bbox) {
            *acc += w * v;
        }
        for (acc, kp) in keypoints.iter_mut().zip(c.keypoints) {
            acc[0] += w * kp[0];
            acc[1] += w * kp[1];
        }
    }
    Candidate {
        bbox,
        keypoints,
        score: cluster[0].score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(bbox: [f32; 4], score: f32) -> Candidate {
        Candidate {
            bbox,
            keypoints: [[bbox[0], bbox[1]]; 6],
            score,
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = [0.0, 0.0, 2.0, 2.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[3.0, 3.0, 4.0, 4.0]), 0.0);
        // Overlap 1×2 = 2, union 4 + 4 − 2 = 6.
        assert!((iou(&a, &[1.0, 0.0, 3.0, 2.0]) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn hard_nms_keeps_the_best_of_each_cluster() {
        let out = suppress(
            vec![
                cand([0.0, 0.0, 1.0, 1.0], 0.7),
                cand([0.05, 0.0, 1.05, 1.0], 0.9),
                cand([5.0, 5.0, 6.0, 6.0], 0.8),
            ],
            0.3,
            Suppression::Hard,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[0].bbox, [0.05, 0.0, 1.05, 1.0]);
        assert_eq!(out[1].score, 0.8);
    }

    #[test]
    fn weighted_nms_blends_by_score() {
        let out = suppress(
            vec![
                cand([0.0, 0.0, 1.0, 1.0], 0.25),
                cand([0.2, 0.0, 1.2, 1.0], 0.75),
            ],
            0.3,
            Suppression::Weighted,
        );
        assert_eq!(out.len(), 1);
        // x0 = 0.25·0 + 0.75·0.2 over a weight of 1.
        assert!((out[0].bbox[0] - 0.15).abs() < 1e-6, "{:?}", out[0].bbox);
        assert!((out[0].keypoints[0][0] - 0.15).abs() < 1e-6);
        assert_eq!(out[0].score, 0.75);
    }

    #[test]
    fn separate_faces_survive() {
        let faces: Vec<_> = (0..5)
            .map(|i| cand([i as f32 * 2.0, 0.0, i as f32 * 2.0 + 1.0, 1.0], 0.9))
            .collect();
        assert_eq!(suppress(faces, 0.3, Suppression::Weighted).len(), 5);
        assert!(suppress(Vec::new(), 0.3, Suppression::Weighted).is_empty());
    }
}
