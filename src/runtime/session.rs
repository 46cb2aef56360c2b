//! Building ONNX Runtime sessions from a model's `[execution]` settings, and running one batch on one.
//!
//! ONNX Runtime silently falls back to CPU when a GPU provider cannot be registered, which users only notice in the
//! bill. So each provider is registered on its own with `error_on_failure`: the first that succeeds is the one
//! reported (metadata, log, metric), and under the `strict` policy a failure of the first one fails the load.

use std::path::Path;

use ort::ep::{self, ExecutionProviderDispatch};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::convert::{from_value, graph_tensor, to_value};
use super::{GraphTensor, RuntimeError};
use crate::repository::config::{Execution, OptimizationLevel, ProviderKind, ProviderOptions, ProviderPolicy};
use crate::tensor::Tensor;

/// One ONNX Runtime session; runs one batch at a time (`Session::run` takes `&mut self`).
pub struct Instance {
    session: Session,
    output_names: Vec<String>,
}

/// What a loaded model turned out to be.
#[derive(Debug, Clone)]
pub struct LoadedGraph {
    pub inputs: Vec<GraphTensor>,
    pub outputs: Vec<GraphTensor>,
    pub provider: ProviderKind,
}

impl Instance {
    /// Builds a session for `model` with `threads` intra-op threads.
    pub fn load(model: &Path, exec: &Execution, threads: usize) -> Result<(Self, LoadedGraph), RuntimeError> {
        let mut builder = Session::builder(super::environment()?)?
            .with_optimization_level(match exec.graph_optimization_level {
                OptimizationLevel::Disable => GraphOptimizationLevel::Disable,
                OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
                OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
                OptimizationLevel::All => GraphOptimizationLevel::All,
            })?
            .with_intra_threads(threads.max(1))?
            .with_memory_pattern(exec.memory_pattern)?
            .with_intra_op_spinning(exec.intra_op_spinning)?;
        if exec.inter_op_threads > 0 {
            builder = builder.with_inter_threads(exec.inter_op_threads)?;
        }
        let (mut builder, provider) = register_providers(builder, exec)?;
        if !exec.memory_arena {
            builder = cpu_arena(builder, false)?;
        }
        let session = builder.commit_from_file(model)?;
        let inputs = session.inputs().iter().map(|o| graph_tensor(o.name(), o.dtype())).collect::<Result<Vec<_>, _>>()?;
        let outputs = session.outputs().iter().map(|o| graph_tensor(o.name(), o.dtype())).collect::<Result<Vec<_>, _>>()?;
        let output_names = outputs.iter().map(|o| o.name.clone()).collect();
        Ok((Self { session, output_names }, LoadedGraph { inputs, outputs, provider }))
    }

    /// Runs the model on `inputs` (batch axis first) and returns every output, copied out of ONNX Runtime.
    pub fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let values = inputs
            .into_iter()
            .map(|t| {
                let name = t.name.clone();
                to_value(t).map(|v| (name, v))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = self.session.run(values).map_err(|e| RuntimeError::Run(e.to_string()))?;
        self.output_names
            .iter()
            .map(|name| match outputs.get(name) {
                Some(v) => from_value(name, v),
                None => Err(RuntimeError::Run(format!("output '{name}' missing from the result"))),
            })
            .collect()
    }
}

fn register_providers(
    mut builder: SessionBuilder,
    exec: &Execution,
) -> Result<(SessionBuilder, ProviderKind), RuntimeError> {
    for (position, spec) in exec.providers.iter().enumerate() {
        let options = spec.options();
        let Some(dispatch) = dispatch_for(&options) else {
            // CPU is always available and ends the search.
            return Ok((builder, ProviderKind::Cpu));
        };
        match builder.with_execution_providers([dispatch.error_on_failure()]) {
            Ok(b) => {
                tracing::info!(provider = options.name.as_str(), "execution provider registered");
                return Ok((b, options.name));
            }
            Err(e) => {
                let reason = e.to_string();
                if position == 0 && exec.provider_policy == ProviderPolicy::Strict {
                    return Err(RuntimeError::Provider { provider: options.name.as_str(), reason });
                }
                tracing::warn!(provider = options.name.as_str(), %reason, "execution provider unavailable, trying the next");
                builder = e.recover();
            }
        }
    }
    Ok((builder, ProviderKind::Cpu))
}

fn dispatch_for(o: &ProviderOptions) -> Option<ExecutionProviderDispatch> {
    match o.name {
        ProviderKind::Cpu => None,
        ProviderKind::Cuda => {
            let mut cuda = ep::CUDA::default().with_device_id(o.device_id);
            if let Some(limit) = o.memory_limit_bytes {
                cuda = cuda.with_memory_limit(limit);
            }
            Some(cuda.build())
        }
        ProviderKind::Tensorrt => {
            let mut trt = ep::TensorRT::default().with_device_id(o.device_id).with_fp16(o.fp16);
            if let Some(path) = &o.engine_cache_path {
                trt = trt.with_engine_cache(true).with_engine_cache_path(path.display());
            }
            Some(trt.build())
        }
    }
}

/// Applies the CPU arena setting, which ort exposes as a CPU execution provider option.
fn cpu_arena(builder: SessionBuilder, enable: bool) -> Result<SessionBuilder, RuntimeError> {
    Ok(builder.with_execution_providers([ep::CPU::default().with_arena_allocator(enable).build()])?)
}
