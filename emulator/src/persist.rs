//! The state file: loaded at start, saved after changes (coalesced) and at shutdown, always
//! by writing a temporary file beside it and renaming it over the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use super::state::Snapshot;
use super::{Shared, lock};

/// Changes within this window are saved together.
const COALESCE: Duration = Duration::from_millis(100);

/// Reads a state file; `None` when it does not exist yet.
pub fn load(path: &Path) -> anyhow::Result<Option<Snapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read state file {}", path.display()));
        }
    };
    let snapshot: Snapshot = serde_json::from_slice(&bytes)
        .with_context(|| format!("failed to parse state file {}", path.display()))?;
    if snapshot.version != 1 {
        anyhow::bail!(
            "state file {} has version {}, expected 1",
            path.display(),
            snapshot.version
        );
    }
    Ok(Some(snapshot))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

async fn save(shared: &Shared, path: &Path) {
    let bytes = match lock(&shared.state).to_json() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "failed to serialise the emulator state");
            return;
        }
    };
    let target = path.to_owned();
    let written = tokio::task::spawn_blocking(move || write_atomic(&target, &bytes)).await;
    match written {
        Ok(Ok(())) => tracing::debug!(path = %path.display(), "saved emulator state"),
        Ok(Err(e)) => {
            tracing::error!(path = %path.display(), error = %e, "failed to save emulator state");
        }
        Err(e) => tracing::error!(error = %e, "state saving task failed"),
    }
}

/// Saves after each burst of changes until shutdown, then once more.
pub async fn saver(shared: Arc<Shared>, path: PathBuf, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shared.dirty.notified() => {
                tokio::time::sleep(COALESCE).await;
                save(&shared, &path).await;
            }
            _ = super::server::stopped(&mut shutdown) => break,
        }
    }
    save(&shared, &path).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).unwrap().is_none());
        write_atomic(&path, br#"{"version": 1, "orgs": {}}"#).unwrap();
        assert!(load(&path).unwrap().unwrap().orgs.is_empty());
        assert!(!dir.path().join(".state.json.tmp").exists());
        write_atomic(&path, b"{").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.starts_with("failed to parse state file"), "{err}");
        write_atomic(&path, br#"{"version": 9, "orgs": {}}"#).unwrap();
        assert!(load(&path).is_err());
    }
}
