//! The per-version scheduler: a bounded queue of requests and a pool of model instances, each on its own OS thread.
//! A free instance's thread gathers the next batch from the queue itself and runs it, so a finished instance starts
//! on waiting work without a hop through the async runtime (whose threads are busy reading request bodies at
//! saturation). Requests carry a oneshot reply channel; a request whose client has gone (its receiver dropped) or
//! whose deadline passed is answered or skipped before compute.
//!
//! Lifetime doubles as draining: when the last `Scheduler` handle is dropped (a version was swapped out and its
//! in-flight requests finished), the queue closes, the instances run what is left and their threads end and free
//! their sessions. Nothing accepted is lost.

mod batch;
mod batcher;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

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
    /// Wait for company only while a request is being received and no other instance is free.
    pub eager: bool,
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
            eager: b.eager,
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
    tx: crossbeam_channel::Sender<Job>,
    depth: Arc<AtomicUsize>,
    incoming: Arc<AtomicUsize>,
    policy: Arc<BatchPolicy>,
}

/// A request on its way to the queue (its body is being read or decoded). While any exists, an eager batcher waits
/// for it, up to the queue delay; it is withdrawn when the request is queued or fails before that.
pub struct Arrival {
    incoming: Arc<AtomicUsize>,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.incoming.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Scheduler {
    /// Starts one thread per executor.
    pub fn start<E: Executor>(executors: Vec<E>, policy: BatchPolicy, stats: Arc<VersionStats>, labels: Labels) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(policy.max_queue);
        let depth = Arc::new(AtomicUsize::new(0));
        let incoming = Arc::new(AtomicUsize::new(0));
        let policy = Arc::new(policy);
        batcher::spawn(rx, executors, batcher::Shared::new(policy.clone(), depth.clone(), incoming.clone(), stats, labels));
        Self { tx, depth, incoming, policy }
    }

    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// Announces a request that will be queued once its body is read.
    pub fn arriving(&self) -> Arrival {
        self.incoming.fetch_add(1, Ordering::Relaxed);
        Arrival { incoming: self.incoming.clone() }
    }

    /// Queues `inputs` and waits for the result. Refuses at once when the queue is full.
    pub async fn infer(&self, inputs: Vec<Tensor>, rows: usize) -> Reply {
        self.infer_announced(None, inputs, rows).await
    }

    /// `infer` for a request announced with `arriving`: the announcement ends once the request is in the queue.
    pub async fn infer_announced(&self, arrival: Option<Arrival>, inputs: Vec<Tensor>, rows: usize) -> Reply {
        let queued = self.enqueue(inputs, rows);
        drop(arrival);
        queued?.await.unwrap_or(Err(SchedulerError::Closed))
    }

    fn enqueue(&self, inputs: Vec<Tensor>, rows: usize) -> Result<oneshot::Receiver<Reply>, SchedulerError> {
        let (reply, rx) = oneshot::channel();
        let now = Instant::now();
        let job = Job { inputs, rows, enqueued: now, deadline: now + self.policy.timeout, reply };
        // Counted before it is visible, so the instance that takes it never sees the depth go below zero.
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    crossbeam_channel::TrySendError::Full(_) => SchedulerError::QueueFull(self.policy.max_queue),
                    crossbeam_channel::TrySendError::Disconnected(_) => SchedulerError::Closed,
                })
            }
        }
    }

    /// Requests waiting for an instance right now.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
