//! The durable path first: the threads that follow the log (the projections, the
//! customers' copies, the read-ahead and the copy of the projections' WAL) run at a
//! lower OS priority than the log writer and the request threads. On a busy
//! machine the scheduler then gives the append its core, and the projections the
//! time left; they catch up when the load eases, and back-pressure
//! ([`super::log::MAX_LAG_EVENTS`]) bounds how far they fall behind. With all
//! threads equal, a bulk import shared two cores three ways and appended a third
//! slower than with the log writer alone. (Nice 19 during an import lifted its
//! append a little more, but the priority is the whole machine's: on a host busy
//! with other work the projections of a 234,684-event import then caught up in 15–29 s
//! instead of 9–10; and a thread without privileges cannot take it back.)

/// The nice value the following threads take (0 is the default, 19 the lowest).
/// At 5 the scheduler weighs them about a third of a normal thread when both want
/// a core; idle cores they get in full. (At 10 the projections' lag during the
/// HTTP benchmark rose from about 25 ms to 50–110 ms for no more speed.)
pub const FOLLOWER_NICE: i32 = 5;

/// Lowers the calling thread's priority to [`FOLLOWER_NICE`]. On Linux a nice
/// value belongs to the thread (`setpriority` on the caller changes only it);
/// elsewhere nothing changes. A refusal is logged and otherwise harmless.
pub fn follow_behind_the_log(thread: &str) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, FOLLOWER_NICE) {
        tracing::debug!(thread, error = %e, "could not lower the thread's priority; it runs at the default");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice value of a thread of this process, from /proc (field 19 of `stat`).
    fn nice_of(tid: &str) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // The name in parentheses may hold spaces; the fields after it do not.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    fn own_tid() -> String {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        link.file_name().unwrap().to_str().unwrap().to_owned()
    }

    /// The nice value of each thread of this process with this name (`comm` holds
    /// at most 15 bytes of it).
    fn nice_of_threads(name: &str) -> Vec<i32> {
        let name = &name[..name.len().min(15)];
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let tid = task.ok()?.file_name().into_string().ok()?;
                let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
                (comm.trim_end() == name).then(|| nice_of(&tid))
            })
            .collect()
    }

    #[test]
    fn a_store_s_projections_give_way_to_its_log_writer() {
        let base = nice_of(&own_tid());
        let dir = tempfile::tempdir().unwrap();
        let _store = crate::sqlite::SqliteStore::open(dir.path()).unwrap();
        // Each thread lowers its own priority as it starts, and takes its name as it
        // starts too (on a busy machine, after `open` returns): wait, bounded, for both.
        let followers = ["troth-projections", "troth-checkpoint", "troth-read-ahead"];
        let given_way = || {
            followers.iter().all(|name| {
                let nices = nice_of_threads(name);
                !nices.is_empty() && nices.iter().all(|n| *n == FOLLOWER_NICE.max(base))
            })
        };
        let started = || given_way() && !nice_of_threads("troth-log").is_empty();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !started() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let seen: Vec<_> = followers.iter().map(|name| (name, nice_of_threads(name))).collect();
        assert!(
            given_way(),
            "each should run at nice {}: {seen:?}",
            FOLLOWER_NICE.max(base)
        );
        let writers = nice_of_threads("troth-log");
        assert!(
            !writers.is_empty() && writers.iter().all(|n| *n == base),
            "the log writer keeps its priority: {writers:?}"
        );
    }

    #[test]
    fn only_the_calling_thread_gives_way() {
        let main = own_tid();
        let before = nice_of(&main);
        let (follower, nice) = std::thread::spawn(|| {
            follow_behind_the_log("test");
            let tid = own_tid();
            let nice = nice_of(&tid);
            (tid, nice)
        })
        .join()
        .unwrap();
        assert_ne!(follower, main);
        assert_eq!(nice, FOLLOWER_NICE.max(before));
        assert_eq!(nice_of(&main), before, "the other threads keep their priority");
    }
}
