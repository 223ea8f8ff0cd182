//! Face alignment: a similarity transform (rotation, uniform scale,
//! translation) fitted by least squares from four keypoints (eyes, nose tip,
//! mouth centre) onto the ArcFace 112×112 template, then a resampling warp.
//!
//! The embedder was trained on faces aligned this way; unaligned crops give
//! same-person and different-person distances that overlap.

use super::detect::Keypoints;
use image::{Rgb, RgbImage};

/// Output side of an aligned face, in pixels.
pub const ALIGNED_SIZE: u32 = 112;

/// The ArcFace template (eyes, nose tip, mouth centre) in pixel-centre
/// coordinates of the 112×112 output; the mouth centre is the mean of the
/// template's two mouth corners (41.5493, 92.3655) and (70.7299, 92.2041).
/// The first point is the eye on the image's left: the person's right eye.
pub const TEMPLATE: [[f32; 2]; 4] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [56.1396, 92.2848],
];

/// `dst = [a −b; b a] · src + [tx, ty]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// Least-squares similarity mapping `src[i]` onto `dst[i]` (no
    /// reflection). `None` when the source points coincide.
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Similarity> {
        let n = src.len().min(dst.len());
        if n < 2 {
            return None;
        }
        let mean = |pts: &[[f32; 2]]| {
            let (sx, sy) = pts[..n].iter().fold((0.0f64, 0.0f64), |(x, y), p| {
                (x + f64::from(p[0]), y + f64::from(p[1]))
            });
            (sx / n as f64, sy / n as f64)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        // Centred, the normal equations decouple: a and b are ratios of sums.
        let (mut num_a, mut num_b, mut den) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            let (x, y) = (f64::from(src[i][0]) - msx, f64::from(src[i][1]) - msy);
            let (u, v) = (f64::from(dst[i][0]) - mdx, f64::from(dst[i][1]) - mdy);
            num_a += x * u + y * v;
            num_b += x * v - y * u;
            den += x * x + y * y;
        }
        if den < 1e-9 {
            return None;
        }
        let (a, b) = (num_a / den, num_b / den);
        Some(Similarity {
            a: a as f32,
            b: b as f32,
            tx: (mdx - (a * msx - b * msy)) as f32,
            ty: (mdy - (b * msx + a * msy)) as f32,
        })
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform; `None` for a degenerate (zero-scale) one.
    pub fn inverse(&self) -> Option<Similarity> {
        let s2 = self.a * self.a + self.b * self.b;
        if s2 < 1e-12 {
            return None;
        }
        let (a, b) = (self.a / s2, -self.b / s2);
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }

    /// Output pixels per source pixel.
    pub fn scale(&self) -> f32 {
        (self.a * self.a + self.b * self.b).sqrt()
    }
}

/// Aligns the face with these keypoints to a 112×112 crop. `None` when the
/// keypoints are degenerate.
pub fn align(image: &RgbImage, keypoints: &Keypoints) -> Option<RgbImage> {
    // Detections use continuous coordinates (pixel i spans i..i+1); the
    // template and the warp put pixel centres at integers.
    let src = [
        keypoints.right_eye,
        keypoints.left_eye,
        keypoints.nose,
        keypoints.mouth,
    ]
    .map(|p| [p[0] - 0.5, p[1] - 0.5]);
    let to_src = Similarity::estimate(&src, &TEMPLATE)?.inverse()?;
    Some(warp(image, &to_src, ALIGNED_SIZE))
}

/// Samples `size`×`size` output pixels through `to_src` (output → source
/// coordinates, pixel centres at integers). When the face shrinks by more
/// than 2×, several bilinear samples per output pixel are averaged so the crop
/// is not aliased. Outside the source is black, as in the embedder's training.
pub fn warp(image: &RgbImage, to_src: &Similarity, size: u32) -> RgbImage {
    // to_src maps one output pixel to `1/scale` source pixels.
    let step = to_src.scale();
    let n = (step.ceil() as usize).clamp(1, 4);
    let offsets: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32 - 0.5).collect();
    let weight = 1.0 / (n * n) as f32;
    RgbImage::from_fn(size, size, |u, v| {
        let mut acc = [0.0f32; 3];
        for &du in &offsets {
            for &dv in &offsets {
                let p = to_src.apply([u as f32 + du, v as f32 + dv]);
                let s = bilinear(image, p[0], p[1]);
                for c in 0..3 {
                    acc[c] += s[c] * weight;
                }
            }
        }
        Rgb(acc.map(|x| x.round().clamp(0.0, 255.0) as u8))
    })
}

/// Bilinear sample at `(x, y)` with pixel centres at integers; black outside.
fn bilinear(image: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let px = |xi: i64, yi: i64| -> [f32; 3] {
        if xi < 0 || yi < 0 || xi >= w || yi >= h {
            [0.0; 3]
        } else {
            image.get_pixel(xi as u32, yi as u32).0.map(f32::from)
        }
    };
    let (p00, p10, p01, p11) = (
        px(x0, y0),
        px(x0 + 1, y0),
        px(x0, y0 + 1),
        px(x0 + 1, y0 + 1),
    );
    let mut out = [0.0; 3];
    for c in 0..3 {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        out[c] = top + (bottom - top) * fy;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f32; 2], b: [f32; 2], tol: f32) -> bool {
        (a[0] - b[0]).abs() < tol && (a[1] - b[1]).abs() < tol
    }

    #[test]
    fn recovers_a_known_similarity() {
        // Rotate 30°, scale 0.5, shift (10, −4).
        let (s, t) = (0.5f32, 30f32.to_radians());
        let truth = Similarity {
            a: s * t.cos(),
            b: s * t.sin(),
            tx: 10.0,
            ty: -4.0,
        };
        let src = [[100.0, 80.0], [160.0, 82.0], [130.0, 120.0], [131.0, 150.0]];
        let dst: Vec<_> = src.iter().map(|p| truth.apply(*p)).collect();
        let est = Similarity::estimate(&src, &dst).expect("estimate");
        assert!((est.a - truth.a).abs() < 1e-4 && (est.b - truth.b).abs() < 1e-4);
        assert!((est.tx - truth.tx).abs() < 1e-3 && (est.ty - truth.ty).abs() < 1e-3);
        assert!((est.scale() - 0.5).abs() < 1e-4);
    }

    #[test]
    fn least_squares_averages_noise() {
        // Points off by ±1 in opposite directions: the fit lands between them.
        let src = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let dst = [[1.0, 0.0], [9.0, 0.0], [1.0, 10.0], [9.0, 10.0]];
        let est = Similarity::estimate(&src, &dst).expect("estimate");
        assert!((est.a - 0.9).abs() < 1e-5 && est.b.abs() < 1e-6, "{est:?}");
        assert!(close(est.apply([5.0, 5.0]), [5.0, 5.0], 1e-4));
    }

    #[test]
    fn inverse_round_trips() {
        let m = Similarity {
            a: 0.8,
            b: -0.3,
            tx: 5.0,
            ty: 7.0,
        };
        let inv = m.inverse().expect("invertible");
        for p in [[0.0, 0.0], [12.5, -3.0], [100.0, 40.0]] {
            assert!(close(inv.apply(m.apply(p)), p, 1e-3));
        }
    }

    #[test]
    fn degenerate_points_are_refused() {
        let same = [[5.0, 5.0]; 4];
        assert!(Similarity::estimate(&same, &TEMPLATE).is_none());
        let zero = Similarity {
            a: 0.0,
            b: 0.0,
            tx: 1.0,
            ty: 1.0,
        };
        assert!(zero.inverse().is_none());
    }

    #[test]
    fn warp_puts_keypoints_on_the_template() {
        // Mark the four template points, scaled ×3 and shifted, in a large
        // image; aligning must bring each mark back onto its template spot.
        let mut img = RgbImage::new(500, 500);
        let to_big = |p: [f32; 2]| [p[0] * 3.0 + 60.0, p[1] * 3.0 + 40.0];
        for p in TEMPLATE {
            let q = to_big(p);
            for dy in -4..=4 {
                for dx in -4..=4 {
                    img.put_pixel(
                        (q[0] as i32 + dx) as u32,
                        (q[1] as i32 + dy) as u32,
                        Rgb([255; 3]),
                    );
                }
            }
        }
        let kp = Keypoints {
            right_eye: to_big(TEMPLATE[0]),
            left_eye: to_big(TEMPLATE[1]),
            nose: to_big(TEMPLATE[2]),
            mouth: to_big(TEMPLATE[3]),
            right_ear: [0.0; 2],
            left_ear: [0.0; 2],
        };
        let out = align(&img, &kp).expect("align");
        assert_eq!(out.dimensions(), (112, 112));
        for p in TEMPLATE {
            let v = out.get_pixel(p[0].round() as u32, p[1].round() as u32).0[0];
            assert!(v > 200, "template point {p:?} is {v}");
        }
        assert_eq!(out.get_pixel(5, 5).0, [0, 0, 0]);
    }

    #[test]
    fn bilinear_interpolates_and_is_black_outside() {
        let img = RgbImage::from_fn(2, 1, |x, _| Rgb([if x == 0 { 0 } else { 200 }; 3]));
        assert!((bilinear(&img, 0.5, 0.0)[0] - 100.0).abs() < 1e-3);
        assert_eq!(bilinear(&img, -5.0, 0.0), [0.0; 3]);
    }
}
