//! The agent's counters as OpenMetrics text: a prometheus-client [`Collector`] that encodes the
//! capture thread's latest published [`Snapshot`] on each scrape (constant metrics, since the
//! values live elsewhere), and the upload histogram, registered as it is.
//!
//! Every metric is named, typed and described by [`liteobs_model::metrics::agent`]; a test
//! checks that a scrape holds exactly that list. Metrics a mode does not have (the kernel's in a
//! replay, the reporter's without `-server`, attribution's with `-pidmap off`) are exposed as 0,
//! so that every agent has the same series.

use std::fmt;
use std::sync::Arc;

use liteobs_model::metrics::{MetricDef, agent as m};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Published;
use crate::report::UploadLatency;

/// Registers the collector of `published` and the upload histogram in `registry`.
pub fn register(registry: &mut Registry, published: Arc<Published>, upload: &UploadLatency) {
    registry.register(
        m::UPLOAD_DURATION.family(),
        help_for_register(m::UPLOAD_DURATION.help),
        upload.histogram().clone(),
    );
    registry.register_collector(Box::new(SnapshotCollector { published }));
}

/// prometheus-client's `Registry::register` ends the help with a full stop of its own; the
/// catalog's texts have theirs.
fn help_for_register(help: &'static str) -> &'static str {
    help.strip_suffix('.').unwrap_or(help)
}

#[derive(Debug)]
struct SnapshotCollector {
    published: Arc<Published>,
}

fn counter(enc: &mut DescriptorEncoder, def: &MetricDef, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(def.family(), def.help, None, MetricType::Counter)?)
}

fn seconds(enc: &mut DescriptorEncoder, def: &MetricDef, micros: u64) -> fmt::Result {
    let c = ConstCounter::new(micros as f64 / 1e6);
    c.encode(enc.encode_descriptor(def.family(), def.help, None, MetricType::Counter)?)
}

fn gauge(enc: &mut DescriptorEncoder, def: &MetricDef, value: u64) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(def.family(), def.help, None, MetricType::Gauge)?)
}

fn labelled(
    enc: &mut DescriptorEncoder,
    def: &MetricDef,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut family = enc.encode_descriptor(def.family(), def.help, None, MetricType::Counter)?;
    for (name, value) in values {
        let labels = [(label, *name)];
        ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let (s, a) = self.published.read();
        let e = &mut enc;
        let p = &s.pipeline;
        let k = s.kernel.unwrap_or_default();
        counter(e, &m::PACKETS, p.packets)?;
        counter(e, &m::CAPTURED_BYTES, p.bytes)?;
        counter(e, &m::NON_TCP_PACKETS, p.non_tcp)?;
        counter(e, &m::DECODE_ERRORS, p.decode_errors)?;
        counter(e, &m::IP_FRAGMENTS, p.ip_fragments)?;
        counter(e, &m::UNSUPPORTED_LINK_PACKETS, s.unsupported_link)?;
        counter(e, &m::KERNEL_RECEIVED_PACKETS, k.received)?;
        counter(e, &m::KERNEL_DROPPED_PACKETS, k.dropped)?;
        counter(e, &m::INTERFACE_DROPPED_PACKETS, k.if_dropped)?;
        counter(e, &m::FLOWS_OPENED, p.flows_opened)?;
        counter(e, &m::FLOWS_EXPIRED, p.flows_expired)?;
        counter(e, &m::FLOWS_EVICTED, p.flows_evicted)?;
        gauge(e, &m::FLOWS_OPEN, s.flows_open as u64)?;
        counter(e, &m::OUT_OF_ORDER_SEGMENTS, p.out_of_order_segments)?;
        counter(e, &m::RETRANSMITTED_BYTES, p.retransmitted_bytes)?;
        counter(e, &m::GAPS, p.gaps)?;
        counter(e, &m::BUFFER_DROPPED_BYTES, p.buffer_dropped_bytes)?;
        counter(e, &m::EXCHANGES, p.exchanges)?;
        counter(e, &m::UNANSWERED_EXCHANGES, p.unanswered)?;
        counter(e, &m::PARSE_ERRORS, p.parse_errors)?;
        labelled(
            e,
            &m::HTTP_ANOMALIES,
            "kind",
            &[
                ("unparsed_heads", p.http_unparsed_heads),
                ("oversized_heads", p.http_oversized_heads),
                ("bad_chunked", p.http_bad_chunked),
                ("not_http_messages", p.http_not_http_messages),
                ("not_http_connections", p.http_not_http_connections),
                ("lenient_heads", p.http_lenient_heads),
                ("http09_exchanges", p.http09_exchanges),
                ("bad_content_length", p.http_bad_content_length),
                ("bad_transfer_encoding", p.http_bad_transfer_encoding),
                ("length_with_encoding", p.http_length_with_encoding),
                ("responses_without_request", p.http_responses_without_request),
                ("continue_bodies_skipped", p.http_continue_bodies_skipped),
            ],
        )?;
        counter(e, &m::UPGRADED_CONNECTIONS, p.upgraded_connections)?;
        counter(e, &m::IMPOSSIBLE_TIMESTAMPS, p.impossible_timestamps)?;
        counter(e, &m::BACKWARDS_LATENCY, p.backwards_latency)?;
        counter(e, &m::MERGED_RECORDS, s.merge.merged_on_node)?;
        counter(e, &m::MERGE_OVERFLOW_RECORDS, s.merge.merge_overflow)?;
        gauge(e, &m::MERGE_HELD_RECORDS, s.merge.merge_held)?;

        let pids = a.pids.unwrap_or_default();
        counter(e, &m::ATTRIBUTION_LOOKUPS, pids.lookups)?;
        counter(e, &m::ATTRIBUTION_CACHE_HITS, pids.cache_hits)?;
        counter(e, &m::ATTRIBUTION_EBPF_HITS, pids.ebpf_hits)?;
        counter(e, &m::ATTRIBUTION_EBPF_MISSES, pids.ebpf_misses)?;
        counter(e, &m::ATTRIBUTION_PROC_LOOKUPS, pids.proc_fallbacks)?;
        counter(e, &m::ATTRIBUTION_PROC_HITS, pids.proc_hits)?;
        counter(e, &m::ATTRIBUTION_LISTENER_HITS, pids.listener_hits)?;
        counter(e, &m::ATTRIBUTION_UNRESOLVED, pids.unresolved)?;
        counter(e, &m::OWN_UPLOADS, pids.own_uploads)?;
        gauge(e, &m::EBPF_MAP_CONNECTIONS, pids.map_entries.unwrap_or(0))?;
        counter(e, &m::LISTENER_SCANS, pids.listener_scans)?;
        gauge(e, &m::LISTENERS, pids.listeners)?;
        seconds(e, &m::LISTENER_SCAN_SECONDS, pids.listener_scan_us)?;
        let (proc, cgroups, runtime) = a.containers.unwrap_or_default();
        counter(e, &m::CONTAINER_PROCESS_LOOKUPS, proc.lookups)?;
        counter(e, &m::CONTAINER_PROCESSES_FOUND, proc.in_container)?;
        counter(e, &m::CONTAINER_CGROUPS_UNKNOWN, cgroups.unknown)?;
        counter(e, &m::CONTAINER_RUNTIME_CALLS, runtime.runtime_calls)?;
        counter(e, &m::CONTAINER_RUNTIME_ERRORS, runtime.runtime_errors)?;

        let r = s.report.unwrap_or_default();
        counter(e, &m::RECORDS_ACKED, r.records_acked)?;
        counter(e, &m::BATCHES_ACKED, r.batches_acked)?;
        counter(e, &m::BATCHES_DUPLICATE, r.batches_duplicate)?;
        counter(e, &m::RECORDS_REJECTED, r.records_rejected)?;
        counter(e, &m::BATCHES_REJECTED, r.batches_rejected)?;
        counter(e, &m::BATCHES_RESENT, r.batches_resent)?;
        counter(e, &m::UPLOAD_FAILURES, r.upload_failures)?;
        counter(e, &m::RECORDS_DROPPED, r.records_dropped)?;
        counter(e, &m::RECORDS_ABANDONED, r.records_abandoned)?;
        gauge(e, &m::QUEUE_RECORDS, r.queued)?;
        gauge(e, &m::SPOOL_RECORDS, r.records_spooled)?;
        counter(e, &m::SPOOL_DROPPED_RECORDS, r.records_spool_dropped)?;
        counter(e, &m::SPOOL_FILES_SET_ASIDE, r.spool_files_set_aside)?;
        counter(e, &m::SPOOL_WRITE_ERRORS, r.spool_write_errors)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::metrics::AgentMetrics;
    use crate::run::Snapshot;

    /// The `# TYPE` lines of an exposition: (family, type).
    fn types(text: &str) -> BTreeSet<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
            .collect()
    }

    /// A scrape holds exactly the catalog's metrics, with its types, and the values published.
    #[test]
    fn a_scrape_is_the_catalog_with_the_published_values() {
        let published = Arc::new(Published::default());
        let upload = UploadLatency::default();
        let metrics = AgentMetrics::new(published.clone(), &upload);
        let mut s = Snapshot::default();
        s.pipeline.packets = 1234;
        s.pipeline.http_bad_chunked = 3;
        s.flows_open = 7;
        published.publish(s);
        upload.observe(std::time::Duration::from_millis(3));
        let text = metrics.encode();
        let want: BTreeSet<(String, String)> =
            m::ALL.iter().map(|d| (d.family().to_owned(), d.kind.as_str().to_owned())).collect();
        assert_eq!(types(&text), want, "{text}");
        for d in m::ALL {
            let help = format!("# HELP {} {}\n", d.family(), d.help);
            assert!(text.contains(&help), "no {help:?} in\n{text}");
        }
        for line in [
            "liteobs_agent_packets_total 1234\n",
            "liteobs_agent_flows_open 7\n",
            "liteobs_agent_http_anomalies_total{kind=\"bad_chunked\"} 3\n",
            "liteobs_agent_upload_duration_seconds_count 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
