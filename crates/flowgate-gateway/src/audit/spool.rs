//! `Spool`: the audit writer's local file of batches the store has not taken. In journal mode
//! every group commit is appended here before its requests are acknowledged (written: it
//! survives the process) and the file is emptied each time the store has taken what it holds;
//! in store mode only while the store is unreachable (written and synced). Either way, what
//! the store did not take is replayed to it in order once it answers again. A batch is one
//! frame:
//!
//! ```text
//! length: u32 little-endian | check: first 4 bytes of SHA-256(payload) | payload: JSON
//! ```
//!
//! The file is created by the first batch and emptied (not removed) once replayed. Opening it
//! validates every frame; a torn last frame (the process died while
//! writing it, so nothing in it was acknowledged) is cut off. The payload keeps the canonical records
//! themselves, so a replay recomputes everything else (leaf hashes, filter columns) from the
//! bytes that were hashed. Leaves out deciding when to spool (`writer`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flowgate_audit::merkle::SubtreeRoot;
use flowgate_store::StoredCheckpoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const HEADER: usize = 8;
/// Largest frame accepted when reading (a batch is at most a few thousand records).
const MAX_FRAME: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("audit spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit spool {path} is corrupt at byte {offset}: {detail}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
}

/// One spooled group commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpooledBatch {
    /// Index of `records[0]`; the others follow without gaps.
    pub first_index: u64,
    /// Canonical record JSON, as hashed into the log.
    pub records: Vec<String>,
    pub subtrees: Vec<SpooledSubtree>,
    pub checkpoints: Vec<SpooledCheckpoint>,
    /// Appender state (restart hint) stored with the batch.
    pub state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpooledSubtree {
    pub level: u8,
    pub index: u64,
    pub hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpooledCheckpoint {
    pub size: u64,
    pub note: String,
}

impl SpooledSubtree {
    pub fn from_root(root: &SubtreeRoot) -> Self {
        Self {
            level: root.level,
            index: root.index,
            hash: root.hash,
        }
    }

    pub fn to_root(&self) -> SubtreeRoot {
        SubtreeRoot {
            level: self.level,
            index: self.index,
            hash: self.hash,
        }
    }
}

impl From<&StoredCheckpoint> for SpooledCheckpoint {
    fn from(checkpoint: &StoredCheckpoint) -> Self {
        Self {
            size: checkpoint.size,
            note: checkpoint.note.clone(),
        }
    }
}

impl From<SpooledCheckpoint> for StoredCheckpoint {
    fn from(checkpoint: SpooledCheckpoint) -> Self {
        Self {
            size: checkpoint.size,
            note: checkpoint.note,
        }
    }
}

/// The spool file of one origin.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    /// `None` while the spool is empty and has no file.
    file: Option<File>,
    /// Bytes of whole frames in the file.
    len: u64,
    max_bytes: u64,
}

fn check(payload: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(payload);
    [digest[0], digest[1], digest[2], digest[3]]
}

impl Spool {
    /// Opens the spool at `path` (no file: empty), validating every frame and cutting a
    /// torn last frame off.
    ///
    /// # Errors
    /// I/O errors, or `Corrupt` when a frame before the last one does not check out.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            path: path.to_owned(),
            source,
        };
        let mut spool = Self {
            path: path.to_owned(),
            len: 0,
            max_bytes,
            file: None,
        };
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(spool),
            Err(err) => return Err(io(err)),
        };
        let file_len = file.metadata().map_err(io)?.len();
        let mut offset = 0;
        while let Some((_, next)) = spool.read_frame(&mut file, offset, file_len)? {
            offset = next;
        }
        if offset < file_len {
            tracing::warn!(path = %path.display(), kept = offset, cut = file_len - offset, "audit spool: torn last frame cut off (it was never acknowledged)");
            file.set_len(offset).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        spool.file = Some(file);
        spool.len = offset;
        Ok(spool)
    }

    /// Reads the frame at `offset`: `None` at the end or at a torn last frame (the caller
    /// cuts it); `Corrupt` when a damaged frame is followed by more data.
    fn read_frame(
        &self,
        file: &mut File,
        offset: u64,
        file_len: u64,
    ) -> Result<Option<(SpooledBatch, u64)>, SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        };
        let remaining = file_len.saturating_sub(offset);
        if remaining < HEADER as u64 {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header).map_err(io)?;
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = offset + (HEADER + length) as u64;
        if length > MAX_FRAME || end > file_len {
            return self.torn_or_corrupt(end >= file_len, offset, "frame longer than the file");
        }
        let mut payload = vec![0u8; length];
        file.read_exact(&mut payload).map_err(io)?;
        if check(&payload) != header[4..8] {
            return self.torn_or_corrupt(end == file_len, offset, "checksum mismatch");
        }
        match serde_json::from_slice(&payload) {
            Ok(batch) => Ok(Some((batch, end))),
            Err(err) => Err(SpoolError::Corrupt {
                path: self.path.clone(),
                offset,
                detail: err.to_string(),
            }),
        }
    }

    fn torn_or_corrupt<T>(
        &self,
        last: bool,
        offset: u64,
        detail: &str,
    ) -> Result<Option<T>, SpoolError> {
        if last {
            Ok(None)
        } else {
            Err(SpoolError::Corrupt {
                path: self.path.clone(),
                offset,
                detail: detail.to_owned(),
            })
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes spooled.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether another batch may be spooled (the last one may overshoot the bound).
    pub fn has_room(&self) -> bool {
        self.len < self.max_bytes
    }

    /// Appends `batch` as one frame, synced to disk when `sync` (otherwise it survives the
    /// process, not the machine).
    ///
    /// # Errors
    /// I/O errors; the file is cut back to its previous length so no partial frame stays.
    pub fn push(&mut self, batch: &SpooledBatch, sync: bool) -> Result<(), SpoolError> {
        let io = |path: &Path, source| SpoolError::Io {
            path: path.to_owned(),
            source,
        };
        // Header space, then the payload serialised after it: one buffer per frame.
        let mut frame = Vec::with_capacity(1024);
        frame.extend_from_slice(&[0; HEADER]);
        serde_json::to_writer(&mut frame, batch)
            .map_err(|err| io(&self.path, std::io::Error::other(err)))?;
        let payload = &frame[HEADER..];
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|length| (*length as usize) <= MAX_FRAME)
            .ok_or_else(|| {
                io(
                    &self.path,
                    std::io::Error::other("batch too large for one spool frame"),
                )
            })?;
        let check = check(payload);
        frame[..4].copy_from_slice(&length.to_le_bytes());
        frame[4..HEADER].copy_from_slice(&check);
        let len = self.len;
        let file = self.file()?;
        // One positioned write (no seek): this runs on the request path in journal mode.
        let written = file
            .write_all_at(&frame, len)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        if let Err(source) = written {
            let _ = file.set_len(len);
            return Err(io(&self.path, source));
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    /// The open file, created (empty) if there is none yet.
    ///
    /// # Errors
    /// I/O errors creating it.
    pub fn file(&mut self) -> Result<&mut File, SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        };
        if self.file.is_none() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.path)
                .map_err(io)?;
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io(std::io::Error::other("spool file not open")))
    }

    /// The frame at `offset` and the offset after it; `None` past the last frame.
    ///
    /// # Errors
    /// I/O errors or a corrupt frame.
    pub fn read_at(&mut self, offset: u64) -> Result<Option<(SpooledBatch, u64)>, SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        };
        let Some(file) = self.file.as_ref() else {
            return Ok(None);
        };
        let mut file = file.try_clone().map_err(io)?;
        let len = self.len;
        match self.read_frame(&mut file, offset, len)? {
            Some(frame) => Ok(Some(frame)),
            None if offset >= len => Ok(None),
            None => Err(SpoolError::Corrupt {
                path: self.path.clone(),
                offset,
                detail: "frame changed under the writer".to_owned(),
            }),
        }
    }

    /// Empties the file (the store holds everything in it).
    ///
    /// # Errors
    /// I/O errors; the spool then still holds its frames.
    pub fn clear(&mut self) -> Result<(), SpoolError> {
        if self.len > 0
            && let Some(file) = &self.file
        {
            file.set_len(0).map_err(|source| SpoolError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_index: u64, records: usize) -> SpooledBatch {
        SpooledBatch {
            first_index,
            records: (0..records).map(|n| format!("{{\"n\":{n}}}")).collect(),
            subtrees: vec![SpooledSubtree {
                level: 8,
                index: 0,
                hash: [0xab; 32],
            }],
            checkpoints: vec![SpooledCheckpoint {
                size: first_index + records as u64,
                note: "note\n".to_owned(),
            }],
            state: Some("{}".to_owned()),
        }
    }

    fn frames(spool: &mut Spool) -> Vec<SpooledBatch> {
        let mut out = Vec::new();
        let mut offset = 0;
        while let Some((batch, next)) = spool.read_at(offset).expect("read") {
            out.push(batch);
            offset = next;
        }
        out
    }

    #[test]
    fn frames_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool/log.spool");
        let mut spool = Spool::open(&path, 1 << 20).expect("open");
        assert_eq!(spool.len(), 0);
        spool.push(&batch(0, 3), true).expect("push");
        spool.push(&batch(3, 2), true).expect("push");
        let len = spool.len();
        drop(spool);
        let mut spool = Spool::open(&path, 1 << 20).expect("reopen");
        assert_eq!(spool.len(), len);
        assert_eq!(frames(&mut spool), vec![batch(0, 3), batch(3, 2)]);
        spool.clear().expect("clear");
        assert_eq!(spool.len(), 0);
        assert!(frames(&mut spool).is_empty());
        assert_eq!(
            std::fs::metadata(&path).map(|meta| meta.len()).ok(),
            Some(0)
        );
        assert_eq!(Spool::open(&path, 1 << 20).expect("open").len(), 0);
    }

    #[test]
    fn a_torn_last_frame_is_cut_off_and_earlier_frames_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.spool");
        let mut spool = Spool::open(&path, 1 << 20).expect("open");
        spool.push(&batch(0, 2), true).expect("push");
        let whole = spool.len();
        spool.push(&batch(2, 2), true).expect("push");
        drop(spool);
        // The process died half-way through the second frame.
        let file = OpenOptions::new().write(true).open(&path).expect("file");
        file.set_len(whole + 20).expect("truncate");
        drop(file);
        let mut spool = Spool::open(&path, 1 << 20).expect("reopen");
        assert_eq!(spool.len(), whole);
        assert_eq!(frames(&mut spool), vec![batch(0, 2)]);
        // Appending continues after the kept frame.
        spool.push(&batch(2, 1), true).expect("push");
        assert_eq!(frames(&mut spool), vec![batch(0, 2), batch(2, 1)]);
    }

    #[test]
    fn a_damaged_frame_before_the_last_is_reported_not_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.spool");
        let mut spool = Spool::open(&path, 1 << 20).expect("open");
        spool.push(&batch(0, 2), true).expect("push");
        spool.push(&batch(2, 2), true).expect("push");
        drop(spool);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER + 3] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        match Spool::open(&path, 1 << 20) {
            Err(SpoolError::Corrupt { offset: 0, .. }) => {}
            other => panic!("expected Corrupt at 0, got {other:?}"),
        }
    }

    #[test]
    fn room_is_bounded_by_max_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(&dir.path().join("log.spool"), 100).expect("open");
        assert!(spool.has_room());
        spool.push(&batch(0, 5), true).expect("push");
        assert!(spool.len() > 100);
        assert!(!spool.has_room());
    }
}
