//! Loading one version, entirely off the request path: build the instances, check the graph against the
//! configuration, warm every instance up at each configured batch size. Only a version that passed all of this is
//! handed to the registry to publish.

use std::path::Path;
use std::time::Instant;

use super::config::{ModelConfig, ProviderKind, TensorSpec};
use crate::runtime::session::{Instance, LoadedGraph};
use crate::runtime::GraphTensor;
use crate::tensor::{element_count, Tensor, TensorData};

#[derive(Debug, thiserror::Error, Clone)]
pub enum LoadError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{kind} '{name}' {reason}")]
    Mismatch { kind: &'static str, name: String, reason: String },
    #[error("warm-up at batch {batch} failed: {reason}")]
    WarmUp { batch: usize, reason: String },
}

/// The inputs and outputs a version serves, dims without the batch axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

pub struct Built {
    pub instances: Vec<Instance>,
    pub signature: Signature,
    pub provider: ProviderKind,
}

/// Blocking: call from a blocking thread.
pub fn build(model: &Path, config: &ModelConfig, threads: usize) -> Result<Built, LoadError> {
    let started = Instant::now();
    let mut instances = Vec::with_capacity(config.instance_group.count);
    let mut graph: Option<LoadedGraph> = None;
    for _ in 0..config.instance_group.count {
        let (inst, g) = Instance::load(model, &config.execution, threads).map_err(|e| LoadError::Runtime(e.to_string()))?;
        graph.get_or_insert(g);
        instances.push(inst);
    }
    let graph = graph.ok_or_else(|| LoadError::Config("instance_group.count must be at least 1".into()))?;
    let signature = Signature {
        inputs: reconcile("input", &config.input, &graph.inputs, config.max_batch_size)?,
        outputs: reconcile("output", &config.output, &graph.outputs, config.max_batch_size)?,
    };
    if let Some(p) = &config.preprocess {
        let spec = signature.inputs.iter().find(|i| i.name == p.input).ok_or_else(|| LoadError::Mismatch {
            kind: "preprocess.input",
            name: p.input.clone(),
            reason: "is not an input of the model".into(),
        })?;
        let dims = crate::decode::preprocess::tensor_dims(p);
        if !dims_fit(&spec.dims, &dims) || spec.datatype != crate::tensor::DataType::Fp32 {
            return Err(LoadError::Mismatch {
                kind: "input",
                name: spec.name.clone(),
                reason: format!("is {} {:?} but the preprocessing makes FP32 {:?}", spec.datatype, spec.dims, dims),
            });
        }
    }
    for inst in &mut instances {
        for batch in warmup_sizes(config) {
            inst.run(warmup_inputs(&signature, config.max_batch_size, batch))
                .map_err(|e| LoadError::WarmUp { batch, reason: e.to_string() })?;
        }
    }
    tracing::debug!(model = %model.display(), elapsed_ms = started.elapsed().as_millis() as u64, "instances built and warmed");
    Ok(Built { instances, signature, provider: graph.provider })
}

/// Batch 1 plus every preferred size, so the first real batches do not pay ONNX Runtime's first-run costs.
pub fn warmup_sizes(config: &ModelConfig) -> Vec<usize> {
    let mut sizes = vec![1];
    if config.max_batch_size > 0 {
        sizes.extend(config.dynamic_batching.preferred_batch_sizes.iter().copied());
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn warmup_inputs(sig: &Signature, max_batch: usize, batch: usize) -> Vec<Tensor> {
    sig.inputs
        .iter()
        .map(|spec| {
            let mut shape: Vec<i64> = spec.dims.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
            if max_batch > 0 {
                shape.insert(0, batch as i64);
            }
            let n = element_count(&shape).unwrap_or(0);
            Tensor { name: spec.name.clone(), shape, data: TensorData::zeros(spec.datatype, n) }
        })
        .collect()
}

fn dims_fit(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| x < 0 || y < 0 || x == y)
}

/// The configured tensors when given (checked against the graph), else the graph's own.
fn reconcile(kind: &'static str, configured: &[TensorSpec], graph: &[GraphTensor], max_batch: usize) -> Result<Vec<TensorSpec>, LoadError> {
    let strip = |g: &GraphTensor| -> Result<Vec<i64>, LoadError> {
        if max_batch == 0 {
            return Ok(g.shape.clone());
        }
        match g.shape.split_first() {
            Some((&first, rest)) if first < 0 || first as usize >= max_batch => Ok(rest.to_vec()),
            _ => Err(LoadError::Mismatch {
                kind,
                name: g.name.clone(),
                reason: format!("has shape {:?}, whose first axis cannot hold a batch of max_batch_size {max_batch}", g.shape),
            }),
        }
    };
    if configured.is_empty() {
        return graph
            .iter()
            .map(|g| Ok(TensorSpec { name: g.name.clone(), datatype: g.datatype, dims: strip(g)? }))
            .collect();
    }
    if configured.len() != graph.len() {
        let names: Vec<&str> = graph.iter().map(|g| g.name.as_str()).collect();
        return Err(LoadError::Mismatch {
            kind,
            name: configured.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
            reason: format!("configured {} {kind}s but the model has {} ({})", configured.len(), graph.len(), names.join(", ")),
        });
    }
    configured
        .iter()
        .map(|c| {
            let g = graph.iter().find(|g| g.name == c.name).ok_or_else(|| LoadError::Mismatch {
                kind,
                name: c.name.clone(),
                reason: format!("is not in the model (it has {})", graph.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")),
            })?;
            let dims = strip(g)?;
            if g.datatype != c.datatype || !dims_fit(&dims, &c.dims) {
                return Err(LoadError::Mismatch {
                    kind,
                    name: c.name.clone(),
                    reason: format!("is configured as {} {:?} but the model has {} {:?}", c.datatype, c.dims, g.datatype, dims),
                });
            }
            // Keep the more specific of the two: a fixed dimension from either side wins over -1.
            let merged = c.dims.iter().zip(&dims).map(|(&a, &b)| if a < 0 { b } else { a }).collect();
            Ok(TensorSpec { name: c.name.clone(), datatype: c.datatype, dims: merged })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType;

    fn g(name: &str, shape: Vec<i64>) -> GraphTensor {
        GraphTensor { name: name.into(), datatype: DataType::Fp32, shape }
    }
    fn spec(name: &str, dims: Vec<i64>) -> TensorSpec {
        TensorSpec { name: name.into(), datatype: DataType::Fp32, dims }
    }

    #[test]
    fn derived_from_graph_without_batch_axis() {
        let out = reconcile("input", &[], &[g("x", vec![-1, 3, 4])], 8).unwrap();
        assert_eq!(out, vec![spec("x", vec![3, 4])]);
    }

    #[test]
    fn mismatches_are_named() {
        let e = reconcile("input", &[spec("x", vec![3, 5])], &[g("x", vec![-1, 3, 4])], 8).unwrap_err();
        assert!(e.to_string().contains("input 'x' is configured as FP32 [3, 5] but the model has FP32 [3, 4]"), "{e}");
        let e = reconcile("input", &[spec("y", vec![3, 4])], &[g("x", vec![-1, 3, 4])], 8).unwrap_err();
        assert!(e.to_string().contains("'y' is not in the model"), "{e}");
        let e = reconcile("input", &[], &[g("x", vec![1, 3])], 8).unwrap_err();
        assert!(e.to_string().contains("cannot hold a batch"), "{e}");
    }
}
