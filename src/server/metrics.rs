//! The server's own metrics: leases and pool per family, grants, renewals,
//! releases, expiries, refusals by reason, replies dropped; rendered for the
//! textfile collector and written atomically.

use std::time::Duration;

use tracing::warn;

use crate::exposition::Exposition;
use crate::protocol::ErrorCode;

use super::*;

impl Server {
    /// The server's metrics in Prometheus text format (docs/config.md).
    pub fn metrics(&self) -> String {
        let mut e = Exposition::default();
        for family in &self.config.families {
            let (used, size) = self.table.pool_usage(*family).unwrap_or((0, 0));
            let l = [("family", family.name())];
            e.gauge(
                "table_allocator_leases",
                "Leases held now.",
                &l,
                used.into(),
            );
            e.gauge(
                "table_allocator_pool_size",
                "Tables in the pool.",
                &l,
                size.into(),
            );
        }
        let c = self.table.counters;
        for (name, help, v) in [
            ("grants", "New leases granted.", c.grants),
            ("renewals", "Leases renewed.", c.renewals),
            ("releases", "Leases released by their client.", c.releases),
            ("expiries", "Leases reaped at their deadline.", c.expiries),
        ] {
            e.counter(
                &format!("table_allocator_{name}_total"),
                help,
                &[],
                v as f64,
            );
        }
        for (code, n) in ErrorCode::ALL.iter().zip(self.refusals) {
            e.counter(
                "table_allocator_refusals_total",
                "Requests answered with an error reply, by reason.",
                &[("reason", code.as_str())],
                n as f64,
            );
        }
        let d = self.outbox.dropped;
        for (reason, n) in [
            ("queue_full", d.queue_full),
            ("peer_full", d.peer_full),
            ("timed_out", d.timed_out),
            ("refused_sender", d.refused_sender),
        ] {
            e.counter(
                "table_allocator_replies_dropped_total",
                "Replies not delivered because the client's queue stayed full, by reason.",
                &[("reason", reason)],
                n as f64,
            );
        }
        e.gauge(
            "table_allocator_replies_pending",
            "Replies waiting for room in their client's queue.",
            &[],
            self.outbox.len() as f64,
        );
        e.gauge(
            "table_allocator_start_time_seconds",
            "Unix time the server started.",
            &[],
            self.started_unix as f64,
        );
        e.render()
    }

    /// Writes the metrics file when one is configured; a failure is logged
    /// and the server goes on.
    pub fn write_metrics(&self) {
        if let Some(path) = &self.config.metrics_path {
            if let Err(e) = crate::files::replace(path, &self.metrics()) {
                warn!(path = %path.display(), "cannot write metrics: {e}");
            }
        }
    }

    pub(super) fn metrics_interval(&self) -> Option<Duration> {
        self.config
            .metrics_path
            .as_ref()
            .map(|_| Duration::from_secs(self.config.metrics_interval))
    }
}
