//! The batching loop. It waits for a free instance first and only then gathers requests, so that while every
//! instance is busy the queue fills and the next batch is as large as the waiting requests allow, without adding
//! delay at low load beyond `max_queue_delay`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::batch::{compatible, stack, unstack};
use super::{BatchPolicy, Executor, Job, Labels, SchedulerError, Timings};
use crate::observe::metrics as m;
use crate::observe::stats::VersionStats;

struct Shared {
    policy: Arc<BatchPolicy>,
    depth: Arc<AtomicUsize>,
    stats: Arc<VersionStats>,
    labels: Labels,
}

impl Shared {
    fn gauge_depth(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        metrics::gauge!(m::QUEUE_DEPTH, "model" => self.labels.model.clone(), "version" => self.labels.version.clone()).set(d as f64);
    }

    fn fail(&self, reason: &'static str) {
        metrics::counter!(m::FAILURES, "model" => self.labels.model.clone(), "version" => self.labels.version.clone(), "reason" => reason)
            .increment(1);
    }
}

pub(super) fn spawn<E: Executor>(
    rx: mpsc::Receiver<Job>,
    executors: Vec<E>,
    policy: Arc<BatchPolicy>,
    depth: Arc<AtomicUsize>,
    stats: Arc<VersionStats>,
    labels: Labels,
) {
    let shared = Arc::new(Shared { policy, depth, stats, labels });
    let (idle_tx, idle_rx) = mpsc::unbounded_channel::<usize>();
    let mut workers = Vec::with_capacity(executors.len());
    for (id, exec) in executors.into_iter().enumerate() {
        let (work_tx, work_rx) = std::sync::mpsc::channel::<Vec<Job>>();
        let idle = idle_tx.clone();
        let shared = shared.clone();
        let name = format!("infer-{}-{}", shared.labels.model, id);
        let spawned = std::thread::Builder::new().name(name).spawn(move || worker(exec, work_rx, idle, id, shared));
        if spawned.is_ok() {
            let _ = idle_tx.send(id);
            workers.push(work_tx);
        }
    }
    drop(idle_tx);
    tokio::spawn(run(rx, idle_rx, workers, shared));
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    mut idle: mpsc::UnboundedReceiver<usize>,
    workers: Vec<std::sync::mpsc::Sender<Vec<Job>>>,
    shared: Arc<Shared>,
) {
    let mut held: Option<Job> = None;
    loop {
        let Some(worker) = idle.recv().await else { break };
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => {
                    shared.depth.fetch_sub(1, Ordering::Relaxed);
                    job
                }
                None => break,
            },
        };
        let (batch, next) = gather(first, &mut rx, &shared).await;
        held = next;
        let ready = screen(batch, &shared);
        if ready.is_empty() {
            // Give the instance back: nothing in this batch needs compute.
            let _ = workers[worker].send(Vec::new());
            continue;
        }
        if let Err(std::sync::mpsc::SendError(jobs)) = workers[worker].send(ready) {
            jobs.into_iter().for_each(|j| {
                let _ = j.reply.send(Err(SchedulerError::Closed));
            });
        }
    }
    // The queue is closed and drained; dropping `workers` ends the instance threads.
    if let Some(job) = held {
        let _ = job.reply.send(Err(SchedulerError::Closed));
    }
}

/// Collects requests after `first` until the row cap, a preferred size with nothing more waiting, or the queue
/// delay runs out. A request that does not fit (too many rows, other shapes) is returned to start the next batch.
async fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, shared: &Shared) -> (Vec<Job>, Option<Job>) {
    let policy = &shared.policy;
    let mut rows = first.rows;
    let mut batch = vec![first];
    if !policy.enabled {
        shared.gauge_depth();
        return (batch, None);
    }
    let deadline = tokio::time::Instant::from_std(batch[0].enqueued + policy.max_queue_delay);
    loop {
        if rows >= policy.max_batch_rows {
            break;
        }
        let next = match rx.try_recv() {
            Ok(job) => Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => {
                if policy.preferred.contains(&rows) {
                    break;
                }
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(job) => job,
                    Err(_) => None,
                }
            }
        };
        let Some(job) = next else { break };
        shared.depth.fetch_sub(1, Ordering::Relaxed);
        if rows + job.rows > policy.max_batch_rows || !compatible(&batch[0].inputs, &job.inputs) {
            shared.gauge_depth();
            return (batch, Some(job));
        }
        rows += job.rows;
        batch.push(job);
    }
    shared.gauge_depth();
    (batch, None)
}

/// Answers requests that must not reach compute: the client has gone, or the deadline passed.
fn screen(batch: Vec<Job>, shared: &Shared) -> Vec<Job> {
    let now = Instant::now();
    batch
        .into_iter()
        .filter_map(|job| {
            if job.reply.is_closed() {
                shared.fail("cancelled");
                return None;
            }
            if now > job.deadline {
                let waited = now.duration_since(job.enqueued).as_millis() as u64;
                shared.fail("timeout");
                let _ = job.reply.send(Err(SchedulerError::Timeout(waited)));
                return None;
            }
            Some(job)
        })
        .collect()
}

fn worker<E: Executor>(
    mut exec: E,
    work: std::sync::mpsc::Receiver<Vec<Job>>,
    idle: mpsc::UnboundedSender<usize>,
    id: usize,
    shared: Arc<Shared>,
) {
    while let Ok(jobs) = work.recv() {
        if !jobs.is_empty() {
            execute(&mut exec, jobs, &shared);
        }
        if idle.send(id).is_err() {
            break;
        }
    }
}

fn execute<E: Executor>(exec: &mut E, jobs: Vec<Job>, shared: &Shared) {
    let start = Instant::now();
    let rows: Vec<usize> = jobs.iter().map(|j| j.rows).collect();
    let total: usize = rows.iter().sum();
    let (inputs, meta): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.inputs, (j.enqueued, j.reply))).unzip();
    let stacked = stack(inputs);
    let infer_start = Instant::now();
    let result = exec.run(stacked);
    let infer_end = Instant::now();
    let compute = infer_end.duration_since(start);

    let (model, version) = (shared.labels.model.clone(), shared.labels.version.clone());
    metrics::histogram!(m::COMPUTE_DURATION, "model" => model.clone(), "version" => version.clone()).record(compute.as_secs_f64());
    metrics::histogram!(m::BATCH_SIZE, "model" => model, "version" => version).record(total as f64);

    match result {
        Ok(outputs) => {
            let split = unstack(outputs, &rows);
            let output_time = infer_end.elapsed();
            shared.stats.execution(total, infer_start.duration_since(start), infer_end.duration_since(infer_start), output_time);
            for ((enqueued, reply), outs) in meta.into_iter().zip(split) {
                let queue = start.duration_since(enqueued);
                record_queue(shared, queue);
                let _ = reply.send(Ok((outs, Timings { queue, compute, batch_rows: total })));
            }
        }
        Err(e) => {
            // Only this batch's requests see the failure; the instance stays in service.
            tracing::warn!(model = %shared.labels.model, error = %e, rows = total, "batch failed");
            for (enqueued, reply) in meta {
                record_queue(shared, start.duration_since(enqueued));
                shared.fail("runtime");
                let _ = reply.send(Err(SchedulerError::Runtime(e.clone())));
            }
        }
    }
}

fn record_queue(shared: &Shared, queue: Duration) {
    shared.stats.queue.add(1, queue);
    metrics::histogram!(m::QUEUE_DURATION, "model" => shared.labels.model.clone(), "version" => shared.labels.version.clone())
        .record(queue.as_secs_f64());
}
