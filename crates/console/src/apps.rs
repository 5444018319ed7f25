//! `GET /api/apps`: what the runner reports of each app instance (process, ports), joined with
//! what its sidecar knows (health, subscriptions, components, breakers).

use serde::Serialize;
use sidecar_core::inspect::SidecarView;

/// The runner's side of the console: its instances as they are now.
pub trait AppsSource: Send + Sync + std::fmt::Debug {
    fn apps(&self) -> Vec<AppStatus>;
}

/// One app instance as the runner sees it.
#[derive(Debug, Clone)]
pub struct AppStatus {
    pub app_id: String,
    /// `app_id`, or `app_id#n` for an instance of a scaled app.
    pub instance: String,
    pub pid: Option<u32>,
    /// The exit status text once the process has exited.
    pub exit_status: Option<String>,
    pub app_port: Option<u16>,
    pub http_port: u16,
    pub sidecar: Option<SidecarView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AppJson {
    app_id: String,
    instance: String,
    pid: Option<u32>,
    state: &'static str,
    exit_status: Option<String>,
    health: &'static str,
    app_port: Option<u16>,
    http_port: u16,
    subscriptions: Vec<SubscriptionJson>,
    components: Vec<ComponentJson>,
    resiliency: Vec<ResiliencyJson>,
}

#[derive(Debug, Serialize)]
struct SubscriptionJson {
    pubsub: String,
    topic: String,
    route: Option<String>,
    rules: Vec<RuleJson>,
    dead_letter_topic: Option<String>,
    consumer_group: String,
    bulk: BulkJson,
}

#[derive(Debug, Serialize)]
struct RuleJson {
    #[serde(rename = "match")]
    match_expr: String,
    path: String,
}

#[derive(Debug, Serialize)]
struct BulkJson {
    enabled: bool,
    max_messages_count: Option<usize>,
    max_await_duration_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ComponentJson {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Serialize)]
struct ResiliencyJson {
    policy: String,
    target: String,
    kind: &'static str,
    breaker_state: Option<&'static str>,
}

pub(crate) fn to_json(app: AppStatus) -> AppJson {
    let view = app.sidecar.unwrap_or_else(|| SidecarView {
        app_id: app.app_id.clone(),
        healthy: None,
        subscriptions: Vec::new(),
        components: Vec::new(),
        breakers: Vec::new(),
    });
    let exited = app.exit_status.is_some();
    AppJson {
        health: match (exited, view.healthy) {
            (true, _) => "unhealthy",
            (false, Some(true)) => "healthy",
            (false, Some(false)) => "unhealthy",
            (false, None) => "unknown",
        },
        app_id: app.app_id,
        instance: app.instance,
        pid: app.pid,
        state: if exited { "exited" } else { "running" },
        exit_status: app.exit_status,
        app_port: app.app_port,
        http_port: app.http_port,
        subscriptions: view
            .subscriptions
            .into_iter()
            .map(|s| SubscriptionJson {
                // The route with no match is the default one.
                route: s
                    .rules
                    .iter()
                    .find(|(m, _)| m.is_empty())
                    .map(|(_, p)| p.clone()),
                rules: s
                    .rules
                    .into_iter()
                    .filter(|(m, _)| !m.is_empty())
                    .map(|(match_expr, path)| RuleJson { match_expr, path })
                    .collect(),
                pubsub: s.pubsub,
                topic: s.topic,
                dead_letter_topic: s.dead_letter_topic,
                consumer_group: s.consumer_group,
                bulk: BulkJson {
                    enabled: s.bulk.is_some(),
                    max_messages_count: s.bulk.map(|b| b.0),
                    max_await_duration_ms: s.bulk.map(|b| b.1),
                },
            })
            .collect(),
        components: view
            .components
            .into_iter()
            .map(|(name, kind)| ComponentJson { name, kind })
            .collect(),
        resiliency: view
            .breakers
            .into_iter()
            .map(|b| ResiliencyJson {
                policy: b.policy,
                target: b.target,
                kind: "circuitBreaker",
                breaker_state: Some(b.state),
            })
            .collect(),
    }
}
