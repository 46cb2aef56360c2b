//! The batching loop, run by every instance on its own thread. A free instance takes the queue (one gatherer at a
//! time), waits for a first request, and gathers more until the row cap, a preferred size, or the end of the wait
//! for company; then it releases the queue and computes, so while it is busy the queue fills and its next batch is
//! as large as the waiting requests allow. An eager policy waits only for requests already being received, and not
//! at all while another instance is free to take them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use super::batch::{compatible, stack, unstack};
use super::{BatchPolicy, Executor, Job, Labels, SchedulerError, Timings};
use crate::observe::metrics as m;
use crate::observe::stats::VersionStats;

pub(super) struct Shared {
    policy: Arc<BatchPolicy>,
    depth: Arc<AtomicUsize>,
    incoming: Arc<AtomicUsize>,
    /// Instances whose thread is running; those not computing are free.
    instances: AtomicUsize,
    computing: AtomicUsize,
    stats: Arc<VersionStats>,
    labels: Labels,
}

/// The queue as the gathering instance sees it: a request that did not fit the last batch starts the next one.
struct Queue {
    rx: Receiver<Job>,
    held: Option<Job>,
}

impl Shared {
    pub(super) fn new(
        policy: Arc<BatchPolicy>,
        depth: Arc<AtomicUsize>,
        incoming: Arc<AtomicUsize>,
        stats: Arc<VersionStats>,
        labels: Labels,
    ) -> Self {
        Self { policy, depth, incoming, instances: AtomicUsize::new(0), computing: AtomicUsize::new(0), stats, labels }
    }

    fn gauge_depth(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        metrics::gauge!(m::QUEUE_DEPTH, "model" => self.labels.model.clone(), "version" => self.labels.version.clone()).set(d as f64);
    }

    fn fail(&self, reason: &'static str) {
        metrics::counter!(m::FAILURES, "model" => self.labels.model.clone(), "version" => self.labels.version.clone(), "reason" => reason)
            .increment(1);
    }

    /// Whether the gathering instance should wait for company rather than run what it has.
    fn worth_waiting(&self) -> bool {
        if !self.policy.eager {
            return true;
        }
        let others_free = self.instances.load(Ordering::Relaxed) > self.computing.load(Ordering::Relaxed) + 1;
        self.incoming.load(Ordering::Relaxed) > 0 && !others_free
    }
}

pub(super) fn spawn<E: Executor>(rx: Receiver<Job>, executors: Vec<E>, shared: Shared) {
    let shared = Arc::new(shared);
    let queue = Arc::new(Mutex::new(Queue { rx, held: None }));
    for (id, exec) in executors.into_iter().enumerate() {
        let (shared2, queue) = (shared.clone(), queue.clone());
        let name = format!("infer-{}-{}", shared.labels.model, id);
        shared.instances.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = std::thread::Builder::new().name(name).spawn(move || worker(exec, &queue, &shared2)) {
            shared.instances.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(model = %shared.labels.model, error = %e, "could not start an instance thread");
        }
    }
}

fn worker<E: Executor>(mut exec: E, queue: &Mutex<Queue>, shared: &Shared) {
    loop {
        let batch = {
            // A panic elsewhere cannot leave the queue inconsistent: it holds only channel ends and one job.
            let mut q = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(first) = next_first(&mut q, shared) else { break };
            let batch = gather(first, &mut q, shared);
            // Busy before the queue is released, so the next gatherer does not count this instance as free.
            shared.computing.fetch_add(1, Ordering::Relaxed);
            batch
        };
        let ready = screen(batch, shared);
        if !ready.is_empty() {
            execute(&mut exec, ready, shared);
        }
        shared.computing.fetch_sub(1, Ordering::Relaxed);
    }
    // The queue is closed and drained; the session is freed with `exec`.
    shared.instances.fetch_sub(1, Ordering::Relaxed);
}

/// Blocks for the request that opens the next batch; `None` once every handle is gone and the queue is empty.
fn next_first(q: &mut Queue, shared: &Shared) -> Option<Job> {
    if let Some(job) = q.held.take() {
        return Some(job);
    }
    let job = q.rx.recv().ok()?;
    shared.depth.fetch_sub(1, Ordering::Relaxed);
    Some(job)
}

/// Collects requests after `first` until the row cap, the largest preferred size, a preferred size with nothing
/// more waiting, or the end of the wait for company. As in Triton, a batch that has formed a preferred size is not
/// carried past the largest one; a batch that never formed one grows to the row cap. A request that does not fit
/// (too many rows, other shapes) is held to start the next batch.
fn gather(first: Job, q: &mut Queue, shared: &Shared) -> Vec<Job> {
    let policy = &shared.policy;
    let largest_preferred = policy.preferred.iter().copied().max();
    let mut rows = first.rows;
    let mut formed_preferred = policy.preferred.contains(&rows);
    let mut batch = vec![first];
    if policy.enabled {
        let deadline = batch[0].enqueued + policy.max_queue_delay;
        while rows < policy.max_batch_rows && Some(rows) != largest_preferred {
            let job = match q.rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    if policy.preferred.contains(&rows) {
                        break;
                    }
                    match wait_for_company(q, shared, deadline) {
                        Some(job) => job,
                        None => break,
                    }
                }
            };
            shared.depth.fetch_sub(1, Ordering::Relaxed);
            let past_preferred = formed_preferred && largest_preferred.is_some_and(|p| rows + job.rows > p);
            if rows + job.rows > policy.max_batch_rows || past_preferred || !compatible(&batch[0].inputs, &job.inputs) {
                q.held = Some(job);
                break;
            }
            rows += job.rows;
            formed_preferred |= policy.preferred.contains(&rows);
            batch.push(job);
        }
    }
    shared.gauge_depth();
    batch
}

/// Waits for the next request until `deadline`, in short slices so that an eager wait also ends when the requests
/// it waits for are withdrawn (refused before reaching the queue) or another instance becomes free.
fn wait_for_company(q: &Queue, shared: &Shared, deadline: Instant) -> Option<Job> {
    const SLICE: Duration = Duration::from_micros(250);
    loop {
        let now = Instant::now();
        if now >= deadline || !shared.worth_waiting() {
            // A request queued just before its announcement ended is still taken.
            return q.rx.try_recv().ok();
        }
        let until = if shared.policy.eager { deadline.min(now + SLICE) } else { deadline };
        match q.rx.recv_deadline(until) {
            Ok(job) => return Some(job),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
    }
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
