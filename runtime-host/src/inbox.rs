//! The embedded broker's durable inbox: every sensor message the embedded
//! broker takes is appended here before the broker may acknowledge it, and
//! the in-process bridge reads it from here (not from the broker, which
//! keeps messages in memory only). A reading acknowledged to a sensor is
//! therefore in this file first; after a crash of the process, the bridge
//! goes on from the last committed record.
//!
//! Layout: a directory of segments, `{base}.log`, where `base` is the
//! offset of the segment's first byte in the inbox as a whole, and a
//! `cursor` file: the offset up to which every record was applied,
//! written in place as 20 zero-padded digits and a newline. Every write has
//! the same 21 bytes at offset 0, inside one disk sector, so the file is
//! always whole. (Replacing it by rename made ext4 write the new file out
//! synchronously, `auto_da_alloc`, on every commit: a tenth of the ingest
//! path's CPU time under load.) A record is
//! `[body length: u32 LE][CRC-32 of the body: u32 LE][body]`, and a body is
//! `[topic length: u16 LE][topic][payload]`. Each record goes to the kernel
//! in one write(2) on a file opened for appending: once written it survives
//! the process being killed. It is not fsynced, so an operating-system crash
//! or a power loss can still lose the last records (as SQLite's
//! `synchronous=NORMAL` can lose its last commits).
//!
//! A record cut short (the process killed mid-write) or corrupt ends its
//! segment: opening the inbox truncates it there, and says so.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use bytes::Bytes;

/// A segment is closed once it holds this much; fully committed closed
/// segments are deleted.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Length and CRC.
const HEADER_BYTES: u64 = 8;
/// The largest body a record may have (MQTT's own limit is 256 MiB; the
/// embedded broker takes payloads up to 1 MiB).
pub const MAX_BODY_BYTES: usize = 16 << 20;
const CURSOR_FILE: &str = "cursor";

/// One message read back, with where the next record starts: committing
/// `next` marks this record (and all before it) applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub next: u64,
    pub topic: String,
    pub payload: Bytes,
}

#[derive(Debug)]
struct Segment {
    base: u64,
    /// One past the segment's last whole record.
    end: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct State {
    /// In order; the last one is appended to.
    segments: Vec<Segment>,
    active: File,
    /// The `cursor` file, open for writing.
    cursor: File,
    committed: u64,
    /// Set when a failed write could not be undone: nothing more is appended.
    broken: Option<String>,
    #[cfg(test)]
    fail_after: Option<usize>,
}

#[derive(Debug)]
pub struct Inbox {
    dir: PathBuf,
    state: Mutex<State>,
    appended: tokio::sync::Notify,
}

impl Inbox {
    /// Opens (or creates) the inbox in `dir`, dropping a torn or corrupt
    /// tail of any segment.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("creating the inbox directory {}: check its permissions", dir.display())
        })?;
        let committed = read_cursor(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse::<u64>().ok()) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::new();
        for base in bases {
            let path = dir.join(segment_name(base));
            let length = scan(&path)?;
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let size = file.metadata()?.len();
            if size > length {
                tracing::warn!(
                    segment = %path.display(),
                    kept_bytes = length,
                    dropped_bytes = size - length,
                    "the inbox ended in a torn or corrupt record (the process stopped mid-write?): dropped it"
                );
                file.set_len(length).with_context(|| format!("truncating {}", path.display()))?;
            }
            segments.push(Segment { base, end: base + length, path });
        }
        // Segments wholly committed are garbage from before a crash.
        while segments.len() > 1 && segments[1].base <= committed {
            let old = segments.remove(0);
            let _ = std::fs::remove_file(&old.path);
        }
        // Start where the cursor is when nothing is past it (a first start,
        // or records behind the cursor lost with the disk's cache): offsets
        // never go back, and the reader resumes at the cursor.
        if segments.last().is_none_or(|last| last.end < committed) {
            let path = dir.join(segment_name(committed));
            segments.push(Segment { base: committed, end: committed, path });
        }
        let last = segments.last().expect("one segment at least");
        let active = open_append(&last.path)?;
        let cursor_path = dir.join(CURSOR_FILE);
        let cursor = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&cursor_path)
            .with_context(|| format!("opening the inbox cursor {}", cursor_path.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                segments,
                active,
                cursor,
                committed,
                broken: None,
                #[cfg(test)]
                fail_after: None,
            }),
            appended: tokio::sync::Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one message; once this returns, the record survives the
    /// process. Returns the record's offset. On error nothing was appended.
    pub fn append(&self, topic: &str, payload: &[u8]) -> Result<u64> {
        let body_len = 2 + topic.len() + payload.len();
        if topic.len() > u16::MAX as usize || body_len > MAX_BODY_BYTES {
            bail!(
                "a message of {body_len} bytes on {topic:?} is over the inbox's {MAX_BODY_BYTES}-byte limit"
            );
        }
        let mut record = Vec::with_capacity(HEADER_BYTES as usize + body_len);
        record.extend_from_slice(&(body_len as u32).to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        record.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        record.extend_from_slice(topic.as_bytes());
        record.extend_from_slice(payload);
        let crc = crc32fast::hash(&record[HEADER_BYTES as usize..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());

        let mut state = self.state();
        if let Some(reason) = &state.broken {
            bail!(
                "the inbox in {} cannot take messages since an earlier failure: {reason}",
                self.dir.display()
            );
        }
        let last = state.segments.last().expect("one segment at least");
        if last.end - last.base >= SEGMENT_BYTES {
            let base = last.end;
            let path = self.dir.join(segment_name(base));
            state.active = open_append(&path)?;
            state.segments.push(Segment { base, end: base, path });
        }
        let (base, offset) = {
            let last = state.segments.last().expect("one segment at least");
            (last.base, last.end)
        };
        if let Err(e) = state.write(&record) {
            // Whatever part of the record reached the file goes again.
            let undone = state.active.set_len(offset - base);
            let what = format!("writing to {}: {e}", self.dir.join(segment_name(base)).display());
            if let Err(undo) = undone {
                state.broken = Some(format!("{what}; then cutting the partial record off failed: {undo}"));
            }
            bail!("{what} (is the disk full?)");
        }
        state.segments.last_mut().expect("one segment at least").end = offset + record.len() as u64;
        drop(state);
        self.appended.notify_one();
        Ok(offset)
    }

    /// Marks everything before `next` applied: a restart resumes there.
    /// Segments wholly before it are deleted.
    pub fn commit(&self, next: u64) -> Result<()> {
        let mut state = self.state();
        if next <= state.committed {
            return Ok(());
        }
        // 20 digits hold any u64: every write covers the whole file.
        state
            .cursor
            .write_all_at(format!("{next:020}\n").as_bytes(), 0)
            .with_context(|| format!("saving the inbox cursor in {}", self.dir.display()))?;
        state.committed = next;
        while state.segments.len() > 1 && state.segments[1].base <= next {
            let old = state.segments.remove(0);
            if let Err(e) = std::fs::remove_file(&old.path) {
                tracing::warn!(segment = %old.path.display(), error = %e, "could not delete an applied inbox segment");
            }
        }
        Ok(())
    }

    /// Where a restart resumes.
    pub fn committed(&self) -> u64 {
        self.state().committed
    }

    /// Reads the records after the committed cursor, in order.
    pub fn reader(self: &std::sync::Arc<Self>) -> Reader {
        Reader { inbox: self.clone(), position: self.committed(), file: None }
    }

    /// The segment holding `position` (or the first after it) and its end.
    fn locate(&self, position: u64) -> Option<(u64, u64, PathBuf)> {
        let state = self.state();
        state.segments.iter().find(|s| position < s.end).map(|s| (s.base, s.end, s.path.clone()))
    }

    #[cfg(test)]
    fn fail_next_write_after(&self, bytes: usize) {
        self.state().fail_after = Some(bytes);
    }
}

impl State {
    fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(bytes) = self.fail_after.take() {
            self.active.write_all(&record[..bytes.min(record.len())])?;
            return Err(std::io::Error::other("injected failure"));
        }
        self.active.write_all(record)
    }
}

/// Reads records in order, waiting for new ones.
pub struct Reader {
    inbox: std::sync::Arc<Inbox>,
    position: u64,
    file: Option<(u64, File)>,
}

impl Reader {
    /// The next record, once there is one.
    pub async fn next(&mut self) -> Result<Record> {
        loop {
            if let Some(record) = self.try_next()? {
                return Ok(record);
            }
            self.inbox.appended.notified().await;
        }
    }

    /// The next record, if one is there already.
    pub fn try_next(&mut self) -> Result<Option<Record>> {
        let Some((base, end, path)) = self.inbox.locate(self.position) else { return Ok(None) };
        // Past a corrupt tail cut off at opening: on to the next segment.
        self.position = self.position.max(base);
        if self.position >= end {
            return Ok(None);
        }
        if self.file.as_ref().is_none_or(|(b, _)| *b != base) {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            self.file = Some((base, file));
        }
        let (_, file) = self.file.as_ref().expect("opened above");
        let at = self.position - base;
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut header, at).with_context(|| format!("reading {}", path.display()))?;
        let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        if length > MAX_BODY_BYTES as u64 {
            bail!("the inbox record at offset {} of {} is corrupt", self.position, path.display());
        }
        let mut body = vec![0u8; length as usize];
        file.read_exact_at(&mut body, at + HEADER_BYTES)
            .with_context(|| format!("reading {}", path.display()))?;
        let Some((topic, payload)) = decode(&header, &body) else {
            bail!("the inbox record at offset {} of {} is corrupt", self.position, path.display());
        };
        let offset = self.position;
        self.position += HEADER_BYTES + length;
        Ok(Some(Record { offset, next: self.position, topic, payload }))
    }
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.log")
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the inbox segment {} for appending", path.display()))
}

fn read_cursor(dir: &Path) -> Result<u64> {
    let path = dir.join(CURSOR_FILE);
    match std::fs::read_to_string(&path) {
        // Created at opening, written at the first commit.
        Ok(text) if text.is_empty() => Ok(0),
        Ok(text) => text.trim().parse().with_context(|| {
            format!(
                "the inbox cursor {} holds {text:?}, not an offset: restore it or remove the inbox",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A record's topic and payload, if its CRC and framing hold.
fn decode(header: &[u8; HEADER_BYTES as usize], body: &[u8]) -> Option<(String, Bytes)> {
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if crc32fast::hash(body) != crc || body.len() < 2 {
        return None;
    }
    let topic_len = u16::from_le_bytes([body[0], body[1]]) as usize;
    let topic = body.get(2..2 + topic_len)?;
    let topic = std::str::from_utf8(topic).ok()?.to_owned();
    Some((topic, Bytes::copy_from_slice(&body[2 + topic_len..])))
}

/// The length of the segment's prefix of whole, intact records.
fn scan(path: &Path) -> Result<u64> {
    let data =
        std::fs::read(path).with_context(|| format!("reading the inbox segment {}", path.display()))?;
    let mut at = 0usize;
    while let Some(header) = data.get(at..at + HEADER_BYTES as usize) {
        let header: &[u8; HEADER_BYTES as usize] = header.try_into().expect("8 bytes");
        let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if length > MAX_BODY_BYTES {
            break;
        }
        let start = at + HEADER_BYTES as usize;
        let Some(body) = data.get(start..start + length) else { break };
        if decode(header, body).is_none() {
            break;
        }
        at = start + length;
    }
    Ok(at as u64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn all(inbox: &Arc<Inbox>) -> Vec<(String, Vec<u8>)> {
        let mut reader = inbox.reader();
        let mut out = Vec::new();
        while let Some(record) = reader.try_next().unwrap() {
            out.push((record.topic, record.payload.to_vec()));
        }
        out
    }

    fn message(i: usize) -> (String, Vec<u8>) {
        (format!("parking/uplink/D{i}"), format!("{{\"seq\":{i}}}").into_bytes())
    }

    #[test]
    fn a_cut_at_every_byte_of_the_last_record_keeps_every_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        let whole;
        {
            let inbox = Inbox::open(dir.path()).unwrap();
            for i in 0..3 {
                let (topic, payload) = message(i);
                inbox.append(&topic, &payload).unwrap();
            }
            whole = inbox.state().segments[0].end;
            let (topic, payload) = message(3);
            inbox.append(&topic, &payload).unwrap();
            path = inbox.state().segments[0].path.clone();
        }
        let full = std::fs::read(&path).unwrap();
        for cut in whole as usize..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
            assert_eq!(all(&inbox), (0..3).map(message).collect::<Vec<_>>(), "cut at byte {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "the torn tail is truncated");
            // And it appends after the whole records.
            let (topic, payload) = message(9);
            inbox.append(&topic, &payload).unwrap();
            assert_eq!(all(&inbox).last().unwrap(), &message(9));
        }
    }

    #[test]
    fn corrupt_bytes_end_the_inbox_there_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let inbox = Inbox::open(dir.path()).unwrap();
            for i in 0..3 {
                let (topic, payload) = message(i);
                inbox.append(&topic, &payload).unwrap();
            }
            inbox.state().segments[0].path.clone()
        };
        let mut data = std::fs::read(&path).unwrap();
        let second = data.len() / 3 + 10;
        data[second] ^= 0xFF;
        std::fs::write(&path, &data).unwrap();
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        assert_eq!(all(&inbox), vec![message(0)]);
        // Garbage alone, and a length past any limit.
        std::fs::write(&path, [0xFFu8; 64]).unwrap();
        assert!(all(&Arc::new(Inbox::open(dir.path()).unwrap())).is_empty());
    }

    #[test]
    fn the_cursor_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
            for i in 0..5 {
                let (topic, payload) = message(i);
                inbox.append(&topic, &payload).unwrap();
            }
            let mut reader = inbox.reader();
            let _ = reader.try_next().unwrap().unwrap();
            let second = reader.try_next().unwrap().unwrap();
            inbox.commit(second.next).unwrap();
            // Going back is ignored.
            inbox.commit(0).unwrap();
        }
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        assert_eq!(all(&inbox), (2..5).map(message).collect::<Vec<_>>());
        std::fs::write(dir.path().join(CURSOR_FILE), "not a number").unwrap();
        let error = Inbox::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not an offset"), "{error}");
    }

    #[test]
    fn the_cursor_is_written_in_place_and_reads_an_earlier_parkds() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        // An earlier parkd wrote the cursor unpadded.
        let (topic, payload) = message(0);
        let length = {
            let inbox = Inbox::open(dir.path()).unwrap();
            inbox.append(&topic, &payload).unwrap();
            inbox.append(&topic, &payload).unwrap();
            inbox.state().segments[0].end / 2
        };
        std::fs::write(dir.path().join(CURSOR_FILE), format!("{length}\n")).unwrap();
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        assert_eq!(inbox.committed(), length);
        assert_eq!(all(&inbox), vec![message(0)]);
        // Replacing the file by rename makes ext4 write it out synchronously
        // on every commit: the same inode means it was written in place.
        let inode = || std::fs::metadata(dir.path().join(CURSOR_FILE)).unwrap().ino();
        let before = inode();
        inbox.commit(length * 2).unwrap();
        assert_eq!(inode(), before, "the cursor was replaced, not written in place");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CURSOR_FILE)).unwrap(),
            format!("{:020}\n", length * 2)
        );
        drop(inbox);
        assert_eq!(Inbox::open(dir.path()).unwrap().committed(), length * 2);
    }

    #[test]
    fn records_lost_behind_the_cursor_do_not_hide_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
            for i in 0..3 {
                let (topic, payload) = message(i);
                inbox.append(&topic, &payload).unwrap();
            }
            let mut reader = inbox.reader();
            let mut last = 0;
            while let Some(record) = reader.try_next().unwrap() {
                last = record.next;
            }
            inbox.commit(last).unwrap();
            inbox.state().segments[0].path.clone()
        };
        // The cursor reached the disk, the records did not (a power loss).
        std::fs::write(&path, b"").unwrap();
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        let (topic, payload) = message(3);
        inbox.append(&topic, &payload).unwrap();
        assert_eq!(all(&inbox), vec![message(3)]);
    }

    #[test]
    fn a_failed_append_leaves_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        let (topic, payload) = message(0);
        inbox.append(&topic, &payload).unwrap();
        inbox.fail_next_write_after(7);
        assert!(inbox.append("parking/uplink/D1", b"lost").is_err());
        let (topic, payload) = message(2);
        inbox.append(&topic, &payload).unwrap();
        assert_eq!(all(&inbox), vec![message(0), message(2)]);
        drop(inbox);
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        assert_eq!(all(&inbox), vec![message(0), message(2)]);
        assert!(inbox.append("t", &vec![0; MAX_BODY_BYTES]).is_err(), "over the limit");
    }

    #[test]
    fn segments_roll_over_and_applied_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        let big = vec![7u8; 1 << 20];
        let count = (SEGMENT_BYTES >> 20) as usize + 3;
        for _ in 0..count {
            inbox.append("parking/uplink/big", &big).unwrap();
        }
        assert_eq!(inbox.state().segments.len(), 2);
        let mut reader = inbox.reader();
        let mut last = None;
        let mut read = 0;
        while let Some(record) = reader.try_next().unwrap() {
            read += 1;
            last = Some(record.next);
        }
        assert_eq!(read, count);
        inbox.commit(last.unwrap()).unwrap();
        assert_eq!(inbox.state().segments.len(), 1);
        let logs = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"));
        assert_eq!(logs.count(), 1);
        drop(reader);
        drop(inbox);
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        assert!(all(&inbox).is_empty());
        inbox.append("t", b"after").unwrap();
        assert_eq!(all(&inbox), vec![("t".to_owned(), b"after".to_vec())]);
    }

    #[tokio::test]
    async fn a_reader_waits_for_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Arc::new(Inbox::open(dir.path()).unwrap());
        let mut reader = inbox.reader();
        let waiting = tokio::spawn(async move { reader.next().await.unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        inbox.append("t", b"x").unwrap();
        let record = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!((record.offset, record.topic.as_str(), &record.payload[..]), (0, "t", &b"x"[..]));
    }
}
