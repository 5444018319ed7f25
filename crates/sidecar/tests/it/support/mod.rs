//! Shared pieces of the black-box tests: the `sidecar` binary as a real process, a test app (an
//! axum server on a real port that speaks only the documented Dapr app contract), resource files,
//! and polling helpers with deadlines.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub mod backend;
pub mod scenarios_api;
pub mod scenarios_bulk;
pub mod scenarios_delivery;
pub mod scenarios_publish;
pub mod scenarios_state;

pub use backend::Backend;

pub const DEADLINE: Duration = Duration::from_secs(20);
pub const PUBSUB: &str = "todo-pubsub";
pub const STATE: &str = "todo-state";

pub use sidecar_testing::free_port;

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Resources

pub const COMPONENTS: &str = r#"apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: todo-pubsub
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: todo-state
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: shared-state
spec:
  type: state.in-memory
  version: v1
  metadata:
    - name: keyPrefix
      value: none
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: restricted-pubsub
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
    - name: allowedTopics
      value: "allowed-topic"
"#;

/// Inbound retries for `todo-pubsub` deliveries: 2 retries, 50 ms apart.
pub const RESILIENCY: &str = r#"apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: test-resiliency
spec:
  policies:
    retries:
      quickRetry:
        policy: constant
        duration: 50ms
        maxRetries: 2
  targets:
    components:
      todo-pubsub:
        inbound:
          retry: quickRetry
"#;

/// A temporary resources directory holding `files`.
pub fn resources_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

// ---------------------------------------------------------------------------------------------
// The sidecar binary

/// Collected output of a child process.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    pub fn capture(stream: impl std::io::Read + Send + 'static) -> Output {
        let out = Output::default();
        let sink = out.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        out
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, needle: &str) -> String {
        eventually(&format!("output containing {needle:?}"), || async {
            let t = self.text();
            t.contains(needle).then_some(t)
        })
        .await
    }
}

/// A `sidecar` process; killed on drop.
pub struct Proc {
    pub child: Child,
    pub stdout: Output,
    pub stderr: Output,
}

impl Proc {
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar"));
        cmd.args(args)
            .env_remove("DAPR_API_TOKEN")
            .env_remove("APP_API_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = Output::capture(child.stdout.take().unwrap());
        let stderr = Output::capture(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the process to exit, with a deadline.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit; stderr:\n{}",
                self.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for one sidecar process started with daprd flags.
#[derive(Default, Clone)]
pub struct SidecarSpec {
    pub app_id: String,
    pub app_port: Option<u16>,
    pub resources: Vec<PathBuf>,
    pub api_token: Option<String>,
    pub app_api_token: Option<String>,
    pub extra_args: Vec<String>,
}

/// A running sidecar process.
pub struct Sidecar {
    pub proc: Proc,
    pub port: u16,
    pub base: String,
}

impl Sidecar {
    /// Starts the binary and waits until `/v1.0/healthz/outbound` answers 204.
    pub async fn start(spec: SidecarSpec) -> Sidecar {
        let port = free_port();
        let mut args = vec![
            "--app-id".to_owned(),
            spec.app_id.clone(),
            "--dapr-http-port".into(),
            port.to_string(),
            "--dapr-listen-addresses".into(),
            "127.0.0.1".into(),
            "--log-level".into(),
            "debug".into(),
        ];
        if let Some(p) = spec.app_port {
            args.extend(["--app-port".to_owned(), p.to_string()]);
        }
        for r in &spec.resources {
            args.extend(["--resources-path".to_owned(), r.display().to_string()]);
        }
        args.extend(spec.extra_args.iter().cloned());
        let mut env = Vec::new();
        if let Some(t) = &spec.api_token {
            env.push(("DAPR_API_TOKEN", t.as_str()));
        }
        if let Some(t) = &spec.app_api_token {
            env.push(("APP_API_TOKEN", t.as_str()));
        }
        let proc = Proc::spawn(&args, &env);
        let base = format!("http://127.0.0.1:{port}");
        let sidecar = Sidecar { proc, port, base };
        sidecar.wait_outbound().await;
        sidecar
    }

    pub async fn wait_outbound(&self) {
        let client = http();
        let url = format!("{}/v1.0/healthz/outbound", self.base);
        let stderr = self.proc.stderr.clone();
        eventually(&format!("sidecar outbound health at {url}"), || {
            let client = client.clone();
            let url = url.clone();
            let stderr = stderr.clone();
            async move {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => Some(()),
                    _ => {
                        // The binary's fatal line (`error: ...` at the start of a line, then
                        // exit), not a component's log line that quotes an error: the Kafka
                        // authentication tests expect librdkafka's `Global error: ...` warnings.
                        let t = stderr.text();
                        let fatal = t.lines().any(|line| line.starts_with("error:"));
                        assert!(!fatal, "sidecar failed to start:\n{t}");
                        None
                    }
                }
            }
        })
        .await;
    }

    /// Waits until `/v1.0/healthz` answers 204 (app channel up, subscriptions read).
    pub async fn wait_ready(&self) {
        let client = http();
        let url = format!("{}/v1.0/healthz", self.base);
        eventually("sidecar healthz 204", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.get(&url).send().await.ok()?;
                (r.status() == StatusCode::NO_CONTENT).then_some(())
            }
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1.0/publish/{pubsub}/{topic}{query}` with an optional content type.
    pub async fn publish(
        &self,
        pubsub: &str,
        topic: &str,
        query: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = http()
            .post(self.url(&format!("/v1.0/publish/{pubsub}/{topic}{query}")))
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.unwrap()
    }
}

/// Asserts a Dapr error response: status, JSON body with `errorCode`.
/// The sidecar's `GET /metrics` page at `base` (`http://127.0.0.1:{port}`).
pub async fn metrics(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        ct.as_deref().unwrap_or("").starts_with("application/json"),
        "content type {ct:?}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], code, "body {body}");
    assert!(body["message"].is_string(), "body {body}");
    body
}

pub async fn assert_no_content(resp: reqwest::Response) {
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        resp.bytes().await.unwrap().is_empty(),
        "204 must have an empty body"
    );
}

// ---------------------------------------------------------------------------------------------
// The test app

/// One request the app received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
    }
}

/// How a `/dapr/subscribe` call fails.
#[derive(Clone, Copy, Debug)]
pub enum SubscribeFailure {
    /// Answer with this status.
    Status(StatusCode),
    /// Drop the connection without an answer (a transport error for the sidecar).
    Drop,
}

type Responder = Box<dyn Fn(&Received) -> (StatusCode, String) + Send + Sync>;

pub struct AppState {
    /// Body of `GET /dapr/subscribe`.
    pub subscriptions: Mutex<Value>,
    /// Answers to the first calls of `/dapr/subscribe` (then 200 with `subscriptions`).
    pub subscribe_failures: Mutex<Vec<SubscribeFailure>>,
    pub subscribe_calls: Mutex<Vec<Received>>,
    pub received: Mutex<Vec<Received>>,
    pub changed: Notify,
    pub responder: Mutex<Responder>,
    /// Requests on this path are answered only after this long (recorded at once).
    pub slow: Mutex<Option<(String, Duration)>>,
}

/// An axum app on a real port, recording everything the sidecar sends it.
#[derive(Clone)]
pub struct TestApp {
    pub port: u16,
    pub state: Arc<AppState>,
}

impl TestApp {
    /// Starts the app with the `/dapr/subscribe` answer `subscriptions`; every other request is
    /// recorded and answered 200 with an empty body until [`TestApp::respond_with`] says otherwise.
    pub async fn start(subscriptions: Value) -> TestApp {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        Self::serve(listener, subscriptions)
    }

    /// Same as [`TestApp::start`] on an already bound listener (to control when the port opens).
    pub fn serve(listener: tokio::net::TcpListener, subscriptions: Value) -> TestApp {
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(AppState {
            subscriptions: Mutex::new(subscriptions),
            subscribe_failures: Mutex::new(Vec::new()),
            subscribe_calls: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            changed: Notify::new(),
            responder: Mutex::new(Box::new(|_| (StatusCode::OK, String::new()))),
            slow: Mutex::new(None),
        });
        let router = Router::new()
            .route("/dapr/subscribe", get(subscribe))
            .route("/healthz", get(|| async { StatusCode::OK }))
            .fallback(record)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestApp { port, state }
    }

    pub fn respond_with(
        &self,
        f: impl Fn(&Received) -> (StatusCode, String) + Send + Sync + 'static,
    ) {
        *self.state.responder.lock().unwrap() = Box::new(f);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until at least `n` requests on `path` arrived and returns them all.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        self.wait_until(&format!("{n} request(s) on {path}"), |all| {
            let on: Vec<_> = all.iter().filter(|r| r.path == path).cloned().collect();
            (on.len() >= n).then_some(on)
        })
        .await
    }

    /// Waits until `check` over everything received returns `Some`.
    pub async fn wait_until<T>(&self, what: &str, check: impl Fn(&[Received]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.state.changed.notified();
            if let Some(v) = check(&self.received()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let paths: Vec<_> = self.received().iter().map(|r| r.path.clone()).collect();
                panic!("timed out waiting for {what}; received so far: {paths:?}");
            }
        }
    }
}

async fn subscribe(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let call = Received {
        method: Method::GET,
        path: "/dapr/subscribe".into(),
        query: None,
        headers,
        body: Bytes::new(),
    };
    state.subscribe_calls.lock().unwrap().push(call);
    state.changed.notify_waiters();
    let failure = {
        let mut f = state.subscribe_failures.lock().unwrap();
        if f.is_empty() {
            None
        } else {
            Some(f.remove(0))
        }
    };
    match failure {
        Some(SubscribeFailure::Status(status)) => return status.into_response(),
        // Unwinding the connection task closes the socket without a response; resume_unwind
        // skips the panic hook, so nothing is printed.
        Some(SubscribeFailure::Drop) => std::panic::resume_unwind(Box::new("dropped")),
        None => {}
    }
    let body = state.subscriptions.lock().unwrap().clone();
    axum::Json(body).into_response()
}

async fn record(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let rec = Received {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let (status, body) = (state.responder.lock().unwrap())(&rec);
    let delay = state
        .slow
        .lock()
        .unwrap()
        .as_ref()
        .filter(|(path, _)| *path == rec.path)
        .map(|(_, d)| *d);
    state.received.lock().unwrap().push(rec);
    state.changed.notify_waiters();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut resp = (status, body.clone()).into_response();
    if body.starts_with('{') {
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }
    resp
}

/// A programmatic subscription entry.
pub fn sub(topic: &str, route: &str) -> Value {
    json!({"pubsubname": PUBSUB, "topic": topic, "route": route})
}

/// App + sidecar (started after the app, with `files` as resources).
pub struct Pair {
    pub app: TestApp,
    pub sidecar: Sidecar,
    pub resources: tempfile::TempDir,
}

impl Pair {
    pub async fn start(app_id: &str, subscriptions: Value, files: &[(&str, &str)]) -> Pair {
        Self::start_with(app_id, subscriptions, files, |_| {}).await
    }

    pub async fn start_with(
        app_id: &str,
        subscriptions: Value,
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut SidecarSpec),
    ) -> Pair {
        let app = TestApp::start(subscriptions).await;
        let resources = resources_dir(files);
        let mut spec = SidecarSpec {
            app_id: app_id.into(),
            app_port: Some(app.port),
            resources: vec![resources.path().to_path_buf()],
            ..SidecarSpec::default()
        };
        tweak(&mut spec);
        let sidecar = Sidecar::start(spec).await;
        sidecar.wait_ready().await;
        Pair {
            app,
            sidecar,
            resources,
        }
    }
}

/// Writes a run file into `dir` and returns its path.
pub fn write_run_file(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("dapr.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

pub fn env_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
