//! Telemetry in one place: logging set-up, the Prometheus metric names (documented in docs/metrics.md), and the
//! per-version statistics that Triton's statistics extension reports.

pub mod logging;
pub mod metrics;
pub mod process;
pub mod stats;
