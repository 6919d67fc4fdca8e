//! CPU time per thread of this process, by thread name, for the benchmarks: on a
//! machine of two cores the whole run is bounded by the CPU every thread spends,
//! so what each of troth's threads spends per event says where time can be won
//! (Linux only: read from `/proc`; elsewhere nothing is reported).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the threads are read. A thread that ends after its last reading
/// (an import's validating thread ends before its store's threads are read for
/// the last time) is given what the process's total says no reading saw: on a
/// saturated machine the sampler itself may wait tens of milliseconds for a core.
const EVERY: Duration = Duration::from_millis(10);

/// The sampler's own name, left out of the figures.
const SAMPLER: &str = "troth-bench-cpu";

/// Thread names as troth gives them; Linux keeps the first 15 bytes of a name.
const KNOWN: &[&str] = &[
    "troth-log",
    "troth-projections",
    "troth-stories",
    "troth-validate",
    "troth-checkpoint",
    "troth-read-ahead",
    "tokio-rt-worker",
];

/// CPU time per thread since [`ThreadCpu::start`].
pub struct ThreadCpu {
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<Readings>>,
    before: BTreeMap<u32, (String, u64)>,
    process_before: Option<u64>,
}

/// What the sampler saw: each thread's latest reading, and which threads the last
/// reading found.
struct Readings {
    latest: BTreeMap<u32, (String, u64)>,
    alive: Vec<u32>,
}

impl ThreadCpu {
    pub fn start() -> ThreadCpu {
        let before = read();
        let process_before = process_cpu_ns();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(SAMPLER.into())
                .spawn(move || {
                    let mut latest = BTreeMap::new();
                    loop {
                        let done = stop.load(Ordering::Relaxed);
                        let now = read();
                        let alive = now.keys().copied().collect();
                        latest.extend(now);
                        if done {
                            return Readings { latest, alive };
                        }
                        std::thread::sleep(EVERY);
                    }
                })
                .ok()
        };
        ThreadCpu {
            stop,
            sampler,
            before,
            process_before,
        }
    }

    /// Stops reading; the CPU time each thread name spent since the start, most first.
    pub fn stop(mut self) -> Vec<(String, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        let Readings { latest, alive } =
            self.sampler
                .take()
                .and_then(|sampler| sampler.join().ok())
                .unwrap_or(Readings {
                    latest: BTreeMap::new(),
                    alive: Vec::new(),
                });
        let process = self
            .process_before
            .zip(process_cpu_ns())
            .map(|(before, after)| after.saturating_sub(before));
        let by_name = attribute(&self.before, latest, &alive, process);
        let mut spent: Vec<(String, Duration)> = by_name
            .into_iter()
            .filter(|(_, ns)| *ns > 0)
            .map(|(name, ns)| (name, Duration::from_nanos(ns)))
            .collect();
        spent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        spent
    }
}

/// Each thread name's CPU time between `before` and `latest` (each thread's last
/// reading; `alive`, those the final reading found), the sampler's left out. A
/// thread that ended after its last reading took time no reading saw; the
/// process's total over the same span (`process`, which keeps ended threads' time)
/// tells how much. With one such thread (an import's validating thread) it is that
/// one's; with several, it is reported as theirs together.
fn attribute(
    before: &BTreeMap<u32, (String, u64)>,
    latest: BTreeMap<u32, (String, u64)>,
    alive: &[u32],
    process: Option<u64>,
) -> BTreeMap<String, u64> {
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    let mut read_in_all = 0;
    let mut ended = Vec::new();
    for (tid, (name, ns)) in latest {
        let spent = ns.saturating_sub(before.get(&tid).map_or(0, |(_, ns)| *ns));
        read_in_all += spent;
        if !alive.contains(&tid) {
            ended.push(name.clone());
        }
        if name != SAMPLER {
            *by_name.entry(name).or_default() += spent;
        }
    }
    ended.sort();
    ended.dedup();
    if let Some(unread) = process.map(|p| p.saturating_sub(read_in_all)).filter(|n| *n > 0) {
        match ended.as_slice() {
            [one] => *by_name.entry(one.clone()).or_default() += unread,
            [] => {}
            _ => *by_name.entry("threads that ended".into()).or_default() += unread,
        }
    }
    by_name
}

/// The CPU time of the whole process so far, ended threads included, in
/// nanoseconds (`utime` and `stime` of `/proc/self/stat`, in ticks of 10 ms, the
/// `USER_HZ` of every architecture Linux runs on).
fn process_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The name in parentheses may hold spaces; the fields after it do not. After it
    // come the state (field 3) and the rest: utime is field 14, stime field 15.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// The calling thread's time on a core so far, in nanoseconds (the first field of
/// its `schedstat`); `None` where `/proc` does not say.
pub fn this_thread_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Each thread's name and CPU time so far (nanoseconds on a core), by thread id.
fn read() -> BTreeMap<u32, (String, u64)> {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    let main = std::process::id();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let path = task.path();
        // The first field of `schedstat` is the time spent on a core, in nanoseconds.
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        let comm = std::fs::read_to_string(path.join("comm")).ok();
        if let (Some(ns), Some(comm)) = (ns, comm) {
            threads.insert(tid, (name_of(comm.trim_end(), tid == main), ns));
        }
    }
    threads
}

/// The name a thread was given, from the 15 bytes Linux keeps; the process's
/// first thread is `main`.
fn name_of(comm: &str, main: bool) -> String {
    if main {
        return "main".into();
    }
    KNOWN
        .iter()
        .find(|known| known.len() > 15 && known.starts_with(comm) && comm.len() == 15)
        .map_or(comm, |known| known)
        .to_owned()
}

/// One line: each thread's CPU per unit (`per`, e.g. "event"), in microseconds,
/// and their sum.
pub fn line(spent: &[(String, f64)], per: &str) -> String {
    let total: f64 = spent.iter().map(|(_, us)| us).sum();
    let each = spent
        .iter()
        .filter(|(_, us)| *us >= 0.05)
        .map(|(name, us)| format!("{name} {us:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("cpu    µs per {per}: {each} ({total:.1} in all)")
}

/// CPU per unit in microseconds, from what [`ThreadCpu::stop`] answered.
pub fn per_unit(spent: &[(String, Duration)], units: f64) -> Vec<(String, f64)> {
    spent
        .iter()
        .map(|(name, time)| (name.clone(), time.as_secs_f64() * 1e6 / units.max(1.0)))
        .collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_thread_is_charged_for_its_work_and_not_for_its_sleep() {
        let at = || this_thread_ns().expect("/proc/thread-self/schedstat");
        let before = at();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let busy = at() - before;
        let before = at();
        std::thread::sleep(Duration::from_millis(50));
        let asleep = at() - before;
        assert!(busy > asleep * 4, "busy {busy} ns, asleep {asleep} ns");
    }

    #[test]
    fn a_busy_named_thread_is_counted_by_its_name_and_an_idle_one_is_not() {
        let cpu = ThreadCpu::start();
        let running = Arc::new(AtomicBool::new(true));
        let spawn = |name: &str, busy: bool| {
            let running = running.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let mut x = 0u64;
                    while running.load(Ordering::Relaxed) {
                        if busy {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                        } else {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
                .unwrap()
        };
        let threads = [spawn("troth-projections", true), spawn("troth-idle", false)];
        std::thread::sleep(Duration::from_millis(100));
        // Read while both still run.
        let spent = cpu.stop();
        running.store(false, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
        let of = |name: &str| spent.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let busy = of("troth-projections").expect("the busy thread, by its whole name");
        let idle = of("troth-idle").unwrap_or_default();
        assert!(busy > idle * 4, "{spent:?}");
        assert!(of(SAMPLER).is_none(), "{spent:?}");
    }

    #[test]
    fn a_thread_that_ended_unread_is_given_the_time_no_reading_saw() {
        let thread = |name: &str, ns: u64| (name.to_owned(), ns);
        let before = BTreeMap::from([(1, thread("troth-log", 100))]);
        let latest = BTreeMap::from([
            (1, thread("troth-log", 400)),
            (2, thread("troth-validate", 200)),
            (3, thread(SAMPLER, 10)),
        ]);
        // The validating thread was last read at 200 and has ended; the process
        // spent 700 in all: 300 + 200 + 10 read, 190 unread.
        let spent = attribute(&before, latest.clone(), &[1, 3], Some(700));
        assert_eq!(spent.get("troth-log"), Some(&300));
        assert_eq!(spent.get("troth-validate"), Some(&390));
        assert!(!spent.contains_key(SAMPLER));
        // Nothing ended: the remainder (ticks' rounding) goes nowhere.
        let spent = attribute(&before, latest.clone(), &[1, 2, 3], Some(700));
        assert_eq!(spent.get("troth-validate"), Some(&200));
        // Two ended: theirs together.
        let mut two = latest;
        two.insert(4, thread("troth-read-ahead", 50));
        let spent = attribute(&before, two, &[1, 3], Some(800));
        assert_eq!(spent.get("threads that ended"), Some(&240));
    }

    #[test]
    fn the_process_cpu_time_grows_with_work() {
        let before = process_cpu_ns().expect("readable on Linux");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(process_cpu_ns().unwrap() > before);
    }

    #[test]
    fn names_cut_by_linux_are_given_back_whole() {
        assert_eq!(name_of("troth-projectio", false), "troth-projections");
        assert_eq!(name_of("troth-log", false), "troth-log");
        assert_eq!(name_of("troth-log", true), "main");
        assert_eq!(name_of("something-else", false), "something-else");
    }
}
