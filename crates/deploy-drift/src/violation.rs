//! What a broken rule reports.

use std::fmt;

/// The drift rules, each with a stable name used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A file does not parse as YAML.
    YamlSyntax,
    /// A service has no `deploy/k8s/base/<app>/deployment.yaml` with a Deployment in it.
    DeploymentPresent,
    /// `dapr.io/app-id` differs from the service's app id.
    DaprAppId,
    /// `dapr.io/app-port` differs from the service's configured port.
    DaprAppPort,
    /// The app container does not expose the service's port.
    ContainerPort,
    /// The service's ConfigMap sets `APP_PORT` or `APP_ID` to something else.
    ConfigMapEnv,
    /// A topic used in code is missing from `allowedTopics`, or an unknown topic is allowed.
    AllowedTopics,
    /// A component name used in code is missing from a component set.
    ComponentName,
    /// A literal consumer group / consumer id would be shared by several apps.
    SharedConsumerGroup,
    /// A declarative subscription's `deadLetterTopic` is not the scope app's dead-letter topic.
    DeadLetterTopic,
    /// The declarative subscriptions of an app differ from `Topic::consumers()`.
    SubscribedTopics,
    /// A declarative subscription's route is not `/events/<topic>`.
    SubscriptionRoute,
    /// A run file's apps, app ids or ports differ from the services'.
    RunFileApps,
    /// The Kafka run file does not load the production pub/sub component as it is.
    ProductionPubSub,
    /// `publishingScopes`/`subscriptionScopes` of the pub/sub differ from the `events` crate's.
    PubsubScopes,
    /// A docker-compose secret has a default or a literal value instead of `${VAR:?...}`.
    ComposeSecrets,
    /// A docker-compose port is published on an address other than 127.0.0.1.
    ComposePorts,
    /// An Ingress routes more than the REST API (`/api`).
    IngressPaths,
    /// An image is untagged or `:latest`.
    ImageTags,
    /// A Resiliency copy's `spec` differs from production's.
    ResiliencyCopies,
    /// A Resiliency target names a component circuit breaker, or retries state calls.
    ResiliencyBreaker,
    /// The services' and the sidecars' trace settings disagree (collector, sampling rate), a
    /// service does not load them, or a Configuration copy differs outside `spec.tracing`.
    TracingSettings,
}

impl Rule {
    /// The rule's name as it appears in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::YamlSyntax => "yaml-syntax",
            Rule::DeploymentPresent => "deployment-present",
            Rule::DaprAppId => "dapr-app-id",
            Rule::DaprAppPort => "dapr-app-port",
            Rule::ContainerPort => "container-port",
            Rule::ConfigMapEnv => "configmap-env",
            Rule::AllowedTopics => "allowed-topics",
            Rule::ComponentName => "component-name",
            Rule::SharedConsumerGroup => "shared-consumer-group",
            Rule::DeadLetterTopic => "dead-letter-topic",
            Rule::SubscribedTopics => "subscribed-topics",
            Rule::SubscriptionRoute => "subscription-route",
            Rule::RunFileApps => "run-file-apps",
            Rule::ProductionPubSub => "production-pubsub",
            Rule::PubsubScopes => "pubsub-scopes",
            Rule::ComposeSecrets => "compose-secrets",
            Rule::ComposePorts => "compose-ports",
            Rule::IngressPaths => "ingress-paths",
            Rule::ImageTags => "image-tags",
            Rule::ResiliencyCopies => "resiliency-copies",
            Rule::ResiliencyBreaker => "resiliency-breaker",
            Rule::TracingSettings => "tracing-settings",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The file, relative to the repository root.
    pub file: String,
    pub rule: Rule,
    pub message: String,
}

impl Violation {
    pub fn new(file: impl Into<String>, rule: Rule, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: [{}] {}", self.file, self.rule, self.message)
    }
}

/// All violations as one report, one per line.
pub fn report(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
