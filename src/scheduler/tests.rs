//! Batching semantics, made deterministic by an executor that blocks on a gate: while the only instance is held,
//! requests pile up in the queue, and what the executor sees after release is fully determined.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::tensor::TensorData;

struct Gate {
    open: std::sync::mpsc::Receiver<()>,
    seen: Arc<Mutex<Vec<usize>>>,
}

/// An executor that waits for one `()` per batch, records the batch's rows, and doubles the input;
/// an input containing 666 fails its batch.
fn gated() -> (impl Executor, std::sync::mpsc::Sender<()>, Arc<Mutex<Vec<usize>>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate { open: rx, seen: seen.clone() };
    let exec = move |inputs: Vec<Tensor>| {
        let _ = gate.open.recv();
        let t = &inputs[0];
        gate.seen.lock().unwrap().push(t.shape[0] as usize);
        match &t.data {
            TensorData::Fp32(v) if v.contains(&666.0) => Err("poisoned batch".to_string()),
            TensorData::Fp32(v) => Ok(vec![Tensor { name: "y".into(), shape: t.shape.clone(), data: TensorData::Fp32(v.iter().map(|x| x * 2.0).collect()) }]),
            _ => Err("unexpected type".into()),
        }
    };
    (exec, tx, seen)
}

fn policy(max_rows: usize, max_queue: usize) -> BatchPolicy {
    BatchPolicy {
        max_batch_rows: max_rows,
        enabled: true,
        max_queue_delay: Duration::from_millis(1),
        eager: false,
        preferred: vec![],
        max_queue: max_queue,
        timeout: Duration::from_secs(30),
    }
}

fn input(rows: usize, width: usize, value: f32) -> Vec<Tensor> {
    vec![Tensor { name: "x".into(), shape: vec![rows as i64, width as i64], data: TensorData::Fp32(vec![value; rows * width]) }]
}

fn labels() -> Labels {
    Labels { model: "test".into(), version: "1".into() }
}

fn start(p: BatchPolicy) -> (Scheduler, std::sync::mpsc::Sender<()>, Arc<Mutex<Vec<usize>>>) {
    let (exec, gate, seen) = gated();
    (Scheduler::start(vec![exec], p, Arc::new(VersionStats::default()), labels()), gate, seen)
}

/// Waits until the scheduler has `n` requests queued (the batcher has taken the first one already).
async fn until_depth(s: &Scheduler, n: usize) {
    for _ in 0..2000 {
        if s.queue_depth() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("queue never reached {n}");
}

fn spawn_infer(s: &Scheduler, rows: usize, width: usize, value: f32) -> tokio::task::JoinHandle<Reply> {
    let s = s.clone();
    tokio::spawn(async move { s.infer(input(rows, width, value), rows).await })
}

#[tokio::test]
async fn batches_up_to_the_row_cap() {
    let (s, gate, seen) = start(policy(4, 64));
    let first = spawn_infer(&s, 1, 2, 1.0);
    until_depth(&s, 0).await;
    tokio::time::sleep(Duration::from_millis(20)).await; // the first batch is now inside the executor
    let rest: Vec<_> = (0..6).map(|i| spawn_infer(&s, 1, 2, i as f32)).collect();
    until_depth(&s, 6).await;
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    assert!(first.await.unwrap().is_ok());
    for (i, h) in rest.into_iter().enumerate() {
        let (out, t) = h.await.unwrap().unwrap();
        assert_eq!(out[0].data, TensorData::Fp32(vec![i as f32 * 2.0; 2]), "each request gets its own rows back");
        assert!(t.batch_rows <= 4);
    }
    assert_eq!(*seen.lock().unwrap(), vec![1, 4, 2]);
}

#[tokio::test]
async fn waits_for_company_then_closes_at_the_cap() {
    let mut p = policy(2, 64);
    p.max_queue_delay = Duration::from_secs(60);
    let (s, gate, seen) = start(p);
    let a = spawn_infer(&s, 1, 2, 1.0);
    let b = spawn_infer(&s, 1, 2, 2.0);
    gate.send(()).unwrap();
    // With a 60 s delay, the only way both finish is one batch of 2 closed by the cap.
    assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
    assert_eq!(*seen.lock().unwrap(), vec![2]);
}

/// Holds the only instance with one request, queues `rows` (one request each, in order), then releases every batch.
async fn batches_after_busy(p: BatchPolicy, rows: &[usize]) -> Vec<usize> {
    let (s, gate, seen) = start(p);
    let busy = spawn_infer(&s, 1, 2, 1.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut queued = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        queued.push(spawn_infer(&s, r, 2, 1.0));
        until_depth(&s, i + 1).await;
    }
    for _ in 0..=rows.len() {
        let _ = gate.send(());
    }
    assert!(busy.await.unwrap().is_ok());
    for q in queued {
        assert!(q.await.unwrap().is_ok());
    }
    let seen = seen.lock().unwrap().clone();
    seen
}

#[tokio::test]
async fn the_largest_preferred_size_caps_a_batch_when_more_wait() {
    let mut p = policy(8, 64);
    p.preferred = vec![2, 3];
    assert_eq!(batches_after_busy(p, &[1; 7]).await, vec![1, 3, 3, 1]);
}

#[tokio::test]
async fn a_preferred_size_with_nothing_waiting_closes_the_batch_at_once() {
    let mut p = policy(8, 64);
    p.preferred = vec![1, 2, 4];
    p.max_queue_delay = Duration::from_secs(60);
    // With a 60 s delay, the batches of 1 and 2 run only because those sizes are preferred.
    assert_eq!(batches_after_busy(p, &[1, 1]).await, vec![1, 2]);
}

#[tokio::test]
async fn a_batch_that_never_forms_a_preferred_size_grows_to_the_cap() {
    let mut p = policy(8, 64);
    p.preferred = vec![4];
    // 3 + 3 skips 4, so no preferred size can be formed: the batch takes what fits under the cap (6), as Triton's does.
    assert_eq!(batches_after_busy(p.clone(), &[3, 3, 3]).await, vec![1, 6, 3]);
    // Once 4 is formed, a request that would carry the batch past it starts the next one.
    assert_eq!(batches_after_busy(p, &[2, 2, 1]).await, vec![1, 4, 1]);
}

#[tokio::test]
async fn queue_full_is_refused_at_once() {
    let (s, gate, _) = start(policy(1, 2));
    let busy = spawn_infer(&s, 1, 2, 1.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waiting: Vec<_> = (0..2).map(|_| spawn_infer(&s, 1, 2, 1.0)).collect();
    until_depth(&s, 2).await;
    assert_eq!(s.infer(input(1, 2, 1.0), 1).await.unwrap_err(), SchedulerError::QueueFull(2));
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    assert!(busy.await.unwrap().is_ok());
    for w in waiting {
        assert!(w.await.unwrap().is_ok(), "accepted requests are not lost");
    }
}

#[tokio::test]
async fn deadline_passed_is_answered_without_compute() {
    let mut p = policy(1, 8);
    p.timeout = Duration::from_millis(5);
    let (s, gate, seen) = start(p);
    let busy = spawn_infer(&s, 1, 2, 1.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = spawn_infer(&s, 1, 2, 1.0);
    until_depth(&s, 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    gate.send(()).unwrap();
    assert!(busy.await.unwrap().is_ok());
    assert!(matches!(late.await.unwrap(), Err(SchedulerError::Timeout(_))));
    assert_eq!(*seen.lock().unwrap(), vec![1], "the late request never reached the executor");
}

#[tokio::test]
async fn gone_clients_are_skipped_before_compute() {
    let (s, gate, seen) = start(policy(8, 8));
    let busy = spawn_infer(&s, 1, 2, 1.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gone = spawn_infer(&s, 3, 2, 1.0);
    let kept = spawn_infer(&s, 2, 2, 1.0);
    until_depth(&s, 2).await;
    gone.abort();
    let _ = gone.await;
    gate.send(()).unwrap();
    gate.send(()).unwrap();
    assert!(busy.await.unwrap().is_ok());
    assert!(kept.await.unwrap().is_ok());
    assert_eq!(*seen.lock().unwrap(), vec![1, 2], "the 3-row request of the gone client was not computed");
}

#[tokio::test]
async fn mismatched_shapes_run_in_separate_batches() {
    let (s, gate, seen) = start(policy(8, 8));
    let busy = spawn_infer(&s, 1, 2, 1.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let wide = spawn_infer(&s, 1, 3, 1.0);
    until_depth(&s, 1).await;
    let narrow = spawn_infer(&s, 1, 2, 1.0);
    until_depth(&s, 2).await;
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    assert!(busy.await.unwrap().is_ok());
    assert_eq!(wide.await.unwrap().unwrap().0[0].shape, vec![1, 3]);
    assert_eq!(narrow.await.unwrap().unwrap().0[0].shape, vec![1, 2]);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_failed_batch_fails_only_its_requests() {
    let (s, gate, _) = start(policy(2, 8));
    let busy = spawn_infer(&s, 1, 2, 1.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let poisoned = spawn_infer(&s, 1, 2, 666.0);
    until_depth(&s, 1).await;
    let neighbour = spawn_infer(&s, 1, 2, 3.0);
    until_depth(&s, 2).await;
    let later = spawn_infer(&s, 2, 2, 4.0);
    until_depth(&s, 3).await;
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    assert!(busy.await.unwrap().is_ok());
    assert_eq!(poisoned.await.unwrap().unwrap_err(), SchedulerError::Runtime("poisoned batch".into()));
    assert!(neighbour.await.unwrap().is_err(), "same batch as the poisoned request");
    assert_eq!(later.await.unwrap().unwrap().0[0].data, TensorData::Fp32(vec![8.0; 4]), "next batch unaffected");
}

#[tokio::test]
async fn dropping_the_handle_drains_the_queue() {
    let (s, gate, _) = start(policy(1, 8));
    let handles: Vec<_> = (0..3).map(|i| spawn_infer(&s, 1, 2, i as f32)).collect();
    until_depth(&s, 2).await;
    drop(s);
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    for h in handles {
        assert!(h.await.unwrap().is_ok(), "queued work completes after the last handle is gone");
    }
}

/// An eager policy with a delay no test could sit out: any wait for company would hang the test.
fn eager(max_rows: usize) -> BatchPolicy {
    BatchPolicy { eager: true, max_queue_delay: Duration::from_secs(3600), ..policy(max_rows, 8) }
}

#[tokio::test]
async fn eager_runs_a_lone_request_without_waiting() {
    let (s, gate, seen) = start(eager(8));
    gate.send(()).unwrap();
    assert!(s.infer(input(1, 2, 1.0), 1).await.is_ok());
    assert_eq!(*seen.lock().unwrap(), vec![1]);
}

#[tokio::test]
async fn eager_waits_for_a_request_being_received() {
    let (s, gate, seen) = start(eager(2));
    let arrival = s.arriving();
    let first = spawn_infer(&s, 1, 2, 1.0);
    until_depth(&s, 0).await;
    tokio::time::sleep(Duration::from_millis(20)).await; // the first request is now waiting for the announced one
    gate.send(()).unwrap();
    let second = s.infer_announced(Some(arrival), input(1, 2, 2.0), 1).await;
    assert!(second.is_ok() && first.await.unwrap().is_ok());
    assert_eq!(*seen.lock().unwrap(), vec![2], "one batch: the first request waited for the second");
}

#[tokio::test]
async fn eager_hands_work_to_a_free_instance_instead_of_waiting() {
    let (a, gate_a, seen_a) = gated();
    let (b, gate_b, seen_b) = gated();
    let s = Scheduler::start(vec![a, b], eager(8), Arc::new(VersionStats::default()), labels());
    let _arrival = s.arriving(); // would make a lone instance wait
    gate_a.send(()).unwrap();
    gate_b.send(()).unwrap();
    assert!(s.infer(input(1, 2, 1.0), 1).await.is_ok());
    let ran: Vec<usize> = seen_a.lock().unwrap().iter().chain(seen_b.lock().unwrap().iter()).copied().collect();
    assert_eq!(ran, vec![1]);
}

#[tokio::test]
async fn a_withdrawn_arrival_ends_the_wait() {
    let (s, gate, seen) = start(eager(8));
    let arrival = s.arriving();
    gate.send(()).unwrap();
    let first = spawn_infer(&s, 1, 2, 1.0);
    until_depth(&s, 0).await;
    tokio::time::sleep(Duration::from_millis(20)).await; // the first request is now waiting for the announced one
    drop(arrival); // which failed before it was queued (a 400, say)
    assert!(first.await.unwrap().is_ok());
    assert_eq!(*seen.lock().unwrap(), vec![1]);
}
