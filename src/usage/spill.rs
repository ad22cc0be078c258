//! The spill file: where queued records and events go while the store is
//! unreachable and memory holds [`super::queue::MEMORY_LIMIT`] already.
//! JSON lines, mode 0600 (they name users and addresses), at most
//! [`MAX_BYTES`]. Replayed, oldest first, once the store answers again,
//! and at start-up; writes are idempotent (records are upserts, outbox rows
//! are keyed by event and URL), so a replay cut short is simply repeated.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::queue::Item;

/// The spill file's largest size.
pub const MAX_BYTES: u64 = 256 << 20;

#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    /// Bytes in the file now (0: none or empty).
    size: u64,
    /// Bytes already replayed into the store (this process).
    replayed: u64,
    max: u64,
}

impl Spill {
    /// The spill file at `path`, whatever an earlier run left in it.
    pub fn open(path: &Path) -> Self {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        Spill {
            path: path.to_path_buf(),
            size,
            replayed: 0,
            max: MAX_BYTES,
        }
    }

    #[cfg(test)]
    fn with_max(mut self, max: u64) -> Self {
        self.max = max;
        self
    }

    /// Whether there is anything to replay.
    pub fn pending(&self) -> bool {
        self.size > self.replayed
    }

    /// Appends `items`; returns those that did not fit (or could not be
    /// written), for the caller to count as lost.
    pub fn append(&mut self, items: Vec<Item>) -> Vec<Item> {
        let mut file = match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("usage spill file {}: {e}", self.path.display());
                return items;
            }
        };
        let mut rest = Vec::new();
        let mut buf = Vec::new();
        for item in items {
            let Ok(mut line) = serde_json::to_vec(&item) else {
                rest.push(item);
                continue;
            };
            line.push(b'\n');
            if self.size + (buf.len() + line.len()) as u64 > self.max {
                rest.push(item);
                continue;
            }
            buf.extend_from_slice(&line);
        }
        if let Err(e) = file.write_all(&buf).and_then(|()| file.flush()) {
            tracing::warn!("usage spill file {}: {e}", self.path.display());
            // What was written is in the file; the size says where it ends.
        }
        self.size = file.metadata().map_or(self.size, |m| m.len());
        rest
    }

    /// Reads up to `n` items after those already replayed, and where they
    /// end; [`Spill::replayed_to`] marks them done once they are stored.
    pub fn read(&self, n: usize) -> std::io::Result<(Vec<Item>, u64)> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.replayed))?;
        let mut reader = BufReader::new(file);
        let mut out = Vec::new();
        let mut at = self.replayed;
        let mut line = String::new();
        while out.len() < n {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 || !line.ends_with('\n') {
                break;
            }
            at += read as u64;
            // A line that does not parse (a torn write) is skipped.
            if let Ok(item) = serde_json::from_str(&line) {
                out.push(item);
            }
        }
        if out.is_empty() && at == self.replayed && self.size > at {
            // Only a torn last line is left: nothing more will come of it.
            at = self.size;
        }
        Ok((out, at))
    }

    /// Items up to `offset` are in the store; once everything is, the
    /// file goes.
    pub fn replayed_to(&mut self, offset: u64) {
        self.replayed = offset;
        if self.replayed >= self.size {
            let _ = std::fs::remove_file(&self.path);
            self.size = 0;
            self.replayed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::OutboxEvent;
    use std::os::unix::fs::PermissionsExt;

    fn event(i: usize) -> Item {
        Item::Event(OutboxEvent::new(
            format!("{i:032x}"),
            "node.ready",
            "n",
            7,
            serde_json::json!({}),
        ))
    }

    #[test]
    fn items_spill_and_replay_in_order_then_the_file_goes() {
        let dir = std::env::temp_dir().join(format!("tp-spill-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("a.spill");
        let _ = std::fs::remove_file(&path);
        let mut s = Spill::open(&path);
        assert!(!s.pending());
        assert!(s.append((0..5).map(event).collect()).is_empty());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second process finds it.
        let mut s = Spill::open(&path);
        assert!(s.pending());
        let (first, at) = s.read(3).unwrap();
        assert_eq!(first, (0..3).map(event).collect::<Vec<_>>());
        s.replayed_to(at);
        let (rest, at) = s.read(10).unwrap();
        assert_eq!(rest, (3..5).map(event).collect::<Vec<_>>());
        s.replayed_to(at);
        assert!(!s.pending());
        assert!(!path.exists());
    }

    #[test]
    fn a_full_spill_file_hands_back_what_did_not_fit() {
        let dir = std::env::temp_dir().join(format!("tp-spill-full-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("b.spill");
        let _ = std::fs::remove_file(&path);
        let one = serde_json::to_vec(&event(0)).unwrap().len() as u64 + 1;
        let mut s = Spill::open(&path).with_max(one * 2);
        let rest = s.append((0..5).map(event).collect());
        assert_eq!(rest, (2..5).map(event).collect::<Vec<_>>());
        let _ = std::fs::remove_file(&path);
    }
}
