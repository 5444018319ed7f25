//! Topic access rules of a pub/sub component: `allowedTopics`, `protectedTopics`,
//! `publishingScopes`, `subscriptionScopes`.

use std::collections::BTreeMap;

/// Parsed topic rules of one pub/sub component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicScopes {
    allowed: Option<Vec<String>>,
    protected: Vec<String>,
    publishing: BTreeMap<String, Vec<String>>,
    subscribing: BTreeMap<String, Vec<String>>,
}

fn topic_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `app1=t1,t2;app2=t3` -> {app1: [t1, t2], app2: [t3]}; `app1=` gives an empty list.
fn scope_map(s: &str) -> BTreeMap<String, Vec<String>> {
    s.split(';')
        .filter_map(|entry| {
            let (app, topics) = entry.split_once('=')?;
            let app = app.trim();
            (!app.is_empty()).then(|| (app.to_string(), topic_list(topics)))
        })
        .collect()
}

impl TopicScopes {
    /// Reads the rules from component metadata (keys matched case-insensitively).
    pub fn from_metadata(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            allowed: get("allowedTopics")
                .filter(|s| !s.trim().is_empty())
                .map(|s| topic_list(&s)),
            protected: get("protectedTopics")
                .map(|s| topic_list(&s))
                .unwrap_or_default(),
            publishing: get("publishingScopes")
                .map(|s| scope_map(&s))
                .unwrap_or_default(),
            subscribing: get("subscriptionScopes")
                .map(|s| scope_map(&s))
                .unwrap_or_default(),
        }
    }

    fn check(&self, scopes: &BTreeMap<String, Vec<String>>, app_id: &str, topic: &str) -> bool {
        if let Some(allowed) = &self.allowed
            && !allowed.iter().any(|t| t == topic)
        {
            return false;
        }
        match scopes.get(app_id) {
            Some(topics) => topics.iter().any(|t| t == topic),
            None => !self.protected.iter().any(|t| t == topic),
        }
    }

    /// Whether `app_id` may publish to `topic`.
    pub fn may_publish(&self, app_id: &str, topic: &str) -> bool {
        self.check(&self.publishing, app_id, topic)
    }

    /// Whether `app_id` may subscribe to `topic`.
    pub fn may_subscribe(&self, app_id: &str, topic: &str) -> bool {
        self.check(&self.subscribing, app_id, topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(pairs: &[(&str, &str)]) -> TopicScopes {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TopicScopes::from_metadata(|k| map.get(k).cloned())
    }

    #[test]
    fn allowed_topics_block_everything_else_for_everyone() {
        let s = scopes(&[("allowedTopics", "a, b")]);
        assert!(s.may_publish("x", "a") && s.may_publish("x", "b"));
        assert!(!s.may_publish("x", "c"));
        assert!(!s.may_subscribe("x", "c"));
    }

    #[test]
    fn publishing_scopes_restrict_listed_apps_only() {
        let s = scopes(&[("publishingScopes", "app1=t1,t2;app2=")]);
        assert!(s.may_publish("app1", "t1"));
        assert!(!s.may_publish("app1", "t3"));
        assert!(!s.may_publish("app2", "t1"));
        assert!(s.may_publish("other", "t3"));
        assert!(s.may_subscribe("app2", "t1"));
    }

    #[test]
    fn protected_topics_need_an_explicit_scope() {
        let s = scopes(&[
            ("protectedTopics", "secret"),
            ("subscriptionScopes", "auditor=secret"),
        ]);
        assert!(!s.may_subscribe("x", "secret"));
        assert!(s.may_subscribe("auditor", "secret"));
        assert!(!s.may_publish("auditor", "secret"));
        assert!(s.may_publish("x", "open"));
    }
}
