//! How the app's answer to a delivery is interpreted, as daprd's HTTP postman does it (`Deliver`
//! in `pkg/runtime/subscription/postman/http/http.go`).

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppOutcome {
    /// Processed; ack.
    Success,
    /// Retriable failure; `status` is the HTTP status when there was a response.
    Retry { status: Option<u16>, reason: String },
    /// `{"status":"DROP"}`: dead-letter if configured, then ack.
    Drop,
    /// HTTP 404: drop and ack, without dead-lettering.
    NotFound,
}

/// Interprets one HTTP response of the app.
///
/// Status values are case-sensitive (`"success"` is unknown, hence retried), while the `status`
/// key itself is matched case-insensitively like Go's JSON decoder does. A 2xx body that is not a
/// JSON object, or an object without a usable `status`, counts as success.
pub fn interpret(status: u16, body: &[u8]) -> AppOutcome {
    if status == 404 {
        return AppOutcome::NotFound;
    }
    if !(200..300).contains(&status) {
        return AppOutcome::Retry {
            status: Some(status),
            reason: format!("app returned HTTP {status}"),
        };
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return AppOutcome::Success;
    };
    let value = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("status"))
        .map(|(_, v)| v);
    match value {
        None => AppOutcome::Success,
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "" | "SUCCESS" => AppOutcome::Success,
            "DROP" => AppOutcome::Drop,
            "RETRY" => AppOutcome::Retry {
                status: Some(status),
                reason: "app asked to retry (RETRY)".into(),
            },
            other => AppOutcome::Retry {
                status: Some(status),
                reason: format!("unknown status {other:?} returned by the app"),
            },
        },
        // A non-string status does not decode; daprd then treats the body as opaque success.
        Some(_) => AppOutcome::Success,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(outcome: &AppOutcome) -> bool {
        matches!(outcome, AppOutcome::Retry { .. })
    }

    #[test]
    fn response_table() {
        assert_eq!(interpret(200, b""), AppOutcome::Success);
        assert_eq!(interpret(204, b""), AppOutcome::Success);
        assert_eq!(interpret(200, b"OK"), AppOutcome::Success);
        assert_eq!(interpret(200, b"{}"), AppOutcome::Success);
        assert_eq!(interpret(200, br#"{"other":1}"#), AppOutcome::Success);
        assert_eq!(
            interpret(200, br#"{"status":"SUCCESS"}"#),
            AppOutcome::Success
        );
        assert!(retry(&interpret(200, br#"{"status":"RETRY"}"#)));
        assert_eq!(interpret(200, br#"{"status":"DROP"}"#), AppOutcome::Drop);
        assert_eq!(interpret(200, br#"{"Status":"DROP"}"#), AppOutcome::Drop);
        assert!(retry(&interpret(200, br#"{"status":"success"}"#)));
        assert!(retry(&interpret(200, br#"{"status":"drop"}"#)));
        assert_eq!(interpret(404, b"whatever"), AppOutcome::NotFound);
        assert_eq!(
            interpret(404, br#"{"status":"SUCCESS"}"#),
            AppOutcome::NotFound
        );
        for s in [301, 400, 409, 429, 500, 503] {
            assert_eq!(
                interpret(s, br#"{"status":"SUCCESS"}"#),
                AppOutcome::Retry {
                    status: Some(s),
                    reason: format!("app returned HTTP {s}")
                }
            );
        }
    }
}
