//! The embedded backend: tract, a pure-Rust ONNX runtime. Nothing to install,
//! so `cargo run --release` and the package recognise faces out of the box.

use super::engine::{Engine, ModelKind, Network, Tensor};
use super::error::{RecognizeError, Result};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModelExt, TDim, TValue, TractError, TypedFact,
    TypedModel, TypedSimplePlan, tvec,
};

/// The tract engine. Stateless: every loaded network carries its own plan.
#[derive(Debug, Default, Clone, Copy)]
pub struct TractEngine;

struct TractNetwork {
    kind: ModelKind,
    plan: TypedSimplePlan<TypedModel>,
}

impl Engine for TractEngine {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn any_size(&self) -> bool {
        false
    }

    fn load(
        &self,
        kind: ModelKind,
        onnx: &[u8],
        input_shape: &[Option<usize>],
    ) -> Result<Box<dyn Network>> {
        let err = |e: TractError| RecognizeError::model(kind.name(), e);
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .map_err(err)?;
        let dims: Vec<TDim> = input_shape
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(n) => TDim::from(*n as i64),
                // A symbolic size is a multiple of the model's stride, so
                // tract can prove the shapes of its down- and up-sampling
                // branches equal.
                None => TDim::from(model.sym(&format!("d{i}"))) * kind.stride() as i64,
            })
            .collect();
        let fact: InferenceFact = TypedFact::dt_shape(DatumType::F32, dims).into();
        model.set_input_fact(0, fact).map_err(err)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(Box::new(TractNetwork { kind, plan }))
    }
}

impl Network for TractNetwork {
    fn run(&self, input: Tensor) -> Result<Vec<Tensor>> {
        let name = self.kind.name();
        let tensor = tract_onnx::prelude::Tensor::from_shape(&input.shape, &input.data)
            .map_err(|e| RecognizeError::model(name, e))?;
        let outputs = self
            .plan
            .run(tvec!(TValue::from(tensor)))
            .map_err(|e| RecognizeError::model(name, e))?;
        outputs
            .iter()
            .map(|out| {
                let data = out
                    .as_slice::<f32>()
                    .map_err(|e| RecognizeError::model(name, e))?;
                Ok(Tensor {
                    shape: out.shape().to_vec(),
                    data: data.to_vec(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedder's batch is symbolic: three different faces in one run
    /// must give the same vectors as three runs of one.
    #[test]
    fn embedder_batch_matches_single_runs() {
        let net = TractEngine
            .load(
                ModelKind::Embedder,
                crate::recognize::MOBILEFACENET,
                &[None, Some(3), Some(112), Some(112)],
            )
            .expect("load");
        let plane = 3 * 112 * 112;
        let face = |seed: usize| -> Vec<f32> {
            (0..plane)
                .map(|i| ((i * 7 + seed * 131) % 255) as f32 / 128.0 - 1.0)
                .collect()
        };
        let batch: Vec<f32> = (0..3).flat_map(face).collect();
        let out = net
            .run(Tensor::new(vec![3, 3, 112, 112], batch).expect("shape"))
            .expect("batch run");
        assert_eq!(out[0].shape, vec![3, 192]);
        for i in 0..3 {
            let one = net
                .run(Tensor::new(vec![1, 3, 112, 112], face(i)).expect("shape"))
                .expect("single run");
            let row = &out[0].data[i * 192..(i + 1) * 192];
            let worst = row
                .iter()
                .zip(&one[0].data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-3, "face {i}: differs by {worst}");
        }
    }

    #[test]
    fn a_damaged_model_is_a_clear_error() {
        let err = TractEngine
            .load(ModelKind::DetectorFront, b"not an onnx file", &[Some(1)])
            .err()
            .expect("garbage is refused");
        assert_eq!(err.code(), "model_error");
        assert!(err.to_string().contains("blazeface-front-128"), "{err}");
    }
}
