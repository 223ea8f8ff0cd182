//! Cutting a text box out of the image as an upright strip. Boxes are
//! rectangles at an angle, so an affine map from three corners is exact.

use super::geometry::{Point, Quad};
use image::{Rgb, RgbImage};

/// The strip under `q`, `width` × `height` as measured along its edges, the
/// top-left corner first. A box much taller than wide (a vertical line) is
/// turned a quarter to read left to right, as PaddleOCR does.
pub fn crop(image: &RgbImage, q: &Quad) -> Option<RgbImage> {
    let (w, h) = q.size();
    let (w, h) = (w.round() as u32, h.round() as u32);
    if w < 1 || h < 1 {
        return None;
    }
    let [tl, tr, _, bl] = q.0;
    let mut out = RgbImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            // Pixel centres of the strip map onto the box.
            let (u, v) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
            let p = [
                tl[0] + u * (tr[0] - tl[0]) + v * (bl[0] - tl[0]) - 0.5,
                tl[1] + u * (tr[1] - tl[1]) + v * (bl[1] - tl[1]) - 0.5,
            ];
            out.put_pixel(x, y, bilinear(image, p));
        }
    }
    if h as f32 / w as f32 >= 1.5 {
        out = image::imageops::rotate270(&out);
    }
    Some(out)
}

/// Bilinear sample with edge pixels repeated outside the image.
fn bilinear(image: &RgbImage, [x, y]: Point) -> Rgb<u8> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |dx: i64, dy: i64| {
        let px = (x0 as i64 + dx).clamp(0, w - 1) as u32;
        let py = (y0 as i64 + dy).clamp(0, h - 1) as u32;
        image.get_pixel(px, py).0
    };
    let (a, b, c, d) = (at(0, 0), at(1, 0), at(0, 1), at(1, 1));
    let mut px = [0u8; 3];
    for i in 0..3 {
        let top = f32::from(a[i]) * (1.0 - fx) + f32::from(b[i]) * fx;
        let bottom = f32::from(c[i]) * (1.0 - fx) + f32::from(d[i]) * fx;
        px[i] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upright_box_is_a_plain_crop() {
        let image = RgbImage::from_fn(20, 10, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let q = Quad([[5.0, 2.0], [15.0, 2.0], [15.0, 7.0], [5.0, 7.0]]);
        let strip = crop(&image, &q).expect("strip");
        assert_eq!(strip.dimensions(), (10, 5));
        assert_eq!(strip.get_pixel(0, 0), image.get_pixel(5, 2));
        assert_eq!(strip.get_pixel(9, 4), image.get_pixel(14, 6));
    }

    #[test]
    fn a_tall_box_is_turned_to_read_across() {
        let image = RgbImage::new(10, 40);
        let q = Quad([[2.0, 2.0], [6.0, 2.0], [6.0, 32.0], [2.0, 32.0]]);
        assert_eq!(crop(&image, &q).expect("strip").dimensions(), (30, 4));
    }
}
