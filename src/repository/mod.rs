//! The model repository: what is on disk, what is serving, and the swap between the two.
//!
//! Requests read an immutable snapshot (`ArcSwap`), so routing never waits for a load. A load builds new versions
//! in the background, publishes a new snapshot in one atomic store, and lets the old versions go: their schedulers
//! finish what they accepted and free their sessions when the last request holding them completes. A version that
//! fails to load never replaces what is serving, and control operations on one model are serialized, with
//! concurrent loads of the same model answered by a single load.

pub mod config;
pub mod loader;
pub mod scan;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::observe::metrics as m;
use crate::observe::stats::VersionStats;
use crate::scheduler::{BatchPolicy, Labels, Scheduler};
use config::{ModelConfig, ProviderKind};
use loader::{LoadError, Signature};

/// One version that is serving.
pub struct ModelVersion {
    pub name: String,
    pub version: u64,
    pub config: Arc<ModelConfig>,
    pub signature: Signature,
    pub labels: Arc<Vec<String>>,
    pub scheduler: Scheduler,
    pub stats: Arc<VersionStats>,
    pub provider: ProviderKind,
    /// What the version was loaded from, to tell a replaced file from an unchanged one.
    source: scan::Fingerprint,
}

/// A model's serving versions, newest last.
#[derive(Default, Clone)]
pub struct ServingModel {
    pub versions: BTreeMap<u64, Arc<ModelVersion>>,
}

/// Lifecycle states as Triton's repository index names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Loading,
    Ready,
    Unavailable,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loading => "LOADING",
            Self::Ready => "READY",
            Self::Unavailable => "UNAVAILABLE",
            // Triton reports a failed load as UNAVAILABLE with the reason; the reason text says it failed.
            Self::Failed => "UNAVAILABLE",
        }
    }

    fn metric_name(self) -> &'static str {
        match self {
            Self::Loading => "LOADING",
            Self::Ready => "READY",
            Self::Unavailable => "UNAVAILABLE",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    pub state: State,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ResolveError {
    #[error("model '{0}' is not found")]
    UnknownModel(String),
    #[error("model '{0}' has no ready version")]
    NoReadyVersion(String),
    #[error("version {version} of model '{model}' is not loaded (ready: {ready})")]
    UnknownVersion { model: String, version: String, ready: String },
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum ControlError {
    #[error("model '{0}' is not in the repository")]
    NotInRepository(String),
    #[error("failed to load '{model}': {reason}")]
    LoadFailed { model: String, reason: String },
}

struct LoadRecord {
    started_seq: u64,
    result: Result<(), ControlError>,
}

/// Shared state of the repository; one per server.
pub struct Registry {
    root: PathBuf,
    default_threads: usize,
    live: ArcSwap<HashMap<String, Arc<ServingModel>>>,
    states: Mutex<BTreeMap<(String, Option<u64>), (State, String)>>,
    control: Mutex<HashMap<String, Arc<tokio::sync::Mutex<LoadRecord>>>>,
    seq: AtomicU64,
    /// Models that must be serving for the server to be ready (those present at start-up).
    required: Mutex<Vec<String>>,
    /// Set once the start-up load has finished. Before it no model is required yet, and readiness must not pass
    /// on an empty list while the HTTP server already answers.
    started: AtomicBool,
    draining: AtomicBool,
}

impl Registry {
    pub fn new(root: PathBuf, default_threads: usize) -> Arc<Self> {
        Arc::new(Self {
            root,
            default_threads,
            live: ArcSwap::from_pointee(HashMap::new()),
            states: Mutex::new(BTreeMap::new()),
            control: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            required: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Loads every model in the repository; the server is ready once each serves at least one version.
    pub async fn load_all(&self) -> Vec<ControlError> {
        let names = scan::models(&self.root);
        if let Ok(mut r) = self.required.lock() {
            *r = names.clone();
        }
        let mut errors = Vec::new();
        for name in names {
            if let Err(e) = self.load(&name).await {
                errors.push(e);
            }
        }
        self.started.store(true, Ordering::Release);
        errors
    }

    /// The snapshot requests route on.
    pub fn snapshot(&self) -> Arc<HashMap<String, Arc<ServingModel>>> {
        self.live.load_full()
    }

    /// The newest serving version, or the one asked for.
    pub fn resolve(&self, model: &str, version: Option<&str>) -> Result<Arc<ModelVersion>, ResolveError> {
        let snap = self.live.load();
        let Some(serving) = snap.get(model) else {
            return Err(if self.in_repository(model) {
                ResolveError::NoReadyVersion(model.to_string())
            } else {
                ResolveError::UnknownModel(model.to_string())
            });
        };
        let unknown = |v: &str| ResolveError::UnknownVersion {
            model: model.to_string(),
            version: v.to_string(),
            ready: serving.versions.keys().map(u64::to_string).collect::<Vec<_>>().join(", "),
        };
        match version {
            None => serving.versions.values().next_back().cloned().ok_or_else(|| ResolveError::NoReadyVersion(model.to_string())),
            Some(v) => v.parse::<u64>().ok().and_then(|n| serving.versions.get(&n).cloned()).ok_or_else(|| unknown(v)),
        }
    }

    fn in_repository(&self, model: &str) -> bool {
        self.states.lock().map(|s| s.keys().any(|(n, _)| n == model)).unwrap_or(false)
    }

    pub fn ready(&self) -> bool {
        if self.draining.load(Ordering::Relaxed) || !self.started.load(Ordering::Acquire) {
            return false;
        }
        let snap = self.live.load();
        let required = self.required.lock().map(|r| r.clone()).unwrap_or_default();
        required.iter().all(|name| snap.get(name).is_some_and(|m| !m.versions.is_empty()))
    }

    /// Readiness turns false at once on SIGTERM, so load balancers stop sending before the drain.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Every model and version the repository knows, with state and reason (Triton's repository index).
    pub fn index(&self) -> Vec<IndexEntry> {
        let states = self.states.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out: Vec<IndexEntry> = states
            .into_iter()
            .map(|((name, version), (state, reason))| IndexEntry { name, version, state, reason })
            .collect();
        for name in scan::models(&self.root) {
            if !out.iter().any(|e| e.name == name) {
                out.push(IndexEntry { name, version: None, state: State::Unavailable, reason: "not loaded".into() });
            }
        }
        out
    }

    /// Loads or reloads `model`: serialized per model, and a load requested while another is running is answered
    /// by the next one to complete, so bursts of load calls build each version once.
    pub async fn load(&self, model: &str) -> Result<(), ControlError> {
        if !scan::is_model_name(model) {
            return Err(ControlError::NotInRepository(model.to_string()));
        }
        if !self.root.join(model).join(config::CONFIG_FILE).is_file() && !self.in_repository(model) {
            // Nothing is kept for names that are not in the repository: no state, no metric series, no lock.
            return Err(ControlError::NotInRepository(model.to_string()));
        }
        let my_seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let slot = self.control_slot(model);
        let mut record = slot.lock().await;
        if record.started_seq > my_seq {
            return record.result.clone();
        }
        record.started_seq = self.seq.fetch_add(1, Ordering::SeqCst);
        record.result = self.load_locked(model).await;
        record.result.clone()
    }

    /// Stops serving `model`; requests already accepted finish on the versions they hold.
    /// A model whose folder left the repository is forgotten: the index stops listing it and requests get 404,
    /// not a 503 inviting retries of a model that will not come back.
    pub async fn unload(&self, model: &str) {
        if !scan::is_model_name(model) || (!self.in_repository(model) && !self.live.load().contains_key(model)) {
            return;
        }
        let slot = self.control_slot(model);
        let mut record = slot.lock().await;
        // Load calls queued behind this unload must load again, not return the result of a load before it.
        record.started_seq = 0;
        self.publish(model, None);
        if let Ok(mut r) = self.required.lock() {
            r.retain(|n| n != model);
        }
        let removed = !self.root.join(model).join(config::CONFIG_FILE).is_file();
        if let Ok(mut states) = self.states.lock() {
            let keys: Vec<_> = states.keys().filter(|(n, _)| n == model).cloned().collect();
            for key in keys {
                set_state_metric(model, key.1, states.get(&key).map(|s| s.0), State::Unavailable);
                if removed {
                    states.remove(&key);
                } else {
                    states.insert(key, (State::Unavailable, "unloaded".into()));
                }
            }
        }
        tracing::info!(model, removed, "model unloaded");
    }

    fn control_slot(&self, model: &str) -> Arc<tokio::sync::Mutex<LoadRecord>> {
        let mut map = self.control.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(model.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(LoadRecord { started_seq: 0, result: Ok(()) })))
            .clone()
    }

    async fn load_locked(&self, model: &str) -> Result<(), ControlError> {
        let dir = self.root.join(model);
        if dir.join(config::CONFIG_FILE).is_file() {
            // A zero sample from discovery on, so that increase() sees the first failure.
            metrics::counter!(m::LOAD_FAILURES, "model" => model.to_string()).increment(0);
        }
        if !dir.join(config::CONFIG_FILE).is_file() {
            self.set_state(model, None, State::Unavailable, "not in the repository");
            return Err(ControlError::NotInRepository(model.to_string()));
        }
        let failed = |reason: String| ControlError::LoadFailed { model: model.to_string(), reason };
        let config = match ModelConfig::load(&dir) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.model_failed(model, e.to_string());
                return Err(failed(e.to_string()));
            }
        };
        let labels = match config.read_labels(&dir) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                self.model_failed(model, e.to_string());
                return Err(failed(e.to_string()));
            }
        };
        self.clear_model_state(model);

        let on_disk = scan::versions(&dir);
        let wanted = config.version_policy.select(&on_disk.keys().copied().collect::<Vec<_>>());
        let current = self.live.load().get(model).cloned();
        let mut next = ServingModel::default();
        let mut errors = Vec::new();
        for v in &wanted {
            let source = scan::fingerprint(&dir.join(v.to_string()));
            let reusable = current.as_ref().and_then(|c| c.versions.get(v)).filter(|old| old.source == source && *old.config == *config);
            if let Some(old) = reusable {
                next.versions.insert(*v, old.clone());
                continue;
            }
            match self.load_version(model, *v, &on_disk[v], config.clone(), labels.clone(), source).await {
                Ok(mv) => {
                    next.versions.insert(*v, mv);
                }
                Err(e) => errors.push(format!("version {v}: {e}")),
            }
        }
        if wanted.is_empty() {
            errors.push("no version folder holds a model.onnx within the version policy".into());
        }
        let nothing_serving = current.as_ref().is_none_or(|c| c.versions.is_empty());
        if next.versions.is_empty() && nothing_serving && config.version_policy.latest.is_some() {
            // Nothing to keep (a restart with a broken newest version): serve the newest older version that loads.
            for v in on_disk.keys().rev().filter(|v| !wanted.contains(v)) {
                let source = scan::fingerprint(&dir.join(v.to_string()));
                match self.load_version(model, *v, &on_disk[v], config.clone(), labels.clone(), source).await {
                    Ok(mv) => {
                        tracing::warn!(model, version = v, "newest versions failed; serving an older version instead");
                        next.versions.insert(*v, mv);
                        break;
                    }
                    Err(e) => errors.push(format!("version {v}: {e}")),
                }
            }
        }
        if next.versions.is_empty() && current.as_ref().is_some_and(|c| !c.versions.is_empty()) {
            // A bad new version never replaces a good one: keep serving what was serving.
            tracing::warn!(model, errors = ?errors, "no new version could be loaded; the serving versions stay");
            // A failed reload of a version that is serving leaves it serving: the index says so, with the reason.
            if let Some(c) = &current {
                for v in c.versions.keys() {
                    let why = errors.iter().find(|e| e.starts_with(&format!("version {v}:"))).map(String::as_str).unwrap_or("");
                    let reason = if why.is_empty() { String::new() } else { format!("serving; the last reload failed: {why}") };
                    self.set_state(model, Some(*v), State::Ready, &reason);
                }
            }
            return Err(failed(errors.join("; ")));
        }
        // Versions leaving service: their state turns UNAVAILABLE once the new snapshot is published.
        let leaving: Vec<u64> = current
            .map(|c| c.versions.keys().filter(|v| !next.versions.contains_key(v)).copied().collect())
            .unwrap_or_default();
        let serving: Vec<u64> = next.versions.keys().copied().collect();
        // Only a model that serves becomes one readiness waits for: a broken model dropped into a running
        // repository is reported in the index but must not take the whole server out of its load balancer.
        let serves = !next.versions.is_empty();
        self.publish(model, serves.then_some(next));
        if serves {
            if let Ok(mut r) = self.required.lock() {
                if !r.iter().any(|n| n == model) {
                    r.push(model.to_string());
                }
            }
        }
        for v in leaving {
            self.set_state(model, Some(v), State::Unavailable, "unloaded: not in the version policy or removed");
        }
        for v in serving {
            self.set_state(model, Some(v), State::Ready, "");
        }
        if errors.is_empty() { Ok(()) } else { Err(failed(errors.join("; "))) }
    }

    async fn load_version(
        &self,
        model: &str,
        version: u64,
        file: &Path,
        config: Arc<ModelConfig>,
        labels: Arc<Vec<String>>,
        source: scan::Fingerprint,
    ) -> Result<Arc<ModelVersion>, LoadError> {
        self.set_state(model, Some(version), State::Loading, "");
        let started = Instant::now();
        let threads = if config.execution.intra_op_threads > 0 { config.execution.intra_op_threads } else { self.default_threads };
        let threads = (threads / config.instance_group.count).max(1);
        let (file_owned, cfg) = (file.to_path_buf(), config.clone());
        let built = tokio::task::spawn_blocking(move || loader::build(&file_owned, &cfg, threads))
            .await
            .unwrap_or_else(|e| Err(LoadError::Runtime(format!("load task failed: {e}"))));
        let elapsed = started.elapsed().as_secs_f64();
        metrics::histogram!(m::LOAD_DURATION, "model" => model.to_string()).record(elapsed);
        let built = built.and_then(|b| labels_fit(&b.signature, &labels).map(|()| b));
        let built = match built {
            Ok(b) => b,
            Err(e) => {
                metrics::counter!(m::LOAD_FAILURES, "model" => model.to_string()).increment(1);
                tracing::error!(model, version, error = %e, "version failed to load");
                self.set_state(model, Some(version), State::Failed, &format!("load failed: {e}"));
                return Err(e);
            }
        };
        let stats = Arc::new(VersionStats::default());
        let labels_m = Labels { model: model.to_string(), version: version.to_string() };
        let policy = BatchPolicy::new(config.max_batch_size, &config.dynamic_batching);
        let scheduler = Scheduler::start(built.instances, policy, stats.clone(), labels_m);
        // The autoscaling series exists from the first scrape, before any traffic.
        metrics::gauge!(m::INFLIGHT, "model" => model.to_string()).increment(0.0);
        for p in [ProviderKind::Cpu, ProviderKind::Cuda, ProviderKind::Tensorrt] {
            metrics::gauge!(m::PROVIDER, "model" => model.to_string(), "version" => version.to_string(), "provider" => p.as_str())
                .set(if p == built.provider { 1.0 } else { 0.0 });
        }
        tracing::info!(model, version, provider = built.provider.as_str(), threads, instances = config.instance_group.count,
            load_ms = (elapsed * 1000.0) as u64, "version loaded and warmed");
        Ok(Arc::new(ModelVersion {
            name: model.to_string(),
            version,
            config,
            signature: built.signature,
            labels,
            scheduler,
            stats,
            provider: built.provider,
            source,
        }))
    }

    fn publish(&self, model: &str, serving: Option<ServingModel>) {
        self.live.rcu(|snap| {
            let mut next = HashMap::clone(snap);
            match &serving {
                Some(s) => next.insert(model.to_string(), Arc::new(s.clone())),
                None => next.remove(model),
            };
            next
        });
    }

    fn set_state(&self, model: &str, version: Option<u64>, state: State, reason: &str) {
        if let Ok(mut states) = self.states.lock() {
            let old = states.insert((model.to_string(), version), (state, reason.to_string()));
            set_state_metric(model, version, old.map(|o| o.0), state);
        }
    }

    fn model_failed(&self, model: &str, reason: String) {
        tracing::error!(model, %reason, "model configuration rejected");
        metrics::counter!(m::LOAD_FAILURES, "model" => model.to_string()).increment(1);
        self.set_state(model, None, State::Failed, &reason);
    }

    fn clear_model_state(&self, model: &str) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(&(model.to_string(), None));
        }
    }
}

/// A labels file must name every class of the first output, or predictions would come back with empty labels.
fn labels_fit(sig: &Signature, labels: &[String]) -> Result<(), LoadError> {
    let Some(out) = sig.outputs.first() else { return Ok(()) };
    let classes = out.dims.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().map(|d| acc * d));
    match classes {
        Some(n) if !labels.is_empty() && n != labels.len() => Err(LoadError::Mismatch {
            kind: "labels",
            name: out.name.clone(),
            reason: format!("has {} lines but output '{}' has {n} classes", labels.len(), out.name),
        }),
        _ => Ok(()),
    }
}

fn set_state_metric(model: &str, version: Option<u64>, old: Option<State>, new: State) {
    let version = version.map(|v| v.to_string()).unwrap_or_default();
    if let Some(old) = old.filter(|o| o.metric_name() != new.metric_name()) {
        metrics::gauge!(m::MODEL_STATE, "model" => model.to_string(), "version" => version.clone(), "state" => old.metric_name()).set(0.0);
    }
    metrics::gauge!(m::MODEL_STATE, "model" => model.to_string(), "version" => version, "state" => new.metric_name()).set(1.0);
}
