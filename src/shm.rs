//! System shared memory, Triton's extension of the protocol. A client on the same host (a sidecar, or perf_analyzer
//! with `--shared-memory system`) puts tensors in a POSIX shared-memory object and registers it once; its requests
//! then name a region instead of carrying the bytes, so a 600 KB image tensor no longer crosses the socket twice.
//!
//! The registry maps each region once at registration. Requests read and write through that mapping under the
//! same contract as Triton's: the client does not touch a region while a request that names it is in flight.
//! Every use checks that the object still holds the registered range, because touching a page past the end of a
//! shrunk object would kill the process with SIGBUS instead of earning the client a 400.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, RwLock};

use memmap2::{MmapOptions, MmapRaw};
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
    #[error("shared memory key '{0}' is not a valid POSIX shared memory name")]
    BadKey(String),
    #[error("no shared memory object has the key '{0}'")]
    NoObject(String),
    #[error("unable to open shared memory key '{key}': {reason}")]
    Open { key: String, reason: String },
    #[error("shared memory key '{key}' holds {size} bytes, fewer than offset {offset} + byte_size {byte_size}")]
    Short { key: String, size: u64, offset: usize, byte_size: usize },
    #[error("{needed} bytes do not fit in the {capacity} bytes given in shared memory region '{region}'")]
    NoRoom { region: String, needed: usize, capacity: usize },
    #[error("offset {offset} + byte_size {byte_size} is outside shared memory region '{region}' of {region_size} bytes")]
    OutOfRange { region: String, offset: usize, byte_size: usize, region_size: usize },
}

/// A region as the status endpoint reports it (Triton's fields).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub name: String,
    pub key: String,
    pub offset: usize,
    pub byte_size: usize,
}

struct Region {
    status: Status,
    file: File,
    map: MmapRaw,
}

impl Region {
    /// Checks a sub-range of the region and returns a pointer to its start.
    fn range(&self, offset: usize, len: usize) -> Result<*mut u8, ShmError> {
        let s = &self.status;
        if offset.checked_add(len).is_none_or(|end| end > s.byte_size) {
            return Err(ShmError::OutOfRange { region: s.name.clone(), offset, byte_size: len, region_size: s.byte_size });
        }
        check_size(&self.file, s)?;
        // In bounds of the mapping: checked just above.
        Ok(self.map.as_mut_ptr().wrapping_add(offset))
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

    fn get(&self, name: &str) -> Result<Arc<Region>, ShmError> {
        if !self.enabled {
            return Err(ShmError::Disabled);
        }
        let regions = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        regions.get(name).cloned().ok_or_else(|| ShmError::NotFound(name.to_string()))
    }

    /// Opens `key` and maps `byte_size` bytes of it from `offset` under `name`.
    pub fn register(&self, name: &str, key: &str, offset: usize, byte_size: usize) -> Result<(), ShmError> {
        if !self.enabled {
            return Err(ShmError::Disabled);
        }
        {
            let regions = self.by_name.read().unwrap_or_else(|p| p.into_inner());
            if regions.contains_key(name) {
                return Err(ShmError::Exists(name.to_string()));
            }
            if regions.len() >= self.max {
                return Err(ShmError::TooMany(self.max));
            }
        }
        let file = open(key)?;
        let status = Status { name: name.to_string(), key: key.to_string(), offset, byte_size };
        check_size(&file, &status)?;
        let open_err = |e: std::io::Error| ShmError::Open { key: key.to_string(), reason: e.to_string() };
        // A mapping of length 0 is refused by mmap; an empty region still registers and fails only when used.
        let map = MmapOptions::new().offset(offset as u64).len(byte_size.max(1)).map_raw(&file).map_err(open_err)?;
        let region = Region { status, file, map };
        let mut regions = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        if regions.contains_key(name) {
            return Err(ShmError::Exists(name.to_string()));
        }
        if regions.len() >= self.max {
            return Err(ShmError::TooMany(self.max));
        }
        regions.insert(name.to_string(), Arc::new(region));
        Ok(())
    }

    /// Unregisters one region, or all of them. An unknown name is not an error, as in Triton. Requests that are
    /// reading a region keep its mapping alive until they finish.
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

    /// Runs `f` on `len` bytes of region `name` from `offset`.
    pub fn read<T>(&self, name: &str, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> T) -> Result<T, ShmError> {
        let region = self.get(name)?;
        let ptr = region.range(offset, len)?;
        // SAFETY: the range lies inside the live mapping (checked by `range`, which `region` keeps mapped), and the
        // client's side of the extension's contract is not to write it while the request is in flight.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.cast_const(), len) };
        Ok(f(bytes))
    }

    /// Copies `bytes` into region `name` from `offset`; `capacity` is the room the request gave for them.
    pub fn write(&self, name: &str, offset: usize, capacity: usize, bytes: &[u8]) -> Result<(), ShmError> {
        let region = self.get(name)?;
        let ptr = region.range(offset, capacity)?;
        if bytes.len() > capacity {
            return Err(ShmError::NoRoom { region: name.to_string(), needed: bytes.len(), capacity });
        }
        // SAFETY: as in `read`; the destination is the client's memory, which no Rust reference aliases.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        Ok(())
    }
}

/// The object covers the registered range (a client may have truncated it since it registered).
fn check_size(file: &File, s: &Status) -> Result<(), ShmError> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size < (s.offset as u64).saturating_add(s.byte_size as u64) {
        return Err(ShmError::Short { key: s.key.clone(), size, offset: s.offset, byte_size: s.byte_size });
    }
    Ok(())
}

/// `shm_open(key, O_RDWR)`: the object must exist already; the client creates and owns it.
fn open(key: &str) -> Result<File, ShmError> {
    let bare = key.trim_start_matches('/');
    if bare.is_empty() || bare.len() > 255 || bare.contains(['/', '\0']) || bare == "." || bare == ".." {
        return Err(ShmError::BadKey(key.to_string()));
    }
    let fd = nix::sys::mman::shm_open(bare, nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty()).map_err(|e| match e {
        nix::errno::Errno::ENOENT => ShmError::NoObject(key.to_string()),
        _ => ShmError::Open { key: key.to_string(), reason: e.desc().to_string() },
    })?;
    Ok(File::from(fd))
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
        assert_eq!(regions.read("r", 4, 3, |b| b.to_vec()).unwrap(), vec![20, 21, 22]);
        regions.write("r", 0, 8, &[9, 9]).unwrap();
        assert_eq!(regions.read("r", 0, 3, |b| b.to_vec()).unwrap(), vec![9, 9, 18]);
        assert_eq!(regions.status(None).unwrap(), vec![Status { name: "r".into(), key: obj.0.clone(), offset: 16, byte_size: 64 }]);
    }

    #[test]
    fn ranges_outside_the_region_are_refused() {
        let obj = Object::new("range", &[0; 32]);
        let regions = Regions::new(true, 4);
        regions.register("r", &obj.0, 0, 32).unwrap();
        assert!(matches!(regions.read("r", 30, 4, |_| ()), Err(ShmError::OutOfRange { .. })));
        assert!(matches!(regions.read("r", usize::MAX, 2, |_| ()), Err(ShmError::OutOfRange { .. })));
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
        assert!(matches!(regions.read("r", 4096, 16, |b| b[0]), Err(ShmError::Short { size: 100, .. })));
    }

    #[test]
    fn names_keys_limits_and_switch() {
        let obj = Object::new("names", &[0; 16]);
        let regions = Regions::new(true, 1);
        for bad in ["", "/", "a/b", "/..", "x\0y"] {
            assert_eq!(regions.register("r", bad, 0, 4), Err(ShmError::BadKey(bad.into())));
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
        assert_eq!(off.read("r", 0, 1, |_| ()), Err(ShmError::Disabled));
    }
}
