//! The relay's metric families, appended to the server's `/metrics`.

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::upstream::{SourceState, Sources};

/// Renders the relay's metrics as they are now. Label values come from a
/// closed set (`state`) or from the relay's own sources (project and
/// environment of each `--key`), never from a request.
pub(crate) fn encode(sources: &Sources, out: &mut String) {
    let mut registry = Registry::with_prefix("switchyard_relay");
    let by_state = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    let reports = sources.report();
    for state in SourceState::ALL {
        let n = reports.iter().filter(|r| r.state == state).count();
        by_state
            .get_or_create(&vec![("state", state.name())])
            .set(n as i64);
    }
    registry.register(
        "environments",
        "Synced environments by state: current, stale (serving the last copy), missing (no copy yet), refused (the upstream refuses the key)",
        by_state,
    );
    let age = Family::<Vec<(&'static str, String)>, Gauge>::default();
    let now = std::time::SystemTime::now();
    for r in &reports {
        let (Some(p), Some(e)) = (&r.project, &r.environment) else {
            continue;
        };
        let seconds = if r.streaming {
            0
        } else {
            r.last_sync.map_or(-1, |t| {
                now.duration_since(t).unwrap_or_default().as_secs() as i64
            })
        };
        age.get_or_create(&vec![("project", p.clone()), ("environment", e.clone())])
            .set(seconds);
    }
    registry.register(
        "config_age_seconds",
        "Seconds since the environment's configuration was last confirmed current (0 while its stream is open, -1 if never)",
        age,
    );
    let stats = &sources.forwarding;
    registry.register(
        "events_forwarded",
        "Events forwarded upstream",
        stats.forwarded.clone(),
    );
    registry.register(
        "events_dropped",
        "Events that could not be delivered upstream and were dropped",
        stats.dropped.clone(),
    );
    registry.register(
        "forward_failures",
        "Failed attempts to forward events upstream (retried)",
        stats.failures.clone(),
    );
    registry.register(
        "forward_pending_bytes",
        "Bytes of the relay's event log not yet forwarded",
        stats.pending_bytes.clone(),
    );
    registry.register(
        "events_parked",
        "Events parked because their environment was not served; sent once it is",
        stats.parked.clone(),
    );
    registry.register(
        "parked_pending_bytes",
        "Bytes of the parked log not yet forwarded",
        stats.parked_pending_bytes.clone(),
    );
    let _ = encode_registry(out, &registry);
}
