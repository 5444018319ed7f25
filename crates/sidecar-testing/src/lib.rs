//! The test harness of the local sidecar, and nothing else: in-process sidecars on random ports
//! sharing one runtime ([`Cluster`]), a log of what was published ([`PublishLog`]), and fault
//! injection ([`Faults`]). Use it only from `[dev-dependencies]`.
//!
//! The log and the faults are not part of the sidecar: the harness wraps every pub/sub and state
//! store its runtime builds (decorators in the component registry, see the `hooks` module), so
//! the production code never checks for them.
//!
//! `dapr-test-app`, the small app of the multi-app run tests, is a binary of the `sidecar` crate,
//! whose tests run it: Cargo gives tests the paths of their own package's binaries only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sidecar_testing::HarnessError> {
//! use sidecar_testing::Cluster;
//! use std::time::Duration;
//! let cluster = Cluster::in_memory().await?; // todo-state + todo-pubsub, in memory
//! let app_port = 8080; // the app under test, already listening
//! let sc = cluster.sidecar("email-worker").app_port(Some(app_port)).start().await?;
//! let dapr = sc.http_endpoint(); // give this to the app as DAPR_HTTP_ENDPOINT
//! cluster.publish("task-api", "task-created", &serde_json::json!({"id": 1})).await?;
//! let events = cluster.wait_for_published("task-created", 1, Duration::from_secs(5)).await?;
//! # let _ = (dapr, events); Ok(()) }
//! ```
//!
//! `start()` waits for the sidecar to be ready (subscriptions registered) when the app port
//! already accepts connections, so an event published right after `start()` is delivered. Start
//! the app first; if the app starts later, use [`TestSidecar::wait_ready`].

mod cluster;
mod error;
mod faults;
mod hooks;
mod kafka;
mod publish_log;
mod sidecars;

pub use cluster::{Cluster, PUBSUB, STATE_STORE};
pub use error::HarnessError;
pub use faults::Faults;
pub use kafka::{KafkaBroker, TANSU_VERSION, parse_topics_conf, tansu_binary};
pub use publish_log::{PUBLISH_LOG_LIMIT, PublishLog};
pub use sidecars::{SidecarBuilder, TestSidecar, TokenArg};

/// A loopback port nobody listens on (checked by binding it), for a process that must be told
/// its port before it binds it. The one copy for every test in the workspace.
///
/// The port comes from below the kernel's ephemeral range (`ip_local_port_range`). A port the
/// kernel hands out for `:0` is the kind it also gives every outgoing connection as its local
/// port, so between this check and the process's own bind a connection opened anywhere on the
/// machine could take it, and the process fails with "Address already in use". Below that range
/// only an explicit bind can take it; each call starts from a different place (the process id,
/// then a counter) so test binaries running side by side rarely try the same port.
///
/// # Panics
/// When the machine has no free loopback port: no test could run then.
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let (low, end) = fixed_ports();
    let span = u32::from(end - low);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        // 97 is prime: unless the span is a multiple of it, the walk visits every port of the
        // range before it repeats one (and the kernel's choice below ends a walk that does).
        let offset = start.wrapping_add(call.wrapping_mul(97)) % span;
        let Ok(port) = u16::try_from(u32::from(low) + offset) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free loopback port")
}

/// `[low, end)`: the ports below the kernel's ephemeral range, from 10000 (clear of the
/// well-known services a machine may run). Linux's default range starts at 32768.
fn fixed_ports() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    // A machine whose ephemeral range starts low leaves little room below it: there, 20000
    // ports from 10000 on, which may collide as the kernel's own choice would.
    if ephemeral_start > LOW + 1_000 {
        (LOW, ephemeral_start)
    } else {
        (LOW, LOW + 20_000)
    }
}
