//! The per-version scheduler: a bounded queue owned by one background task that forms batches, and a pool of
//! model instances, each on its own OS thread, that run them. Requests carry a oneshot reply channel; a request
//! whose client has gone (its receiver dropped) or whose deadline passed is answered or skipped before compute.
//!
//! Lifetime doubles as draining: when the last `Scheduler` handle is dropped (a version was swapped out and its
//! in-flight requests finished), the queue closes, the batcher runs what is left and exits, and the instances'
//! threads end and free their sessions. Nothing accepted is lost.

mod batch;
mod batcher;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::observe::stats::VersionStats;
use crate::repository::config::DynamicBatching;
use crate::runtime::session::Instance;
use crate::tensor::Tensor;

pub use batch::compatible;

/// Where a model's batches run; `Instance` in production, a plain closure in tests.
pub trait Executor: Send + 'static {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String>;
}

impl Executor for Instance {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        Instance::run(self, inputs).map_err(|e| e.to_string())
    }
}

impl<F: FnMut(Vec<Tensor>) -> Result<Vec<Tensor>, String> + Send + 'static> Executor for F {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        self(inputs)
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SchedulerError {
    #[error("queue is full ({0} requests waiting); retry later")]
    QueueFull(usize),
    #[error("request timed out after waiting {0} ms in the queue")]
    Timeout(u64),
    #[error("model is unloading")]
    Closed,
    #[error("inference failed: {0}")]
    Runtime(String),
}

/// Where a reply's timings come from, for statistics and metrics.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub queue: Duration,
    pub compute: Duration,
    pub batch_rows: usize,
}

pub type Reply = Result<(Vec<Tensor>, Timings), SchedulerError>;

/// One request in the queue.
pub struct Job {
    /// Batch axis first when the model batches.
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    pub enqueued: Instant,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Reply>,
}

/// Settings the batcher needs, resolved from the model configuration.
#[derive(Debug, Clone)]
pub struct BatchPolicy {
    /// 0: the model does not batch; each request runs alone with its own shapes.
    pub max_batch_rows: usize,
    pub enabled: bool,
    pub max_queue_delay: Duration,
    pub preferred: Vec<usize>,
    pub max_queue: usize,
    pub timeout: Duration,
}

impl BatchPolicy {
    pub fn new(max_batch_size: usize, b: &DynamicBatching) -> Self {
        Self {
            max_batch_rows: max_batch_size,
            enabled: b.enabled && max_batch_size > 1,
            max_queue_delay: Duration::from_micros(b.max_queue_delay_us),
            preferred: b.preferred_batch_sizes.clone(),
            max_queue: b.max_queue_size,
            timeout: Duration::from_millis(b.timeout_ms),
        }
    }
}

/// Labels for the metrics this scheduler records.
#[derive(Debug, Clone)]
pub struct Labels {
    pub model: String,
    pub version: String,
}

/// A cheap handle to one version's queue.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Job>,
    depth: Arc<AtomicUsize>,
    policy: Arc<BatchPolicy>,
}

impl Scheduler {
    /// Starts the batcher task and one thread per executor. Must be called inside a tokio runtime.
    pub fn start<E: Executor>(executors: Vec<E>, policy: BatchPolicy, stats: Arc<VersionStats>, labels: Labels) -> Self {
        let (tx, rx) = mpsc::channel(policy.max_queue);
        let depth = Arc::new(AtomicUsize::new(0));
        let policy = Arc::new(policy);
        batcher::spawn(rx, executors, policy.clone(), depth.clone(), stats, labels);
        Self { tx, depth, policy }
    }

    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// Queues `inputs` and waits for the result. Refuses at once when the queue is full.
    pub async fn infer(&self, inputs: Vec<Tensor>, rows: usize) -> Reply {
        let (reply, rx) = oneshot::channel();
        let now = Instant::now();
        let job = Job { inputs, rows, enqueued: now, deadline: now + self.policy.timeout, reply };
        match self.tx.try_send(job) {
            Ok(()) => {
                self.depth.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => return Err(SchedulerError::QueueFull(self.policy.max_queue)),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SchedulerError::Closed),
        }
        rx.await.unwrap_or(Err(SchedulerError::Closed))
    }

    /// Requests waiting for an instance right now.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
