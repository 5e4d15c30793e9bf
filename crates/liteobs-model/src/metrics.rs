//! The Prometheus metrics of the agent and the server: one list of name, type, labels and help
//! per program, from which both register what they expose (`-metrics-listen`) and from which
//! README.md's metric tables are written ([`markdown_table`]; a test compares them), so that a
//! name, a type or a help text is written once.
//!
//! Names follow Prometheus' conventions: the program's prefix (`liteobs_agent_`,
//! `liteobs_server_`), the unit in the name (`_bytes`, `_seconds`), `_total` on counters (the
//! exposition adds it to the family name, [`MetricDef::family`]). Not for values: those are the
//! programs' own.

/// A metric's type, as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric as exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The name of its samples: counters end in `_total`; a histogram's samples add
    /// `_bucket`, `_sum` and `_count` to it.
    pub name: &'static str,
    pub kind: Kind,
    /// Label names, and for each what its values are (README).
    pub labels: &'static str,
    pub help: &'static str,
}

impl MetricDef {
    /// The family name, as `# TYPE` and `# HELP` lines give it: a counter's without `_total`.
    pub fn family(&self) -> &'static str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            Kind::Gauge | Kind::Histogram => self.name,
        }
    }
}

/// Writes `pub const NAME: MetricDef` for each entry and `ALL`, every entry in order.
macro_rules! catalog {
    ($( $(#[$doc:meta])* $id:ident: $kind:ident $name:literal [$labels:literal] $help:literal; )*) => {
        $( $(#[$doc])* pub const $id: MetricDef =
            MetricDef { name: $name, kind: Kind::$kind, labels: $labels, help: $help }; )*
        /// Every metric of the program, in the order README lists them.
        pub const ALL: &[MetricDef] = &[$($id),*];
    };
}

/// `liteobs-agent`'s metrics: every counter it logs (periodically and when it stops), read from
/// the capture thread's latest published counters on each scrape, and its upload latency.
pub mod agent {
    use super::{Kind, MetricDef};

    catalog! {
        PACKETS: Counter "liteobs_agent_packets_total" [""] "Frames read from the capture (live or file).";
        CAPTURED_BYTES: Counter "liteobs_agent_captured_bytes_total" [""] "Captured bytes of those frames.";
        NON_TCP_PACKETS: Counter "liteobs_agent_non_tcp_packets_total" [""] "Well-formed frames that are not TCP (ARP, UDP, ICMP, ...).";
        DECODE_ERRORS: Counter "liteobs_agent_decode_errors_total" [""] "Frames whose link, IP or TCP header is malformed or cut short.";
        IP_FRAGMENTS: Counter "liteobs_agent_ip_fragments_total" [""] "IP fragments (skipped, not reassembled).";
        UNSUPPORTED_LINK_PACKETS: Counter "liteobs_agent_unsupported_link_packets_total" [""] "Frames of a link type the decoder does not know.";
        KERNEL_RECEIVED_PACKETS: Counter "liteobs_agent_kernel_received_packets_total" [""] "Packets the kernel passed through the capture filter (live capture; 0 in a replay).";
        KERNEL_DROPPED_PACKETS: Counter "liteobs_agent_kernel_dropped_packets_total" [""] "Packets the kernel dropped because the capture buffer was full (the agent read too slowly).";
        INTERFACE_DROPPED_PACKETS: Counter "liteobs_agent_interface_dropped_packets_total" [""] "Packets dropped by the interface or its driver.";
        FLOWS_OPENED: Counter "liteobs_agent_flows_opened_total" [""] "TCP connections started (a reused 4-tuple with a new SYN included).";
        FLOWS_EXPIRED: Counter "liteobs_agent_flows_expired_total" [""] "Connections closed after being idle for -idle-timeout.";
        FLOWS_EVICTED: Counter "liteobs_agent_flows_evicted_total" [""] "Connections closed early because -max-flows were tracked.";
        FLOWS_OPEN: Gauge "liteobs_agent_flows_open" [""] "Connections tracked now.";
        OUT_OF_ORDER_SEGMENTS: Counter "liteobs_agent_out_of_order_segments_total" [""] "Segments that arrived ahead of a hole and were held.";
        RETRANSMITTED_BYTES: Counter "liteobs_agent_retransmitted_bytes_total" [""] "Payload bytes seen again (retransmissions, overlaps).";
        GAPS: Counter "liteobs_agent_gaps_total" [""] "Holes in a stream given up on (never captured, cut by the snap length, or over a buffer cap).";
        BUFFER_DROPPED_BYTES: Counter "liteobs_agent_buffer_dropped_bytes_total" [""] "Bytes discarded because a reassembly or parser buffer limit was reached.";
        EXCHANGES: Counter "liteobs_agent_exchanges_total" [""] "HTTP exchanges parsed (each one a record, but those with impossible timestamps).";
        UNANSWERED_EXCHANGES: Counter "liteobs_agent_unanswered_exchanges_total" [""] "Records emitted with status 0 (no response seen).";
        PARSE_ERRORS: Counter "liteobs_agent_parse_errors_total" [""] "HTTP messages that could not be parsed (the parser resynchronised after each).";
        HTTP_ANOMALIES: Counter "liteobs_agent_http_anomalies_total" ["`kind`: unparsed_heads, oversized_heads, bad_chunked, not_http_messages, not_http_connections, lenient_heads, http09_exchanges, bad_content_length, bad_transfer_encoding, length_with_encoding, responses_without_request, continue_bodies_skipped"] "HTTP parse events by kind (the first four are in parse_errors).";
        UPGRADED_CONNECTIONS: Counter "liteobs_agent_upgraded_connections_total" [""] "Connections that switched protocol (101 or CONNECT 2xx); parsing stopped there.";
        IMPOSSIBLE_TIMESTAMPS: Counter "liteobs_agent_impossible_timestamps_total" [""] "Exchanges not emitted because a packet's time is outside 1970..9999.";
        BACKWARDS_LATENCY: Counter "liteobs_agent_backwards_latency_total" [""] "Records emitted with latency 0 because the response is stamped before the request.";
        MERGED_RECORDS: Counter "liteobs_agent_merged_records_total" [""] "Records combined on the node with another capture of their exchange (-merge-hold).";
        MERGE_OVERFLOW_RECORDS: Counter "liteobs_agent_merge_overflow_records_total" [""] "Records that left the merge hold early because -merge-max-held were held.";
        MERGE_HELD_RECORDS: Gauge "liteobs_agent_merge_held_records" [""] "Records waiting in the merge hold now.";
        ATTRIBUTION_LOOKUPS: Counter "liteobs_agent_attribution_lookups_total" [""] "Connection ends whose process was asked for.";
        ATTRIBUTION_CACHE_HITS: Counter "liteobs_agent_attribution_cache_hits_total" [""] "Ends answered from the per-connection cache.";
        ATTRIBUTION_EBPF_HITS: Counter "liteobs_agent_attribution_ebpf_hits_total" [""] "Ends found in the eBPF maps.";
        ATTRIBUTION_EBPF_MISSES: Counter "liteobs_agent_attribution_ebpf_misses_total" [""] "Ends asked of the eBPF maps and not found there.";
        ATTRIBUTION_PROC_LOOKUPS: Counter "liteobs_agent_attribution_proc_lookups_total" [""] "Ends asked of /proc (after an eBPF miss, or with -pidmap proc).";
        ATTRIBUTION_PROC_HITS: Counter "liteobs_agent_attribution_proc_hits_total" [""] "Ends found in /proc.";
        ATTRIBUTION_LISTENER_HITS: Counter "liteobs_agent_attribution_listener_hits_total" [""] "Server ends answered by the owner of the listener they reached.";
        ATTRIBUTION_UNRESOLVED: Counter "liteobs_agent_attribution_unresolved_total" [""] "Ends no source could attribute.";
        OWN_UPLOADS: Counter "liteobs_agent_own_uploads_total" [""] "Captured exchanges that were the agent's own uploads (dropped).";
        EBPF_MAP_CONNECTIONS: Gauge "liteobs_agent_ebpf_map_connections" [""] "Connections in the eBPF flow map at the last count (every -stats-interval).";
        LISTENER_SCANS: Counter "liteobs_agent_listener_scans_total" [""] "Scans of the listening sockets of every network namespace.";
        LISTENERS: Gauge "liteobs_agent_listeners" [""] "Listening sockets the last scan found.";
        LISTENER_SCAN_SECONDS: Counter "liteobs_agent_listener_scan_seconds_total" [""] "Time spent in listener scans.";
        CONTAINER_PROCESS_LOOKUPS: Counter "liteobs_agent_container_process_lookups_total" [""] "Processes whose container was asked for.";
        CONTAINER_PROCESSES_FOUND: Counter "liteobs_agent_container_processes_found_total" [""] "Processes found in a container.";
        CONTAINER_CGROUPS_UNKNOWN: Counter "liteobs_agent_container_cgroups_unknown_total" [""] "cgroup ids no walk of the cgroup tree had seen.";
        CONTAINER_RUNTIME_CALLS: Counter "liteobs_agent_container_runtime_calls_total" [""] "Calls made to the container runtime (List and Get).";
        CONTAINER_RUNTIME_ERRORS: Counter "liteobs_agent_container_runtime_errors_total" [""] "Calls to the container runtime that failed.";
        RECORDS_ACKED: Counter "liteobs_agent_records_acked_total" [""] "Records the server acknowledged (duplicates included: they are committed too).";
        BATCHES_ACKED: Counter "liteobs_agent_batches_acked_total" [""] "Batches the server acknowledged.";
        BATCHES_DUPLICATE: Counter "liteobs_agent_batches_duplicate_total" [""] "Batches the server already had under the same id (not inserted twice).";
        RECORDS_REJECTED: Counter "liteobs_agent_records_rejected_total" [""] "Records the server refused for good (dropped).";
        BATCHES_REJECTED: Counter "liteobs_agent_batches_rejected_total" [""] "Batches the server refused for good.";
        BATCHES_RESENT: Counter "liteobs_agent_batches_resent_total" [""] "Batches sent again without the one record a 400 named.";
        UPLOAD_FAILURES: Counter "liteobs_agent_upload_failures_total" [""] "Upload attempts that failed and were retried (5xx, 408, 429, connection errors, timeouts).";
        RECORDS_DROPPED: Counter "liteobs_agent_records_dropped_total" [""] "Records dropped because the in-memory queue (-buffer) was full.";
        RECORDS_ABANDONED: Counter "liteobs_agent_records_abandoned_total" [""] "Records still held when the shutdown deadline passed (without a spool).";
        QUEUE_RECORDS: Gauge "liteobs_agent_queue_records" [""] "Records waiting in the in-memory queue.";
        SPOOL_RECORDS: Gauge "liteobs_agent_spool_records" [""] "Records in the spool directory now.";
        SPOOL_DROPPED_RECORDS: Counter "liteobs_agent_spool_dropped_records_total" [""] "Records dropped with the oldest spool files because the spool was full.";
        SPOOL_FILES_SET_ASIDE: Counter "liteobs_agent_spool_files_set_aside_total" [""] "Spool files found torn or corrupt and moved aside.";
        SPOOL_WRITE_ERRORS: Counter "liteobs_agent_spool_write_errors_total" [""] "Batches that could not be written to the spool (sent from memory).";
        UPLOAD_DURATION: Histogram "liteobs_agent_upload_duration_seconds" [""] "Time of one upload attempt, from sending the request to reading the answer (or the failure).";
    }
}

/// `liteobs-server`'s metrics.
pub mod server {
    use super::{Kind, MetricDef};

    catalog! {
        INGEST_RECORDS: Counter "liteobs_server_ingest_records_total" [""] "Records of committed uploads (a repeated batch is not counted again).";
        INGEST_MERGED_RECORDS: Counter "liteobs_server_ingest_merged_records_total" [""] "Of those, records that completed a stored row of their exchange instead of becoming a row.";
        INGEST_BYTES: Counter "liteobs_server_ingest_bytes_total" [""] "Body bytes of committed uploads, as received (gzip included).";
        UPLOADS: Counter "liteobs_server_uploads_total" ["`outcome`: stored, duplicate, bad_request, conflict, too_large, timeout, busy, unsupported, unauthorized, error"] "Answered POST /upload requests by outcome.";
        REQUEST_DURATION: Histogram "liteobs_server_request_duration_seconds" ["`route`: /upload, /query, /stats, /map, /sql, /healthz, other"] "Time from a request's head to its answer, per API route.";
        STORE_ROWS: Gauge "liteobs_server_store_rows" [""] "Rows stored (counted at open, then kept by every commit and deletion).";
        STORE_SIZE_BYTES: Gauge "liteobs_server_store_size_bytes" [""] "Bytes on disk of the database file and its write-ahead log.";
        WRITE_TRANSACTIONS: Counter "liteobs_server_write_transactions_total" [""] "Write transactions committed by uploads (group commit: several uploads may share one).";
        WRITE_BATCHES: Counter "liteobs_server_write_batches_total" [""] "Upload batches those transactions committed (repeats included).";
        RETENTION_PASSES: Counter "liteobs_server_retention_passes_total" [""] "Retention passes completed.";
        RETENTION_FAILURES: Counter "liteobs_server_retention_failures_total" [""] "Retention passes that failed (tried again at the next one).";
        RETENTION_DELETED_ROWS: Counter "liteobs_server_retention_deleted_rows_total" ["`reason`: expired (-retention), evicted (-max-db-size)"] "Rows deleted by retention.";
    }
}

/// README.md's table of `defs`: name, type, labels and help, one row each.
pub fn markdown_table(defs: &[MetricDef]) -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for d in defs {
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", d.name, d.kind.as_str(), d.labels, d.help));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Conventions a scrape relies on: prefixes, `_total` on counters only, units in the name,
    /// and no name given twice.
    #[test]
    fn names_follow_prometheus_conventions() {
        for (prefix, all) in [("liteobs_agent_", agent::ALL), ("liteobs_server_", server::ALL)] {
            let mut seen = BTreeSet::new();
            for d in all {
                assert!(d.name.starts_with(prefix), "{}", d.name);
                assert!(seen.insert(d.family()), "{} twice", d.name);
                assert!(d.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                assert_eq!(d.kind == Kind::Counter, d.name.ends_with("_total"), "{}", d.name);
                if d.kind == Kind::Histogram {
                    assert!(d.name.ends_with("_seconds"), "{}", d.name);
                }
                assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}", d.name);
            }
        }
        assert_eq!(agent::PACKETS.family(), "liteobs_agent_packets");
        assert_eq!(agent::FLOWS_OPEN.family(), "liteobs_agent_flows_open");
    }

    /// README.md's tables are this catalog's; `LITEOBS_BLESS=1` rewrites them.
    #[test]
    fn readme_tables_are_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let mut want = readme.clone();
        for (tag, all) in [("agent", agent::ALL), ("server", server::ALL)] {
            let (open, close) = (format!("<!-- metrics:{tag} -->\n"), format!("<!-- /metrics:{tag} -->"));
            let start =
                want.find(&open).unwrap_or_else(|| panic!("README.md has no {open:?} marker")) + open.len();
            let end = start
                + want[start..].find(&close).unwrap_or_else(|| panic!("README.md has no {close:?} marker"));
            want.replace_range(start..end, &markdown_table(all));
        }
        if want != readme && std::env::var("LITEOBS_BLESS").as_deref() == Ok("1") {
            std::fs::write(path, &want).expect("writing README.md");
            return;
        }
        assert!(
            want == readme,
            "README.md's metric tables differ from liteobs_model::metrics; run this test with LITEOBS_BLESS=1"
        );
    }
}
