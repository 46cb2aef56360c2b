//! Server and model metadata, model readiness, and the model configuration extension in Triton's JSON form
//! (perf_analyzer refuses to run without it).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::error::ApiError;
use super::{AppState, ModelPath};
use crate::repository::config::TensorSpec;
use crate::repository::ModelVersion;

/// Exactly the extensions implemented; perf_analyzer changes behaviour on `statistics`.
pub const EXTENSIONS: &[&str] =
    &["binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics", "parameters"];

pub async fn server(state: web::Data<AppState>) -> HttpResponse {
    let mut extensions = EXTENSIONS.to_vec();
    if state.shm.enabled() {
        extensions.push("system_shared_memory");
    }
    HttpResponse::Ok().json(json!({
        "name": "oxinfer",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": extensions,
    }))
}

fn shape(spec: &TensorSpec, batched: bool) -> Vec<i64> {
    let mut s = spec.dims.clone();
    if batched {
        s.insert(0, -1);
    }
    s
}

pub async fn model(state: web::Data<AppState>, path: web::Path<ModelPath>) -> Result<HttpResponse, ApiError> {
    let mv = state.registry.resolve(&path.model, path.version.as_deref())?;
    let versions: Vec<String> = state
        .registry
        .snapshot()
        .get(&path.model)
        .map(|m| m.versions.keys().map(u64::to_string).collect())
        .unwrap_or_default();
    let batched = mv.config.max_batch_size > 0;
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs.iter().map(|s| json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": shape(s, batched)})).collect()
    };
    Ok(HttpResponse::Ok().json(json!({
        "name": mv.name,
        "versions": versions,
        "platform": mv.config.platform,
        "inputs": tensors(&mv.signature.inputs),
        "outputs": tensors(&mv.signature.outputs),
        "parameters": {"execution_provider": mv.provider.as_str(), "version": mv.version.to_string()},
    })))
}

pub async fn ready(state: web::Data<AppState>, path: web::Path<ModelPath>) -> Result<HttpResponse, ApiError> {
    match state.registry.resolve(&path.model, path.version.as_deref()) {
        Ok(_) => Ok(HttpResponse::Ok().finish()),
        Err(crate::repository::ResolveError::UnknownModel(m)) => Err(ApiError::NotFound(format!("model '{m}' is not found"))),
        Err(e) => Err(ApiError::BadRequest(format!("Model version not ready: {e}"))),
    }
}

pub async fn config(state: web::Data<AppState>, path: web::Path<ModelPath>) -> Result<HttpResponse, ApiError> {
    let mv = state.registry.resolve(&path.model, path.version.as_deref())?;
    Ok(HttpResponse::Ok().json(triton_config(&mv)))
}

/// The subset of Triton's `ModelConfig` that clients read, from our configuration.
pub fn triton_config(mv: &ModelVersion) -> Value {
    let c = &mv.config;
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs.iter().map(|s| json!({"name": s.name, "data_type": s.datatype.triton_config_name(), "dims": s.dims})).collect()
    };
    let policy = match (&c.version_policy.specific, c.version_policy.all) {
        (Some(v), _) => json!({"specific": {"versions": v}}),
        (None, Some(true)) => json!({"all": {}}),
        _ => json!({"latest": {"num_versions": c.version_policy.latest.unwrap_or(1)}}),
    };
    let mut config = json!({
        "name": mv.name,
        "platform": c.platform,
        "backend": "onnxruntime",
        "max_batch_size": c.max_batch_size,
        "input": tensors(&mv.signature.inputs),
        "output": tensors(&mv.signature.outputs),
        "version_policy": policy,
        "instance_group": [{"name": format!("{}_0", mv.name), "kind": if mv.provider.as_str() == "cpu" { "KIND_CPU" } else { "KIND_GPU" }, "count": c.instance_group.count}],
        "parameters": {"execution_provider": {"string_value": mv.provider.as_str()}},
    });
    if c.dynamic_batching.enabled && c.max_batch_size > 1 {
        config["dynamic_batching"] = json!({
            "preferred_batch_size": c.dynamic_batching.preferred_batch_sizes,
            "max_queue_delay_microseconds": c.dynamic_batching.max_queue_delay_us,
            "default_queue_policy": {"max_queue_size": c.dynamic_batching.max_queue_size,
                                     "default_timeout_microseconds": c.dynamic_batching.timeout_ms * 1000},
        });
    }
    config
}
