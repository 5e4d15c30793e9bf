//! `-o json`: the records as one pretty-printed JSON array, newest first.
//!
//! An array rather than NDJSON because a query answer is finite and small (at most 10 000
//! records) and `jq '.[]'` turns it into a stream anyway; the element form is exactly the
//! [`TrafficLog`] wire form the agent uploads, microseconds and absent-when-unknown fields
//! included, so the output can be fed back to tools that read LiteObs records.

use liteobs_model::TrafficLog;

/// The pretty JSON array, ending with a newline (`[]` when there are no records).
pub fn render(records: &[TrafficLog]) -> Result<String, serde_json::Error> {
    let mut out = serde_json::to_string_pretty(records)?;
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{across_nodes, plain, pods, response};

    #[test]
    fn records_as_a_pretty_array() {
        let two = [plain(), response().records[1].clone()];
        insta::assert_snapshot!(render(&two).unwrap());
    }

    /// Every field of a merged record with pods on both sides and a Service address, PIDs
    /// included (the table shows pods in their place; JSON keeps both).
    #[test]
    fn a_record_with_pods_keeps_every_field() {
        insta::assert_snapshot!(render(&[across_nodes()]).unwrap());
    }

    #[test]
    fn no_records_is_an_empty_array_and_output_parses_back() {
        assert_eq!(render(&[]).unwrap(), "[]\n");
        let mut records = response().records;
        records.extend(pods().records);
        let back: Vec<TrafficLog> = serde_json::from_str(&render(&records).unwrap()).unwrap();
        assert_eq!(back, records);
    }
}
