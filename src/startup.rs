//! Building and running the server from settings: ONNX Runtime, the repository, the HTTP server, the poll task,
//! and the drain on SIGTERM. Tests call `Application::build` with port 0 to get a real server on a free port.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

use crate::http::{routes, AppState};
use crate::repository::{watch, Registry};
use crate::settings::{ControlMode, Settings};

pub struct Application {
    server: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    port: u16,
    registry: Arc<Registry>,
    shutdown: Duration,
}

impl Application {
    /// Loads ONNX Runtime and every model, then binds. Returns once the server is ready to accept traffic.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let started = Instant::now();
        crate::observe::process::mark_start();
        crate::runtime::init(&settings.ort_library)?;
        let metrics = crate::observe::metrics::install();
        let cpus = crate::cgroup::available_cpus();
        let threads = if settings.intra_op_threads > 0 { settings.intra_op_threads } else { cpus };
        let registry = Registry::new(settings.model_repository.clone(), threads);

        // Bind before loading so that liveness answers (and readiness says 503) while models load.
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();
        let workers = if settings.http_workers > 0 { settings.http_workers } else { cpus };
        let settings = Arc::new(settings);
        let state = web::Data::new(AppState::new(registry.clone(), settings.clone(), metrics));
        let server = HttpServer::new(move || {
            // Responses are compressed only on the infer routes, as Triton does: clients decompress only those.
            App::new().app_data(state.clone()).configure(routes)
        })
        .workers(workers)
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs)
        .listen(listener)?
        .run();
        // Serve while the models load: liveness answers and readiness says 503 until they are warm.
        let handle = server.handle();
        let task = tokio::spawn(server);

        for e in registry.load_all().await {
            tracing::error!(error = %e, "model failed to load at start-up");
        }
        if settings.model_control_mode == ControlMode::Poll {
            let interval = Duration::from_secs(settings.poll_interval_secs);
            let settle = Duration::from_millis(settings.poll_settle_ms);
            tokio::spawn(watch::poll(registry.clone(), interval, settle));
        }
        tracing::info!(port, ready = registry.ready(), startup_ms = started.elapsed().as_millis() as u64, cpus, threads, workers,
            mode = ?settings.model_control_mode, "server started");
        Ok(Self { server: handle, task, port, registry, shutdown: Duration::from_secs(settings.shutdown_timeout_secs) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C, then drains: readiness turns 503 at once, in-flight requests finish
    /// (bounded by `shutdown_timeout_secs`), then the server stops.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.clone();
        let registry = self.registry.clone();
        let grace = self.shutdown;
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received: readiness off, draining");
            registry.start_draining();
            let stopped = handle.stop(true);
            if tokio::time::timeout(grace + Duration::from_secs(1), stopped).await.is_err() {
                tracing::warn!("drain exceeded the shutdown timeout");
            }
        });
        self.task.await??;
        tracing::info!("server stopped");
        Ok(())
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
