//! The OpenAPI 3 description served at `/openapi.json`, and a small self-contained page at `/docs` that renders it
//! (no assets from a CDN, so it works inside a private cluster). The path items are declared on the stubs below
//! rather than on the handlers, so the handlers stay readable; schemathesis checks in the tests that the server
//! answers as described.

use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    /// BOOL, UINT8..UINT64, INT8..INT64, FP16, BF16, FP32, FP64 or BYTES.
    pub datatype: String,
    /// -1 for a variable dimension; the first is the batch axis when the model batches.
    pub shape: Vec<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct InferInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    /// `{"binary_data_size": n}` when the data follows the JSON header as raw bytes.
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
    /// Row-major elements, flat or nested.
    #[schema(value_type = Vec<Object>)]
    pub data: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    /// `binary_data` (bool), `classification` (top N as "score:index:label").
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct InferRequest {
    pub id: Option<String>,
    /// `binary_data_output` (bool) sets the default for every output.
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
    pub inputs: Vec<InferInput>,
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct InferOutput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub data: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<InferOutput>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub score: f64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PredictResponse {
    pub model_name: String,
    pub model_version: String,
    /// One list per image, best first.
    pub predictions: Vec<Vec<Prediction>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<String>,
    /// READY, UNAVAILABLE or LOADING.
    pub state: String,
    pub reason: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    #[schema(value_type = Vec<Object>)]
    pub model_stats: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/v2/health/live", tag = "health", responses((status = 200, description = "The process is alive (empty body)")))]
#[allow(dead_code)]
fn live() {}

#[utoipa::path(get, path = "/v2/health/ready", tag = "health", responses(
    (status = 200, description = "Every model is loaded and warmed (empty body)"),
    (status = 503, description = "Loading or draining", body = ErrorBody)))]
#[allow(dead_code)]
fn ready() {}

#[utoipa::path(get, path = "/v2", tag = "metadata", responses((status = 200, body = ServerMetadata)))]
#[allow(dead_code)]
fn server_metadata() {}

#[utoipa::path(get, path = "/v2/models/{model}", tag = "metadata", params(("model" = String, Path)),
    responses((status = 200, body = ModelMetadata), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn model_metadata() {}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = "metadata",
    params(("model" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelMetadata), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn version_metadata() {}

#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "health", params(("model" = String, Path)),
    responses((status = 200, description = "A version serves (empty body)"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn model_ready() {}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = "health",
    params(("model" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "That version serves (empty body)"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn version_ready() {}

#[utoipa::path(get, path = "/v2/models/{model}/config", tag = "metadata", params(("model" = String, Path)),
    responses((status = 200, description = "Triton-style model configuration", body = Object), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn model_config() {}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/config", tag = "metadata",
    params(("model" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "Triton-style model configuration", body = Object), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn version_config() {}

#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "inference", params(("model" = String, Path)),
    request_body(content = InferRequest, description = "JSON, or JSON header + binary tensors with Inference-Header-Content-Length"),
    responses((status = 200, body = InferResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[allow(dead_code)]
fn infer() {}

#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = "inference",
    params(("model" = String, Path), ("version" = String, Path)),
    request_body(content = InferRequest),
    responses((status = 200, body = InferResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[allow(dead_code)]
fn version_infer() {}

#[utoipa::path(get, path = "/v2/models/stats", tag = "statistics", responses((status = 200, body = StatsResponse)))]
#[allow(dead_code)]
fn all_stats() {}

#[utoipa::path(get, path = "/v2/models/{model}/stats", tag = "statistics", params(("model" = String, Path)),
    responses((status = 200, body = StatsResponse), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn model_stats() {}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/stats", tag = "statistics",
    params(("model" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = StatsResponse), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn version_stats() {}

#[utoipa::path(post, path = "/v2/repository/index", tag = "repository",
    request_body(content = Object, description = "Optional {\"ready\": bool}"),
    responses((status = 200, body = Vec<IndexEntry>), (status = 400, body = ErrorBody)))]
#[allow(dead_code)]
fn repository_index() {}

#[utoipa::path(post, path = "/v2/repository/models/{model}/load", tag = "repository", params(("model" = String, Path)),
    responses((status = 200, description = "Loaded (empty body)"), (status = 400, description = "Load failed, or not in explicit mode", body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn repository_load() {}

#[utoipa::path(post, path = "/v2/repository/models/{model}/unload", tag = "repository", params(("model" = String, Path)),
    responses((status = 200, description = "Unloading (empty body)"), (status = 400, description = "Not in explicit mode", body = ErrorBody)))]
#[allow(dead_code)]
fn repository_unload() {}

#[utoipa::path(post, path = "/v1/models/{target}", tag = "images",
    params(("target" = String, Path, description = "`<model>:predict`"), ("top_k" = Option<u32>, Query)),
    request_body(content = String, description = "An image (image/*, raw bytes), a multipart form of images, or {\"instances\":[{\"b64\":...}]}",
                 content_type = "image/png"),
    responses((status = 200, body = PredictResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[allow(dead_code)]
fn predict() {}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ShmRegister {
    /// The POSIX shared memory object, as given to `shm_open` (for example `/input0`); the client creates it.
    pub key: String,
    /// Where the region starts in the object, in bytes.
    pub offset: Option<u64>,
    pub byte_size: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ShmStatus {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
}

#[utoipa::path(get, path = "/v2/systemsharedmemory/status", tag = "shared memory",
    responses((status = 200, body = Vec<ShmStatus>), (status = 400, description = "Switched off", body = ErrorBody)))]
#[allow(dead_code)]
fn shm_status_all() {}

#[utoipa::path(get, path = "/v2/systemsharedmemory/region/{name}/status", tag = "shared memory", params(("name" = String, Path)),
    responses((status = 200, body = Vec<ShmStatus>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn shm_status() {}

#[utoipa::path(post, path = "/v2/systemsharedmemory/region/{name}/register", tag = "shared memory", params(("name" = String, Path)),
    request_body(content = ShmRegister),
    responses((status = 200, description = "Registered (empty body)"), (status = 400, body = ErrorBody),
              (status = 404, description = "No shared memory object has that key", body = ErrorBody), (status = 413, body = ErrorBody)))]
#[allow(dead_code)]
fn shm_register() {}

#[utoipa::path(post, path = "/v2/systemsharedmemory/unregister", tag = "shared memory",
    responses((status = 200, description = "Every region unregistered (empty body)"), (status = 400, body = ErrorBody)))]
#[allow(dead_code)]
fn shm_unregister_all() {}

#[utoipa::path(post, path = "/v2/systemsharedmemory/region/{name}/unregister", tag = "shared memory", params(("name" = String, Path)),
    responses((status = 200, description = "Unregistered, or was not registered (empty body)"), (status = 400, body = ErrorBody)))]
#[allow(dead_code)]
fn shm_unregister() {}

#[utoipa::path(get, path = "/metrics", tag = "observability", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "oxinfer", description = "ONNX inference server: KServe V2 / Open Inference Protocol with Triton's extensions, and an image endpoint."),
    paths(live, ready, server_metadata, model_metadata, version_metadata, model_ready, version_ready, model_config, version_config,
          infer, version_infer, all_stats, model_stats, version_stats, repository_index, repository_load, repository_unload,
          predict, shm_status_all, shm_status, shm_register, shm_unregister_all, shm_unregister, metrics),
)]
pub struct ApiDoc;

pub async fn spec() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

pub async fn docs() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>oxinfer API</title>
<style>body{font:15px system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
.op{border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.5em .8em}
.m{display:inline-block;width:4em;font-weight:bold}.get{color:#1769aa}.post{color:#2e7d32}
code{background:#f4f4f4;padding:0 .3em}.r{color:#555;font-size:90%}</style></head>
<body><h1>oxinfer API</h1><p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3).</p><div id="ops"></div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const out = document.getElementById('ops');
  for (const [path, item] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(item)) {
    const d = document.createElement('div'); d.className = 'op';
    const codes = Object.entries(op.responses || {}).map(([c, r]) => c + (r.description ? ' ' + r.description : '')).join('; ');
    d.innerHTML = `<span class="m ${method}">${method.toUpperCase()}</span><code>${path}</code>
      <div class="r">${(op.tags || []).join(', ')} — responses: ${codes}</div>`;
    out.appendChild(d);
  }
});
</script></body></html>"#;
