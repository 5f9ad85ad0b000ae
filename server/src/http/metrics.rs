//! Prometheus metrics: syncs, their latency, rejected changes, the document cache.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabel {
    pub code: String,
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    pub(crate) syncs: Family<OutcomeLabel, Counter>,
    pub(crate) sync_seconds: Histogram,
    pub(crate) sync_request_bytes: Counter,
    pub(crate) sync_response_bytes: Counter,
    pub(crate) receipts: Counter,
    pub(crate) rejections: Family<CodeLabel, Counter>,
    pub(crate) cached_docs: Gauge,
    pub(crate) logins: Family<OutcomeLabel, Counter>,
    pub(crate) live_listeners: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("linli");
        let m = Metrics {
            syncs: Family::default(),
            // 1 ms to ~16 s.
            sync_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            sync_request_bytes: Counter::default(),
            sync_response_bytes: Counter::default(),
            receipts: Counter::default(),
            rejections: Family::default(),
            cached_docs: Gauge::default(),
            logins: Family::default(),
            live_listeners: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("syncs", "Sync requests by outcome", m.syncs.clone());
        registry.register(
            "sync_duration_seconds",
            "Time to answer a sync request",
            m.sync_seconds.clone(),
        );
        registry.register(
            "sync_request_bytes",
            "Bytes received in sync requests",
            m.sync_request_bytes.clone(),
        );
        registry.register(
            "sync_response_bytes",
            "Bytes sent in sync responses",
            m.sync_response_bytes.clone(),
        );
        registry.register(
            "receipts",
            "Uploads accepted and receipted",
            m.receipts.clone(),
        );
        registry.register(
            "rejected_uploads",
            "Uploads refused, by reason code (their bytes are in quarantine)",
            m.rejections.clone(),
        );
        registry.register(
            "document_cache_entries",
            "Loaded documents held in memory",
            m.cached_docs.clone(),
        );
        registry.register("logins", "Password logins by outcome", m.logins.clone());
        registry.register(
            "live_listeners",
            "Open live event streams",
            m.live_listeners.clone(),
        );
        // Every known series from the start, so dashboards and alerts see zeros rather
        // than nothing.
        for outcome in ["ok", "malformed", "failed"] {
            let _ = m.syncs.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in ["ok", "refused"] {
            let _ = m.logins.get_or_create(&OutcomeLabel { outcome });
        }
        Metrics { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
