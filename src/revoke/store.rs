//! The replica's durable copy of the revocations it knows (`revocations.file`): read once
//! before the replica serves, replaced whole (`common::replace_file`) on every change, so
//! that a restart (a deploy, an OOM kill, a rescheduling onto the same volume) never lifts a
//! revocation.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::record::Revocation;

const VERSION: u8 = 1;

/// The file: records read owned, written borrowed.
#[derive(Serialize, Deserialize)]
struct OnDisk<R> {
    version: u8,
    /// Written by a replica that had read the fleet's set from Redis (fleet mode): a
    /// replica restarting while Redis is down may serve from this copy.
    fleet_synced: bool,
    records: Vec<R>,
}

/// What the file held when the replica started.
pub struct Loaded {
    pub records: Vec<Revocation>,
    pub fleet_synced: bool,
}

pub struct Store {
    path: PathBuf,
    /// One writer at a time: each write takes the newest state under this lock.
    writing: Mutex<()>,
}

impl Store {
    /// Opens (or, the first time, creates) the file: an unreadable or unwritable place, or a
    /// file that does not parse, stops startup rather than starting without revocations.
    pub fn open(path: &Path) -> Result<(Self, Loaded), String> {
        let store = Self {
            path: path.to_path_buf(),
            writing: Mutex::new(()),
        };
        let loaded = match std::fs::read(path) {
            Ok(bytes) => {
                let on_disk: OnDisk<Revocation> = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{} is not a revocations file stsvend wrote ({e}); move it aside only after checking it",
                        path.display()
                    )
                })?;
                if on_disk.version != VERSION {
                    return Err(format!(
                        "{} has version {}, this stsvend reads version {VERSION}",
                        path.display(),
                        on_disk.version
                    ));
                }
                Loaded {
                    records: on_disk.records,
                    fleet_synced: on_disk.fleet_synced,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let empty = Loaded {
                    records: Vec::new(),
                    fleet_synced: false,
                };
                // Find out now, not at the first revocation, that the place is not writable.
                store
                    .save(Vec::new(), false)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                empty
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok((store, loaded))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `records`.
    pub fn save(&self, records: Vec<&Revocation>, fleet_synced: bool) -> std::io::Result<()> {
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = serde_json::to_vec(&OnDisk {
            version: VERSION,
            fleet_synced,
            records,
        })
        .map_err(std::io::Error::other)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::common::create_private_dir(dir)?;
        }
        crate::common::replace_file(&self.path, &bytes, 0o600)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(user: &str) -> Revocation {
        Revocation {
            user: user.into(),
            reason: Some("r".into()),
            revoked_at: chrono::Utc::now(),
            expires_at: None,
            lifted_at: None,
        }
    }

    #[test]
    fn what_is_saved_is_what_the_next_start_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/revocations.json");
        let (store, loaded) = Store::open(&path).unwrap();
        assert!(loaded.records.is_empty() && !loaded.fleet_synced);
        assert!(
            path.exists(),
            "created at once: a bad place fails at startup"
        );
        let (a, b) = (record("a"), record("b"));
        store.save(vec![&a, &b], true).unwrap();
        let (_, again) = Store::open(&path).unwrap();
        assert_eq!(again.records, vec![a, b]);
        assert!(again.fleet_synced);
    }

    #[test]
    fn a_file_that_does_not_parse_stops_startup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations.json");
        std::fs::write(&path, "{half").unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(e.contains("not a revocations file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn an_unwritable_place_stops_startup() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let e = Store::open(&blocker.join("revocations.json"))
            .err()
            .unwrap();
        assert!(
            e.starts_with("cannot ") && e.contains("revocations.json"),
            "{e}"
        );
    }
}
