//! The spill: a durable write-ahead buffer for points InfluxDB has not acknowledged.
//!
//! While InfluxDB is down, points wait in memory up to a limit; beyond it the oldest
//! batches move here, so memory stays bounded however long the outage lasts and a crash
//! or restart loses nothing that reached the disk.
//!
//! The format is deliberately the wire format: a spill file is line-protocol text, one
//! point per line, appended in blocks of whole lines and `fsync`ed after every block.
//! A file is sent to `/write` as it is and deleted only after InfluxDB answered 204.
//! Files are named `spill-<sequence>.lp` with a zero-padded, increasing sequence, so the
//! name order is the age order and a new run replays what an old one left, oldest first.
//!
//! The spill and the `rejected-*` files (batches InfluxDB refused, kept for a human)
//! share one bound on disk, `max_bytes`: an outage long enough to fill it loses the
//! newest points rather than the disk, and the store counts and reports that loss.
//!
//! A crash can tear only the last line of the last block (blocks are appended, never
//! rewritten); a line without its `\n` is therefore dropped on reading. A file is closed
//! to further appends once it holds a batch's worth of points, once it is being sent,
//! or after a failed append (so a torn line is never followed by more data).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

const PREFIX: &str = "spill-";
const SUFFIX: &str = ".lp";

/// One spill file waiting to be sent.
#[derive(Debug)]
pub(crate) struct SpillFile {
    pub(crate) path: PathBuf,
    pub(crate) points: usize,
    /// When its oldest point was buffered (approximated by the file's age for files left
    /// by a previous run).
    pub(crate) since: Instant,
    /// No more appends: full, being sent, or torn by a failed append.
    sealed: bool,
}

#[derive(Debug)]
pub(crate) struct Spill {
    dir: PathBuf,
    files: VecDeque<SpillFile>,
    next_seq: u64,
    points: usize,
    /// Points per file at most (the batch size: a file is sent in one request).
    file_points: usize,
    /// Bytes on disk now: spill files and rejected files.
    bytes: u64,
    /// What `bytes` may reach.
    max_bytes: u64,
}

/// The spill is at its bound on disk.
fn full(bytes: u64, max: u64) -> io::Error {
    io::Error::other(format!(
        "the spill holds {bytes} bytes, its limit is {max} (influxdb.spill_max_bytes)"
    ))
}

impl Spill {
    /// Opens the spill in `dir`, creating it, and lists the files a previous run left.
    pub(crate) async fn open(
        dir: PathBuf,
        file_points: usize,
        max_bytes: u64,
    ) -> io::Result<Spill> {
        let scan_dir = dir.clone();
        let (found, bytes) = tokio::task::spawn_blocking(move || scan(&scan_dir))
            .await
            .map_err(io::Error::other)??;
        let next_seq = found.last().map_or(0, |(seq, _)| seq + 1);
        let files: VecDeque<SpillFile> = found.into_iter().map(|(_, f)| f).collect();
        let points = files.iter().map(|f| f.points).sum();
        Ok(Spill {
            dir,
            files,
            next_seq,
            points,
            file_points: file_points.max(1),
            bytes,
            max_bytes,
        })
    }

    /// An empty spill that refuses every append: used when `dir` cannot be opened, so
    /// the store still runs (and counts what it cannot keep).
    pub(crate) fn unusable(dir: PathBuf) -> Spill {
        Spill {
            dir,
            files: VecDeque::new(),
            next_seq: 0,
            points: 0,
            file_points: 1,
            bytes: 0,
            max_bytes: 0,
        }
    }

    pub(crate) fn points(&self) -> usize {
        self.points
    }

    pub(crate) fn front(&self) -> Option<&SpillFile> {
        self.files.front()
    }

    /// Closes the oldest file to appends and returns it, to be sent.
    pub(crate) fn take_front_for_sending(&mut self) -> Option<&SpillFile> {
        let f = self.files.front_mut()?;
        f.sealed = true;
        Some(f)
    }

    /// Appends a block of complete lines holding `points` points and syncs it to disk;
    /// refused when it would take the spill past its bound.
    pub(crate) async fn append(
        &mut self,
        block: Bytes,
        points: usize,
        since: Instant,
    ) -> io::Result<()> {
        let size = block.len() as u64;
        if self.bytes + size > self.max_bytes {
            return Err(full(self.bytes, self.max_bytes));
        }
        let limit = self.file_points;
        let target = match self.files.back() {
            Some(f) if !f.sealed && f.points + points <= limit => None,
            _ => {
                let path = self
                    .dir
                    .join(format!("{PREFIX}{:020}{SUFFIX}", self.next_seq));
                self.next_seq += 1;
                Some(path)
            }
        };
        let (path, new) = match (&target, self.files.back()) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(f)) => (f.path.clone(), false),
            (None, None) => return Err(io::Error::other("spill: no file to append to")),
        };
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || append_synced(&dir, &path, &block, new))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        match (written, target) {
            (Ok(()), Some(path)) => {
                self.bytes += size;
                self.files.push_back(SpillFile {
                    path,
                    points,
                    since,
                    sealed: points >= limit,
                });
                self.points += points;
                Ok(())
            }
            (Ok(()), None) => {
                self.bytes += size;
                if let Some(f) = self.files.back_mut() {
                    f.points += points;
                    f.sealed = f.points >= limit;
                }
                self.points += points;
                Ok(())
            }
            (Err(e), target) => {
                if target.is_none() {
                    if let Some(f) = self.files.back_mut() {
                        f.sealed = true;
                    }
                }
                Err(e)
            }
        }
    }

    /// Forgets the oldest file and deletes it: its points were acknowledged.
    pub(crate) async fn remove_front(&mut self) -> io::Result<()> {
        let Some(f) = self.files.pop_front() else {
            return Ok(());
        };
        self.points -= f.points;
        let path = f.path;
        let size = tokio::task::spawn_blocking(move || {
            let size = fs::metadata(&path).map_or(0, |m| m.len());
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(size),
            }
        })
        .await
        .map_err(io::Error::other)??;
        self.bytes = self.bytes.saturating_sub(size);
        Ok(())
    }

    /// Moves the oldest file aside as `rejected-…` (InfluxDB refused its content, so
    /// sending it again cannot help; it is kept for a human, never silently deleted).
    pub(crate) async fn reject_front(&mut self) -> io::Result<PathBuf> {
        let Some(f) = self.files.pop_front() else {
            return Err(io::Error::other("spill: nothing to reject"));
        };
        self.points -= f.points;
        let name = f
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .map_or_else(|| "unknown.lp".to_owned(), |n| n.replacen(PREFIX, "", 1));
        let to = self.dir.join(format!("rejected-{name}"));
        let from = f.path;
        let dest = to.clone();
        tokio::task::spawn_blocking(move || fs::rename(&from, &dest))
            .await
            .map_err(io::Error::other)??;
        Ok(to)
    }
    /// Writes a batch InfluxDB refused to `rejected-<sequence>.lp`, synced, for a human.
    pub(crate) async fn write_rejected(&mut self, body: &Bytes) -> io::Result<PathBuf> {
        if self.bytes + body.len() as u64 > self.max_bytes {
            return Err(full(self.bytes, self.max_bytes));
        }
        let path = self
            .dir
            .join(format!("rejected-{:020}{SUFFIX}", self.next_seq));
        self.next_seq += 1;
        let (dir, dest, body) = (self.dir.clone(), path.clone(), body.clone());
        let size = body.len() as u64;
        tokio::task::spawn_blocking(move || append_synced(&dir, &dest, &body, true))
            .await
            .map_err(io::Error::other)??;
        self.bytes += size;
        Ok(path)
    }
}

/// Reads a spill file's complete lines; returns them and their count. A trailing line
/// without `\n` was torn by a crash and is left out.
pub(crate) fn read_complete(path: &Path) -> io::Result<(Bytes, usize)> {
    let mut data = fs::read(path)?;
    let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if end < data.len() {
        tracing::warn!(path = %path.display(), bytes = data.len() - end, "influx spill: dropping a torn last line");
    }
    data.truncate(end);
    let points = data.iter().filter(|&&b| b == b'\n').count();
    Ok((Bytes::from(data), points))
}

fn append_synced(dir: &Path, path: &Path, block: &[u8], new: bool) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(new)
        .create_new(new)
        .open(path)?;
    file.write_all(block)?;
    file.sync_data()?;
    if new {
        // Make the new name itself durable.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The spill files in `dir` with their sequence numbers, oldest first, and the bytes
/// that spill and rejected files take.
fn scan(dir: &Path) -> io::Result<(Vec<(u64, SpillFile)>, u64)> {
    fs::create_dir_all(dir)?;
    let now = Instant::now();
    let mut found = Vec::new();
    let mut bytes = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(SUFFIX)) {
            bytes += entry.metadata().map_or(0, |m| m.len());
        }
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let (_, points) = read_complete(&path)?;
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or(Duration::ZERO);
        found.push((
            seq,
            SpillFile {
                path,
                points,
                since: now.checked_sub(age).unwrap_or(now),
                // A file from a previous run may end torn: never append to it.
                sealed: true,
            },
        ));
    }
    found.sort_by_key(|(seq, _)| *seq);
    Ok((found, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_fill_a_file_then_roll_and_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::open(dir.path().to_owned(), 3, 1 << 20)
            .await
            .unwrap();
        let now = Instant::now();
        spill
            .append(Bytes::from("a 1\nb 2\n"), 2, now)
            .await
            .unwrap();
        spill.append(Bytes::from("c 3\n"), 1, now).await.unwrap();
        spill.append(Bytes::from("d 4\n"), 1, now).await.unwrap();
        assert_eq!(spill.points(), 4);
        assert_eq!(spill.files.len(), 2);

        // A crash tore a line at the end of the second file.
        let second = spill.files[1].path.clone();
        OpenOptions::new()
            .append(true)
            .open(&second)
            .unwrap()
            .write_all(b"e 5")
            .unwrap();
        drop(spill);

        let mut again = Spill::open(dir.path().to_owned(), 3, 1 << 20)
            .await
            .unwrap();
        assert_eq!(again.points(), 4);
        let first = again.take_front_for_sending().unwrap().path.clone();
        assert_eq!(
            read_complete(&first).unwrap(),
            (Bytes::from("a 1\nb 2\nc 3\n"), 3)
        );
        assert_eq!(read_complete(&second).unwrap(), (Bytes::from("d 4\n"), 1));
        // Reopened files are never appended to (one may end torn): a new file is made.
        again.append(Bytes::from("f 6\n"), 1, now).await.unwrap();
        assert_eq!(again.files.len(), 3);
        again.remove_front().await.unwrap();
        assert!(!first.exists());
        let rejected = again.reject_front().await.unwrap();
        assert!(rejected.exists() && !second.exists());
        assert_eq!(again.points(), 1);
    }

    #[tokio::test]
    async fn the_spill_and_rejected_files_are_bounded_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut spill = Spill::open(dir.path().to_owned(), 100, 20).await.unwrap();
        spill
            .append(Bytes::from("a 1\nb 2\n"), 2, now)
            .await
            .unwrap();
        spill.write_rejected(&Bytes::from("r 1\n")).await.unwrap();
        // 12 of 20 bytes taken: 9 more do not fit, whether spilled or rejected.
        assert!(spill
            .append(Bytes::from("c 3\nd 4\ne5\n"), 3, now)
            .await
            .is_err());
        assert!(spill
            .write_rejected(&Bytes::from("r 2\nr 3\nr4\n"))
            .await
            .is_err());
        assert_eq!(spill.points(), 2);
        // A restart counts what is on disk, rejected files included.
        drop(spill);
        let mut again = Spill::open(dir.path().to_owned(), 100, 20).await.unwrap();
        assert_eq!(again.bytes, 12);
        again.take_front_for_sending();
        again.remove_front().await.unwrap();
        assert_eq!(again.bytes, 4, "what was sent frees its space");
        again
            .append(Bytes::from("c 3\nd 4\ne5\n"), 3, now)
            .await
            .unwrap();
    }
}
