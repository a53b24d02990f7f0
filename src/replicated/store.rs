//! A replica's durable copy of a replicated set (`revocations.file`, `tickets.file`): read
//! once before the replica serves, replaced whole (`common::replace_file`) on every change, so
//! that a restart (a deploy, an OOM kill, a rescheduling onto the same volume) never lifts a
//! revocation nor brings back a deleted ticket.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
pub struct Loaded<R> {
    pub records: Vec<R>,
    pub fleet_synced: bool,
}

pub struct Store<R> {
    path: PathBuf,
    /// One writer at a time: each write takes the newest state under this lock.
    writing: Mutex<()>,
    records: std::marker::PhantomData<fn() -> R>,
}

impl<R: Serialize + DeserializeOwned> Store<R> {
    /// Opens (or, the first time, creates) the file: an unreadable or unwritable place, or a
    /// file that does not parse, stops startup rather than starting without revocations.
    /// `what` names the file in errors ("a revocations file").
    pub fn open(path: &Path, what: &'static str) -> Result<(Self, Loaded<R>), String> {
        let store = Self {
            path: path.to_path_buf(),
            writing: Mutex::new(()),
            records: std::marker::PhantomData,
        };
        let loaded = match std::fs::read(path) {
            Ok(bytes) => {
                let on_disk: OnDisk<R> = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{} is not {what} stsvend wrote ({e}); move it aside only after checking it",
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
    pub fn save(&self, records: Vec<&R>, fleet_synced: bool) -> std::io::Result<()> {
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
    use crate::revoke::Revocation;

    const WHAT: &str = "a revocations file";

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
        let (store, loaded) = Store::<Revocation>::open(&path, WHAT).unwrap();
        assert!(loaded.records.is_empty() && !loaded.fleet_synced);
        assert!(
            path.exists(),
            "created at once: a bad place fails at startup"
        );
        let (a, b) = (record("a"), record("b"));
        store.save(vec![&a, &b], true).unwrap();
        let (_, again) = Store::<Revocation>::open(&path, WHAT).unwrap();
        assert_eq!(again.records, vec![a, b]);
        assert!(again.fleet_synced);
    }

    #[test]
    fn a_file_that_does_not_parse_stops_startup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations.json");
        std::fs::write(&path, "{half").unwrap();
        let e = Store::<Revocation>::open(&path, WHAT).err().unwrap();
        assert!(e.contains("not a revocations file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn an_unwritable_place_stops_startup() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let e = Store::<Revocation>::open(&blocker.join("revocations.json"), WHAT)
            .err()
            .unwrap();
        assert!(
            e.starts_with("cannot ") && e.contains("revocations.json"),
            "{e}"
        );
    }
}
