//! Counters exposed at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type ByStatus = BTreeMap<u16, (u64, f64)>;

#[derive(Default)]
pub struct Metrics {
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_rejected: AtomicU64,
    /// route → status → (count, total seconds)
    requests: Mutex<BTreeMap<String, ByStatus>>,
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, took: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by &str first: no allocation once a route has been seen.
        let by_status = match requests.get_mut(route) {
            Some(by_status) => by_status,
            None => requests.entry(route.to_owned()).or_default(),
        };
        let entry = by_status.entry(status).or_default();
        entry.0 += 1;
        entry.1 += took.as_secs_f64();
    }

    pub fn count_events(&self, accepted: u64, duplicate: u64, rejected: u64) {
        self.events_accepted.fetch_add(accepted, Ordering::Relaxed);
        self.events_duplicate.fetch_add(duplicate, Ordering::Relaxed);
        self.events_rejected.fetch_add(rejected, Ordering::Relaxed);
    }

    /// The counters, and the log's and projectors' positions from `progress`.
    pub fn render(
        &self,
        progress: &troth_store::Progress,
        wal: Option<troth_store::WalStats>,
        waits: Option<troth_store::AppendWaits>,
    ) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP troth_log_position The position of the newest event in the log.\n# TYPE troth_log_position gauge\n",
        );
        let _ = writeln!(out, "troth_log_position {}", progress.log);
        if let Some(waits) = waits {
            out.push_str(
                "# HELP troth_append_waits_total Appends that waited because the projections were too far behind the log (back-pressure).\n\
                 # TYPE troth_append_waits_total counter\n",
            );
            let _ = writeln!(out, "troth_append_waits_total {}", waits.waits);
            out.push_str(
                "# HELP troth_append_wait_seconds_total The time appends waited for the projections, summed.\n\
                 # TYPE troth_append_wait_seconds_total counter\n",
            );
            let _ = writeln!(out, "troth_append_wait_seconds_total {:.6}", waits.seconds);
        }
        if let Some(wal) = wal {
            out.push_str(
                "# HELP troth_log_wal_restarts_total Times the log's WAL passed its limit and the log writer started it over \
                 (done), or found readers still in it and let it grow (busy).\n# TYPE troth_log_wal_restarts_total counter\n",
            );
            let done = wal.restarts_tried.saturating_sub(wal.restarts_busy);
            let _ = writeln!(out, "troth_log_wal_restarts_total{{outcome=\"done\"}} {done}");
            let _ = writeln!(
                out,
                "troth_log_wal_restarts_total{{outcome=\"busy\"}} {}",
                wal.restarts_busy
            );
            out.push_str(
                "# HELP troth_log_wal_largest_bytes The largest the log's WAL file was after a commit since the store opened, in bytes.\n\
                 # TYPE troth_log_wal_largest_bytes gauge\n",
            );
            let _ = writeln!(out, "troth_log_wal_largest_bytes {}", wal.largest_bytes);
        }
        type Gauge = fn(&troth_store::ProjectorProgress) -> String;
        let per_projector: [(&str, &str, Gauge); 3] = [
            ("position", "Every event up to this position is projected.", |p| {
                p.position.to_string()
            }),
            ("lag_events", "Events in the log not yet projected.", |p| {
                p.lag_events.to_string()
            }),
            (
                "lag_seconds",
                "Age of the oldest event the projector does not hold yet; 0 when it holds them all.",
                |p| format!("{:.3}", p.lag_seconds),
            ),
        ];
        for (name, help, value) in per_projector {
            let _ = writeln!(
                out,
                "# HELP troth_projector_{name} {help}\n# TYPE troth_projector_{name} gauge"
            );
            for p in &progress.projectors {
                let _ = writeln!(out, "troth_projector_{name}{{projector=\"{}\"}} {}", p.name, value(p));
            }
        }
        out.push_str("# HELP troth_events_total Events received, by outcome.\n# TYPE troth_events_total counter\n");
        for (status, counter) in [
            ("accepted", &self.events_accepted),
            ("duplicate", &self.events_duplicate),
            ("rejected", &self.events_rejected),
        ] {
            let _ = writeln!(
                out,
                "troth_events_total{{status=\"{status}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP troth_http_requests_total HTTP requests, by route and status.\n# TYPE troth_http_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let rows = || {
            requests
                .iter()
                .flat_map(|(route, by_status)| by_status.iter().map(move |(status, v)| (route, status, v)))
        };
        for (route, status, (count, _)) in rows() {
            let _ = writeln!(
                out,
                "troth_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP troth_http_request_seconds_sum Time spent answering HTTP requests, by route and status.\n# TYPE troth_http_request_seconds_sum counter\n");
        for (route, status, (_, seconds)) in rows() {
            let _ = writeln!(
                out,
                "troth_http_request_seconds_sum{{route=\"{route}\",status=\"{status}\"}} {seconds:.6}"
            );
        }
        out
    }
}
