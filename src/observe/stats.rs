//! Per-version counters for Triton's statistics extension (`/v2/models/.../stats`), which perf_analyzer reads to
//! split latency into queue and compute. Atomics, because they are bumped on every request from many threads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// A `{count, ns}` pair.
#[derive(Default)]
pub struct Duration2 {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Duration2 {
    pub fn add(&self, count: u64, d: Duration) {
        self.count.fetch_add(count, Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    fn json(&self) -> Value {
        json!({"count": self.count.load(Relaxed), "ns": self.ns.load(Relaxed)})
    }
}

#[derive(Default)]
pub struct VersionStats {
    pub success: Duration2,
    pub fail: Duration2,
    pub queue: Duration2,
    pub compute_input: Duration2,
    pub compute_infer: Duration2,
    pub compute_output: Duration2,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    /// Per batch size: (executions, input ns, infer ns, output ns).
    batches: Mutex<std::collections::BTreeMap<usize, [u64; 4]>>,
}

impl VersionStats {
    /// Records one executed batch of `rows` rows serving `requests` requests.
    pub fn execution(&self, rows: usize, input: Duration, infer: Duration, output: Duration) {
        self.execution_count.fetch_add(1, Relaxed);
        self.inference_count.fetch_add(rows as u64, Relaxed);
        self.compute_input.add(1, input);
        self.compute_infer.add(1, infer);
        self.compute_output.add(1, output);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.last_inference_ms.store(now, Relaxed);
        if let Ok(mut b) = self.batches.lock() {
            let e = b.entry(rows).or_insert([0; 4]);
            e[0] += 1;
            e[1] += input.as_nanos() as u64;
            e[2] += infer.as_nanos() as u64;
            e[3] += output.as_nanos() as u64;
        }
    }

    pub fn to_json(&self, name: &str, version: u64) -> Value {
        let zero = json!({"count": 0, "ns": 0});
        let batch_stats: Vec<Value> = self
            .batches
            .lock()
            .map(|b| {
                b.iter()
                    .map(|(size, [n, i, c, o])| {
                        json!({"batch_size": size,
                               "compute_input": {"count": n, "ns": i},
                               "compute_infer": {"count": n, "ns": c},
                               "compute_output": {"count": n, "ns": o}})
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "name": name,
            "version": version.to_string(),
            "last_inference": self.last_inference_ms.load(Relaxed),
            "inference_count": self.inference_count.load(Relaxed),
            "execution_count": self.execution_count.load(Relaxed),
            "inference_stats": {
                "success": self.success.json(),
                "fail": self.fail.json(),
                "queue": self.queue.json(),
                "compute_input": self.compute_input.json(),
                "compute_infer": self.compute_infer.json(),
                "compute_output": self.compute_output.json(),
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "response_stats": {},
            "batch_stats": batch_stats,
            "memory_usage": [],
        })
    }
}
