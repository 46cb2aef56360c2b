//! `tracing` subscriber: text for people, JSON for log pipelines. ONNX Runtime logs dozens of INFO lines per
//! session through the `ort` target, so that target is held at WARN unless asked for.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(format!("ort=warn,{level}")).unwrap_or_else(|_| EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    // A second init (tests) is harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
