//! Starting a service the way production does, next to an in-process sidecar.
//!
//! The order matters: the sidecar's harness waits for the app's subscriptions when the app port
//! already accepts connections, and the app needs the sidecar's address to be built. So a port is
//! reserved and released, the sidecar starts for it (the app is not up, so it does not wait), the
//! app binds it and runs, and then the harness waits for the sidecar to be ready.

use std::fmt::Display;

use dapr_http::DaprClient;
use events::{Envelope, EventPayload};
use secrecy::ExposeSecret as _;
use service_kit::{LayeredSettings, Service, ServiceSettings, Shutdown};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::producers::client_of;
use crate::{Cluster, DEADLINE, Producers, Proxy, TestSidecar, free_port};

/// A service's settings from its built-in defaults and `env` (later pairs win), listening on
/// loopback. The test process's own environment is never read.
pub fn settings<T>(env: &[(&str, &str)]) -> T
where
    T: ServiceSettings,
    <T as LayeredSettings>::Error: Display,
{
    let env = [("APP_HOST", "127.0.0.1")]
        .iter()
        .chain(env)
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()));
    T::load_from(env).unwrap_or_else(|error| panic!("test settings: {error}"))
}

/// Starts `S` with `settings` and its production collaborators on a cluster of its own
/// (in-memory state store and pub/sub).
pub async fn spawn_app<S: Service>(settings: S::Settings) -> TestApp<S> {
    AppBuilder::new(settings).start().await
}

/// How to start a service under test.
#[derive(Debug)]
pub struct AppBuilder<S: Service> {
    settings: S::Settings,
    overrides: S::Overrides,
    cluster: Option<Cluster>,
    owns_cluster: bool,
    proxied: bool,
}

impl<S: Service> AppBuilder<S> {
    pub fn new(settings: S::Settings) -> Self {
        Self {
            settings,
            overrides: S::Overrides::default(),
            cluster: None,
            owns_cluster: true,
            proxied: false,
        }
    }

    /// Runs on `cluster` (shared with other apps; [`TestApp::stop`] leaves it running) instead
    /// of a cluster of its own.
    pub fn on(mut self, cluster: &Cluster) -> Self {
        self.cluster = Some(cluster.clone());
        self.owns_cluster = false;
        self
    }

    /// Runs on `cluster`, which [`TestApp::stop`] and [`TestApp::kill`] then shut down with the
    /// app (a cluster made from a test's own resources).
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self.owns_cluster = true;
        self
    }

    /// Replaces collaborators (a clock, a sink) for this run.
    pub fn overrides(mut self, overrides: S::Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Puts a recording, fault-injecting [`Proxy`] between the app and its sidecar.
    pub fn proxied(mut self) -> Self {
        self.proxied = true;
        self
    }

    /// Starts the sidecar and the app, and waits until the sidecar has the app's subscriptions.
    pub async fn start(self) -> TestApp<S> {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = service_kit::init_tracing("service-testing");
        }
        let mut settings = self.settings;
        let owns_cluster = self.owns_cluster;
        let cluster = match self.cluster {
            Some(cluster) => cluster,
            None => Cluster::in_memory().await.expect("in-memory cluster"),
        };
        let port = free_port();
        let common = settings.common();
        let secret = |token: &Option<dapr_http::SecretString>| {
            token.as_ref().map(|t| t.expose_secret().to_owned())
        };
        let sidecar = cluster
            .sidecar(&common.app_id)
            .app_port(port)
            .app_api_token(secret(&common.app_api_token))
            .api_token(secret(&common.dapr.api_token))
            .start()
            .await
            .expect("the app's sidecar");
        let proxy = if self.proxied {
            Some(Proxy::start(sidecar.http_endpoint()).await)
        } else {
            None
        };
        settings.common_mut().dapr.http_endpoint = proxy
            .as_ref()
            .map_or_else(|| sidecar.http_endpoint(), |p| p.url.clone());
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind the reserved port");
        let app = S::build_with(settings.clone(), listener, self.overrides)
            .await
            .unwrap_or_else(|error| panic!("building the app: {error}"));
        let handle = app.handle();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(app.run_until(shutdown.clone()));
        assert!(
            sidecar.wait_ready(DEADLINE).await,
            "the sidecar of {} never became ready",
            settings.common().app_id
        );
        TestApp {
            producers: Producers::with_pubsub(&cluster, &settings.common().pubsub_name),
            cluster,
            owns_cluster,
            sidecar,
            base: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            settings,
            handle,
            proxy,
            shutdown,
            task,
        }
    }
}

/// A running service with its sidecar.
#[derive(Debug)]
pub struct TestApp<S: Service> {
    pub cluster: Cluster,
    owns_cluster: bool,
    /// The app's own sidecar.
    pub sidecar: TestSidecar,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// The settings the app was built with (its sidecar's address filled in).
    pub settings: S::Settings,
    pub handle: S::Handle,
    pub proxy: Option<Proxy>,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), S::Error>>,
    producers: Producers,
}

impl<S: Service> TestApp<S> {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client of the app's own sidecar (bypassing any proxy), for direct state access.
    pub fn dapr(&self) -> DaprClient {
        client_of(&self.sidecar.http_endpoint())
    }

    /// A client of a sidecar of `app_id` (started without an app on first use, stopped with the
    /// cluster), to act as that app.
    pub async fn producer(&self, app_id: &str) -> DaprClient {
        self.producers.client(app_id).await
    }

    /// Publishes `envelope` as its producer does: through a sidecar of the topic's producing
    /// app, with CloudEvent id/type from the envelope and the task id as partition key.
    pub async fn publish<T: EventPayload>(&self, envelope: &Envelope<T>) {
        self.producers.publish(envelope).await;
    }

    /// The app's `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("/metrics body")
    }

    /// Graceful stop: the app finishes what is in flight and its background tasks end, then its
    /// sidecar stops (and the cluster, when the app had its own).
    pub async fn stop(self) {
        self.shutdown.trigger();
        // A service that does not stop in time would leave deliveries running behind the
        // test's back (and its counts would be wrong): fail loudly.
        assert!(
            tokio::time::timeout(DEADLINE, self.task).await.is_ok(),
            "the service did not stop within {DEADLINE:?} of its shutdown signal"
        );
        self.sidecar.shutdown().await;
        if self.owns_cluster {
            self.cluster.shutdown().await;
        }
    }

    /// A crash: the app's task is aborted where it stands, nothing is cleaned up; then its
    /// sidecar stops (and the cluster, when the app had its own).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        self.sidecar.shutdown().await;
        if self.owns_cluster {
            self.cluster.shutdown().await;
        }
    }
}
