//! Text line recognition with PP-OCRv4's SVTR-LCNet network: a strip 48
//! pixels high goes in, per-column character probabilities come out, and
//! CTC greedy decoding (best class per column, repeats merged, blanks
//! dropped) turns them into text.

use super::db::bgr_planes;
use crate::recognize::engine::{Network, Tensor};
use crate::recognize::error::{RecognizeError, Result};
use image::RgbImage;
use image::imageops::{self, FilterType};

/// Height of the model input.
pub const HEIGHT: u32 = 48;
/// Widths the model input is padded to (zeros on the right, as PaddleOCR
/// pads a batch): the narrowest is the training width, and a strip wider
/// than the widest is squeezed into it (a 44-character MRZ line is about
/// 20 times as wide as high, well within). Fixed widths let an engine that
/// needs fixed shapes load one network each, and give both engines the same
/// input for the same strip.
pub const WIDTHS: [u32; 5] = [320, 640, 960, 1280, 1920];

const MODEL: &str = "ppocrv4-rec";

/// Characters of the network's classes: class 0 is the CTC blank, then the
/// dictionary, then a space.
pub struct Dictionary(Vec<String>);

impl Dictionary {
    /// The dictionary stored in the model's `character` metadata (one
    /// character a line), as PaddleOCR's exporter writes it.
    pub fn from_model(onnx: &[u8]) -> Result<Self> {
        use tract_onnx::prelude::Framework;
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &onnx[..])
            .map_err(|e| RecognizeError::model(MODEL, e))?;
        let text = proto
            .metadata_props
            .iter()
            .find(|p| p.key == "character")
            .map(|p| p.value.as_str())
            .ok_or_else(|| RecognizeError::model(MODEL, "no `character` metadata"))?;
        Ok(Self::from_lines(text))
    }

    pub fn from_lines(text: &str) -> Self {
        let mut classes = vec![String::new()];
        classes.extend(text.lines().map(str::to_string));
        classes.push(" ".into());
        Dictionary(classes)
    }

    /// Number of classes, blank included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() <= 1
    }
}

/// Text read from one strip, with the mean probability of its characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub text: String,
    pub confidence: f32,
}

/// The network for each of [`WIDTHS`]: one for all, or one each.
pub enum Networks {
    AnyWidth(Box<dyn Network>),
    PerWidth(Vec<Box<dyn Network>>),
}

pub struct TextRecognizer {
    networks: Networks,
    dictionary: Dictionary,
}

impl TextRecognizer {
    pub fn new(networks: Networks, dictionary: Dictionary) -> Self {
        TextRecognizer {
            networks,
            dictionary,
        }
    }

    /// Reads one strip (any size; it is scaled to the model's height).
    pub fn read(&self, strip: &RgbImage) -> Result<Reading> {
        let (tensor, bucket) = input(strip);
        let network = match &self.networks {
            Networks::AnyWidth(n) => n,
            Networks::PerWidth(all) => all
                .get(bucket)
                .ok_or_else(|| RecognizeError::model(MODEL, "no network for this width"))?,
        };
        let out = network
            .run(tensor)?
            .into_iter()
            .next()
            .ok_or_else(|| RecognizeError::model(MODEL, "no output"))?;
        let classes = self.dictionary.len();
        if out.shape.len() != 3 || out.shape[2] != classes {
            return Err(RecognizeError::model(
                MODEL,
                format!(
                    "output shape {:?} does not end in the dictionary's {classes} classes",
                    out.shape
                ),
            ));
        }
        Ok(decode(&out.data, classes, &self.dictionary))
    }
}

/// The strip scaled to 48 high keeping its aspect, normalised like the
/// detector's input, padded with zeros on the right to the next of
/// [`WIDTHS`]; and which of them.
fn input(strip: &RgbImage) -> (Tensor, usize) {
    let (w, h) = (strip.width().max(1), strip.height().max(1));
    let widest = WIDTHS[WIDTHS.len() - 1];
    let scaled_w = ((HEIGHT as f32 * w as f32 / h as f32).ceil() as u32).clamp(1, widest);
    let bucket = WIDTHS
        .iter()
        .position(|&b| scaled_w <= b)
        .unwrap_or(WIDTHS.len() - 1);
    let width = WIDTHS[bucket];
    let resized = imageops::resize(strip, scaled_w, HEIGHT, FilterType::Triangle);
    let planes = bgr_planes(&resized);
    let (sw, width, height) = (scaled_w as usize, width as usize, HEIGHT as usize);
    let mut data = vec![0f32; 3 * height * width];
    for c in 0..3 {
        for y in 0..height {
            let src = &planes[(c * height + y) * sw..][..sw];
            data[(c * height + y) * width..][..sw].copy_from_slice(src);
        }
    }
    let tensor = Tensor {
        shape: vec![1, 3, height, width],
        data,
    };
    (tensor, bucket)
}

/// CTC greedy decoding of `[1, T, classes]` probabilities.
fn decode(probs: &[f32], classes: usize, dictionary: &Dictionary) -> Reading {
    let mut text = String::new();
    let (mut sum, mut n) = (0.0f32, 0u32);
    let mut previous = 0usize;
    for column in probs.chunks_exact(classes) {
        let (best, p) = column
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::MIN), |a, (i, v)| if v > a.1 { (i, v) } else { a });
        if best != 0 && best != previous {
            text.push_str(&dictionary.0[best]);
            sum += p;
            n += 1;
        }
        previous = best;
    }
    Reading {
        text,
        confidence: if n == 0 { 0.0 } else { sum / n as f32 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_decoding_merges_repeats_and_drops_blanks() {
        let dict = Dictionary::from_lines("A\nB\n<");
        assert_eq!(dict.len(), 5);
        // Columns: A A blank A B B < space
        let best = [1, 1, 0, 1, 2, 2, 3, 4];
        let mut probs = vec![0.0; best.len() * 5];
        for (t, &c) in best.iter().enumerate() {
            probs[t * 5 + c] = 0.8;
        }
        let r = decode(&probs, 5, &dict);
        assert_eq!(r.text, "AAB< ");
        assert!((r.confidence - 0.8).abs() < 1e-6);
    }

    #[test]
    fn strips_are_48_high_and_padded_to_a_fixed_width() {
        let (t, bucket) = input(&RgbImage::new(100, 24));
        assert_eq!(
            (t.shape.as_slice(), bucket),
            ([1, 3, 48, 320].as_slice(), 0)
        );
        // The padding on the right stays zero.
        assert_eq!(t.data[319], 0.0);
        assert_eq!(t.data[0], -1.0);
        let (t, bucket) = input(&RgbImage::new(1000, 20));
        assert_eq!((t.shape[3], bucket), (1920, 4));
        let (t, bucket) = input(&RgbImage::new(700, 40));
        assert_eq!((t.shape[3], bucket), (960, 2));
    }
}
