//! `JournalCopy`: this node's journal (and store-mode spool) copied aside for `flowgate
//! backup`, while the gateway may be serving. They hold the records the node acknowledged that
//! its store may not have yet (a segment leaves the journal only once stored), so a copy taken
//! *before* the store's snapshot, stored into the snapshot the way a start replays the journal
//! (`store_into`, skipping what the snapshot holds), gives a backup holding every record
//! acknowledged before the backup began. A segment stored and removed while being copied is
//! in the store already; a frame torn by a write in progress was not acknowledged yet and is
//! cut off.

use std::path::{Path, PathBuf};

use flowgate_config::AuditConfig;
use flowgate_store::AuditAppender;

use super::journal::{existing_segments, segment_path};
use super::spool::{Spool, SpoolError};
use super::{AuditSettings, AuditStartError, SpoolSettings, replay_left_over};

/// A copy of a node's journal in a folder of the caller's.
#[derive(Debug)]
pub struct JournalCopy {
    settings: SpoolSettings,
    origin: String,
    max_batch: usize,
}

/// Copies `from` to `to`; nothing when `from` is gone (stored and removed meanwhile).
fn copy_file(from: &Path, to: &Path) -> Result<(), SpoolError> {
    match std::fs::copy(from, to) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SpoolError::Io {
            path: from.to_owned(),
            source,
        }),
    }
}

impl JournalCopy {
    /// Copies the journal and spool `config` names (relative paths from the working
    /// directory, as the gateway resolves them) into `folder`; `None` when `config` keeps
    /// none (`spool_max_bytes = 0`).
    ///
    /// # Errors
    /// I/O errors reading the journal or writing the copy.
    pub fn take(config: &AuditConfig, folder: &Path) -> Result<Option<Self>, SpoolError> {
        let AuditSettings {
            origin,
            spool,
            max_batch,
            ..
        } = AuditSettings::from_config(config);
        let Some(spool) = spool else {
            return Ok(None);
        };
        let name = spool.path.file_name().unwrap_or_default();
        let copy = folder.join(name);
        copy_file(&spool.path, &copy)?;
        for (seq, path) in existing_segments(&spool.path)? {
            copy_file(&path, &segment_path(&copy, seq))?;
        }
        Ok(Some(Self {
            settings: SpoolSettings {
                path: copy,
                ..spool
            },
            origin,
            max_batch,
        }))
    }

    /// The origin whose records these are.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The files of the copy, the spool first, then the segments oldest first.
    fn files(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let segments = existing_segments(&self.settings.path)?;
        Ok(std::iter::once(self.settings.path.clone())
            .chain(segments.into_iter().map(|(_, path)| path))
            .collect())
    }

    /// The log size the copy reaches: the index after its last record (0: it holds none).
    ///
    /// # Errors
    /// I/O errors, or a frame before the last one of a file that does not check out.
    pub fn end(&self) -> Result<u64, SpoolError> {
        let mut end = 0;
        for path in self.files()? {
            let mut file = Spool::open(&path, u64::MAX)?;
            let mut offset = 0;
            while let Some((frame, next)) = file.read_at(offset)? {
                offset = next;
                let records = u64::try_from(frame.records.len()).unwrap_or(u64::MAX);
                if records > 0 {
                    end = end.max(frame.first_index.saturating_add(records));
                }
            }
        }
        Ok(end)
    }

    /// Stores what `target` lacks of the copy, in order, as a start replays the journal.
    ///
    /// # Errors
    /// `Replay` when the copy does not continue what `target` holds, store and I/O errors.
    pub fn store_into(&self, target: &mut dyn AuditAppender) -> Result<(), AuditStartError> {
        replay_left_over(&self.settings, target, &self.origin, self.max_batch).map(|_| ())
    }
}
