//! Support for the Redis integration tests: a private `redis-server` per test, component files
//! pointing at it, and a scriptable subscriber app.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod server;

pub use app::{App, Delivery};
pub use server::RedisServer;

use std::path::Path;

/// `todo-state` (`state.redis`) and `todo-pubsub` (`pubsub.redis`) at `server`, with extra
/// pub/sub metadata (`name: value` pairs), written into `dir`.
pub fn write_components(dir: &Path, server: &RedisServer, pubsub_meta: &[(&str, &str)]) {
    let mut pubsub = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n",
        server.addr()
    );
    for (k, v) in pubsub_meta {
        pubsub.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    let state = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n",
        server.addr()
    );
    std::fs::write(dir.join("pubsub.yaml"), pubsub).unwrap();
    std::fs::write(dir.join("statestore.yaml"), state).unwrap();
}

/// A cluster over fresh component files for `server`.
pub async fn cluster(
    server: &RedisServer,
    pubsub_meta: &[(&str, &str)],
) -> (sidecar_testing::Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path(), server, pubsub_meta);
    let cluster = sidecar_testing::Cluster::from_resources(&[dir.path()])
        .await
        .unwrap();
    (cluster, dir)
}
