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
                None => TDim::from(model.sym(&format!("d{i}"))),
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
