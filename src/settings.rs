//! Server settings, layered: built-in defaults, then a TOML file, then `OXINFER_*` environment variables, then
//! command-line flags. Kubernetes ships the file in a ConfigMap and overrides single keys with env, so every key
//! must be reachable from all three places, and an unknown key must stop the start-up instead of being ignored.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// How the model repository is followed after start-up (Triton's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum ControlMode {
    /// Load everything at start-up, never look again.
    #[default]
    None,
    /// Watch the repository and apply added, removed and replaced versions.
    Poll,
    /// Load and unload only through `/v2/repository/...`.
    Explicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Every setting the server accepts. `deny_unknown_fields` turns a typo in a ConfigMap into a start-up error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub model_repository: PathBuf,
    pub model_control_mode: ControlMode,
    /// Seconds between full rescans in poll mode; file notifications make most changes visible sooner.
    pub poll_interval_secs: u64,
    /// How long a version folder must stay unchanged before poll mode loads it.
    pub poll_settle_ms: u64,
    /// Path to `libonnxruntime.so.<version>`; empty means the `ORT_DYLIB_PATH` environment variable.
    pub ort_library: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
    /// HTTP worker threads; 0 = the CPUs the container may use.
    pub http_workers: usize,
    /// Default intra-op threads per model instance; 0 = the CPU quota divided among the instances.
    pub intra_op_threads: usize,
    pub max_body_bytes: usize,
    pub max_image_pixels: u64,
    pub max_images_per_request: usize,
    /// Images being decoded or waiting for the model across all predict requests; more get 503 before decoding.
    pub max_inflight_images: usize,
    /// A request body not fully received within this gets 408, so stalled uploads cannot pile up.
    pub body_timeout_secs: u64,
    /// Upper bound of the drain after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Triton's system shared memory extension: clients on the same host pass tensors through POSIX shared memory.
    pub system_shared_memory: bool,
    /// Most shared memory regions registered at once; more get 400.
    pub max_shared_memory_regions: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8000,
            model_repository: PathBuf::from("model-repo"),
            model_control_mode: ControlMode::None,
            poll_interval_secs: 5,
            poll_settle_ms: 1000,
            ort_library: PathBuf::new(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            http_workers: 0,
            intra_op_threads: 0,
            max_body_bytes: 64 * 1024 * 1024,
            max_image_pixels: 40_000_000,
            max_images_per_request: 64,
            max_inflight_images: 256,
            body_timeout_secs: 30,
            shutdown_timeout_secs: 30,
            system_shared_memory: true,
            max_shared_memory_regions: 64,
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "oxinfer", version, about = "ONNX inference server (KServe V2 / Open Inference Protocol)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the tensor the image endpoint would feed the model, as raw little-endian f32 (NCHW, batch 1).
    Preprocess {
        /// The model's config.toml (its [preprocess] section is used).
        #[arg(long)]
        model_config: PathBuf,
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Flags for serving. Every flag is optional so that unset ones leave the file and environment in charge.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML settings file [env: OXINFER_CONFIG]
    #[arg(long, env = "OXINFER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to bind (default 0.0.0.0) [env: OXINFER_HOST]
    #[arg(long)]
    pub host: Option<String>,
    /// HTTP port (default 8000, as Triton) [env: OXINFER_PORT]
    #[arg(long)]
    pub port: Option<u16>,
    /// Model repository folder: <model>/config.toml and numeric version folders [env: OXINFER_MODEL_REPOSITORY]
    #[arg(long)]
    pub model_repository: Option<PathBuf>,
    /// none | poll | explicit [env: OXINFER_MODEL_CONTROL_MODE]
    #[arg(long, value_enum)]
    pub model_control_mode: Option<ControlMode>,
    /// Seconds between repository rescans in poll mode (default 5) [env: OXINFER_POLL_INTERVAL_SECS]
    #[arg(long)]
    pub poll_interval_secs: Option<u64>,
    /// Milliseconds a version folder must stay unchanged before poll mode loads it (default 1000)
    /// [env: OXINFER_POLL_SETTLE_MS]
    #[arg(long)]
    pub poll_settle_ms: Option<u64>,
    /// Path to libonnxruntime.so.<version> [env: OXINFER_ORT_LIBRARY]
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// text | json [env: OXINFER_LOG_FORMAT]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// tracing filter, e.g. info or oxinfer=debug (default info) [env: OXINFER_LOG_LEVEL]
    #[arg(long)]
    pub log_level: Option<String>,
    /// HTTP worker threads, 0 = CPUs allowed by the cgroup quota [env: OXINFER_HTTP_WORKERS]
    #[arg(long)]
    pub http_workers: Option<usize>,
    /// Default intra-op threads per model instance, 0 = derived from the CPU quota [env: OXINFER_INTRA_OP_THREADS]
    #[arg(long)]
    pub intra_op_threads: Option<usize>,
    /// Largest request body in bytes; larger gets 413 (default 64 MiB) [env: OXINFER_MAX_BODY_BYTES]
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Largest image in pixels, read from its header; larger gets 400 (default 40 M) [env: OXINFER_MAX_IMAGE_PIXELS]
    #[arg(long)]
    pub max_image_pixels: Option<u64>,
    /// Most images in one predict request (default 64) [env: OXINFER_MAX_IMAGES_PER_REQUEST]
    #[arg(long)]
    pub max_images_per_request: Option<usize>,
    /// Images decoding or queued across all predict requests; beyond it 503 (default 256) [env: OXINFER_MAX_INFLIGHT_IMAGES]
    #[arg(long)]
    pub max_inflight_images: Option<usize>,
    /// Seconds to receive a whole request body; slower gets 408 (default 30) [env: OXINFER_BODY_TIMEOUT_SECS]
    #[arg(long)]
    pub body_timeout_secs: Option<u64>,
    /// Upper bound in seconds of the drain after SIGTERM (default 30) [env: OXINFER_SHUTDOWN_TIMEOUT_SECS]
    #[arg(long)]
    pub shutdown_timeout_secs: Option<u64>,
    /// Accept Triton's system shared memory extension: true or false (default true) [env: OXINFER_SYSTEM_SHARED_MEMORY]
    #[arg(long)]
    pub system_shared_memory: Option<bool>,
    /// Most shared memory regions registered at once (default 64) [env: OXINFER_MAX_SHARED_MEMORY_REGIONS]
    #[arg(long)]
    pub max_shared_memory_regions: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("settings: {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl Settings {
    /// Layers defaults < file < environment < flags, then checks the values that have a valid range.
    pub fn load(args: &ServeArgs) -> Result<Self, SettingsError> {
        let defaults = config::Config::try_from(&Settings::default())?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = &args.config {
            builder = builder.add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("OXINFER")
                .try_parsing(true)
                // OXINFER_CONFIG names the file itself, not a setting.
                .source(Some(env_without_config())),
        );
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.apply_flags(args);
        settings.validate()?;
        Ok(settings)
    }

    fn apply_flags(&mut self, a: &ServeArgs) {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = &a.$field { self.$field = v.clone(); } )* };
        }
        take!(
            host, port, model_repository, model_control_mode, poll_interval_secs, poll_settle_ms, ort_library,
            log_format, log_level, http_workers, intra_op_threads, max_body_bytes, max_image_pixels,
            max_images_per_request, max_inflight_images, body_timeout_secs, shutdown_timeout_secs, system_shared_memory,
            max_shared_memory_regions
        );
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_image_pixels", self.max_image_pixels),
            ("max_images_per_request", self.max_images_per_request as u64),
            ("poll_interval_secs", self.poll_interval_secs),
            ("max_inflight_images", self.max_inflight_images as u64),
            ("body_timeout_secs", self.body_timeout_secs),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(SettingsError::Field { field, reason: "must be greater than 0".into() });
            }
        }
        Ok(())
    }
}

/// `OXINFER_*` variables that name a setting. Others are left alone: Kubernetes injects service links such as
/// `OXINFER_SERVICE_HOST` for a Service called oxinfer, and those must not stop the server.
fn env_without_config() -> config::Map<String, String> {
    let known: Vec<String> = match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().map(|k| format!("OXINFER_{}", k.to_uppercase())).collect(),
        _ => Vec::new(),
    };
    std::env::vars()
        .filter(|(k, v)| {
            // A service link for port 8000 looks like OXINFER_PORT=tcp://10.0.0.1:8000; it is not a port number.
            known.contains(k) && !(k == "OXINFER_PORT" && v.contains("://"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_match_triton_port() {
        let s = Settings::load(&ServeArgs::default()).unwrap();
        assert_eq!(s.port, 8000);
        assert_eq!(s.model_control_mode, ControlMode::None);
    }

    #[test]
    fn file_then_flags_win() {
        let f = file_with("port = 9001\nmodel_control_mode = \"poll\"\nmax_image_pixels = 100\n");
        let args = ServeArgs { config: Some(f.path().into()), port: Some(9002), ..Default::default() };
        let s = Settings::load(&args).unwrap();
        assert_eq!(s.port, 9002);
        assert_eq!(s.model_control_mode, ControlMode::Poll);
        assert_eq!(s.max_image_pixels, 100);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let f = file_with("prot = 9001\n");
        let err = Settings::load(&ServeArgs { config: Some(f.path().into()), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn zero_limit_is_an_error() {
        let f = file_with("max_body_bytes = 0\n");
        let err = Settings::load(&ServeArgs { config: Some(f.path().into()), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("max_body_bytes"), "{err}");
    }
}
