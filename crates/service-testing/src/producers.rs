//! Publishing as the producing apps do, through sidecars of their own on a cluster: what a test
//! publishes is decoded by the service exactly as production events are.

use std::collections::HashMap;

use dapr_http::{DaprClient, DaprSettings};
use events::{Envelope, EventPayload};

use crate::Cluster;

/// A client of a new sidecar of `app_id` on `cluster`, with no app behind it (it stops with the
/// cluster): to publish as that app, or to read and write its state.
pub async fn sidecar_client(cluster: &Cluster, app_id: &str) -> DaprClient {
    let sidecar = cluster
        .sidecar(app_id)
        .start()
        .await
        .unwrap_or_else(|error| panic!("a sidecar of {app_id}: {error}"));
    client_of(&sidecar.http_endpoint())
}

/// A client of the sidecar at `endpoint`.
pub(crate) fn client_of(endpoint: &str) -> DaprClient {
    DaprClient::new(DaprSettings::with_endpoint(endpoint)).expect("Dapr client")
}

/// The producing apps of a cluster, each with one sidecar started on first use. Events can be
/// published before the service under test (and so its consumer groups) exists.
#[derive(Debug)]
pub struct Producers {
    cluster: Cluster,
    pubsub: String,
    clients: tokio::sync::Mutex<HashMap<String, DaprClient>>,
}

impl Producers {
    /// Producers on `cluster`, publishing to the pub/sub `events::PUBSUB_NAME`.
    pub fn on(cluster: &Cluster) -> Self {
        Self::with_pubsub(cluster, events::PUBSUB_NAME)
    }

    /// Producers on `cluster`, publishing to `pubsub`.
    pub fn with_pubsub(cluster: &Cluster, pubsub: &str) -> Self {
        Self {
            cluster: cluster.clone(),
            pubsub: pubsub.to_owned(),
            clients: tokio::sync::Mutex::default(),
        }
    }

    /// A client of the sidecar of `app_id` (started on first use).
    pub async fn client(&self, app_id: &str) -> DaprClient {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(app_id) {
            return client.clone();
        }
        let client = sidecar_client(&self.cluster, app_id).await;
        clients.insert(app_id.to_owned(), client.clone());
        client
    }

    /// Publishes `envelope` as its producer does: through a sidecar of the topic's producing
    /// app, with CloudEvent id/type from the envelope and the task id as partition key.
    pub async fn publish<T: EventPayload>(&self, envelope: &Envelope<T>) {
        self.client(envelope.topic().producer())
            .await
            .publish(&self.pubsub, envelope)
            .await
            .expect("publish");
    }
}
