//! Text detection with PP-OCRv4's DB (differentiable binarisation) network:
//! the image goes in scaled to multiples of 32, a per-pixel text
//! probability map comes out; the map is thresholded and dilated, each
//! connected region becomes its minimum-area rectangle, rectangles whose
//! mean probability is low are dropped and the rest are grown ("unclipped")
//! back to the whole text line, as PaddleOCR's `DBPostProcess` does.

use super::geometry::{Point, Quad, Rect, convex_hull, inside, min_area_rect};
use crate::recognize::engine::{Network, Tensor};
use crate::recognize::error::{RecognizeError, Result};
use image::RgbImage;
use image::imageops::{self, FilterType};

/// Post-processing settings (PaddleOCR's defaults for PP-OCRv4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbOptions {
    /// Pixels above this probability are text.
    pub threshold: f32,
    /// Regions whose mean probability is below this are dropped.
    pub box_threshold: f32,
    /// How far a region is grown: its area × ratio / perimeter.
    pub unclip_ratio: f32,
    /// The shorter side of the model input is scaled up to at least this.
    pub min_side: u32,
    /// ... and the longer one down to at most this.
    pub max_side: u32,
    /// At most this many regions are considered.
    pub max_candidates: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            min_side: 736,
            max_side: 2000,
            max_candidates: 1000,
        }
    }
}

/// Regions narrower than this (in map pixels) are noise.
const MIN_SIZE: f32 = 3.0;

pub struct TextDetector {
    network: Box<dyn Network>,
    options: DbOptions,
}

/// A probability map of `width`×`height`, row-major.
pub struct ProbabilityMap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl ProbabilityMap {
    fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }
}

impl TextDetector {
    pub fn new(network: Box<dyn Network>) -> Self {
        TextDetector {
            network,
            options: DbOptions::default(),
        }
    }

    /// Text boxes of `image`, in its pixels, in reading order (top to
    /// bottom, then left to right on one line).
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Quad>> {
        let (w, h) = input_size(image.width(), image.height(), &self.options);
        let resized = imageops::resize(image, w, h, FilterType::Triangle);
        let map = self.probabilities(&resized)?;
        let sx = image.width() as f32 / map.width as f32;
        let sy = image.height() as f32 / map.height as f32;
        let mut boxes: Vec<Quad> = boxes(&map, &self.options)
            .into_iter()
            .map(|q| q.scaled(sx, sy, image.width() as f32, image.height() as f32))
            .filter(|q| {
                let (bw, bh) = q.size();
                bw > MIN_SIZE && bh > MIN_SIZE
            })
            .collect();
        reading_order(&mut boxes);
        Ok(boxes)
    }

    fn probabilities(&self, image: &RgbImage) -> Result<ProbabilityMap> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let tensor = Tensor::new(vec![1, 3, h, w], bgr_planes(image))
            .ok_or_else(|| RecognizeError::model("ppocrv4-det", "input tensor shape mismatch"))?;
        let out = self
            .network
            .run(tensor)?
            .into_iter()
            .next()
            .ok_or_else(|| RecognizeError::model("ppocrv4-det", "no output"))?;
        if out.shape.len() != 4 || out.shape[2] != h || out.shape[3] != w {
            return Err(RecognizeError::model(
                "ppocrv4-det",
                format!("output shape {:?}, expected [1, 1, {h}, {w}]", out.shape),
            ));
        }
        Ok(ProbabilityMap {
            width: w,
            height: h,
            data: out.data,
        })
    }
}

/// The model input size for a `width`×`height` image: the shorter side
/// scaled up to `min_side` (small text needs the resolution), the longer one
/// kept under `max_side`, both rounded to multiples of 32.
pub fn input_size(width: u32, height: u32, o: &DbOptions) -> (u32, u32) {
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    let mut ratio = if w.min(h) < o.min_side as f32 {
        o.min_side as f32 / w.min(h)
    } else {
        1.0
    };
    if w.max(h) * ratio > o.max_side as f32 {
        ratio = o.max_side as f32 / w.max(h);
    }
    let round32 = |v: f32| (((v * ratio) / 32.0).round() as u32).max(1) * 32;
    (round32(w), round32(h))
}

/// Planes B, G, R (PaddleOCR models are trained on OpenCV's BGR order),
/// each pixel mapped to (p / 255 − 0.5) / 0.5.
pub fn bgr_planes(image: &RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut data = vec![0f32; plane * 3];
    for (i, p) in image.pixels().enumerate() {
        for (c, &v) in [p[2], p[1], p[0]].iter().enumerate() {
            data[c * plane + i] = f32::from(v) / 127.5 - 1.0;
        }
    }
    data
}

/// Boxes in map pixels.
pub fn boxes(map: &ProbabilityMap, o: &DbOptions) -> Vec<Quad> {
    let mask = dilated_mask(map, o.threshold);
    regions(&mask, map.width, map.height)
        .into_iter()
        .take(o.max_candidates)
        .filter_map(|points| {
            let rect = min_area_rect(&convex_hull(points))?;
            if rect.short_side() < MIN_SIZE {
                return None;
            }
            if mean_inside(map, &rect.quad()) < o.box_threshold {
                return None;
            }
            let grown = unclip(&rect, o.unclip_ratio);
            (grown.short_side() >= MIN_SIZE + 2.0).then(|| grown.quad())
        })
        .collect()
}

/// Thresholded map dilated by a 2×2 square (OpenCV's anchor: each pixel
/// takes its own, left, upper and upper-left neighbours).
fn dilated_mask(map: &ProbabilityMap, threshold: f32) -> Vec<bool> {
    let (w, h) = (map.width, map.height);
    let on = |x: usize, y: usize| map.at(x, y) > threshold;
    let mut mask = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            mask[y * w + x] = on(x, y)
                || (x > 0 && on(x - 1, y))
                || (y > 0 && on(x, y - 1))
                || (x > 0 && y > 0 && on(x - 1, y - 1));
        }
    }
    mask
}

/// 8-connected regions of `mask`, each as the leftmost and rightmost pixel
/// of each of its rows (enough for the convex hull), in scan order.
fn regions(mask: &[bool], w: usize, h: usize) -> Vec<Vec<Point>> {
    let mut label = vec![u32::MAX; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || label[start] != u32::MAX {
            continue;
        }
        let id = out.len() as u32;
        // Per row: min and max x of the region.
        let mut rows: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
        label[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let row = rows.entry(y).or_insert((x, x));
            row.0 = row.0.min(x);
            row.1 = row.1.max(x);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let n = ny as usize * w + nx as usize;
                    if mask[n] && label[n] == u32::MAX {
                        label[n] = id;
                        stack.push(n);
                    }
                }
            }
        }
        out.push(
            rows.into_iter()
                .flat_map(|(y, (a, b))| [[a as f32, y as f32], [b as f32, y as f32]])
                .collect(),
        );
    }
    out
}

/// Mean probability over the pixels inside `q` (PaddleOCR's "fast" score).
fn mean_inside(map: &ProbabilityMap, q: &Quad) -> f32 {
    let xs = q.0.map(|p| p[0]);
    let ys = q.0.map(|p| p[1]);
    let clampx = |v: f32| (v.max(0.0) as usize).min(map.width - 1);
    let clampy = |v: f32| (v.max(0.0) as usize).min(map.height - 1);
    let (x0, x1) = (
        clampx(xs.iter().copied().fold(f32::MAX, f32::min).floor()),
        clampx(xs.iter().copied().fold(f32::MIN, f32::max).ceil()),
    );
    let (y0, y1) = (
        clampy(ys.iter().copied().fold(f32::MAX, f32::min).floor()),
        clampy(ys.iter().copied().fold(f32::MIN, f32::max).ceil()),
    );
    let (mut sum, mut n) = (0.0f32, 0u32);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if inside(q, [x as f32, y as f32]) {
                sum += map.at(x, y);
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f32 }
}

/// The region grown by area × ratio / perimeter on every side: DB shrinks
/// text regions by that much in training, so this restores the whole line.
fn unclip(rect: &Rect, ratio: f32) -> Rect {
    let perimeter = 2.0 * (rect.length + rect.breadth);
    if perimeter <= 0.0 {
        return *rect;
    }
    rect.grown(rect.area() * ratio / perimeter)
}

/// Top to bottom; boxes whose tops are within 10 pixels count as one line
/// and go left to right.
fn reading_order(boxes: &mut [Quad]) {
    boxes.sort_by(|a, b| {
        let (pa, pb) = (a.top_left(), b.top_left());
        pa[1].total_cmp(&pb[1]).then(pa[0].total_cmp(&pb[0]))
    });
    // One bubble pass per box, as PaddleOCR's `sorted_boxes` does.
    for i in 0..boxes.len() {
        for j in (0..i).rev() {
            let (a, b) = (boxes[j].top_left(), boxes[j + 1].top_left());
            if (b[1] - a[1]).abs() < 10.0 && b[0] < a[0] {
                boxes.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with(rects: &[(usize, usize, usize, usize)], w: usize, h: usize) -> ProbabilityMap {
        let mut data = vec![0.0; w * h];
        for &(x0, y0, x1, y1) in rects {
            for y in y0..y1 {
                for x in x0..x1 {
                    data[y * w + x] = 0.9;
                }
            }
        }
        ProbabilityMap {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn two_lines_become_two_grown_boxes_in_reading_order() {
        let map = map_with(&[(10, 40, 90, 50), (10, 10, 60, 20)], 100, 60);
        let mut found = boxes(&map, &DbOptions::default());
        reading_order(&mut found);
        assert_eq!(found.len(), 2, "{found:?}");
        let (w, h) = found[0].size();
        // The 50×10 region (measured between pixel centres: 49×10 after the
        // dilation) grows by 1.6 × area / perimeter ≈ 6.6 on each side.
        let d = 1.6 * 50.0 * 10.0 / 120.0;
        assert!((w - (50.0 + 2.0 * d)).abs() < 1.5, "{w}");
        assert!((h - (10.0 + 2.0 * d)).abs() < 1.5, "{h}");
        assert!(found[0].0[0][1] < found[1].0[0][1]);
    }

    #[test]
    fn faint_and_tiny_regions_are_dropped() {
        let mut map = map_with(&[(10, 10, 12, 12)], 50, 50);
        for v in map.data.iter_mut().skip(30 * 50).take(50 * 10) {
            *v = 0.35; // above the pixel threshold, below the box one
        }
        assert!(boxes(&map, &DbOptions::default()).is_empty());
    }

    #[test]
    fn input_sizes_are_multiples_of_32_within_the_limits() {
        let o = DbOptions::default();
        assert_eq!(input_size(640, 480, &o), (992, 736));
        assert_eq!(input_size(4000, 3000, &o), (2016, 1504));
        let (w, h) = input_size(1240, 900, &o);
        assert_eq!((w % 32, h % 32), (0, 0));
    }
}
