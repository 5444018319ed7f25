//! The scanner lease against the sidecar's state store (`state.redis` semantics: first-write
//! markers, integer etags, TTL expiry reading as absent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::{Cluster, lease_cases};

#[tokio::test]
async fn one_holder_at_a_time_and_renewal_keeps_the_lease_alive() {
    let cluster = Cluster::in_memory().await.unwrap();
    lease_cases::one_holder_at_a_time_and_renewal_keeps_the_lease_alive(&cluster).await;
}

#[tokio::test]
async fn a_paused_holder_is_replaced_after_the_ttl_and_cannot_renew() {
    let cluster = Cluster::in_memory().await.unwrap();
    lease_cases::a_paused_holder_is_replaced_after_the_ttl_and_cannot_renew(&cluster).await;
}
