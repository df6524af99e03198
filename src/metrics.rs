//! Counters for `GET /metrics`, in Prometheus' text format (version 0.0.4).
//!
//! Cheap to update from every request: atomics, and one short-held mutex
//! for the per-route table. Store sizes are counted once and then kept up
//! to date by the writes (`Store::size`): a scrape does not walk the store.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<foldhash::HashMap<(&'static str, u16), u64>>,
    /// Requests by the first bucket they fall in (the exposition sums
    /// them): one counter per request instead of one per bucket above it.
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    writes: AtomicU64,
    snapshots: AtomicU64,
    rollbacks: AtomicU64,
    token_uses: AtomicU64,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
}

/// What the store holds: counted once, then kept by the writes (see
/// `Store::size`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreSize {
    pub projects: u64,
    pub branches: u64,
    pub objects: u64,
    pub object_bytes: u64,
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((route, status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        if let Some(first) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.latency_buckets[first].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn auth_failure(&self, reason: &'static str) {
        *self
            .auth_failures
            .lock()
            .expect("metrics")
            .entry(reason)
            .or_default() += 1;
    }

    /// A write through the API; `snapshot` when it took one.
    pub fn write(&self, snapshot: bool) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if snapshot {
            self.snapshots.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rollback(&self) {
        self.rollbacks.fetch_add(1, Ordering::Relaxed);
        self.snapshots.fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_use(&self) {
        self.token_uses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The exposition text.
    /// The text of `GET /metrics`. `audit_failures` counts changes made whose
    /// audit record could not be written (kept by `ops::audit`).
    pub fn render(&self, size: &StoreSize, audit_failures: u64) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "# HELP cfgstore_requests_total HTTP requests by route and status.\n# TYPE cfgstore_requests_total counter");
        let requests: BTreeMap<_, _> = self
            .requests
            .lock()
            .expect("metrics")
            .clone()
            .into_iter()
            .collect();
        for ((route, status), n) in requests {
            let _ = writeln!(
                text,
                "cfgstore_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(text, "# HELP cfgstore_request_duration_seconds Time to answer a request.\n# TYPE cfgstore_request_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                text,
                "cfgstore_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            text,
            "cfgstore_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            text,
            "cfgstore_request_duration_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(text, "cfgstore_request_duration_seconds_count {count}");
        let _ = writeln!(text, "# HELP cfgstore_auth_failures_total Refused requests by reason.\n# TYPE cfgstore_auth_failures_total counter");
        for (reason, n) in self.auth_failures.lock().expect("metrics").iter() {
            let _ = writeln!(
                text,
                "cfgstore_auth_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let counters = [
            (
                "cfgstore_writes_total",
                "Writes through the API (puts, deletes).",
                self.writes.load(Ordering::Relaxed),
            ),
            (
                "cfgstore_snapshots_total",
                "Snapshots taken by API writes and rollbacks.",
                self.snapshots.load(Ordering::Relaxed),
            ),
            (
                "cfgstore_rollbacks_total",
                "Rollbacks through the API.",
                self.rollbacks.load(Ordering::Relaxed),
            ),
            (
                "cfgstore_token_uses_total",
                "Requests authenticated by a read token.",
                self.token_uses.load(Ordering::Relaxed),
            ),
            (
                "cfgstore_audit_failures_total",
                "Changes made whose audit record could not be written.",
                audit_failures,
            ),
            (
                "cfgstore_connections_total",
                "Connections accepted.",
                self.connections_total.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let gauges = [
            (
                "cfgstore_connections_open",
                "Connections open now.",
                self.connections_open.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "cfgstore_store_projects",
                "Projects in the store.",
                size.projects,
            ),
            (
                "cfgstore_store_branches",
                "Branches in the store.",
                size.branches,
            ),
            (
                "cfgstore_store_objects",
                "Stored file contents (deduplicated).",
                size.objects,
            ),
            (
                "cfgstore_store_object_bytes",
                "Bytes of stored file contents.",
                size.object_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_happened() {
        let m = Metrics::default();
        m.request("tree", 200, Duration::from_millis(2));
        m.request("tree", 200, Duration::from_millis(300));
        m.request("tree", 404, Duration::from_micros(100));
        m.request("tree", 200, Duration::from_secs(9));
        m.auth_failure("expired");
        m.write(true);
        let text = m.render(
            &StoreSize {
                projects: 2,
                ..Default::default()
            },
            3,
        );
        assert!(text.contains("cfgstore_requests_total{route=\"tree\",status=\"200\"} 3\n"));
        assert!(text.contains("cfgstore_requests_total{route=\"tree\",status=\"404\"} 1\n"));
        assert!(text.contains("cfgstore_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("cfgstore_request_duration_seconds_bucket{le=\"0.0025\"} 2\n"));
        assert!(text.contains("cfgstore_request_duration_seconds_bucket{le=\"0.25\"} 2\n"));
        assert!(text.contains("cfgstore_request_duration_seconds_bucket{le=\"5\"} 3\n"));
        assert!(text.contains("cfgstore_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("cfgstore_auth_failures_total{reason=\"expired\"} 1\n"));
        assert!(text.contains("cfgstore_writes_total 1\n"));
        assert!(text.contains("cfgstore_store_projects 2\n"));
        assert!(text.contains("cfgstore_audit_failures_total 3\n"));
    }
}
