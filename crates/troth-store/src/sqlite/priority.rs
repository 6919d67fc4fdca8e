//! The durable path first: the threads that follow the log (the projections and
//! the copy of their WAL) run at a lower OS priority than the log writer and the
//! request threads. On a busy machine the scheduler then gives the append its
//! core, and the projections the time left; they catch up when the load eases,
//! and back-pressure ([`super::log::MAX_LAG_EVENTS`]) bounds how far they fall
//! behind. With all threads equal, a bulk import shared two cores three ways and
//! appended a third slower than with the log writer alone.

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
