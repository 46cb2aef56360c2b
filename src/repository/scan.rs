//! What the repository folder holds right now: model folders, their numeric version folders, and a fingerprint of
//! each model (file names, sizes and modification times) so that poll mode reloads only what changed and only once
//! it has stopped changing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::config::CONFIG_FILE;

pub const MODEL_FILE: &str = "model.onnx";

/// Model folders: those holding a config file. Hidden folders (atomic-rename staging) are skipped.
pub fn models(repo: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(CONFIG_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// A name that can only mean a folder directly inside the repository. Names come from URLs, which may carry
/// `..` or an encoded `/`: without this check a load call could reach any folder of the file system.
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// Numeric version folders holding a `model.onnx`; other names are ignored, as Triton does.
pub fn versions(model_dir: &Path) -> BTreeMap<u64, PathBuf> {
    std::fs::read_dir(model_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: u64 = name.parse().ok()?;
            let file = e.path().join(MODEL_FILE);
            file.is_file().then_some((v, file))
        })
        .collect()
}

/// Everything under a model folder that a reload would read, summarized.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

pub fn fingerprint(model_dir: &Path) -> Fingerprint {
    let mut entries = Vec::new();
    walk(model_dir, model_dir, 0, &mut entries);
    entries.sort();
    Fingerprint(entries)
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    if depth > 2 {
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if meta.is_dir() {
            out.push((rel, 0, meta.modified().ok()));
            walk(root, &path, depth + 1, out);
        } else {
            out.push((rel, meta.len(), meta.modified().ok()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_numeric_versions_with_a_model_only() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["1", "2", "10", "latest", "3"] {
            std::fs::create_dir(dir.path().join(v)).unwrap();
        }
        for v in ["1", "2", "10", "latest"] {
            std::fs::write(dir.path().join(v).join(MODEL_FILE), b"x").unwrap();
        }
        let found: Vec<u64> = versions(dir.path()).into_keys().collect();
        assert_eq!(found, vec![1, 2, 10]);
        let before = fingerprint(dir.path());
        std::fs::write(dir.path().join("3").join(MODEL_FILE), b"xy").unwrap();
        assert_ne!(before, fingerprint(dir.path()));
    }

    #[test]
    fn model_names_stay_inside_the_repository() {
        for good in ["efficientnet_lite0", "m", "a.b", "resnet-50"] {
            assert!(is_model_name(good), "{good}");
        }
        for bad in ["", ".", "..", "../m", "m/1", "..\\m", ".staging", "a\0b"] {
            assert!(!is_model_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn models_need_a_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::create_dir_all(dir.path().join(".staging")).unwrap();
        std::fs::write(dir.path().join("b").join(CONFIG_FILE), "").unwrap();
        std::fs::write(dir.path().join(".staging").join(CONFIG_FILE), "").unwrap();
        assert_eq!(models(dir.path()), vec!["b".to_string()]);
    }
}
