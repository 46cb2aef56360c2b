//! Poll mode: follow the repository folder. File notifications wake the loop early and a periodic rescan catches
//! what notifications miss (network file systems, GCS FUSE). A change is applied only once the model folder has
//! been still for `settle`: two scans `settle` apart must agree, so a model still being copied is never loaded.
//! Copying into a hidden folder and renaming it into place makes a version appear complete in one step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{scan, Registry};

/// Runs until the process ends. `applied` starts from what `load_all` loaded.
pub async fn poll(registry: Arc<Registry>, interval: Duration, settle: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let root = registry.root().to_path_buf();
    let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|_| w));
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "file notifications unavailable; relying on the periodic rescan");
            None
        }
    };
    let mut applied = fingerprints(&registry);
    loop {
        tokio::select! {
            _ = rx.recv() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        let stable = loop {
            let first = fingerprints(&registry);
            tokio::time::sleep(settle).await;
            while rx.try_recv().is_ok() {}
            let second = fingerprints(&registry);
            if first == second {
                break second;
            }
        };
        for (model, fp) in &stable {
            if applied.get(model) != Some(fp) {
                tracing::info!(model, "repository change detected, reloading");
                if let Err(e) = registry.load(model).await {
                    tracing::warn!(model, error = %e, "reload after repository change failed");
                }
            }
        }
        for model in applied.keys().filter(|m| !stable.contains_key(*m)) {
            tracing::info!(model, "model folder removed, unloading");
            registry.unload(model).await;
        }
        applied = stable;
    }
}

fn fingerprints(registry: &Registry) -> HashMap<String, scan::Fingerprint> {
    scan::models(registry.root())
        .into_iter()
        .map(|m| {
            let fp = scan::fingerprint(&registry.root().join(&m));
            (m, fp)
        })
        .collect()
}
