//! CPU time per thread of this process, by thread name, for the benchmarks: on a
//! machine of two cores the whole run is bounded by the CPU every thread spends,
//! so what each of troth's threads spends per event says where time can be won
//! (Linux only: read from `/proc`; elsewhere nothing is reported).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the threads are read: a thread that ends between two readings loses
/// at most this much of its time from the figures (an import's validating thread
/// ends before its store's threads are read for the last time). A reading of
/// twenty threads takes about 0.1 ms.
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
    sampler: Option<std::thread::JoinHandle<BTreeMap<u32, (String, u64)>>>,
    before: BTreeMap<u32, (String, u64)>,
}

impl ThreadCpu {
    pub fn start() -> ThreadCpu {
        let before = read();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(SAMPLER.into())
                .spawn(move || {
                    let mut latest = BTreeMap::new();
                    loop {
                        let done = stop.load(Ordering::Relaxed);
                        latest.extend(read());
                        if done {
                            return latest;
                        }
                        std::thread::sleep(EVERY);
                    }
                })
                .ok()
        };
        ThreadCpu { stop, sampler, before }
    }

    /// Stops reading; the CPU time each thread name spent since the start, most first.
    pub fn stop(mut self) -> Vec<(String, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        let latest = self
            .sampler
            .take()
            .and_then(|sampler| sampler.join().ok())
            .unwrap_or_default();
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        for (tid, (name, ns)) in latest {
            if name == SAMPLER {
                continue;
            }
            let before = self.before.get(&tid).map_or(0, |(_, ns)| *ns);
            *by_name.entry(name).or_default() += ns.saturating_sub(before);
        }
        let mut spent: Vec<(String, Duration)> = by_name
            .into_iter()
            .filter(|(_, ns)| *ns > 0)
            .map(|(name, ns)| (name, Duration::from_nanos(ns)))
            .collect();
        spent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        spent
    }
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
    fn names_cut_by_linux_are_given_back_whole() {
        assert_eq!(name_of("troth-projectio", false), "troth-projections");
        assert_eq!(name_of("troth-log", false), "troth-log");
        assert_eq!(name_of("troth-log", true), "main");
        assert_eq!(name_of("something-else", false), "something-else");
    }
}
