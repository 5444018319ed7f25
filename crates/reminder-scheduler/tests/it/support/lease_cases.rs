//! Lease scenarios, run against each state store the tests use.

use std::time::Duration;

use dapr_http::{DaprClient, DaprSettings};
use reminder_scheduler::lease::{LEASE_KEY, Lease, LeaseState, LeaseValue};
use reminder_scheduler::store::{Store, Ttl};
use service_testing::Cluster;
use tokio::time::Instant;

use super::APP;

const TTL: Duration = Duration::from_secs(2);

async fn store(cluster: &Cluster) -> Store {
    let sidecar = cluster.sidecar(APP).start().await.unwrap();
    let dapr = DaprClient::new(DaprSettings::with_endpoint(sidecar.http_endpoint())).unwrap();
    // The sidecar lives as long as the cluster.
    std::mem::forget(sidecar);
    Store::new(dapr, events::STATE_STORE_NAME)
}

async fn holder(store: &Store) -> Option<String> {
    store
        .read::<LeaseValue>(LEASE_KEY)
        .await
        .unwrap()
        .value
        .map(|v| v.holder)
}

pub async fn one_holder_at_a_time_and_renewal_keeps_the_lease_alive(cluster: &Cluster) {
    let store = store(cluster).await;
    let a = Lease::new(store.clone(), "a", TTL);
    let b = Lease::new(store.clone(), "b", TTL);
    assert_eq!(a.acquire_or_renew().await.unwrap(), LeaseState::Held);
    assert_eq!(
        b.acquire_or_renew().await.unwrap(),
        LeaseState::HeldElsewhere
    );
    assert!(a.is_held() && !b.is_held());

    // Renewing re-sets the TTL: well past one TTL, the lease is still a's.
    let until = Instant::now() + TTL * 2;
    while Instant::now() < until {
        assert_eq!(a.acquire_or_renew().await.unwrap(), LeaseState::Held);
        assert_eq!(
            b.acquire_or_renew().await.unwrap(),
            LeaseState::HeldElsewhere
        );
        tokio::time::sleep(TTL / 4).await;
    }
    assert_eq!(holder(&store).await.as_deref(), Some("a"));

    // Released on shutdown: b takes it at once.
    a.release().await.unwrap();
    assert!(!a.is_held());
    assert_eq!(holder(&store).await, None);
    assert_eq!(b.acquire_or_renew().await.unwrap(), LeaseState::Held);
    assert_eq!(holder(&store).await.as_deref(), Some("b"));
}

pub async fn a_paused_holder_is_replaced_after_the_ttl_and_cannot_renew(cluster: &Cluster) {
    let store = store(cluster).await;
    let a = Lease::new(store.clone(), "a", TTL);
    let b = Lease::new(store.clone(), "b", TTL);
    let taken = Instant::now();
    assert_eq!(a.acquire_or_renew().await.unwrap(), LeaseState::Held);
    let stale = store.read::<LeaseValue>(LEASE_KEY).await.unwrap();

    // a "pauses": it stops renewing. b polls and takes over once the key has expired.
    let deadline = Instant::now() + TTL * 3;
    loop {
        if b.acquire_or_renew().await.unwrap() == LeaseState::Held {
            break;
        }
        assert!(Instant::now() < deadline, "b never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = taken.elapsed();
    assert!(
        took >= TTL - Duration::from_millis(100),
        "taken over too early: {took:?}"
    );
    assert!(
        took <= TTL + Duration::from_millis(500),
        "taken over too late: {took:?}"
    );

    // a wakes: its own deadline has passed, so it stops scanning; renewing fails.
    assert!(!a.is_held());
    assert_eq!(
        a.acquire_or_renew().await.unwrap(),
        LeaseState::HeldElsewhere
    );
    // Even a blind renewal with the etag a last saw is refused by the store.
    let value = LeaseValue {
        holder: "a".into(),
        renewed_at: String::new(),
    };
    // (A fresh key's first etag can equal the one a saw; b's renewal moves it on, as any
    // holder's does within a renewal interval.)
    assert_eq!(b.acquire_or_renew().await.unwrap(), LeaseState::Held);
    let error = store
        .write(
            LEASE_KEY,
            &value,
            stale.etag.as_deref(),
            Some(Ttl::Expire(TTL)),
        )
        .await
        .expect_err("a's stale renewal overwrote b's lease");
    assert!(error.is_write_conflict(), "{error}");
    assert_eq!(holder(&store).await.as_deref(), Some("b"));
    // And a first-write acquisition of a held lease fails too.
    let error = store
        .write(LEASE_KEY, &value, None, Some(Ttl::Expire(TTL)))
        .await
        .unwrap_err();
    assert!(error.is_write_conflict(), "{error}");
}
