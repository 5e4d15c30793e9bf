//! The disk spool: encoded batches kept in a directory until the server has committed them, so
//! that an outage longer than the memory buffer, an agent restart or a `kill -9` loses nothing
//! that was spooled.
//!
//! One file per batch ([`file`] has the format), named by a sequence number so that the oldest
//! goes first. Every file is written crash-safe: to a temporary name, fsync'd, renamed into
//! place, and the directory fsync'd; a file therefore either is complete or does not exist
//! under its final name. It carries the batch's id, so after a restart the batch is offered
//! again under the same id and the server's dedup table makes the repeat harmless. A file is
//! deleted once the server answered 200 for it (or the batch was rejected for good).
//!
//! What this is not: a queue of records (the in-memory [`crate::report::RecordQueue`] is), nor
//! a write-ahead log of single records: records still in memory when the agent dies are lost,
//! at most `-buffer` of them plus one batch being written.
//!
//! Bounded: at most `max_bytes` of files (a single batch larger than that is still kept, alone).
//! When a new batch does not fit, live capture drops the oldest files and counts their records;
//! a replay waits for room instead. Only the index (a few numbers per file) is in memory.
//!
//! At start, each file is read and checked one at a time; a torn or damaged file, or a
//! temporary left by a crash mid-write, is moved to `corrupt/` and counted, never a panic. A
//! directory that cannot be created, locked or written is one clear error at start, and a
//! second agent on the same directory is refused (an advisory lock on `lock`).
//!
//! Like Fluent Bit's filesystem storage (one chunk file per batch, checksummed, rescanned at
//! start) rather than Vector's disk buffer (one ledger of records across segment files): a
//! batch here is the unit the server commits and deduplicates, so it is the unit on disk too.

pub mod file;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::report::{Batch, BatchId};

/// Largest spool file read back at start (a batch body is far smaller): anything bigger is not
/// ours, and is not read into memory.
const MAX_FILE: u64 = 512 << 20;

/// Where the spool lives and how big it may grow.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// Why the spool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("-spool-dir {}: {what}: {source}", dir.display())]
    Unusable { dir: PathBuf, what: &'static str, source: io::Error },
    #[error("-spool-dir {}: another liteobs-agent uses this directory (it holds {})", dir.display(), dir.join("lock").display())]
    Locked { dir: PathBuf },
    #[error("spool file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// One spooled batch, as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub id: BatchId,
    pub records: u64,
    pub bytes: u64,
}

/// What opening the spool found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Batches left by an earlier run, to be delivered first.
    pub batches: u64,
    pub records: u64,
    /// Files moved to `corrupt/`, with why.
    pub set_aside: Vec<(PathBuf, String)>,
}

/// The spool directory and its index.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
    records: u64,
    next_seq: u64,
    /// The entry being delivered: never dropped to make room.
    in_flight: Option<u64>,
    /// Held for the spool's life: the advisory lock.
    _lock: File,
}

impl Spool {
    /// Opens (creating it if needed) and locks the directory, checks it can be written, and
    /// indexes the batches an earlier run left, setting aside what does not read back.
    pub fn open(cfg: &SpoolConfig) -> Result<(Spool, Recovered), SpoolError> {
        let dir = cfg.dir.clone();
        let unusable = |what: &'static str| {
            let dir = dir.clone();
            move |source: io::Error| SpoolError::Unusable { dir, what, source }
        };
        fs::create_dir_all(&dir).map_err(unusable("creating the directory"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(unusable("opening its lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked { dir: dir.clone() }),
            Err(fs::TryLockError::Error(e)) => return Err(unusable("locking it")(e)),
        }
        // Root ignores permission bits: only a real write shows the directory is usable.
        let probe = dir.join(".probe.tmp");
        write_durably(&dir, &probe, &dir.join(".probe"), b"probe")
            .map_err(unusable("writing a test file"))?;
        fs::remove_file(dir.join(".probe")).map_err(unusable("removing its test file"))?;

        let mut spool = Spool {
            dir: dir.clone(),
            max_bytes: cfg.max_bytes,
            entries: VecDeque::new(),
            bytes: 0,
            records: 0,
            next_seq: 0,
            in_flight: None,
            _lock: lock,
        };
        let mut recovered = Recovered::default();
        let listing = fs::read_dir(&dir).map_err(unusable("listing it"))?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for dirent in listing {
            let dirent = dirent.map_err(unusable("listing it"))?;
            let path = dirent.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            if !dirent.file_type().map(|t| t.is_file()).unwrap_or(false) || name == "lock" {
                continue;
            }
            match parse_name(&name) {
                Some(seq) => found.push((seq, path)),
                None if name.ends_with(".tmp") => spool.set_aside(
                    &path,
                    "a write the agent did not finish (crash mid-write)",
                    &mut recovered,
                ),
                None => {} // not ours: leave it alone
            }
        }
        found.sort();
        for (seq, path) in found {
            spool.next_seq = spool.next_seq.max(seq + 1);
            match read_batch(&path) {
                Ok(batch) => {
                    let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    spool.index(Entry { seq, id: batch.id, records: batch.records as u64, bytes });
                    recovered.batches += 1;
                    recovered.records += batch.records as u64;
                }
                Err(reason) => spool.set_aside(&path, &reason, &mut recovered),
            }
        }
        Ok((spool, recovered))
    }

    fn index(&mut self, e: Entry) {
        self.bytes += e.bytes;
        self.records += e.records;
        self.entries.push_back(e);
    }

    fn set_aside(&mut self, path: &Path, reason: &str, recovered: &mut Recovered) {
        let corrupt = self.dir.join("corrupt");
        let moved = fs::create_dir_all(&corrupt)
            .and_then(|()| {
                let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
                fs::rename(path, corrupt.join(name))
            })
            .or_else(|_| fs::remove_file(path));
        if let Err(e) = moved {
            tracing::warn!(path = %path.display(), error = %e, "cannot move a damaged spool file aside");
        }
        tracing::warn!(path = %path.display(), %reason, "spool file set aside in corrupt/");
        recovered.set_aside.push((path.to_owned(), reason.to_owned()));
    }

    /// True when a file of `bytes` fits without dropping anything (an empty spool always has
    /// room, so one batch larger than the limit is still kept).
    pub fn has_room(&self, bytes: u64) -> bool {
        self.bytes + bytes <= self.max_bytes || self.entries.iter().all(|e| Some(e.seq) == self.in_flight)
    }

    /// Writes `batch` crash-safe as the newest file. When it does not fit, the oldest files
    /// (but the one in flight) are deleted first; they are returned so the caller counts them.
    pub fn push(&mut self, batch: &Batch) -> Result<Vec<Entry>, SpoolError> {
        let data = file::encode(batch);
        let bytes = data.len() as u64;
        let mut dropped = Vec::new();
        while !self.has_room(bytes) {
            let Some(pos) = self.entries.iter().position(|e| Some(e.seq) != self.in_flight) else { break };
            if let Some(e) = self.entries.remove(pos) {
                self.forget(&e);
                let path = self.path(e.seq);
                if let Err(source) = fs::remove_file(&path).or_else(not_found_is_ok) {
                    return Err(SpoolError::Io { path, source });
                }
                dropped.push(e);
            }
        }
        let seq = self.next_seq;
        let path = self.path(seq);
        let tmp = self.dir.join(format!(".{seq:016x}.tmp"));
        write_durably(&self.dir, &tmp, &path, &data).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            SpoolError::Io { path: path.clone(), source }
        })?;
        self.next_seq += 1;
        self.index(Entry { seq, id: batch.id.clone(), records: batch.records as u64, bytes });
        Ok(dropped)
    }

    /// The oldest batch, marked in flight (it will not be dropped for room) until
    /// [`Spool::remove`] or [`Spool::release`].
    pub fn checkout(&mut self) -> Option<Entry> {
        let e = self.entries.front()?.clone();
        self.in_flight = Some(e.seq);
        Some(e)
    }

    /// Reads a checked-out batch back. A file that no longer reads back is set aside and
    /// forgotten: the error says why.
    pub fn load(&mut self, e: &Entry) -> Result<Batch, String> {
        let path = self.path(e.seq);
        match read_batch(&path) {
            Ok(b) => Ok(b),
            Err(reason) => {
                self.set_aside(&path, &reason, &mut Recovered::default());
                self.drop_entry(e.seq);
                Err(reason)
            }
        }
    }

    /// The server has the batch (or refused it for good): delete its file.
    pub fn remove(&mut self, e: &Entry) -> Result<(), SpoolError> {
        self.drop_entry(e.seq);
        let path = self.path(e.seq);
        fs::remove_file(&path).or_else(not_found_is_ok).map_err(|source| SpoolError::Io { path, source })
    }

    /// Gives a checked-out batch back, undelivered (shutdown).
    pub fn release(&mut self) {
        self.in_flight = None;
    }

    fn drop_entry(&mut self, seq: u64) {
        if self.in_flight == Some(seq) {
            self.in_flight = None;
        }
        if let Some(pos) = self.entries.iter().position(|e| e.seq == seq)
            && let Some(e) = self.entries.remove(pos)
        {
            self.forget(&e);
        }
    }

    fn forget(&mut self, e: &Entry) {
        self.bytes = self.bytes.saturating_sub(e.bytes);
        self.records = self.records.saturating_sub(e.records);
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016x}.batch"))
    }

    /// Records in the spool.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of spool files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The sequence number of a spool file name (`<16 hex digits>.batch`).
fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".batch")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn not_found_is_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

/// Reads and checks one file, without reading more than [`MAX_FILE`] bytes of it.
fn read_batch(path: &Path) -> Result<Batch, String> {
    let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE {
        return Err(format!("{len} bytes: larger than any batch ({MAX_FILE} bytes at most)"));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    file::parse(&bytes).map_err(|e| e.to_string())
}

/// temp + fsync + rename + fsync(dir): after a crash, `path` is either whole or absent.
fn write_durably(dir: &Path, tmp: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::rec;

    fn cfg(dir: &Path, max_bytes: u64) -> SpoolConfig {
        SpoolConfig { dir: dir.to_owned(), max_bytes }
    }

    fn batch(from: u32, n: u32) -> Batch {
        Batch::encode(&(from..from + n).map(rec).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn batches_survive_a_reopen_in_order_with_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (b1, b2) = (batch(0, 3), batch(3, 2));
        {
            let (mut s, rec) = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
            assert_eq!(rec.batches, 0);
            assert!(s.push(&b1).unwrap().is_empty());
            assert!(s.push(&b2).unwrap().is_empty());
            assert_eq!(s.records(), 5);
        }
        let (mut s, rec) = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        assert_eq!((rec.batches, rec.records), (2, 5));
        let e = s.checkout().unwrap();
        assert_eq!(s.load(&e).unwrap(), b1, "oldest first, same id and bytes");
        s.remove(&e).unwrap();
        let e = s.checkout().unwrap();
        assert_eq!(s.load(&e).unwrap(), b2);
        s.remove(&e).unwrap();
        assert!(s.is_empty() && s.checkout().is_none());
        let b3 = batch(9, 1);
        s.push(&b3).unwrap();
        drop(s);
        let (mut s, _) = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        let e = s.checkout().unwrap();
        assert_eq!(s.load(&e).unwrap(), b3, "sequence numbers keep growing after a restart");
    }

    #[test]
    fn torn_and_damaged_files_are_set_aside_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let good = batch(0, 2);
        {
            let (mut s, _) = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
            s.push(&good).unwrap();
            s.push(&batch(2, 2)).unwrap();
            s.push(&batch(4, 2)).unwrap();
        }
        let torn = dir.path().join("0000000000000001.batch");
        let data = fs::read(&torn).unwrap();
        fs::write(&torn, &data[..data.len() / 2]).unwrap();
        let flipped = dir.path().join("0000000000000002.batch");
        let mut data = fs::read(&flipped).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        fs::write(&flipped, data).unwrap();
        fs::write(dir.path().join(".0000000000000003.tmp"), b"LITEOBS-SPOOL 1\nid").unwrap();
        fs::write(dir.path().join("README"), b"not ours").unwrap();

        let (mut s, rec) = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        assert_eq!((rec.batches, rec.records), (1, 2));
        assert_eq!(rec.set_aside.len(), 3, "{:?}", rec.set_aside);
        let corrupt: Vec<_> = fs::read_dir(dir.path().join("corrupt")).unwrap().collect();
        assert_eq!(corrupt.len(), 3);
        assert!(dir.path().join("README").exists(), "files that are not ours are left alone");
        let e = s.checkout().unwrap();
        assert_eq!(s.load(&e).unwrap(), good);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_but_never_the_batch_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let one = file::encode(&batch(0, 2)).len() as u64;
        let (mut s, _) = Spool::open(&cfg(dir.path(), one * 3 + one / 2)).unwrap();
        for i in 0..3 {
            assert!(s.push(&batch(i * 2, 2)).unwrap().is_empty());
        }
        let in_flight = s.checkout().unwrap();
        assert!(!s.has_room(one));
        let dropped = s.push(&batch(6, 2)).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].seq, 1, "the oldest not in flight");
        assert_eq!(s.records(), 6);
        assert!(s.bytes() <= one * 3 + one / 2);
        assert_eq!(s.load(&in_flight).unwrap().records, 2);
    }

    #[test]
    fn an_unusable_directory_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        let e = Spool::open(&cfg(&file.join("spool"), 1 << 20)).unwrap_err().to_string();
        assert!(e.contains("-spool-dir") && e.contains("creating the directory"), "{e}");
        let e = Spool::open(&cfg(Path::new("/proc/liteobs-spool"), 1 << 20)).unwrap_err().to_string();
        assert!(e.contains("/proc/liteobs-spool"), "{e}");
    }

    #[test]
    fn a_second_agent_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap();
        let e = Spool::open(&cfg(dir.path(), 1 << 20)).unwrap_err();
        assert!(matches!(e, SpoolError::Locked { .. }), "{e}");
    }
}
