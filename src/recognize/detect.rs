//! Face detection with BlazeFace: letterbox the image into the model's square
//! input, run it, decode the anchors, suppress overlaps and map boxes and
//! keypoints back to image pixels.

use super::anchors::{self, REGRESSION};
use super::engine::{Network, Tensor};
use super::error::{RecognizeError, Result};
pub use super::nms::Suppression;
use super::nms::{Candidate, suppress};
use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::Serialize;

/// A face found in an image, in that image's pixel coordinates (origin at the
/// top-left corner, x to the right, y down).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Face {
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    /// Detector confidence, 0–1.
    pub score: f32,
    pub keypoints: Keypoints,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundingBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// The six BlazeFace keypoints. "Right" and "left" are the person's own, so
/// in an unmirrored photo the right eye is on the image's left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Keypoints {
    pub right_eye: [f32; 2],
    pub left_eye: [f32; 2],
    pub nose: [f32; 2],
    pub mouth: [f32; 2],
    pub right_ear: [f32; 2],
    pub left_ear: [f32; 2],
}

impl Face {
    /// Box area in pixels; the largest face is taken as the main one.
    pub fn area(&self) -> f32 {
        self.bbox.width * self.bbox.height
    }
}

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Candidates below this score are dropped.
    pub min_score: f32,
    /// Candidates overlapping a better one by more than this IoU are merged.
    pub iou_threshold: f32,
    /// At most this many faces are reported, best first.
    pub max_faces: usize,
    /// How overlapping candidates merge; weighted steadies keypoints.
    pub suppression: Suppression,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            min_score: 0.6,
            iou_threshold: 0.3,
            max_faces: 32,
            suppression: Suppression::Weighted,
        }
    }
}

/// A BlazeFace network with its input size and anchors.
pub struct Detector {
    network: Box<dyn Network>,
    size: u32,
    anchors: Vec<[f32; 2]>,
    model: &'static str,
}

/// Where the resized image sits inside the square model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Input pixels per image pixel.
    pub scale: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Letterbox {
    /// Fits a `width`×`height` image centred in a `size`×`size` square.
    pub fn fit(width: u32, height: u32, size: u32) -> (Letterbox, u32, u32) {
        let scale = size as f32 / width.max(height) as f32;
        let w = ((width as f32 * scale).round() as u32).clamp(1, size);
        let h = ((height as f32 * scale).round() as u32).clamp(1, size);
        let lb = Letterbox {
            scale,
            pad_x: ((size - w) / 2) as f32,
            pad_y: ((size - h) / 2) as f32,
        };
        (lb, w, h)
    }

    /// Maps a point in normalised input coordinates back to image pixels.
    pub fn to_image(self, p: [f32; 2], size: u32) -> [f32; 2] {
        [
            (p[0] * size as f32 - self.pad_x) / self.scale,
            (p[1] * size as f32 - self.pad_y) / self.scale,
        ]
    }
}

impl Detector {
    pub fn new(network: Box<dyn Network>, size: u32, model: &'static str) -> Self {
        Detector {
            network,
            size,
            anchors: anchors::anchors(),
            model,
        }
    }

    /// Finds the faces in `image`, best score first. With `tiles`, a photo
    /// much wider or taller than square is also searched in overlapping
    /// square tiles: letterboxing it whole leaves part of the small input
    /// blank and shrinks faces below what the model resolves well.
    pub fn detect(
        &self,
        image: &RgbImage,
        options: &DetectOptions,
        tiles: bool,
    ) -> Result<Vec<Face>> {
        let (width, height) = image.dimensions();
        let mut candidates = self.candidates(image, [0, 0], options)?;
        if tiles {
            for [x, y, side] in square_tiles(width, height) {
                let tile = imageops::crop_imm(image, x, y, side, side).to_image();
                candidates.extend(self.candidates(&tile, [x, y], options)?);
            }
        }
        let kept = suppress(candidates, options.iou_threshold, options.suppression);
        Ok(kept
            .into_iter()
            .take(options.max_faces)
            .map(|c| to_face(&c, width, height))
            .collect())
    }

    /// Candidates in `view` above the minimum score, in the pixel coordinates
    /// of the whole image (`offset` is where the view sits in it).
    fn candidates(
        &self,
        view: &RgbImage,
        offset: [u32; 2],
        options: &DetectOptions,
    ) -> Result<Vec<Candidate>> {
        let (lb, w, h) = Letterbox::fit(view.width(), view.height(), self.size);
        let resized = if w < view.width() {
            // Area averaging: no aliasing when a photo shrinks to 128 pixels.
            imageops::thumbnail(view, w, h)
        } else {
            imageops::resize(view, w, h, FilterType::Triangle)
        };
        let input = self.input_tensor(&resized, &lb);
        let outputs = self.network.run(input)?;
        let (scores, boxes) = self.split_outputs(&outputs)?;
        let found = anchors::decode(
            &self.anchors,
            &scores,
            &boxes,
            self.size as f32,
            options.min_score,
        );
        let map = |p: [f32; 2]| {
            let q = lb.to_image(p, self.size);
            [q[0] + offset[0] as f32, q[1] + offset[1] as f32]
        };
        Ok(found
            .into_iter()
            .map(|c| {
                let [x0, y0] = map([c.bbox[0], c.bbox[1]]);
                let [x1, y1] = map([c.bbox[2], c.bbox[3]]);
                Candidate {
                    bbox: [x0, y0, x1, y1],
                    keypoints: c.keypoints.map(map),
                    score: c.score,
                }
            })
            .collect())
    }

    /// NHWC float input, pixels scaled to −1..1, padding black (−1).
    fn input_tensor(&self, resized: &RgbImage, lb: &Letterbox) -> Tensor {
        let s = self.size as usize;
        let mut data = vec![-1.0f32; s * s * 3];
        let (px, py) = (lb.pad_x as usize, lb.pad_y as usize);
        for (x, y, pixel) in resized.enumerate_pixels() {
            let base = ((y as usize + py) * s + x as usize + px) * 3;
            for c in 0..3 {
                data[base + c] = f32::from(pixel.0[c]) / 127.5 - 1.0;
            }
        }
        Tensor {
            shape: vec![1, s, s, 3],
            data,
        }
    }

    /// The models emit four outputs: scores and boxes for the 16×16 grid
    /// (512 anchors) and the 8×8 grid (384). They are told apart by shape so
    /// the order a backend returns them in does not matter.
    fn split_outputs(&self, outputs: &[Tensor]) -> Result<(Vec<f32>, Vec<f32>)> {
        let find = |anchors: usize, width: usize| {
            outputs
                .iter()
                .find(|t| t.shape.len() == 3 && t.shape[1] == anchors && t.shape[2] == width)
                .ok_or_else(|| {
                    let shapes: Vec<_> = outputs.iter().map(|t| t.shape.clone()).collect();
                    RecognizeError::model(
                        self.model,
                        format!(
                            "expected an output of shape [1, {anchors}, {width}], got {shapes:?}"
                        ),
                    )
                })
        };
        let mut scores = Vec::with_capacity(896);
        let mut boxes = Vec::with_capacity(896 * REGRESSION);
        for (grid, per_cell) in anchors::GRIDS {
            let n = grid * grid * per_cell;
            scores.extend_from_slice(&find(n, 1)?.data);
            boxes.extend_from_slice(&find(n, REGRESSION)?.data);
        }
        Ok((scores, boxes))
    }
}

/// Overlapping square tiles `[x, y, side]` covering a `width`×`height`
/// image along its long side; none for a nearly square image.
pub fn square_tiles(width: u32, height: u32) -> Vec<[u32; 3]> {
    let (long, short) = (width.max(height), width.min(height));
    if short == 0 || long * 4 < short * 5 {
        return Vec::new();
    }
    // Enough tiles that neighbours overlap by at least a quarter of a tile,
    // so a face cut by one tile's edge is whole in the next.
    let step_max = short * 3 / 4;
    let count = (long - short).div_ceil(step_max.max(1)) + 1;
    (0..count)
        .map(|i| {
            let start = if count == 1 {
                0
            } else {
                (u64::from(long - short) * u64::from(i) / u64::from(count - 1)) as u32
            };
            if width >= height {
                [start, 0, short]
            } else {
                [0, start, short]
            }
        })
        .collect()
}

/// A suppressed candidate in image pixels as a reported face.
fn to_face(c: &Candidate, width: u32, height: u32) -> Face {
    // Boxes may overhang the picture for faces cut by its edge; clip them.
    let (x0, y0) = (c.bbox[0].max(0.0), c.bbox[1].max(0.0));
    let (x1, y1) = (c.bbox[2].min(width as f32), c.bbox[3].min(height as f32));
    let k = c.keypoints;
    Face {
        bbox: BoundingBox {
            x: x0,
            y: y0,
            width: (x1 - x0).max(0.0),
            height: (y1 - y0).max(0.0),
        },
        score: c.score,
        keypoints: Keypoints {
            right_eye: k[0],
            left_eye: k[1],
            nose: k[2],
            mouth: k[3],
            right_ear: k[4],
            left_ear: k[5],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_centres_and_maps_back() {
        let (lb, w, h) = Letterbox::fit(640, 480, 128);
        assert_eq!((w, h), (128, 96));
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 16.0));
        // The image centre maps to the input centre and back.
        let p = lb.to_image([0.5, 0.5], 128);
        assert!(
            (p[0] - 320.0).abs() < 1e-3 && (p[1] - 240.0).abs() < 1e-3,
            "{p:?}"
        );
        // The top-left corner of the picture is at the top of the padding.
        let p = lb.to_image([0.0, 16.0 / 128.0], 128);
        assert!(p[0].abs() < 1e-3 && p[1].abs() < 1e-3, "{p:?}");
        let (lb, w, h) = Letterbox::fit(92, 112, 128);
        assert_eq!(h, 128);
        assert_eq!(w, 105);
        assert_eq!(lb.pad_x, 11.0);
    }

    #[test]
    fn tiles_cover_the_long_side_with_overlap() {
        assert!(square_tiles(640, 600).is_empty(), "nearly square");
        let t = square_tiles(1280, 886);
        assert_eq!(t, vec![[0, 0, 886], [394, 0, 886]]);
        let t = square_tiles(300, 1200);
        assert_eq!(t.first(), Some(&[0, 0, 300]));
        assert_eq!(t.last(), Some(&[0, 900, 300]));
        for pair in t.windows(2) {
            let step = pair[1][1] - pair[0][1];
            assert!(step <= 225, "overlap of a quarter tile at least: {t:?}");
        }
    }
}
