//! The transport: routes, shared state, and per-request accounting. Handlers translate HTTP to calls on the
//! registry and schedulers and back; they hold no model logic.

pub mod body;
pub mod error;
mod health;
mod infer;
mod metadata;
mod openapi;
mod predict;
mod repository;
mod shm;
mod stats;

use std::sync::Arc;
use std::time::Instant;

use actix_web::middleware::Compress;
use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::observe::metrics as m;
use crate::repository::Registry;
use crate::settings::{ControlMode, Settings};
use error::ApiError;

pub struct AppState {
    pub registry: Arc<Registry>,
    pub settings: Arc<Settings>,
    pub metrics: PrometheusHandle,
    pub body_limits: body::Limits,
    /// One permit per image being decoded or waiting for the model: bounds the memory predict requests can hold.
    pub image_permits: Arc<tokio::sync::Semaphore>,
    pub shm: crate::shm::Regions,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, settings: Arc<Settings>, metrics: PrometheusHandle) -> Self {
        let body_limits = body::Limits {
            max_bytes: settings.max_body_bytes,
            timeout: std::time::Duration::from_secs(settings.body_timeout_secs),
        };
        let image_permits = Arc::new(tokio::sync::Semaphore::new(settings.max_inflight_images));
        let shm = crate::shm::Regions::new(settings.system_shared_memory, settings.max_shared_memory_regions);
        Self { registry, settings, metrics, body_limits, image_permits, shm }
    }
}

impl AppState {
    pub fn explicit(&self) -> bool {
        self.settings.model_control_mode == ControlMode::Explicit
    }
}

/// Extractor failures (a malformed query string or path) answer in the protocol's error shape too.
pub fn extractor_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(format!("query string: {e}")).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::NotFound(format!("path: {e}")).into()));
}

/// Every route of the server. Paths follow Triton's (`/v2/...`) plus the image endpoint under `/v1`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    extractor_errors(cfg);
    // Inference first: routes are tried in order, and every pattern with a parameter is a regular expression.
    cfg.service(resource("/v2/models/{model}/infer", "POST").wrap(Compress::default()).route(web::post().to(infer::infer)))
        .service(resource("/v2/models/{model}/versions/{version}/infer", "POST").wrap(Compress::default()).route(web::post().to(infer::infer)))
        .service(resource("/v1/models/{target}", "POST").route(web::post().to(predict::predict)))
        .service(resource("/v2/health/live", "GET").route(web::get().to(health::live)))
        .service(resource("/v2/health/ready", "GET").route(web::get().to(health::ready)))
        .service(resource("/v2", "GET").route(web::get().to(metadata::server)))
        .service(resource("/v2/models/stats", "GET").route(web::get().to(stats::all)))
        .service(resource("/v2/models/{model}", "GET").route(web::get().to(metadata::model)))
        .service(resource("/v2/models/{model}/versions/{version}", "GET").route(web::get().to(metadata::model)))
        .service(resource("/v2/models/{model}/ready", "GET").route(web::get().to(metadata::ready)))
        .service(resource("/v2/models/{model}/versions/{version}/ready", "GET").route(web::get().to(metadata::ready)))
        .service(resource("/v2/models/{model}/config", "GET").route(web::get().to(metadata::config)))
        .service(resource("/v2/models/{model}/versions/{version}/config", "GET").route(web::get().to(metadata::config)))
        .service(resource("/v2/models/{model}/stats", "GET").route(web::get().to(stats::model)))
        .service(resource("/v2/models/{model}/versions/{version}/stats", "GET").route(web::get().to(stats::model)))
        .service(resource("/v2/repository/index", "POST").route(web::post().to(repository::index)))
        .service(resource("/v2/repository/models/{model}/load", "POST").route(web::post().to(repository::load)))
        .service(resource("/v2/repository/models/{model}/unload", "POST").route(web::post().to(repository::unload)))
        .service(resource("/v2/systemsharedmemory/status", "GET").route(web::get().to(shm::status)))
        .service(resource("/v2/systemsharedmemory/region/{name}/status", "GET").route(web::get().to(shm::status)))
        .service(resource("/v2/systemsharedmemory/region/{name}/register", "POST").route(web::post().to(shm::register)))
        .service(resource("/v2/systemsharedmemory/unregister", "POST").route(web::post().to(shm::unregister)))
        .service(resource("/v2/systemsharedmemory/region/{name}/unregister", "POST").route(web::post().to(shm::unregister)))
        .service(resource("/v2/cudasharedmemory/status", "GET").route(web::get().to(shm::cuda_status)))
        .service(resource("/v2/cudasharedmemory/region/{name}/status", "GET").route(web::get().to(shm::cuda_status)))
        .service(resource("/v2/cudasharedmemory/region/{name}/register", "POST").route(web::post().to(shm::cuda_register)))
        .service(resource("/v2/cudasharedmemory/unregister", "POST").route(web::post().to(shm::cuda_unregister)))
        .service(resource("/v2/cudasharedmemory/region/{name}/unregister", "POST").route(web::post().to(shm::cuda_unregister)))
        .service(resource("/metrics", "GET").route(web::get().to(stats::prometheus)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi::spec)))
        .service(resource("/docs", "GET").route(web::get().to(openapi::docs)))
        .default_service(web::to(not_found));
}

/// A route's resource, whose other methods get 405 with the `Allow` header naming the one it takes.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let e = ApiError::MethodNotAllowed("Method Not Allowed".into());
        let mut res = actix_web::ResponseError::error_response(&e);
        res.headers_mut().insert(actix_web::http::header::ALLOW, actix_web::http::header::HeaderValue::from_static(allow));
        res
    }))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("Not Found".into()))
}

/// Optional `/versions/{v}` segment.
#[derive(serde::Deserialize)]
pub struct ModelPath {
    model: String,
    version: Option<String>,
}

/// Counts a request in flight for the autoscaler and records its outcome when dropped, whichever way the handler
/// leaves (including a client that disconnects mid-request). Until the model resolves, the request is accounted
/// under model "_unknown", so that made-up model names in URLs cannot create new metric series.
pub struct Accounting {
    model: String,
    version: String,
    endpoint: &'static str,
    start: Instant,
    status: u16,
}

impl Accounting {
    pub fn start(model: &str, endpoint: &'static str) -> Self {
        Self { model: model.to_string(), version: String::new(), endpoint, start: Instant::now(), status: 499 }
    }

    /// The model resolved to a serving version: from here on the request counts as in flight for that model.
    pub fn version(&mut self, v: u64) {
        self.version = v.to_string();
        metrics::gauge!(m::INFLIGHT, "model" => self.model.clone()).increment(1.0);
    }

    fn model_label(&self) -> String {
        if self.version.is_empty() { "_unknown".into() } else { self.model.clone() }
    }

    pub fn finish<T>(mut self, result: &Result<T, ApiError>) {
        self.status = match result {
            Ok(_) => 200,
            Err(e) => {
                let reason = e.reason();
                metrics::counter!(m::FAILURES, "model" => self.model_label(), "version" => self.version.clone(), "reason" => reason).increment(1);
                actix_web::ResponseError::status_code(e).as_u16()
            }
        };
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        if !self.version.is_empty() {
            metrics::gauge!(m::INFLIGHT, "model" => self.model.clone()).decrement(1.0);
        }
        let labels = [("model", self.model_label()), ("version", self.version.clone()), ("endpoint", self.endpoint.to_string())];
        metrics::histogram!(m::REQUEST_DURATION, &labels).record(self.start.elapsed().as_secs_f64());
        let mut with_status = labels.to_vec();
        with_status.push(("status", self.status.to_string()));
        metrics::counter!(m::REQUESTS, &with_status).increment(1);
    }
}
