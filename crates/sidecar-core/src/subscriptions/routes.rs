//! Subscription routes: resolution of `route`/`routes` into an ordered rule list, and CEL
//! matching of a CloudEvent against it.

use crate::resources::RouteRule;

/// Ordered rules: `routes.rules`, then `routes.default` (or the legacy `route` when there is no
/// default) as a catch-all. Paths get a leading `/` and are cleaned; rules without a path are
/// discarded with a warning.
pub fn resolve(rules: &[RouteRule], default: Option<&str>, route: Option<&str>) -> Vec<RouteRule> {
    let mut out: Vec<RouteRule> = Vec::new();
    for r in rules {
        if r.path.trim().is_empty() {
            tracing::warn!(rule = %r.match_expr, "subscription rule without a path discarded");
            continue;
        }
        out.push(RouteRule {
            match_expr: r.match_expr.clone(),
            path: clean_path(&r.path),
        });
    }
    let fallback = default
        .filter(|d| !d.trim().is_empty())
        .or(route.filter(|r| !r.trim().is_empty()));
    if let Some(path) = fallback {
        out.push(RouteRule {
            match_expr: String::new(),
            path: clean_path(path),
        });
    }
    out
}

/// Adds a leading `/` and removes `.`/`..` segments and empty segments.
pub fn clean_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// A CEL evaluation that could not produce a boolean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route rule {expr:?}: {message}")]
pub struct MatchError {
    pub expr: String,
    pub message: String,
}

/// Checks that an expression compiles (used when a subscription is registered).
pub fn validate(expr: &str) -> Result<(), MatchError> {
    if expr.trim().is_empty() {
        return Ok(());
    }
    cel::Program::compile(expr)
        .map(|_| ())
        .map_err(|e| MatchError {
            expr: expr.to_string(),
            message: e.to_string(),
        })
}

/// Evaluates one rule over `event`; an empty expression matches everything.
pub fn matches(expr: &str, event: &serde_json::Value) -> Result<bool, MatchError> {
    if expr.trim().is_empty() {
        return Ok(true);
    }
    let err = |message: String| MatchError {
        expr: expr.to_string(),
        message,
    };
    let program = cel::Program::compile(expr).map_err(|e| err(e.to_string()))?;
    let value = cel::to_value(event).map_err(|e| err(e.to_string()))?;
    let mut context = cel::Context::default();
    context.add_variable_from_value("event", value);
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(err(format!("result is not a boolean: {other:?}"))),
        Err(e) => Err(err(e.to_string())),
    }
}

/// The path of the first matching rule; `Ok(None)` when no rule matches.
pub fn select<'a>(
    rules: &'a [RouteRule],
    event: &serde_json::Value,
) -> Result<Option<&'a str>, MatchError> {
    for rule in rules {
        if matches(&rule.match_expr, event)? {
            return Ok(Some(&rule.path));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn rule(m: &str, p: &str) -> RouteRule {
        RouteRule {
            match_expr: m.into(),
            path: p.into(),
        }
    }

    #[test]
    fn default_wins_over_route_and_comes_last() {
        let r = resolve(&[rule("event.type == \"a\"", "a")], Some("/d"), Some("/r"));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].path, "/a");
        assert_eq!(r[1], rule("", "/d"));
        let r = resolve(&[], None, Some("events/x/../y"));
        assert_eq!(r, vec![rule("", "/events/y")]);
        assert!(resolve(&[rule("true", "")], None, None).is_empty());
    }

    #[test]
    fn cel_rules_route_on_event_fields() {
        let rules = resolve(
            &[
                rule("event.type == \"task.created.v2\"", "/v2"),
                rule("event.data.priority > 3", "/urgent"),
            ],
            Some("/events/task-created"),
            None,
        );
        let ev = |t: &str, p: i64| json!({"type": t, "data": {"priority": p}});
        assert_eq!(
            select(&rules, &ev("task.created.v2", 1)).unwrap(),
            Some("/v2")
        );
        assert_eq!(select(&rules, &ev("x", 5)).unwrap(), Some("/urgent"));
        assert_eq!(
            select(&rules, &ev("x", 1)).unwrap(),
            Some("/events/task-created")
        );
    }

    #[test]
    fn no_match_and_errors_are_distinguished() {
        let rules = vec![rule("event.type == \"a\"", "/a")];
        assert_eq!(select(&rules, &json!({"type": "b"})).unwrap(), None);
        assert!(
            matches("event.type", &json!({"type": "b"})).is_err(),
            "non-boolean"
        );
        assert!(matches("event.missing.deep == 1", &json!({})).is_err());
        assert!(validate("event.type ==").is_err());
        assert!(validate("event.type == \"x\"").is_ok());
    }
}
