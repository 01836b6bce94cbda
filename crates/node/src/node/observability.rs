//! [`Node`]'s probes and metrics: the checks behind `/livez` and `/readyz`, encoding the
//! metrics, and registering them in an embedding service's registry.

use prometheus_client::registry::Registry;
use raftkv_network::ProbeCheck;

use super::Node;
use crate::kv_handle::KvHandle;
use crate::node_metrics::NodeMetrics;
use crate::process_collector::ProcessCollector;

impl Node {
    /// The checks of `GET /livez` (`ready` false: the process, storage and Raft run) or
    /// `GET /readyz` (also a member, in contact with a leader, caught up), in order; the probe
    /// passes when none has a failure.
    pub async fn probe(&self, ready: bool) -> Vec<ProbeCheck> {
        self.handle.probe_checks(ready).await
    }

    /// `GET /readyz?sync`: waits up to `timeout` until this node has applied what the leader had
    /// committed when called. `None` once it has, or why not.
    pub async fn sync_applied(&self, timeout: std::time::Duration) -> Option<String> {
        self.handle.sync_applied_within(timeout).await
    }

    /// This node's metrics in the Prometheus text format (OpenMetrics with `openmetrics`): what
    /// `GET /metrics` answers.
    pub fn encode_metrics(&self, openmetrics: bool) -> String {
        let mut text = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        };
        // Encoding into a String fails only if a metric's own encoder does, which ours never do.
        if let Err(e) = encoded {
            tracing::warn!(%e, "encoding metrics failed");
        }
        text
    }

    /// Registers this node's metrics (every `raftkv_*` family, not the process's) in an
    /// embedding service's own `registry`, so that one scrape of the service covers the node.
    /// Values are shared: the node keeps recording into them. Registering two nodes in one
    /// registry needs a label to tell them apart:
    /// `node.register_metrics(registry.sub_registry_with_label(("node".into(), "1".into())))`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let raftkv = registry.sub_registry_with_prefix("raftkv");
        self.handle.metrics.register(raftkv);
        NodeMetrics::register_collector(raftkv, &self.handle);
    }
}

/// The registry `GET /metrics` serves: the node's `raftkv_*` families and the process's.
pub(super) fn node_registry(handle: &KvHandle) -> Registry {
    let mut registry = Registry::default();
    let raftkv = registry.sub_registry_with_prefix("raftkv");
    handle.metrics.register(raftkv);
    NodeMetrics::register_collector(raftkv, handle);
    registry.register_collector(Box::new(ProcessCollector));
    registry
}
