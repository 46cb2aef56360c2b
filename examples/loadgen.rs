//! The benchmark's client: a closed loop of N threads, each with one keep-alive HTTP/1.1 connection, sending one
//! pre-built request back to back. It is native because on a small machine every cycle the client burns is taken
//! from the server it measures: this one spends tens of microseconds of CPU per request, where an interpreted
//! client spends hundreds. `loadtest/bench.py` drives it.
//!
//! Protocol with the driver, on stdout: `window-start` when the measured window opens (after the warm-up),
//! `window-end` when it closes, then one JSON line summarising the responses that completed inside the window.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(about = "Closed-loop HTTP/1.1 load: N connections sending one request back to back")]
struct Args {
    /// Server address, host:port.
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long)]
    path: String,
    /// File holding the request body.
    #[arg(long)]
    body: PathBuf,
    /// Extra request header, "Name: value"; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds of load before the window opens.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds in the window.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
}

/// One response: when it was sent and received, relative to the run's start, and its status.
struct Sample {
    start: Duration,
    end: Duration,
    status: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = std::fs::read(&args.body)?;
    let mut request = format!("POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", args.path, args.addr, body.len());
    for h in &args.headers {
        request.push_str(h.trim());
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);
    let request = Arc::new(request);

    let warmup = Duration::from_secs_f64(args.warmup);
    let window = Duration::from_secs_f64(args.duration);
    // Every connection is open before the clock starts, so connection set-up is never measured.
    // Two barriers: every worker has connected, then (once the start time is set) every worker goes.
    let connected = Arc::new(Barrier::new(args.concurrency + 1));
    let go = Arc::new(Barrier::new(args.concurrency + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (request, connected, go, start, addr) =
                (request.clone(), connected.clone(), go.clone(), start.clone(), args.addr);
            std::thread::spawn(move || -> anyhow::Result<Vec<Sample>> {
                let stream = TcpStream::connect(addr);
                connected.wait();
                go.wait();
                let stream = stream?;
                stream.set_nodelay(true)?;
                let t0 = *start.get().ok_or_else(|| anyhow::anyhow!("start time not set"))?;
                run(stream, &request, t0, warmup + window)
            })
        })
        .collect();
    connected.wait();
    let t0 = Instant::now();
    let _ = start.set(t0);
    go.wait();

    let mut out = std::io::stdout().lock();
    sleep_until(t0 + warmup);
    writeln!(out, "window-start")?;
    out.flush()?;
    sleep_until(t0 + warmup + window);
    writeln!(out, "window-end")?;
    out.flush()?;

    let mut inside = Vec::new();
    let (mut errors, mut failures) = (0usize, Vec::new());
    for w in workers {
        match w.join() {
            Ok(Ok(samples)) => inside.extend(samples.into_iter().filter(|s| s.end >= warmup && s.end <= warmup + window)),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("worker thread panicked".into()),
        }
    }
    let mut lat: Vec<f64> = Vec::with_capacity(inside.len());
    for s in &inside {
        if s.status == 200 {
            lat.push((s.end - s.start).as_secs_f64() * 1e3);
        } else {
            errors += 1;
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize).copied();
    let mean = if lat.is_empty() { None } else { Some(lat.iter().sum::<f64>() / lat.len() as f64) };
    let statuses: std::collections::BTreeMap<String, usize> = inside.iter().fold(Default::default(), |mut m, s| {
        *m.entry(s.status.to_string()).or_default() += 1;
        m
    });
    writeln!(
        out,
        "{}",
        serde_json::json!({
            "requests": lat.len(),
            "errors": errors,
            "statuses": statuses,
            "window_s": window.as_secs_f64(),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "mean_ms": mean,
            "failures": failures,
        })
    )?;
    Ok(())
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Sends `request` back to back on `stream` until `stop` after `t0`; a connection error ends this worker.
fn run(stream: TcpStream, request: &[u8], t0: Instant, stop: Duration) -> anyhow::Result<Vec<Sample>> {
    let mut writer = stream.try_clone()?;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, stream);
    let mut samples = Vec::new();
    let mut head = Vec::with_capacity(1024);
    let mut sink = vec![0u8; 64 * 1024];
    while t0.elapsed() < stop {
        let sent = t0.elapsed();
        writer.write_all(request)?;
        let (status, length) = read_head(&mut reader, &mut head)?;
        let mut left = length;
        while left > 0 {
            let take = left.min(sink.len());
            let n = reader.read(&mut sink[..take])?;
            anyhow::ensure!(n > 0, "connection closed inside a response body");
            left -= n;
        }
        samples.push(Sample { start: sent, end: t0.elapsed(), status });
    }
    Ok(samples)
}

/// Reads one response head and returns its status and Content-Length (responses here always carry one).
fn read_head(reader: &mut impl BufRead, head: &mut Vec<u8>) -> anyhow::Result<(u16, usize)> {
    head.clear();
    loop {
        let n = reader.read_until(b'\n', head)?;
        anyhow::ensure!(n > 0, "connection closed before a response");
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    anyhow::ensure!(res.parse(head)?.is_complete(), "incomplete response head");
    let status = res.code.unwrap_or(0);
    let mut length = None;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            anyhow::bail!("chunked responses are not supported by this client");
        }
    }
    Ok((status, length.ok_or_else(|| anyhow::anyhow!("response without Content-Length"))?))
}
