//! The drift rules. Each function reads parsed manifests and returns what it found broken.

pub mod apps;
pub mod exposure;
pub mod pubsub;
pub mod resiliency;
pub mod scopes;
pub mod subscriptions;
pub mod tracing;

use crate::expected::Expected;
use crate::manifests::Manifests;
use crate::violation::Violation;

/// Every rule over every file, sorted by file then rule.
pub fn check_all(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = manifests.errors.clone();
    found.extend(apps::deployments(manifests, expected));
    found.extend(apps::run_files(manifests, expected));
    found.extend(pubsub::allowed_topics(manifests, expected));
    found.extend(pubsub::component_names(manifests, expected));
    found.extend(pubsub::consumer_groups(manifests));
    found.extend(pubsub::kafka_run_file(manifests, expected));
    found.extend(scopes::pubsub_scopes(manifests, expected));
    found.extend(exposure::compose(manifests));
    found.extend(exposure::ingress_paths(manifests));
    found.extend(exposure::image_tags(manifests));
    found.extend(subscriptions::declarative(manifests, expected));
    found.extend(resiliency::copies_agree(manifests));
    found.extend(resiliency::safe_policies(manifests));
    found.extend(tracing::settings_agree(manifests, expected));
    found.sort();
    found
}
