//! The throughput ceiling the server is measured against: the same model, loaded through the same `Instance`
//! code with the same `[execution]` settings and thread split as the server would use, run in-process with no
//! HTTP, no queue and no batching logic in between. `loadtest/bench.py` divides the server's numbers by these.
//!
//! Prints one JSON line per batch size: {"batch", "images_per_s", "p50_ms", "p99_ms", ...}.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use oxinfer::repository::config::ModelConfig;
use oxinfer::runtime::session::Instance;
use oxinfer::tensor::{element_count, Tensor, TensorData};

#[derive(Parser)]
#[command(about = "Raw ONNX Runtime throughput for one model folder, with the server's settings")]
struct Args {
    /// Model folder holding config.toml and numeric version folders.
    #[arg(long, default_value = "model-repo/efficientnet_lite0")]
    model_dir: PathBuf,
    /// Path to libonnxruntime.so.<version> (absent: ORT_DYLIB_PATH).
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// Seconds of timed runs per batch size.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Batch sizes, comma separated.
    #[arg(long, default_value = "1,4,8,16,32", value_delimiter = ',')]
    batches: Vec<usize>,
    /// Total intra-op threads, as the server's --intra-op-threads (0: the model's setting, else the CPU quota).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Sessions run side by side, each on its own thread (0: the model's instance_group.count).
    #[arg(long, default_value_t = 0)]
    instances: usize,
    /// Idle milliseconds between runs, as a server at low load has between requests (ONNX Runtime's thread pool
    /// stops spinning and sleeps when idle, and waking it costs time); 0 runs back to back.
    #[arg(long, default_value_t = 0.0)]
    gap_ms: f64,
    /// One row of the first input as raw little-endian FP32 (what `oxinfer preprocess` writes), repeated for every
    /// row of a batch, so the ceiling computes on the same numbers as the server. Absent: deterministic noise.
    #[arg(long)]
    tensor: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    oxinfer::runtime::init(args.ort_library.as_deref().unwrap_or(Path::new("")))?;
    let config = ModelConfig::load(&args.model_dir)?;
    let (version, model) = oxinfer::repository::scan::versions(&args.model_dir)
        .into_iter()
        .next_back()
        .ok_or_else(|| anyhow::anyhow!("{}: no numeric version folder with a model.onnx", args.model_dir.display()))?;

    // The same arithmetic as the registry: model setting, else server default (CPU quota), split among instances.
    let instances = if args.instances > 0 { args.instances } else { config.instance_group.count };
    let total = match (args.threads, config.execution.intra_op_threads) {
        (t, _) if t > 0 => t,
        (_, t) if t > 0 => t,
        _ => oxinfer::cgroup::available_cpus(),
    };
    let per_instance = (total / instances).max(1);

    let mut sessions = Vec::with_capacity(instances);
    let mut input_spec = None;
    for _ in 0..instances {
        let (inst, graph) = Instance::load(&model, &config.execution, per_instance)?;
        input_spec.get_or_insert(graph.inputs);
        sessions.push(inst);
    }
    let inputs = input_spec.unwrap_or_default();
    eprintln!(
        "ceiling: {} version {version}, {instances} instance(s) x {per_instance} intra-op thread(s), {:.1} s per batch size",
        args.model_dir.display(),
        args.seconds
    );

    for &batch in &args.batches {
        let mut feed = make_inputs(&inputs, batch);
        if let Some(path) = &args.tensor {
            use_tensor(&mut feed, path)?;
        }
        let gap = Duration::from_secs_f64(args.gap_ms / 1e3);
        let line = measure(&mut sessions, &feed, batch, Duration::from_secs_f64(args.seconds), gap)?;
        println!("{}", serde_json::json!({
            "batch": batch,
            "images_per_s": line.images_per_s,
            "p50_ms": line.p50_ms,
            "p99_ms": line.p99_ms,
            "runs": line.runs,
            "instances": instances,
            "threads_per_instance": per_instance,
            "gap_ms": args.gap_ms,
            "model": model_name(&args.model_dir),
            "version": version,
        }));
    }
    Ok(())
}

fn model_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Deterministic values in [-1, 1): zeros could take faster paths (and denormal-free shortcuts) than real data.
fn make_inputs(graph: &[oxinfer::runtime::GraphTensor], batch: usize) -> Vec<Tensor> {
    let mut seed: u32 = 0x9e37_79b9;
    graph
        .iter()
        .map(|g| {
            let shape: Vec<i64> =
                g.shape.iter().enumerate().map(|(i, &d)| if i == 0 { batch as i64 } else { d.max(1) }).collect();
            let n = element_count(&shape).unwrap_or(0);
            let data = match g.datatype {
                oxinfer::tensor::DataType::Fp32 => TensorData::Fp32(
                    (0..n)
                        .map(|_| {
                            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
                        })
                        .collect(),
                ),
                other => TensorData::zeros(other, n),
            };
            Tensor { name: g.name.clone(), shape, data }
        })
        .collect()
}

/// Replaces the first input's data with the row in `path`, repeated along the batch axis.
fn use_tensor(feed: &mut [Tensor], path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)?;
    let first = feed.first_mut().ok_or_else(|| anyhow::anyhow!("the model has no inputs"))?;
    let TensorData::Fp32(data) = &mut first.data else { anyhow::bail!("--tensor needs an FP32 first input") };
    let row: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    anyhow::ensure!(
        bytes.len() % 4 == 0 && !row.is_empty() && data.len() % row.len() == 0,
        "{}: {} bytes is not one row of the input ({} values per batch)",
        path.display(),
        bytes.len(),
        data.len()
    );
    for chunk in data.chunks_exact_mut(row.len()) {
        chunk.copy_from_slice(&row);
    }
    Ok(())
}

struct Line {
    images_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    runs: usize,
}

/// Runs every session in a loop on its own thread for `span`; throughput is over wall time (gaps included),
/// latency per run.
/// The input copy `run` consumes is made outside the timed call, as the server makes it while parsing.
fn measure(sessions: &mut [Instance], feed: &[Tensor], batch: usize, span: Duration, gap: Duration) -> anyhow::Result<Line> {
    for s in sessions.iter_mut() {
        for _ in 0..3 {
            s.run(feed.to_vec())?;
        }
    }
    let started = Instant::now();
    let results: Vec<anyhow::Result<Vec<f64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .map(|s| {
                scope.spawn(move || -> anyhow::Result<Vec<f64>> {
                    let mut lat = Vec::new();
                    while started.elapsed() < span {
                        let input = feed.to_vec();
                        let t0 = Instant::now();
                        s.run(input)?;
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                        if !gap.is_zero() {
                            std::thread::sleep(gap);
                        }
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("run thread panicked")))).collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for r in results {
        lat.extend(r?);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    Ok(Line { images_per_s: (lat.len() * batch) as f64 / wall, p50_ms: pct(0.50), p99_ms: pct(0.99), runs: lat.len() })
}
