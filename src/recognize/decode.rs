//! Image decoding for recognition: JPEG, PNG, WebP and PNM into RGB, with the
//! size checked from the header before any pixel is decoded, a cap on the
//! decoder's allocations, and EXIF orientation applied.
//!
//! Uploads come from students' browsers and integrators, so a pixel bomb (a
//! tiny file declaring a huge canvas) or a truncated file must be refused with
//! a clear error instead of exhausting memory or yielding half a picture.

use super::error::{RecognizeError, Result};
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;

/// How large an image invigil agrees to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest side in pixels.
    pub max_side: u32,
    /// Width × height.
    pub max_pixels: u64,
    /// Bytes the decoder may allocate at once (output buffer included).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// Room for a 48-megapixel phone photo; a webcam frame is a fraction of it.
    fn default() -> Self {
        DecodeLimits {
            max_side: 12_000,
            max_pixels: 48_000_000,
            max_alloc: 256 * 1024 * 1024,
        }
    }
}

/// The smallest image that can hold a detectable face.
pub const MIN_SIDE: u32 = 16;

/// Decodes `bytes` into an upright RGB image within `limits`.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RecognizeError::Corrupt(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Pnm) => {}
        Some(other) => {
            return Err(RecognizeError::UnsupportedFormat(format!("{other:?}")));
        }
        None => {
            return Err(RecognizeError::UnsupportedFormat(
                "unrecognised file signature".into(),
            ));
        }
    }
    let is_jpeg = reader.format() == Some(ImageFormat::Jpeg);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits);
    // Only the header has been read once the decoder exists.
    let mut decoder = reader.into_decoder().map_err(from_image_error)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    // Some decoders treat `max_alloc` as advisory; the output alone is checked here.
    let needed = decoder.total_bytes();
    if needed > limits.max_alloc {
        return Err(RecognizeError::MemoryLimit {
            needed,
            limit: limits.max_alloc,
        });
    }
    if is_jpeg && !jpeg_is_complete(bytes) {
        // JPEG decoders tend to fill missing scans with grey rather than fail,
        // so a cut-off upload could pass as a (wrong) picture.
        return Err(RecognizeError::Corrupt(
            "JPEG data is truncated (no end-of-image marker)".into(),
        ));
    }
    // A missing or unreadable EXIF block is not an error: the picture is upright.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(from_image_error)?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// Refuses empty, tiny or oversized images from their declared dimensions.
pub fn check_size(width: u32, height: u32, limits: &DecodeLimits) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(RecognizeError::TooLarge {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(RecognizeError::TooSmall {
            width,
            height,
            min: MIN_SIDE,
        });
    }
    Ok(())
}

/// Whether a JPEG stream ends with its end-of-image marker. Some cameras pad
/// the file after the marker, so a short tail of padding is tolerated.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail_start = bytes.len().saturating_sub(4096);
    bytes[tail_start..].windows(2).any(|w| w == [0xFF, 0xD9])
}

fn from_image_error(err: ImageError) -> RecognizeError {
    match err {
        ImageError::Unsupported(e) => RecognizeError::UnsupportedFormat(e.to_string()),
        ImageError::Limits(e) => RecognizeError::Corrupt(format!("decoder limit reached: {e}")),
        other => RecognizeError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png)
            .expect("encode png");
        out.into_inner()
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, 90])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg)
            .expect("encode jpeg");
        out.into_inner()
    }

    /// A PNG whose header declares `width`×`height` but which carries almost no
    /// data: the classic pixel bomb. The CRC is computed so the header is valid.
    fn png_bomb(width: u32, height: u32) -> Vec<u8> {
        let mut data = png(16, 16);
        // IHDR data starts at byte 16 (8 signature + 4 length + 4 type).
        data[16..20].copy_from_slice(&width.to_be_bytes());
        data[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&data[12..29]);
        data[29..33].copy_from_slice(&crc.to_be_bytes());
        data
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn decodes_png_and_jpeg() {
        let limits = DecodeLimits::default();
        let img = decode(&png(40, 30), &limits).expect("png");
        assert_eq!((img.width(), img.height()), (40, 30));
        assert_eq!(img.get_pixel(3, 3).0, [10, 200, 30]);
        let img = decode(&jpeg(64, 48), &limits).expect("jpeg");
        assert_eq!((img.width(), img.height()), (64, 48));
    }

    #[test]
    fn pixel_bomb_is_refused_from_its_header() {
        let bomb = png_bomb(100_000, 100_000);
        assert!(bomb.len() < 200, "the bomb is a tiny file");
        match decode(&bomb, &DecodeLimits::default()) {
            Err(RecognizeError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (100_000, 100_000));
            }
            Err(other) => panic!("expected TooLarge, got {other:?}"),
            Ok(img) => panic!("decoded {:?}", img.dimensions()),
        }
        // Within the side limit but over the pixel budget.
        let bomb = png_bomb(10_000, 10_000);
        assert!(matches!(
            decode(&bomb, &DecodeLimits::default()),
            Err(RecognizeError::TooLarge { .. })
        ));
    }

    #[test]
    fn allocation_cap_stops_a_large_decode() {
        let limits = DecodeLimits {
            max_alloc: 1024,
            ..DecodeLimits::default()
        };
        match decode(&png(100, 100), &limits) {
            Err(RecognizeError::MemoryLimit { needed, limit }) => {
                assert_eq!((needed, limit), (30_000, 1024));
            }
            Err(other) => panic!("expected the allocation limit, got {other:?}"),
            Ok(img) => panic!("decoded {:?} despite the limit", img.dimensions()),
        }
    }

    #[test]
    fn truncated_jpeg_is_refused() {
        let full = jpeg(256, 192);
        for cut in [full.len() / 2, full.len() - 3, 300] {
            match decode(&full[..cut], &DecodeLimits::default()) {
                Err(RecognizeError::Corrupt(_)) => {}
                Err(other) => panic!("cut at {cut}: expected Corrupt, got {other:?}"),
                Ok(img) => panic!("cut at {cut}: decoded {:?}", img.dimensions()),
            }
        }
    }

    #[test]
    fn truncated_png_is_refused() {
        let full = png(200, 200);
        let cut = &full[..full.len() - 20];
        assert!(matches!(
            decode(cut, &DecodeLimits::default()),
            Err(RecognizeError::Corrupt(_))
        ));
    }

    #[test]
    fn garbage_and_tiny_images_are_refused() {
        assert!(matches!(
            decode(b"this is not an image at all", &DecodeLimits::default()),
            Err(RecognizeError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            decode(&png(8, 8), &DecodeLimits::default()),
            Err(RecognizeError::TooSmall { .. })
        ));
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 40×20 JPEG with an EXIF block saying "rotate 90° clockwise" must
        // come out 20×40.
        let plain = jpeg(40, 20);
        let exif: &[u8] = &[
            0xFF, 0xE1, 0x00, 0x22, b'E', b'x', b'i', b'f', 0, 0, // APP1, length 34
            b'M', b'M', 0x00, 0x2A, 0, 0, 0, 8, // TIFF header, big-endian
            0x00, 0x01, // one entry
            0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00, 0x06, 0, 0, // Orientation = 6
            0, 0, 0, 0, // no next IFD
        ];
        let mut with_exif = plain[..2].to_vec(); // SOI
        with_exif.extend_from_slice(exif);
        with_exif.extend_from_slice(&plain[2..]);
        let img = decode(&with_exif, &DecodeLimits::default()).expect("decode");
        assert_eq!((img.width(), img.height()), (20, 40));
    }
}
