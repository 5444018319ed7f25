//! Service invocation access control: the `spec.accessControl` of a Dapr Configuration, applied by
//! the called app's sidecar to every invocation from another app.
//!
//! The rules are daprd's (`pkg/acl/acl.go` `ParseAccessControlSpec` and
//! `isOperationAllowedByAccessControlPolicy`, `pkg/config/acl_trie.go` `Search`; documented at
//! <https://docs.dapr.io/operations/configuration/invoke-allowlist/>):
//! * no `accessControl`, or one with no trust domain, default action and policies: allow all;
//! * no global `defaultAction`: deny when policies are given, else allow;
//! * a policy needs `appId`, `trustDomain` and `namespace`, or the Configuration is refused;
//! * the caller's policy applies when its trust domain and namespace match the caller's; then its
//!   `defaultAction` (when set) replaces the global one, and an operation matching the method
//!   decides by the request's verb (or `*`);
//! * operations match by path segments, case-insensitively for HTTP: `/a` also covers everything
//!   below `/a`, `/a/*` exactly one segment below, `/a/**` any number.
//!
//! daprd reads the caller's identity from its mTLS certificate (SPIFFE id); without one it
//! applies the global default action. Every sidecar of a run lives in this process, so the
//! caller's app id is known for certain and its policies are applied, as daprd does with mTLS on.
//! Invoking one's own app never reaches the ACL (daprd's `pkg/messaging/direct_messaging.go`
//! `Invoke` calls the local app directly).

use serde::Deserialize;

/// daprd's `config.DefaultTrustDomain`.
pub const DEFAULT_TRUST_DOMAIN: &str = "public";
/// The namespace of a self-hosted sidecar without `NAMESPACE` set.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A Configuration whose access control cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    #[error("the Configuration is not valid YAML for a Dapr Configuration: {0}")]
    Yaml(String),
    #[error(
        "invalid access control spec: missing trustDomain for apps {missing_trust_domain:?}, missing namespace for apps {missing_namespace:?}, policy without appId: {missing_app_id}"
    )]
    Invalid {
        missing_trust_domain: Vec<String>,
        missing_namespace: Vec<String>,
        missing_app_id: bool,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(default)]
    default_action: String,
    #[serde(default)]
    trust_domain: String,
    #[serde(default)]
    policies: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPolicy {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    default_action: String,
    #[serde(default)]
    trust_domain: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operations: Vec<RawOperation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOperation {
    #[serde(default)]
    name: String,
    #[serde(default)]
    http_verb: Vec<String>,
    #[serde(default)]
    action: String,
}

/// One operation rule of an app policy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Operation {
    /// Lower-cased segments of the operation path (`/audit/**` -> ["audit", "**"]).
    segments: Vec<String>,
    /// (verb, action) pairs; `*` matches any verb.
    verbs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AppPolicy {
    app_id: String,
    namespace: String,
    trust_domain: String,
    default_action: String,
    operations: Vec<Operation>,
}

/// A parsed access control list; `None` where daprd has none (every call allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessControl {
    default_action: String,
    /// This app's own trust domain (part of its identity when it calls others).
    trust_domain: String,
    policies: Vec<AppPolicy>,
}

fn segments(path: &str) -> Vec<String> {
    path.to_ascii_lowercase()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl AccessControl {
    /// Reads `spec.accessControl` of a Configuration document. `Ok(None)` when there is none or
    /// it is empty (daprd then allows every call).
    pub fn from_configuration(yaml: &str) -> Result<Option<Self>, AclError> {
        let doc: serde_json::Value =
            yaml_serde::from_str(yaml).map_err(|e| AclError::Yaml(e.to_string()))?;
        let Some(raw) = doc.pointer("/spec/accessControl") else {
            return Ok(None);
        };
        let raw: RawSpec =
            serde_json::from_value(raw.clone()).map_err(|e| AclError::Yaml(e.to_string()))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawSpec) -> Result<Option<Self>, AclError> {
        if raw.trust_domain.is_empty() && raw.default_action.is_empty() && raw.policies.is_empty() {
            return Ok(None);
        }
        let default_action = if raw.default_action.is_empty() {
            if raw.policies.is_empty() {
                "allow".to_owned()
            } else {
                "deny".to_owned()
            }
        } else {
            raw.default_action.to_ascii_lowercase()
        };
        let mut missing_trust_domain = Vec::new();
        let mut missing_namespace = Vec::new();
        let mut missing_app_id = false;
        let mut policies = Vec::new();
        for p in raw.policies {
            missing_app_id |= p.app_id.is_empty();
            if p.trust_domain.is_empty() {
                missing_trust_domain.push(p.app_id.clone());
            }
            if p.namespace.is_empty() {
                missing_namespace.push(p.app_id.clone());
            }
            let operations = p
                .operations
                .into_iter()
                .map(|o| Operation {
                    segments: segments(&o.name),
                    verbs: o
                        .http_verb
                        .into_iter()
                        .map(|v| (v.to_ascii_uppercase(), o.action.clone()))
                        .collect(),
                })
                .collect();
            policies.push(AppPolicy {
                app_id: p.app_id,
                namespace: p.namespace,
                trust_domain: p.trust_domain,
                default_action: p.default_action,
                operations,
            });
        }
        if missing_app_id || !missing_trust_domain.is_empty() || !missing_namespace.is_empty() {
            return Err(AclError::Invalid {
                missing_trust_domain,
                missing_namespace,
                missing_app_id,
            });
        }
        let trust_domain = if raw.trust_domain.is_empty() {
            DEFAULT_TRUST_DOMAIN.to_owned()
        } else {
            raw.trust_domain
        };
        Ok(Some(Self {
            default_action,
            trust_domain,
            policies,
        }))
    }

    /// The trust domain of the app this access control belongs to.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Whether `caller` (in `trust_domain`/`namespace`) may call `method` with `verb`.
    pub fn allows(
        &self,
        caller: &str,
        trust_domain: &str,
        namespace: &str,
        verb: &str,
        method: &str,
    ) -> bool {
        let mut action = self.default_action.as_str();
        let policy = self
            .policies
            .iter()
            .find(|p| p.app_id == caller && p.namespace == namespace);
        if let Some(policy) = policy.filter(|p| p.trust_domain == trust_domain) {
            if !policy.default_action.is_empty() {
                action = &policy.default_action;
            }
            let wanted = segments(method);
            if let Some(op) = policy
                .operations
                .iter()
                .find(|o| matches(&o.segments, &wanted))
            {
                let verb = verb.to_ascii_uppercase();
                if let Some((_, a)) = op
                    .verbs
                    .iter()
                    .find(|(v, _)| *v == verb)
                    .or_else(|| op.verbs.iter().find(|(v, _)| v == "*"))
                {
                    action = a;
                }
            }
        }
        action.eq_ignore_ascii_case("allow")
    }
}

/// Whether an operation's segments cover a method's (see the module docs).
fn matches(rule: &[String], method: &[String]) -> bool {
    for (i, part) in rule.iter().enumerate() {
        match part.as_str() {
            "**" => return method.len() > i,
            "*" => {
                if method.get(i).is_none() {
                    return false;
                }
                if i == rule.len() - 1 {
                    return method.len() == i + 1;
                }
            }
            exact => {
                if method.get(i).map(String::as_str) != Some(exact) {
                    return false;
                }
            }
        }
    }
    !rule.is_empty()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn acl(yaml: &str) -> AccessControl {
        AccessControl::from_configuration(yaml).unwrap().unwrap()
    }

    const CONFIG: &str = r#"
kind: Configuration
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
      - appId: operator
        defaultAction: deny
        trustDomain: public
        namespace: default
        operations:
          - name: /audit/tasks/*
            httpVerb: ["GET"]
            action: allow
          - name: /admin/**
            httpVerb: ["*"]
            action: allow
          - name: /Open
            httpVerb: ["POST"]
            action: allow
"#;

    #[test]
    fn default_deny_and_operation_rules() {
        let a = acl(CONFIG);
        let ok = |caller: &str, verb: &str, m: &str| a.allows(caller, "public", "default", verb, m);
        assert!(ok("operator", "GET", "/audit/tasks/1"));
        assert!(!ok("operator", "POST", "/audit/tasks/1"), "verb not listed");
        assert!(
            !ok("operator", "GET", "/audit/tasks/1/verify"),
            "* is one segment"
        );
        assert!(
            ok("operator", "DELETE", "/admin/a/b/c"),
            "** any depth, * verb"
        );
        assert!(
            ok("operator", "post", "open/below"),
            "prefix, case-insensitive"
        );
        assert!(!ok("operator", "GET", "/other"), "app default");
        assert!(!ok("task-api", "GET", "/audit/tasks/1"), "global default");
        assert!(!a.allows("operator", "public", "prod", "GET", "/audit/tasks/1"));
        assert!(!a.allows("operator", "other", "default", "GET", "/audit/tasks/1"));
    }

    #[test]
    fn empty_or_absent_access_control_allows_everything() {
        assert_eq!(
            AccessControl::from_configuration("kind: Configuration\nspec: {}\n"),
            Ok(None)
        );
        let yaml = "kind: Configuration\nspec:\n  accessControl: {}\n";
        assert_eq!(AccessControl::from_configuration(yaml), Ok(None));
        let only_domain = acl("spec:\n  accessControl:\n    trustDomain: public\n");
        assert!(only_domain.allows("x", "public", "default", "GET", "/a"));
    }

    #[test]
    fn policies_without_a_global_default_deny_and_incomplete_policies_are_refused() {
        let a = acl(
            "spec:\n  accessControl:\n    policies:\n      - {appId: a, trustDomain: public, namespace: default, defaultAction: allow}\n",
        );
        assert!(a.allows("a", "public", "default", "GET", "/x"));
        assert!(!a.allows("b", "public", "default", "GET", "/x"));
        let err = AccessControl::from_configuration(
            "spec:\n  accessControl:\n    defaultAction: deny\n    policies:\n      - {appId: a}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("missing trustDomain for apps [\"a\"]"),
            "{err}"
        );
    }
}
