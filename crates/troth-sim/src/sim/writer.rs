//! The events of a simulated day, written as JSON text into one buffer with an
//! index to sort them by when they reach troth, then streamed out in that order.
//!
//! Memory stays bounded however many customers a world has: once the buffer holds
//! [`SPILL_BYTES`], it is sorted and written to a temporary file (a *run*), and
//! [`Out::flush`] merges the runs with what is still in memory. Every event carries
//! its place in the order it was written, so the merge gives the same bytes as one
//! sort of everything would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

use troth_core::Timestamp;

use crate::json::{push_escaped, push_fixed1, push_fixed6, push_i64, push_time, push_u64};

/// How much event text is held in memory before it goes to a run on disk.
pub(super) const SPILL_BYTES: usize = 64 << 20;

/// An event in the buffer: when it reaches troth (`key`), its place in writing
/// order (`ord`, unique), when it happened, and where its text lies.
struct Entry {
    key: i64,
    ord: u64,
    time: i64,
    start: usize,
    end: usize,
}

/// A sorted run of events on disk, read back one event at a time.
struct Run {
    path: PathBuf,
    reader: BufReader<File>,
    head: Option<Spilled>,
}

struct Spilled {
    key: i64,
    ord: u64,
    time: i64,
    text: String,
}

impl Run {
    fn advance(&mut self) -> std::io::Result<()> {
        let mut header = [0u8; 28];
        match self.reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.head = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let word = |i: usize| <[u8; 8]>::try_from(&header[i..i + 8]).unwrap_or_default();
        let len = u32::from_le_bytes(<[u8; 4]>::try_from(&header[24..28]).unwrap_or_default()) as usize;
        let mut text = vec![0u8; len];
        self.reader.read_exact(&mut text)?;
        self.head = Some(Spilled {
            key: i64::from_le_bytes(word(0)),
            ord: u64::from_le_bytes(word(8)),
            time: i64::from_le_bytes(word(16)),
            text: String::from_utf8(text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        });
        Ok(())
    }

    fn head_order(&self) -> Option<(i64, u64)> {
        self.head.as_ref().map(|h| (h.key, h.ord))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Already gone where the file was unlinked as soon as it was opened.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The day's events being written (see the module's description).
pub(super) struct Out {
    /// The text of the events in memory; callers append raw JSON to the current
    /// event's `data` between [`Out::key`] and the next field.
    pub(super) arena: String,
    index: Vec<Entry>,
    spare: String,
    prefix: String,
    counter: u64,
    first: bool,
    cur_start: usize,
    cur_key: i64,
    cur_time: i64,
    /// Events written out so far.
    pub(super) written: u64,
    /// The world's end: events after it are not written.
    end: i64,
    runs: Vec<Run>,
    /// How much text memory holds before a spill.
    spill_bytes: usize,
    /// A failure to spill, answered by the next flush.
    spill_error: Option<std::io::Error>,
}

impl Out {
    /// A writer whose event ids start with `prefix` and count from 1, spilling to
    /// disk past `spill_bytes` of text.
    pub(super) fn new(prefix: String, end: i64, spill_bytes: usize) -> Out {
        Out {
            arena: String::with_capacity(1 << 20),
            index: Vec::new(),
            spare: String::new(),
            prefix,
            counter: 1,
            first: true,
            cur_start: 0,
            cur_key: 0,
            cur_time: 0,
            written: 0,
            end,
            runs: Vec::new(),
            spill_bytes,
            spill_error: None,
        }
    }

    /// Starts an event that happens at `time` and reaches troth `delay` later.
    pub(super) fn begin(&mut self, time: i64, delay: i64, event_type: &str, source: &str, channel: &str) {
        self.cur_start = self.arena.len();
        self.cur_key = time + delay;
        self.cur_time = time;
        let a = &mut self.arena;
        a.push_str("{\"id\":\"");
        a.push_str(&self.prefix);
        push_u64(a, self.counter);
        a.push_str("\",\"type\":\"");
        a.push_str(event_type);
        a.push_str("\",\"time\":\"");
        push_time(a, time);
        a.push_str("\",\"source\":\"");
        push_escaped(a, source);
        a.push_str("\",\"channel\":\"");
        a.push_str(channel);
        a.push('"');
    }

    /// `"subject":"kind:prefixN"`.
    pub(super) fn subject(&mut self, kind: &str, prefix: &str, n: u64) {
        self.arena.push_str(",\"subject\":\"");
        self.arena.push_str(kind);
        self.arena.push(':');
        self.arena.push_str(prefix);
        push_u64(&mut self.arena, n);
        self.arena.push('"');
    }

    /// `"subject":"kind:id"`.
    pub(super) fn subject_text(&mut self, kind: &str, id: &str) {
        self.arena.push_str(",\"subject\":\"");
        self.arena.push_str(kind);
        self.arena.push(':');
        push_escaped(&mut self.arena, id);
        self.arena.push('"');
    }

    /// Opens the event's `data` object.
    pub(super) fn data(&mut self) {
        self.arena.push_str(",\"data\":{");
        self.first = true;
    }

    /// Closes the event (its `data` and itself) and indexes it.
    pub(super) fn end(&mut self) {
        self.arena.push_str("}}");
        self.index.push(Entry {
            key: self.cur_key,
            ord: self.counter,
            time: self.cur_time,
            start: self.cur_start,
            end: self.arena.len(),
        });
        self.counter += 1;
        if self.arena.len() >= self.spill_bytes
            && self.spill_error.is_none()
            && let Err(e) = self.spill()
        {
            self.spill_error = Some(e);
        }
    }

    /// Writes a field's name inside `data`; its value follows.
    pub(super) fn key(&mut self, k: &str) {
        if !self.first {
            self.arena.push(',');
        }
        self.first = false;
        self.arena.push('"');
        self.arena.push_str(k);
        self.arena.push_str("\":");
    }

    pub(super) fn text(&mut self, k: &str, v: &str) {
        self.key(k);
        self.arena.push('"');
        push_escaped(&mut self.arena, v);
        self.arena.push('"');
    }

    /// A string field `prefixN`, such as `"order":"o-12"`.
    pub(super) fn prefixed_id(&mut self, k: &str, prefix: &str, n: u64) {
        self.key(k);
        self.arena.push('"');
        self.arena.push_str(prefix);
        push_u64(&mut self.arena, n);
        self.arena.push('"');
    }

    pub(super) fn int(&mut self, k: &str, v: i64) {
        self.key(k);
        push_i64(&mut self.arena, v);
    }

    pub(super) fn boolean(&mut self, k: &str, v: bool) {
        self.key(k);
        self.arena.push_str(if v { "true" } else { "false" });
    }

    /// An RFC 3339 instant given in microseconds.
    pub(super) fn instant(&mut self, k: &str, micros: i64) {
        self.key(k);
        self.arena.push('"');
        push_time(&mut self.arena, micros);
        self.arena.push('"');
    }

    /// A number with six decimals (coordinates).
    pub(super) fn fixed6(&mut self, k: &str, v: f64) {
        self.key(k);
        push_fixed6(&mut self.arena, v);
    }

    /// A number with one decimal (speeds, headings, accuracy).
    pub(super) fn fixed1(&mut self, k: &str, v: f64) {
        self.key(k);
        push_fixed1(&mut self.arena, v);
    }

    /// Sorts what is in memory and writes it to a new run on disk.
    fn spill(&mut self) -> std::io::Result<()> {
        self.index.sort_unstable_by_key(|e| (e.key, e.ord));
        let path = std::env::temp_dir().join(format!(
            "troth-sim-{}-{}-{}.run",
            std::process::id(),
            self.prefix.trim_end_matches('-'),
            self.counter
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Unlinked at once where the system allows: the space is freed however the process ends.
        let _ = std::fs::remove_file(&path);
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        for e in &self.index {
            let text = &self.arena.as_bytes()[e.start..e.end];
            writer.write_all(&e.key.to_le_bytes())?;
            writer.write_all(&e.ord.to_le_bytes())?;
            writer.write_all(&e.time.to_le_bytes())?;
            writer.write_all(&(text.len() as u32).to_le_bytes())?;
            writer.write_all(text)?;
        }
        let mut file = writer.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        let mut run = Run {
            path,
            reader: BufReader::with_capacity(64 << 10, file),
            head: None,
        };
        run.advance()?;
        self.runs.push(run);
        self.arena.clear();
        self.index.clear();
        Ok(())
    }

    /// Writes, in the order they reach troth, every event that reaches it before
    /// `limit` (and happened before the world's end); keeps the rest for later.
    pub(super) fn flush(&mut self, limit: i64, sink: &mut crate::TimedSink<'_>) -> std::io::Result<()> {
        if let Some(e) = self.spill_error.take() {
            return Err(e);
        }
        self.index.sort_unstable_by_key(|e| (e.key, e.ord));
        let split = self.index.partition_point(|e| e.key < limit);
        // The smallest head of every run, merged with the sorted memory.
        let mut heads: BinaryHeap<Reverse<(i64, u64, usize)>> = self
            .runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.head_order().map(|(key, ord)| Reverse((key, ord, i))))
            .collect();
        let mut next = 0;
        loop {
            let from_run = heads
                .peek()
                .map(|Reverse((key, ord, i))| (*key, *ord, *i))
                .filter(|(key, ..)| *key < limit);
            let from_memory = self.index[..split].get(next).map(|e| (e.key, e.ord));
            match (from_memory, from_run) {
                (Some(m), Some((key, ord, _))) if m < (key, ord) => {
                    self.write_memory(next, sink)?;
                    next += 1;
                }
                (_, Some((.., i))) => {
                    heads.pop();
                    let run = &mut self.runs[i];
                    if let Some(h) = run.head.take()
                        && h.time < self.end
                    {
                        sink(&h.text, Timestamp(h.key))?;
                        self.written += 1;
                    }
                    run.advance()?;
                    if let Some((key, ord)) = run.head_order() {
                        heads.push(Reverse((key, ord, i)));
                    }
                }
                (Some(_), None) => {
                    self.write_memory(next, sink)?;
                    next += 1;
                }
                (None, None) => break,
            }
        }
        self.runs.retain(|r| r.head.is_some());
        self.spare.clear();
        let mut kept = Vec::with_capacity(self.index.len() - split);
        for e in &self.index[split..] {
            let start = self.spare.len();
            self.spare.push_str(&self.arena[e.start..e.end]);
            kept.push(Entry {
                start,
                end: self.spare.len(),
                ..*e
            });
        }
        std::mem::swap(&mut self.arena, &mut self.spare);
        self.index.clear();
        self.index.extend(kept);
        Ok(())
    }

    fn write_memory(&mut self, i: usize, sink: &mut crate::TimedSink<'_>) -> std::io::Result<()> {
        let e = &self.index[i];
        if e.time < self.end {
            sink(&self.arena[e.start..e.end], Timestamp(e.key))?;
            self.written += 1;
        }
        Ok(())
    }
}
