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
    use crate::render::fixtures::{plain, response};

    #[test]
    fn records_as_a_pretty_array() {
        let two = [plain(), response().records[1].clone()];
        insta::assert_snapshot!(render(&two).unwrap());
    }

    #[test]
    fn no_records_is_an_empty_array_and_output_parses_back() {
        assert_eq!(render(&[]).unwrap(), "[]\n");
        let records = response().records;
        let back: Vec<TrafficLog> = serde_json::from_str(&render(&records).unwrap()).unwrap();
        assert_eq!(back, records);
    }
}
