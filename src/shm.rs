//! System shared memory, Triton's extension of the protocol. A client on the same host (a sidecar, or perf_analyzer
//! with `--shared-memory system`) puts tensors in a POSIX shared-memory object and registers it once; its requests
//! then name a region instead of carrying the bytes, so a 600 KB image tensor no longer crosses the socket twice.
//!
//! Regions are read and written with `pread`/`pwrite` on the object's file descriptor, not through a mapping: a
//! client that shrinks its object while a request reads it would turn a mapped read into SIGBUS, which kills the
//! process, whereas a short `pread` is an error like any other. The copy costs the same as one from a mapping,
//! since it goes straight into the tensor's buffer. The descriptor is held from registration on, so a client that
//! deletes and recreates its object must register it again, as with Triton.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, RwLock};

use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShmError {
    #[error("system shared memory is disabled on this server")]
    Disabled,
    #[error("shared memory region '{0}' is already registered")]
    Exists(String),
    #[error("unable to find system shared memory region: '{0}'")]
    NotFound(String),
    #[error("no more than {0} shared memory regions can be registered at once")]
    TooMany(usize),
    #[error("a region name must be 1 to {MAX_NAME} bytes without control characters")]
    BadName,
    #[error("shared memory key '{0}' is not a valid POSIX shared memory name")]
    BadKey(String),
    #[error("no shared memory object has the key '{0}'")]
    NoObject(String),
    #[error("unable to use shared memory key '{key}': {reason}")]
    Open { key: String, reason: String },
    #[error("shared memory key '{key}' holds {size} bytes, fewer than offset {offset} + byte_size {byte_size}")]
    Short { key: String, size: u64, offset: u64, byte_size: usize },
    #[error("{needed} bytes do not fit in the {capacity} bytes given in shared memory region '{region}'")]
    NoRoom { region: String, needed: usize, capacity: usize },
    #[error("offset {offset} + byte_size {byte_size} is outside shared memory region '{region}' of {region_size} bytes")]
    OutOfRange { region: String, offset: usize, byte_size: usize, region_size: usize },
}

/// Longest region name; longer ones would only grow the registry and the status answers.
const MAX_NAME: usize = 256;

/// A region as the status endpoint reports it (Triton's fields).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub name: String,
    pub key: String,
    pub offset: usize,
    pub byte_size: usize,
}

/// One registered region: the object's descriptor and the range of it the client registered.
pub struct Region {
    status: Status,
    file: File,
}

impl Region {
    /// Checks that `len` bytes from `offset` lie inside the region and still inside the object (a client may have
    /// truncated it since), and returns their position in the object.
    pub fn check(&self, offset: usize, len: usize) -> Result<u64, ShmError> {
        let s = &self.status;
        if offset.checked_add(len).is_none_or(|end| end > s.byte_size) {
            return Err(ShmError::OutOfRange { region: s.name.clone(), offset, byte_size: len, region_size: s.byte_size });
        }
        let at = (s.offset as u64).saturating_add(offset as u64);
        check_size(&self.file, &s.key, at, len)?;
        Ok(at)
    }

    /// Fills `buf` from `offset` in the region.
    pub fn read_into(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        let at = self.check(offset, buf.len())?;
        self.file.read_exact_at(buf, at).map_err(|_| self.shrunk(at, buf.len()))
    }

    /// Writes `bytes` at `offset` in the region; `capacity` is the room the request gave for them.
    pub fn write(&self, offset: usize, capacity: usize, bytes: &[u8]) -> Result<(), ShmError> {
        let at = self.check(offset, capacity)?;
        if bytes.len() > capacity {
            return Err(ShmError::NoRoom { region: self.status.name.clone(), needed: bytes.len(), capacity });
        }
        self.file.write_all_at(bytes, at).map_err(|e| ShmError::Open { key: self.status.key.clone(), reason: e.to_string() })
    }

    /// The error for a read cut short: the object shrank between the size check and the read.
    fn shrunk(&self, at: u64, len: usize) -> ShmError {
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        ShmError::Short { key: self.status.key.clone(), size, offset: at, byte_size: len }
    }
}

/// The registered regions of one server.
pub struct Regions {
    enabled: bool,
    max: usize,
    by_name: RwLock<HashMap<String, Arc<Region>>>,
}

impl Regions {
    pub fn new(enabled: bool, max: usize) -> Self {
        Self { enabled, max, by_name: RwLock::new(HashMap::new()) }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The region registered as `name`; it stays usable by the caller even if it is unregistered meanwhile.
    pub fn get(&self, name: &str) -> Result<Arc<Region>, ShmError> {
        if !self.enabled {
            return Err(ShmError::Disabled);
        }
        let regions = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        regions.get(name).cloned().ok_or_else(|| ShmError::NotFound(name.to_string()))
    }

    /// Opens `key` and registers `byte_size` bytes of it from `offset` as `name`.
    pub fn register(&self, name: &str, key: &str, offset: usize, byte_size: usize) -> Result<(), ShmError> {
        if !self.enabled {
            return Err(ShmError::Disabled);
        }
        let vacancy = |regions: &HashMap<String, Arc<Region>>| {
            if regions.contains_key(name) {
                Err(ShmError::Exists(name.to_string()))
            } else if regions.len() >= self.max {
                Err(ShmError::TooMany(self.max))
            } else {
                Ok(())
            }
        };
        vacancy(&self.by_name.read().unwrap_or_else(|p| p.into_inner()))?;
        let file = open(key)?;
        check_size(&file, key, offset as u64, byte_size)?;
        // After the key: an object that does not exist is the first thing a client needs to hear about.
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(ShmError::BadName);
        }
        let status = Status { name: name.to_string(), key: key.to_string(), offset, byte_size };
        let mut regions = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        vacancy(&regions)?;
        regions.insert(name.to_string(), Arc::new(Region { status, file }));
        Ok(())
    }

    /// Unregisters one region, or all of them. An unknown name is not an error, as in Triton.
    pub fn unregister(&self, name: Option<&str>) -> Result<(), ShmError> {
        if !self.enabled {
            return Err(ShmError::Disabled);
        }
        let mut regions = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        match name {
            Some(n) => {
                regions.remove(n);
            }
            None => regions.clear(),
        }
        Ok(())
    }

    /// Every region, or the one named, sorted by name.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<Status>, ShmError> {
        if let Some(n) = name {
            return Ok(vec![self.get(n)?.status.clone()]);
        }
        if !self.enabled {
            return Err(ShmError::Disabled);
        }
        let regions = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<Status> = regions.values().map(|r| r.status.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Writes `bytes` into region `name` from `offset`; `capacity` is the room the request gave for them.
    pub fn write(&self, name: &str, offset: usize, capacity: usize, bytes: &[u8]) -> Result<(), ShmError> {
        self.get(name)?.write(offset, capacity, bytes)
    }
}

/// The object holds at least `len` bytes from `at`.
fn check_size(file: &File, key: &str, at: u64, len: usize) -> Result<(), ShmError> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size < at.saturating_add(len as u64) {
        return Err(ShmError::Short { key: key.to_string(), size, offset: at, byte_size: len });
    }
    Ok(())
}

/// `shm_open(key, O_RDWR)`: the object must exist already, as a regular file; the client creates and owns it.
fn open(key: &str) -> Result<File, ShmError> {
    let bare = key.trim_start_matches('/');
    if bare.is_empty() || bare.len() > 255 || bare.contains(['/', '\0']) || bare == "." || bare == ".." {
        let shown: String = key.chars().take(64).collect();
        return Err(ShmError::BadKey(if shown.len() < key.len() { format!("{shown}...") } else { shown }));
    }
    let fd = nix::sys::mman::shm_open(bare, nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty()).map_err(|e| match e {
        nix::errno::Errno::ENOENT => ShmError::NoObject(key.to_string()),
        _ => ShmError::Open { key: key.to_string(), reason: e.desc().to_string() },
    })?;
    let file = File::from(fd);
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(ShmError::Open { key: key.to_string(), reason: "not a shared memory object".into() });
    }
    Ok(file)
}

/// Shared-memory objects for tests, created as a client would create them.
#[cfg(test)]
pub(crate) mod testing {
    use std::fs::File;

    /// A shared-memory object as a client would create it, removed when dropped.
    pub struct Object(pub String);

    impl Object {
        pub fn new(tag: &str, contents: &[u8]) -> Self {
            let key = format!("/oxinfer-test-{tag}-{}", std::process::id());
            let fd = nix::sys::mman::shm_open(
                key.as_str(),
                nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_TRUNC,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .unwrap();
            let mut f = File::from(fd);
            std::io::Write::write_all(&mut f, contents).unwrap();
            Self(key)
        }

        pub fn truncate(&self, len: u64) {
            super::open(&self.0).unwrap().set_len(len).unwrap();
        }
    }

    impl Drop for Object {
        fn drop(&mut self) {
            let _ = nix::sys::mman::shm_unlink(self.0.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Object;
    use super::*;

    #[test]
    fn reads_and_writes_through_the_mapping() {
        let obj = Object::new("rw", &(0u8..=255).collect::<Vec<_>>());
        let regions = Regions::new(true, 4);
        regions.register("r", &obj.0, 16, 64).unwrap();
        let read = |offset: usize, len: usize| {
            let mut buf = vec![0; len];
            regions.get("r").and_then(|r| r.read_into(offset, &mut buf)).map(|_| buf)
        };
        assert_eq!(read(4, 3).unwrap(), vec![20, 21, 22]);
        regions.write("r", 0, 8, &[9, 9]).unwrap();
        assert_eq!(read(0, 3).unwrap(), vec![9, 9, 18]);
        assert_eq!(regions.status(None).unwrap(), vec![Status { name: "r".into(), key: obj.0.clone(), offset: 16, byte_size: 64 }]);
    }

    #[test]
    fn ranges_outside_the_region_are_refused() {
        let obj = Object::new("range", &[0; 32]);
        let regions = Regions::new(true, 4);
        regions.register("r", &obj.0, 0, 32).unwrap();
        let r = regions.get("r").unwrap();
        assert!(matches!(r.read_into(30, &mut [0; 4]), Err(ShmError::OutOfRange { .. })));
        assert!(matches!(r.read_into(usize::MAX, &mut [0; 2]), Err(ShmError::OutOfRange { .. })));
        assert!(matches!(regions.write("r", 0, 2, &[0; 3]), Err(ShmError::NoRoom { needed: 3, capacity: 2, .. })));
        assert!(matches!(regions.write("r", 16, 17, &[0; 3]), Err(ShmError::OutOfRange { .. })));
        assert!(matches!(regions.register("big", &obj.0, 0, 33), Err(ShmError::Short { .. })));
    }

    #[test]
    fn a_shrunk_object_is_an_error_not_a_crash() {
        let obj = Object::new("shrink", &[1; 8192]);
        let regions = Regions::new(true, 4);
        regions.register("r", &obj.0, 0, 8192).unwrap();
        obj.truncate(100);
        let r = regions.get("r").unwrap();
        assert!(matches!(r.read_into(4096, &mut [0; 16]), Err(ShmError::Short { size: 100, .. })));
        assert!(matches!(r.write(4096, 16, &[1; 16]), Err(ShmError::Short { size: 100, .. })));
    }

    #[test]
    fn names_keys_limits_and_switch() {
        let obj = Object::new("names", &[0; 16]);
        let regions = Regions::new(true, 1);
        for bad in ["", "/", "a/b", "/..", "x\0y"] {
            assert_eq!(regions.register("r", bad, 0, 4), Err(ShmError::BadKey(bad.into())));
        }
        for bad in ["", "a\nb", &"n".repeat(MAX_NAME + 1)] {
            assert_eq!(regions.register(bad, &obj.0, 0, 4), Err(ShmError::BadName));
        }
        assert_eq!(regions.register("r", "/oxinfer-test-absent", 0, 4), Err(ShmError::NoObject("/oxinfer-test-absent".into())));
        regions.register("r", &obj.0, 0, 16).unwrap();
        assert_eq!(regions.register("r", &obj.0, 0, 16), Err(ShmError::Exists("r".into())));
        assert_eq!(regions.register("s", &obj.0, 0, 16), Err(ShmError::TooMany(1)));
        assert_eq!(regions.status(Some("s")), Err(ShmError::NotFound("s".into())));
        regions.unregister(Some("nothing")).unwrap();
        regions.unregister(None).unwrap();
        assert_eq!(regions.status(None).unwrap(), vec![]);

        let off = Regions::new(false, 4);
        assert_eq!(off.register("r", &obj.0, 0, 16), Err(ShmError::Disabled));
        assert!(matches!(off.get("r"), Err(ShmError::Disabled)));
    }
}
