//! Prometheus metrics. Names live here as constants so that the HTTP layer, the scheduler and the repository record
//! the same series, and so that docs/, the dashboard and the HPA have one list to agree with.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "oxinfer_requests_total";
pub const REQUEST_DURATION: &str = "oxinfer_request_duration_seconds";
pub const QUEUE_DURATION: &str = "oxinfer_queue_duration_seconds";
pub const PREPROCESS_DURATION: &str = "oxinfer_preprocess_duration_seconds";
pub const COMPUTE_DURATION: &str = "oxinfer_compute_duration_seconds";
pub const BATCH_SIZE: &str = "oxinfer_batch_size";
pub const FAILURES: &str = "oxinfer_failures_total";
pub const INFLIGHT: &str = "oxinfer_inflight_requests";
pub const QUEUE_DEPTH: &str = "oxinfer_queue_depth";
pub const MODEL_STATE: &str = "oxinfer_model_state";
pub const LOAD_DURATION: &str = "oxinfer_model_load_duration_seconds";
pub const LOAD_FAILURES: &str = "oxinfer_model_load_failures_total";
pub const PROVIDER: &str = "oxinfer_execution_provider";

/// Millisecond-scale inference needs sub-millisecond buckets at the bottom and a long tail for queueing.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const LOAD_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(LOAD_DURATION.into()), LOAD_BUCKETS))
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed (a test harness); the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS, "Inference requests answered, by model, version, endpoint and HTTP status");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Time from request arrival to response, per endpoint");
    describe_histogram!(QUEUE_DURATION, Unit::Seconds, "Time a request waited in the batching queue");
    describe_histogram!(PREPROCESS_DURATION, Unit::Seconds, "Image decoding and preprocessing time per request");
    describe_histogram!(COMPUTE_DURATION, Unit::Seconds, "ONNX Runtime time for one executed batch");
    describe_histogram!(BATCH_SIZE, "Rows per executed batch");
    describe_counter!(FAILURES, "Failed requests by reason");
    describe_gauge!(INFLIGHT, "Inference requests being handled now (the autoscaling metric)");
    describe_gauge!(QUEUE_DEPTH, "Requests waiting in the batching queue");
    describe_gauge!(MODEL_STATE, "1 for the state a model version is in");
    describe_histogram!(LOAD_DURATION, Unit::Seconds, "Time to load, validate and warm a model version");
    describe_counter!(LOAD_FAILURES, "Model version loads that failed");
    describe_gauge!(PROVIDER, "1 for the execution provider a model version runs on");
}
