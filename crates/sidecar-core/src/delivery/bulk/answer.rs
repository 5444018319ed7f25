//! How the app's answer to a batch is read (`pkg/runtime/subscription/postman/http/http.go
//! DeliverBulk`, `pkg/runtime/subscription/bulksubscription.go`, and components-contrib's
//! `pubsub/responses.go AppBulkResponse`).

use std::collections::HashMap;

/// One entry's status in the app's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryStatus {
    Success,
    /// Acked after dead-lettering, if the subscription has a dead-letter topic.
    Drop,
    /// `RETRY`, `""` or any unknown status (values are case-sensitive).
    Retry(String),
}

/// What the app's answer to a batch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAnswer {
    /// HTTP 404: every entry is dropped, without dead-lettering.
    NotFound,
    /// Every entry failed: a non-2xx status, or a 2xx body that is not a statuses object
    /// (single delivery would count the latter as success; the batch does not).
    AllFailed { status: Option<u16>, reason: String },
    /// Per-entry statuses by entry id. An entry the app left out is failed.
    Statuses(HashMap<String, EntryStatus>),
}

/// Go's JSON decoder matches keys case-insensitively.
fn field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a serde_json::Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Interprets one HTTP response of the app to a batch.
pub fn interpret(status: u16, body: &[u8]) -> BulkAnswer {
    if status == 404 {
        return BulkAnswer::NotFound;
    }
    if !(200..300).contains(&status) {
        return BulkAnswer::AllFailed {
            status: Some(status),
            reason: format!("app returned HTTP {status} to a batch"),
        };
    }
    let unreadable = |why: &str| BulkAnswer::AllFailed {
        status: Some(status),
        reason: format!("app's answer to a batch is unreadable: {why}"),
    };
    let obj = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(obj)) => obj,
        Ok(_) => return unreadable("not a JSON object"),
        Err(e) => return unreadable(&e.to_string()),
    };
    let statuses = match field(&obj, "statuses") {
        None | Some(serde_json::Value::Null) => return BulkAnswer::Statuses(HashMap::new()),
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => return unreadable("statuses is not an array"),
    };
    let mut out = HashMap::with_capacity(statuses.len());
    for item in statuses {
        let serde_json::Value::Object(entry) = item else {
            return unreadable("a status is not an object");
        };
        let text = |name: &str| match field(entry, name) {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("{name} is not a string: {other}")),
        };
        let (id, value) = match (text("entryId"), text("status")) {
            (Ok(id), Ok(value)) => (id, value),
            (Err(e), _) | (_, Err(e)) => return unreadable(&e),
        };
        let status = match value.as_str() {
            "SUCCESS" => EntryStatus::Success,
            "DROP" => EntryStatus::Drop,
            "RETRY" => EntryStatus::Retry("app asked to retry (RETRY)".into()),
            other => EntryStatus::Retry(format!("unknown status {other:?} returned by the app")),
        };
        out.insert(id, status);
    }
    BulkAnswer::Statuses(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(body: &str) -> HashMap<String, EntryStatus> {
        match interpret(200, body.as_bytes()) {
            BulkAnswer::Statuses(s) => s,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn response_table() {
        let s = statuses(
            r#"{"statuses":[{"entryId":"a","status":"SUCCESS"},{"entryId":"b","status":"DROP"},
                {"entryId":"c","status":"RETRY"},{"EntryID":"d","Status":"success"},{"entryId":"e","status":""}]}"#,
        );
        assert_eq!(s.get("a"), Some(&EntryStatus::Success));
        assert_eq!(s.get("b"), Some(&EntryStatus::Drop));
        assert!(matches!(s.get("c"), Some(EntryStatus::Retry(_))));
        assert!(
            matches!(s.get("d"), Some(EntryStatus::Retry(_))),
            "values are case-sensitive, keys are not"
        );
        assert!(matches!(s.get("e"), Some(EntryStatus::Retry(_))));
        assert!(statuses("{}").is_empty(), "every entry missing: all failed");
        assert_eq!(interpret(404, b"{}"), BulkAnswer::NotFound);
        for (status, body) in [
            (200, ""),
            (200, "OK"),
            (204, ""),
            (200, "[]"),
            (200, r#"{"statuses":{}}"#),
            (500, r#"{"statuses":[]}"#),
            (429, ""),
        ] {
            assert!(
                matches!(
                    interpret(status, body.as_bytes()),
                    BulkAnswer::AllFailed { .. }
                ),
                "{status} {body:?}"
            );
        }
    }
}
