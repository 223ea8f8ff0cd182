//! Face embeddings with MobileFaceNet: aligned 112×112 RGB crops in, unit
//! 192-d vectors out. Faces of one image go through the network as one batch.

use super::align::ALIGNED_SIZE;
use super::engine::{Network, Tensor};
use super::error::{RecognizeError, Result};
use image::RgbImage;

/// Length of an embedding.
pub const DIM: usize = 192;

/// A unit-length face embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Euclidean distance between two unit embeddings: 0 (identical) to 2.
    pub fn distance(&self, other: &Embedding) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    }
}

/// Scales `v` to unit length; a zero vector stays zero.
pub fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-10 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// MobileFaceNet behind an [`Network`].
pub struct Embedder {
    network: Box<dyn Network>,
}

impl Embedder {
    pub fn new(network: Box<dyn Network>) -> Self {
        Embedder { network }
    }

    /// Embeds aligned 112×112 faces, one embedding per face in order.
    pub fn embed(&self, faces: &[RgbImage]) -> Result<Vec<Embedding>> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let side = ALIGNED_SIZE as usize;
        let plane = side * side;
        // NCHW (the converted model's layout), RGB, (p − 127.5) / 128.
        let mut data = vec![0.0f32; faces.len() * 3 * plane];
        for (n, face) in faces.iter().enumerate() {
            if face.dimensions() != (ALIGNED_SIZE, ALIGNED_SIZE) {
                return Err(RecognizeError::model(
                    "mobilefacenet",
                    format!("face crop is {:?}, expected 112×112", face.dimensions()),
                ));
            }
            let base = n * 3 * plane;
            for (i, pixel) in face.pixels().enumerate() {
                for c in 0..3 {
                    data[base + c * plane + i] = (f32::from(pixel.0[c]) - 127.5) / 128.0;
                }
            }
        }
        let input = Tensor {
            shape: vec![faces.len(), 3, side, side],
            data,
        };
        let outputs = self.network.run(input)?;
        let out = outputs
            .first()
            .filter(|t| t.shape == [faces.len(), DIM])
            .ok_or_else(|| {
                RecognizeError::model(
                    "mobilefacenet",
                    format!(
                        "expected an output of shape [{}, {DIM}], got {:?}",
                        faces.len(),
                        outputs.iter().map(|t| &t.shape).collect::<Vec<_>>()
                    ),
                )
            })?;
        Ok(out
            .data
            .chunks_exact(DIM)
            .map(|row| {
                let mut v = row.to_vec();
                l2_normalise(&mut v);
                Embedding(v)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_and_distance() {
        let mut v = vec![3.0, 4.0];
        l2_normalise(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut zero = vec![0.0; 3];
        l2_normalise(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
        let a = Embedding(vec![1.0, 0.0]);
        let b = Embedding(vec![-1.0, 0.0]);
        let c = Embedding(vec![0.0, 1.0]);
        assert!((a.distance(&b) - 2.0).abs() < 1e-6);
        assert!((a.distance(&c) - 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(a.distance(&a), 0.0);
    }
}
