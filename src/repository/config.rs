//! A model's `config.toml`: what Triton keeps in `config.pbtxt`, in TOML. Parsing is strict (unknown keys are
//! errors) and every error names the file, the field and the reason, because a silently ignored typo in a batching
//! or provider setting is only found in production.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tensor::DataType;

pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default = "default_platform")]
    pub platform: String,
    /// Largest batch in rows; 0 means the model does not batch (no batch axis in `dims`).
    #[serde(default)]
    pub max_batch_size: usize,
    /// Labels file, one per line, relative to the model folder.
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// Taken from the ONNX graph when omitted; checked against it when given.
    #[serde(default)]
    pub input: Vec<TensorSpec>,
    #[serde(default)]
    pub output: Vec<TensorSpec>,
    #[serde(default)]
    pub version_policy: VersionPolicy,
    #[serde(default)]
    pub preprocess: Option<Preprocess>,
    #[serde(default)]
    pub dynamic_batching: DynamicBatching,
    #[serde(default)]
    pub instance_group: InstanceGroup,
    #[serde(default)]
    pub execution: Execution,
}

fn default_platform() -> String {
    "onnxruntime_onnx".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    /// Without the batch axis; -1 for a variable dimension.
    pub dims: Vec<i64>,
}

/// Which versions on disk are served (Triton's policies).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VersionPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specific: Option<Vec<u64>>,
}

impl Default for VersionPolicy {
    fn default() -> Self {
        Self { latest: Some(1), all: None, specific: None }
    }
}

impl VersionPolicy {
    /// The versions to serve among those present, newest first.
    pub fn select(&self, present: &[u64]) -> Vec<u64> {
        let mut sorted: Vec<u64> = present.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        if let Some(list) = &self.specific {
            sorted.retain(|v| list.contains(v));
        } else if self.all != Some(true) {
            sorted.truncate(self.latest.unwrap_or(1));
        }
        sorted
    }

    fn validate(&self) -> Result<(), String> {
        let chosen = [self.latest.is_some(), self.all.is_some(), self.specific.is_some()].iter().filter(|b| **b).count();
        match (chosen, self) {
            (c, _) if c != 1 => Err("set exactly one of latest, all, specific".into()),
            (_, Self { latest: Some(0), .. }) => Err("latest must be at least 1".into()),
            (_, Self { all: Some(false), .. }) => Err("all must be true when given".into()),
            (_, Self { specific: Some(v), .. }) if v.is_empty() => Err("specific must list at least one version".into()),
            _ => Ok(()),
        }
    }
}

/// The image recipe used by the predict endpoint (and mirrored by `convert/preprocess.py`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    pub input: String,
    #[serde(default = "rgb")]
    pub color: String,
    #[serde(default = "one")]
    pub crop_fraction: f64,
    pub size: u32,
    #[serde(default = "bicubic")]
    pub interpolation: String,
    #[serde(default = "zeros3")]
    pub mean: [f32; 3],
    #[serde(default = "ones3")]
    pub std: [f32; 3],
    #[serde(default = "nchw")]
    pub layout: String,
}

fn rgb() -> String {
    "RGB".into()
}
fn one() -> f64 {
    1.0
}
fn bicubic() -> String {
    "bicubic".into()
}
fn zeros3() -> [f32; 3] {
    [0.0; 3]
}
fn ones3() -> [f32; 3] {
    [1.0; 3]
}
fn nchw() -> String {
    "NCHW".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicBatching {
    /// Turn batching across requests off (each request runs on its own).
    pub enabled: bool,
    /// How long the first request of a batch may wait for company.
    pub max_queue_delay_us: u64,
    /// Close a batch at once when nothing more is queued or being received for this version, or when another
    /// instance is free: the delay is then spent only on requests already on their way. `false` always waits up
    /// to the delay, as Triton does.
    pub eager: bool,
    /// Sizes the batcher prefers to close a batch at (rows).
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests waiting beyond this are refused with 503.
    pub max_queue_size: usize,
    /// A request not started within this is answered with a timeout error.
    pub timeout_ms: u64,
}

impl Default for DynamicBatching {
    fn default() -> Self {
        Self { enabled: true, max_queue_delay_us: 2000, eager: true, preferred_batch_sizes: Vec::new(), max_queue_size: 256, timeout_ms: 30_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceGroup {
    /// Sessions per version, each running one batch at a time.
    pub count: usize,
}

impl Default for InstanceGroup {
    fn default() -> Self {
        Self { count: 1 }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProviderPolicy {
    /// Use the first provider that registers; CPU when none does.
    #[default]
    Fallback,
    /// Fail the load when the first provider cannot be used.
    Strict,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizationLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

/// One execution provider with its options; a bare string `"cuda"` is accepted as shorthand.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ProviderSpec {
    Name(ProviderKind),
    Detailed(ProviderOptions),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Cpu,
    Cuda,
    Tensorrt,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderOptions {
    pub name: ProviderKind,
    #[serde(default)]
    pub device_id: i32,
    /// CUDA: upper bound of the device memory arena, bytes.
    #[serde(default)]
    pub memory_limit_bytes: Option<usize>,
    /// TensorRT: build fp16 engines.
    #[serde(default)]
    pub fp16: bool,
    /// TensorRT: keep built engines here so a restart does not rebuild them.
    #[serde(default)]
    pub engine_cache_path: Option<PathBuf>,
}

impl ProviderSpec {
    pub fn options(&self) -> ProviderOptions {
        match self {
            Self::Name(name) => ProviderOptions { name: *name, device_id: 0, memory_limit_bytes: None, fp16: false, engine_cache_path: None },
            Self::Detailed(o) => o.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Execution {
    /// 0 = the server's default (derived from the CPU quota).
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    pub providers: Vec<ProviderSpec>,
    pub provider_policy: ProviderPolicy,
    pub graph_optimization_level: OptimizationLevel,
    /// ONNX Runtime's CPU memory arena: faster steady state, memory is kept after peaks.
    pub memory_arena: bool,
    /// Pre-plans buffers for fixed shapes.
    pub memory_pattern: bool,
    /// ONNX Runtime's intra-op threads spin between parallel sections instead of sleeping: lower latency on
    /// dedicated cores, but spinning threads take CPU from the HTTP side when the two share a small CPU quota.
    pub intra_op_spinning: bool,
}

impl Default for Execution {
    fn default() -> Self {
        Self {
            intra_op_threads: 0,
            inter_op_threads: 0,
            providers: vec![ProviderSpec::Name(ProviderKind::Cpu)],
            provider_policy: ProviderPolicy::Fallback,
            graph_optimization_level: OptimizationLevel::All,
            memory_arena: true,
            memory_pattern: true,
            intra_op_spinning: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub field: String,
    pub reason: String,
}

impl ModelConfig {
    /// Reads and validates `<model_dir>/config.toml`.
    pub fn load(model_dir: &Path) -> Result<Self, ConfigError> {
        let file = model_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ConfigError { file: file.clone(), field: "-".into(), reason: format!("cannot read: {e}") })?;
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            field: toml_field(&e, text),
            reason: e.message().to_string(),
        })?;
        config.validate().map_err(|(field, reason)| ConfigError { file: file.to_path_buf(), field, reason })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, r: String| Err((f.to_string(), r));
        if self.platform != "onnxruntime_onnx" {
            return err("platform", format!("'{}' is not supported; use onnxruntime_onnx", self.platform));
        }
        for (kind, list) in [("input", &self.input), ("output", &self.output)] {
            for (i, spec) in list.iter().enumerate() {
                if spec.name.is_empty() {
                    return err(&format!("{kind}[{i}].name"), "must not be empty".into());
                }
                if spec.dims.iter().any(|&d| d == 0 || d < -1) {
                    return err(&format!("{kind}[{i}].dims"), "dimensions are positive, or -1 for variable".into());
                }
                if list.iter().filter(|s| s.name == spec.name).count() > 1 {
                    return err(&format!("{kind}[{i}].name"), format!("'{}' appears twice", spec.name));
                }
            }
        }
        self.version_policy.validate().or_else(|r| err("version_policy", r))?;
        let b = &self.dynamic_batching;
        if b.max_queue_size == 0 {
            return err("dynamic_batching.max_queue_size", "must be at least 1".into());
        }
        if b.timeout_ms == 0 {
            return err("dynamic_batching.timeout_ms", "must be at least 1".into());
        }
        if let Some(&p) = b.preferred_batch_sizes.iter().find(|&&p| p == 0 || p > self.max_batch_size.max(1)) {
            return err(
                "dynamic_batching.preferred_batch_sizes",
                format!("{p} is outside 1..={} (max_batch_size)", self.max_batch_size.max(1)),
            );
        }
        if self.instance_group.count == 0 {
            return err("instance_group.count", "must be at least 1".into());
        }
        if self.execution.providers.is_empty() {
            return err("execution.providers", "list at least one provider (e.g. [\"cpu\"])".into());
        }
        if let Some(p) = &self.preprocess {
            self.validate_preprocess(p).or_else(|(f, r)| err(&format!("preprocess.{f}"), r))?;
        }
        Ok(())
    }

    fn validate_preprocess(&self, p: &Preprocess) -> Result<(), (String, String)> {
        let bad = |f: &str, r: String| Err((f.to_string(), r));
        if !self.input.is_empty() && !self.input.iter().any(|i| i.name == p.input) {
            return bad("input", format!("'{}' is not one of the model's inputs", p.input));
        }
        if p.color != "RGB" && p.color != "BGR" {
            return bad("color", format!("'{}' is not RGB or BGR", p.color));
        }
        if !(p.crop_fraction > 0.0 && p.crop_fraction <= 1.0) {
            return bad("crop_fraction", format!("{} is outside (0, 1]", p.crop_fraction));
        }
        if p.size == 0 || p.size > 4096 {
            return bad("size", format!("{} is outside 1..=4096", p.size));
        }
        if !["bicubic", "bilinear", "nearest"].contains(&p.interpolation.as_str()) {
            return bad("interpolation", format!("'{}' is not bicubic, bilinear or nearest", p.interpolation));
        }
        if p.std.iter().any(|&s| s == 0.0) {
            return bad("std", "must not contain 0".into());
        }
        if p.layout != "NCHW" && p.layout != "NHWC" {
            return bad("layout", format!("'{}' is not NCHW or NHWC", p.layout));
        }
        Ok(())
    }

    /// Labels from the configured file, one per line.
    pub fn read_labels(&self, model_dir: &Path) -> Result<Vec<String>, ConfigError> {
        let Some(rel) = &self.labels else { return Ok(Vec::new()) };
        let inside = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(ConfigError {
                file: model_dir.join(CONFIG_FILE),
                field: "labels".into(),
                reason: format!("'{}' must be a relative path inside the model folder", rel.display()),
            });
        }
        let file = model_dir.join(rel);
        std::fs::read_to_string(&file)
            .map(|t| t.lines().map(|l| l.trim().to_string()).collect())
            .map_err(|e| ConfigError { file: model_dir.join(CONFIG_FILE), field: "labels".into(), reason: format!("cannot read {}: {e}", file.display()) })
    }
}

/// The dotted key path a TOML error points at, found from its span (the toml crate reports spans, not paths).
fn toml_field(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else { return "-".into() };
    let line_start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let key = line.split('=').next().unwrap_or("").trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(|l| l.trim().trim_matches(|c| c == '[' || c == ']').to_string());
    match (table, key.is_empty() || key.starts_with('[')) {
        (Some(t), false) => format!("{t}.{key}"),
        (None, false) => key.to_string(),
        (Some(t), true) => t,
        (None, true) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
max_batch_size = 8
labels = "labels.txt"
[[input]]
name = "input"
datatype = "FP32"
dims = [3, 224, 224]
[[output]]
name = "logits"
datatype = "FP32"
dims = [1000]
[preprocess]
input = "input"
size = 224
crop_fraction = 0.875
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
[dynamic_batching]
preferred_batch_sizes = [4, 8]
eager = false
[execution]
providers = ["tensorrt", { name = "cuda", device_id = 1, memory_limit_bytes = 1000 }, "cpu"]
provider_policy = "strict"
intra_op_spinning = false
"#;

    fn parse(t: &str) -> Result<ModelConfig, ConfigError> {
        ModelConfig::parse(t, Path::new("m/config.toml"))
    }

    #[test]
    fn good_config_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.input[0].datatype, DataType::Fp32);
        assert_eq!(c.version_policy, VersionPolicy::default());
        assert_eq!(c.execution.providers.len(), 3);
        assert_eq!(c.execution.providers[1].options().device_id, 1);
        assert_eq!(c.execution.provider_policy, ProviderPolicy::Strict);
        assert!(!c.dynamic_batching.eager && !c.execution.intra_op_spinning);
        let defaults = parse("").unwrap();
        assert!(defaults.dynamic_batching.eager && defaults.execution.intra_op_spinning);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn every_error_names_file_field_reason() {
        let cases = [
            ("max_batch_size = 8\nbatchsize = 3\n", "batchsize"),
            ("platform = \"tensorflow\"\n", "m/config.toml: platform: 'tensorflow' is not supported"),
            ("[[input]]\nname = \"x\"\ndatatype = \"FLOAT\"\ndims = [1]\n", "input.datatype"),
            ("[[input]]\nname = \"x\"\ndatatype = \"FP32\"\ndims = [0]\n", "input[0].dims"),
            ("[[output]]\nname = \"y\"\ndatatype = \"FP32\"\ndims = [1]\n[[output]]\nname = \"y\"\ndatatype = \"FP32\"\ndims = [1]\n", "output[0].name: 'y' appears twice"),
            ("[version_policy]\nlatest = 1\nall = true\n", "version_policy: set exactly one"),
            ("[version_policy]\nlatest = 0\n", "version_policy: latest must be at least 1"),
            ("[version_policy]\nspecific = []\n", "version_policy: specific must list"),
            ("[dynamic_batching]\nmax_queue_size = 0\n", "dynamic_batching.max_queue_size"),
            ("[dynamic_batching]\ntimeout_ms = 0\n", "dynamic_batching.timeout_ms"),
            ("max_batch_size = 4\n[dynamic_batching]\npreferred_batch_sizes = [8]\n", "preferred_batch_sizes: 8 is outside 1..=4"),
            ("[instance_group]\ncount = 0\n", "instance_group.count"),
            ("[execution]\nproviders = []\n", "execution.providers"),
            ("[execution]\nprovider_policy = \"maybe\"\n", "execution.provider_policy"),
            ("[preprocess]\ninput = \"x\"\nsize = 0\n", "preprocess.size"),
            ("[preprocess]\ninput = \"x\"\nsize = 8\ncrop_fraction = 1.5\n", "preprocess.crop_fraction"),
            ("[preprocess]\ninput = \"x\"\nsize = 8\nstd = [1.0, 0.0, 1.0]\n", "preprocess.std"),
            ("[preprocess]\ninput = \"x\"\nsize = 8\ninterpolation = \"lanczos\"\n", "preprocess.interpolation"),
            ("[preprocess]\ninput = \"x\"\nsize = 8\nlayout = \"CHW\"\n", "preprocess.layout"),
            ("[[input]]\nname = \"a\"\ndatatype = \"FP32\"\ndims = [1]\n[preprocess]\ninput = \"b\"\nsize = 8\n", "preprocess.input: 'b' is not"),
        ];
        for (text, expected) in cases {
            let e = error_of(text);
            assert!(e.starts_with("m/config.toml: "), "{e}");
            assert!(e.contains(expected), "expected {expected:?} in {e:?}");
        }
    }

    #[test]
    fn version_policies_select() {
        let present = [1, 3, 2, 10];
        assert_eq!(VersionPolicy::default().select(&present), vec![10]);
        assert_eq!(VersionPolicy { latest: Some(2), ..Default::default() }.select(&present), vec![10, 3]);
        let all = VersionPolicy { latest: None, all: Some(true), specific: None };
        assert_eq!(all.select(&present), vec![10, 3, 2, 1]);
        let specific = VersionPolicy { latest: None, all: None, specific: Some(vec![2, 7]) };
        assert_eq!(specific.select(&present), vec![2]);
        assert_eq!(VersionPolicy::default().select(&[]), Vec::<u64>::new());
    }
}
