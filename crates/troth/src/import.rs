//! `troth import`: NDJSON into a store (validated on one thread, written by the
//! store's writer on another), or streamed to a running server.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use troth_core::{ValidEvent, validate_event};
use troth_store::sqlite::{AppendPending, SqliteStore};
use troth_store::{AppendStatus, Store};

use crate::cli::ImportArgs;
use crate::client::{Client, Target};

/// Events validated ahead of the writer, per batch handed to it. As many as one
/// commit of the log takes ([`troth_store::sqlite::MAX_GROUP_EVENTS`]): ids are
/// random, so every commit rewrites most pages of the log's index of ids, and a
/// batch of 8,192 wrote them four times as often (append: 131–142k events/s
/// against 151–189k with 32,768, 200,000 events).
const BATCH_EVENTS: usize = troth_store::sqlite::MAX_GROUP_EVENTS;
/// The first batch's size; each next one is twice the last, up to [`BATCH_EVENTS`].
/// The log writer waits idle for the first batch: validating 32,768 events first
/// takes 80–160 ms (2.5–5 µs an event), against about 0.8 s for all of a
/// 100,000-event import. Small batches get it going at once and, since it writes
/// more slowly than events are validated, the batches reach their full size within
/// a few commits.
const FIRST_BATCH_EVENTS: usize = 1_024;
/// Batches handed to the log writer and not yet answered.
const IN_FLIGHT_BATCHES: usize = 2;
/// Lines per request when sending to a server.
const LINES_PER_REQUEST: usize = 5_000;
/// How many rejected lines the summary lists.
const REJECTS_SHOWN: usize = 20;

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub lines: u64,
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    /// The first rejected lines: (line, field, message).
    pub rejects: Vec<(u64, String, String)>,
    /// How long writing the log took.
    pub elapsed: Duration,
    /// How long until the projections had caught up too (an import into a store).
    pub projected: Option<Duration>,
    /// How long until each projector had caught up, in the order the store lists them.
    pub projectors: Vec<(&'static str, Duration)>,
}

impl Summary {
    fn reject(&mut self, line: u64, field: String, message: String) {
        self.rejected += 1;
        if self.rejects.len() < REJECTS_SHOWN {
            self.rejects.push((line, field, message));
        }
    }

    pub fn events_per_second(&self) -> f64 {
        (self.accepted + self.duplicate + self.rejected) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Events per second from the start until the projections had caught up.
    pub fn end_to_end_per_second(&self) -> Option<f64> {
        self.projected
            .map(|d| (self.accepted + self.duplicate + self.rejected) as f64 / d.as_secs_f64().max(1e-9))
    }

    fn print(&self, source: &str) {
        println!(
            "imported {source}: {} accepted, {} duplicate, {} rejected in {:.1} s ({} events/s into the log)",
            self.accepted,
            self.duplicate,
            self.rejected,
            self.elapsed.as_secs_f64(),
            troth_core::number::thousands(self.events_per_second().round() as i64)
        );
        if let (Some(projected), Some(rate)) = (self.projected, self.end_to_end_per_second()) {
            let each = self
                .projectors
                .iter()
                .map(|(name, after)| format!("{name} {:.1} s", after.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "  projectors caught up after {:.1} s ({} events/s end to end): {each}",
                projected.as_secs_f64(),
                troth_core::number::thousands(rate.round() as i64)
            );
        }
        for (line, field, message) in &self.rejects {
            println!("  line {line}: {field}: {message}");
        }
        if self.rejected as usize > self.rejects.len() {
            println!(
                "  … and {} more rejected lines",
                self.rejected as usize - self.rejects.len()
            );
        }
    }
}

/// Exit status when some lines were rejected (the others were imported).
pub const EXIT_SOME_REJECTED: u8 = 3;

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let (input, total_bytes): (Box<dyn Read + Send>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let source = args.file.display().to_string();
    let read = Arc::new(AtomicU64::new(0));
    let input = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: input,
            read: read.clone(),
        },
    );
    let bar = match total_bytes {
        Some(total) => bytes_bar(total),
        None => counter_bar("lines"),
    };
    let summary = match (&args.url, &args.data_dir) {
        (Some(url), _) => to_server(url, args.key.clone(), input, &bar, &read)?,
        (None, data_dir) => {
            let dir = match data_dir {
                Some(dir) => dir.clone(),
                None => {
                    let dir = std::path::PathBuf::from(crate::config::DEFAULT_DATA_DIR);
                    // Without --url or --data-dir the store is a directory of the current one: say which.
                    eprintln!(
                        "importing into the store in {} (use --data-dir DIR for another, or --url to send to a server)",
                        std::path::absolute(&dir).unwrap_or_else(|_| dir.clone()).display()
                    );
                    dir
                }
            };
            let journey = crate::config::load_journey(args.journey.as_deref())?;
            let store = SqliteStore::open_with_journey(&dir, Some(&journey))
                .with_context(|| format!("opening the store in {}", dir.display()))?;
            // The log's bar on top, a bar per projector under it: they follow the log
            // while it is written and finish after it.
            let bars = MultiProgress::new();
            let bar = bars.add(bar.clone());
            let mut projectors = ProjectorBars::new(&bars, &store);
            let mut summary = into_store(&store, input, &mut |s| {
                progress(&bar, s, &read, total_bytes);
                projectors.update(&store.progress(), s.elapsed);
            })?;
            bar.finish_and_clear();
            catch_up(&store, &mut summary, projectors)?;
            summary
        }
    };
    bar.finish_and_clear();
    summary.print(&source);
    Ok(if summary.rejected > 0 {
        ExitCode::from(EXIT_SOME_REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}

fn progress(bar: &ProgressBar, summary: &Summary, read: &AtomicU64, total: Option<u64>) {
    match total {
        Some(_) => bar.set_position(read.load(Ordering::Relaxed)),
        None => bar.set_position(summary.lines),
    }
    bar.set_message(format!(
        "{} events, {:.0}/s",
        summary.accepted + summary.duplicate,
        summary.events_per_second()
    ));
}

pub fn bytes_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {percent:>3}% {bytes}/{total_bytes} {msg} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn counter_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        // indicatif's {per_sec} prints fractions of an event; the rate is whole here.
        ProgressStyle::with_template(&format!("{{spinner}} {{human_pos}} {label} ({{rate}}) {{msg}}"))
            .map(|style| {
                style.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                        let _ = write!(out, "{:.0}/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Validated events of consecutive lines, and the rejected lines among them.
struct Batch {
    events: Vec<ValidEvent>,
    /// Each event's line number.
    numbers: Vec<u64>,
    rejects: Vec<(u64, String, String)>,
    lines: u64,
}

/// Waits until the store's projections have every event imported, with a bar.
fn catch_up(store: &SqliteStore, summary: &mut Summary, mut bars: ProjectorBars) -> anyhow::Result<()> {
    let started = Instant::now() - summary.elapsed;
    store
        .settle_blocking(&mut |_, _| bars.update(&store.progress(), started.elapsed()))
        .context("the projections stopped before they caught up")?;
    let caught_up = started.elapsed();
    bars.update(&store.progress(), caught_up);
    summary.projected = Some(caught_up);
    summary.projectors = bars.finish(caught_up);
    Ok(())
}

/// A bar per projector: how far it has followed the log.
struct ProjectorBars {
    bars: Vec<(&'static str, ProgressBar)>,
    /// When each projector was last seen at the head of the log (`None` while behind).
    caught_up: Vec<Option<Duration>>,
}

impl ProjectorBars {
    fn new(multi: &MultiProgress, store: &SqliteStore) -> Self {
        let style =
            ProgressStyle::with_template("{bar:30} {percent:>3}% {prefix:<11} {human_pos}/{human_len} events {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        let progress = store.progress();
        let bars: Vec<_> = progress
            .projectors
            .iter()
            .map(|projector| {
                let bar = multi.add(ProgressBar::new(progress.log.max(1) as u64));
                bar.set_style(style.clone());
                bar.set_prefix(projector.name);
                (projector.name, bar)
            })
            .collect();
        let caught_up = vec![None; bars.len()];
        ProjectorBars { bars, caught_up }
    }

    fn update(&mut self, progress: &troth_store::Progress, elapsed: Duration) {
        for ((name, bar), caught_up) in self.bars.iter().zip(&mut self.caught_up) {
            let Some(at) = progress.projectors.iter().find(|p| p.name == *name) else {
                continue;
            };
            bar.set_length(progress.log.max(1) as u64);
            bar.set_position(at.position.max(0) as u64);
            if at.lag_events > 0 {
                *caught_up = None;
                bar.set_message(format!("({:.1} s behind)", at.lag_seconds));
            } else {
                caught_up.get_or_insert(elapsed);
                bar.set_message("");
            }
        }
    }

    /// Clears the bars; when each projector caught up (the end, for one never seen at the head).
    fn finish(self, end: Duration) -> Vec<(&'static str, Duration)> {
        self.bars
            .into_iter()
            .zip(self.caught_up)
            .map(|((name, bar), caught_up)| {
                bar.finish_and_clear();
                (name, caught_up.unwrap_or(end))
            })
            .collect()
    }
}

/// Imports NDJSON into an open store (the log; the projections follow). `on_progress`
/// is called after each batch.
pub fn into_store(
    store: &SqliteStore,
    input: impl BufRead + Send,
    on_progress: &mut dyn FnMut(&Summary),
) -> anyhow::Result<Summary> {
    // An import writes the log at full speed and waits for the projections at the
    // end: nothing reads meanwhile, and what the lag holds in memory is bounded
    // anyway (the projections read what the handoff cannot hold from the log).
    store.set_max_lag(i64::MAX);
    store.set_max_lag_age(Duration::MAX);
    let started = Instant::now();
    let mut summary = Summary::default();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2);
        let reader = std::thread::Builder::new()
            .name("troth-validate".into())
            .spawn_scoped(scope, move || validate_lines(input, tx))
            .context("starting the validating thread")?;
        // Two batches in the log writer's hands: it starts on the next as soon as
        // it has committed one, rather than after this thread has heard back.
        let mut in_flight = std::collections::VecDeque::new();
        let mut answered = |summary: &mut Summary, (pending, lines): (AppendPending, u64)| -> anyhow::Result<()> {
            for status in pending.wait()? {
                match status {
                    AppendStatus::Accepted { .. } => summary.accepted += 1,
                    AppendStatus::Duplicate => summary.duplicate += 1,
                }
            }
            summary.lines = lines;
            summary.elapsed = started.elapsed();
            on_progress(summary);
            Ok(())
        };
        for batch in rx {
            for (line, field, message) in batch.rejects {
                summary.reject(line, field, message);
            }
            in_flight.push_back((store.send_append_blocking(batch.events)?, batch.lines));
            if in_flight.len() >= IN_FLIGHT_BATCHES
                && let Some(oldest) = in_flight.pop_front()
            {
                answered(&mut summary, oldest)?;
            }
        }
        while let Some(oldest) = in_flight.pop_front() {
            answered(&mut summary, oldest)?;
        }
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reading thread panicked"))??;
        Ok(())
    })?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn validate_lines(mut input: impl BufRead, tx: std::sync::mpsc::SyncSender<Batch>) -> anyhow::Result<()> {
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    let mut size = FIRST_BATCH_EVENTS;
    let new_batch = |size: usize| Batch {
        events: Vec::with_capacity(size),
        numbers: Vec::with_capacity(size),
        rejects: Vec::new(),
        lines: 0,
    };
    let mut batch = new_batch(size);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).context("reading the input")? == 0 {
            break;
        }
        number += 1;
        let validated = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => validate_event(text.trim()),
            Err(e) => {
                batch
                    .rejects
                    .push((number, "event".into(), format!("is not UTF-8: {e}")));
                continue;
            }
        };
        match validated {
            Ok(event) => {
                batch.events.push(event);
                batch.numbers.push(number);
            }
            Err(rejection) => batch
                .rejects
                .push((number, rejection.error.field, rejection.error.message)),
        }
        if batch.events.len() >= size {
            batch.lines = number;
            size = (size * 2).min(BATCH_EVENTS);
            if tx.send(std::mem::replace(&mut batch, new_batch(size))).is_err() {
                return Ok(());
            }
        }
    }
    batch.lines = number;
    let _ = tx.send(batch);
    Ok(())
}

/// Sends NDJSON lines to a server's `/api/v1/events/ndjson` in requests of
/// [`LINES_PER_REQUEST`] lines, and tallies the answers with the lines' numbers
/// counted from the first line sent.
pub struct ServerSink {
    runtime: tokio::runtime::Runtime,
    client: Client,
    url: String,
    body: Vec<u8>,
    lines_in_body: u64,
    summary: Summary,
    started: Instant,
}

impl ServerSink {
    pub fn connect(url: &str, key: Option<String>) -> anyhow::Result<ServerSink> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = runtime.block_on(async {
            let target = Target::parse(url).await?;
            Client::connect(&target, key).await
        })?;
        Ok(ServerSink {
            runtime,
            client,
            url: url.to_owned(),
            body: Vec::with_capacity(1 << 20),
            lines_in_body: 0,
            summary: Summary::default(),
            started: Instant::now(),
        })
    }

    /// Adds one line (a newline is added when it has none); sends when a request is full.
    pub fn line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        self.body.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            self.body.push(b'\n');
        }
        self.lines_in_body += 1;
        if self.lines_in_body == LINES_PER_REQUEST as u64 {
            self.send()?;
        }
        Ok(())
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub fn finish(mut self) -> anyhow::Result<Summary> {
        if self.lines_in_body > 0 {
            self.send()?;
        }
        Ok(self.summary)
    }

    fn send(&mut self) -> anyhow::Result<()> {
        let first_line = self.summary.lines + 1;
        let body = bytes::Bytes::from(std::mem::replace(&mut self.body, Vec::with_capacity(1 << 20)));
        let request = self.client.request(
            hyper::Method::POST,
            "/api/v1/events/ndjson",
            "application/x-ndjson",
            body,
        );
        let (status, answer) = self
            .runtime
            .block_on(request)
            .with_context(|| format!("sending lines {first_line}… to {}", self.url))?;
        if !status.is_success() {
            anyhow::bail!("{} answered {status}: {}", self.url, String::from_utf8_lossy(&answer));
        }
        tally(&mut self.summary, &answer, first_line - 1)?;
        self.summary.lines += self.lines_in_body;
        self.lines_in_body = 0;
        self.summary.elapsed = self.started.elapsed();
        Ok(())
    }
}

fn to_server(
    url: &str,
    key: Option<String>,
    mut input: impl BufRead,
    bar: &ProgressBar,
    read: &AtomicU64,
) -> anyhow::Result<Summary> {
    let mut sink = ServerSink::connect(url, key)?;
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).context("reading the input")? == 0 {
            break;
        }
        sink.line(&line)?;
        if sink.lines_in_body == 0 {
            progress(bar, sink.summary(), read, Some(0));
        }
    }
    sink.finish()
}

pub(crate) fn tally(summary: &mut Summary, answer: &[u8], line_offset: u64) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Answer {
        results: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        status: String,
        line: Option<u64>,
        error: Option<Error>,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        field: String,
        message: String,
    }
    let answer: Answer = serde_json::from_slice(answer).context("the server's answer is not the ingest result list")?;
    for item in answer.results {
        match item.status.as_str() {
            "accepted" => summary.accepted += 1,
            "duplicate" => summary.duplicate += 1,
            _ => {
                let error = item.error.unwrap_or(Error {
                    field: "event".into(),
                    message: "rejected".into(),
                });
                summary.reject(line_offset + item.line.unwrap_or(0), error.field, error.message);
            }
        }
    }
    Ok(())
}

/// Counts the bytes read through it, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
