//! Multi-app run (`sidecar run -f dapr.yaml`): real app processes, one shared runtime, prefixed
//! output, clean shutdown, and the errors a person meets first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;

use axum::http::StatusCode;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use support::*;

const TEST_APP: &str = env!("CARGO_BIN_EXE_dapr-test-app");

/// A temp dir with `resources/` (in-memory components) and one directory per app.
pub(crate) fn workspace(apps: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("resources")).unwrap();
    std::fs::write(dir.path().join("resources/components.yaml"), COMPONENTS).unwrap();
    for app in apps {
        std::fs::create_dir_all(dir.path().join("apps").join(app)).unwrap();
    }
    dir
}

pub(crate) fn run(file: &Path) -> Proc {
    Proc::spawn(
        &[
            "run".into(),
            "-f".into(),
            file.display().to_string(),
            "--shutdown-grace-seconds".into(),
            "3".into(),
        ],
        &[],
    )
}

fn pids(out: &str, app: &str) -> Vec<i32> {
    let prefix = format!("== APP - {app} == started pid=");
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The status of `/v1.0/healthz/outbound`: 204 once the components are up, before the app
/// channel (and so the app's subscriptions); daprd's likewise
/// (<https://docs.dapr.io/reference/api/health_api/>).
pub(crate) async fn healthz(port: u16) -> Option<u16> {
    status_of(port, "/v1.0/healthz/outbound").await
}

/// The status of `/v1.0/healthz`: 204 only once the app's subscriptions are registered, so a
/// publish from then on has its subscribers.
pub(crate) async fn ready(port: u16) -> Option<u16> {
    status_of(port, "/v1.0/healthz").await
}

async fn status_of(port: u16, path: &str) -> Option<u16> {
    let r = http()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

#[tokio::test]
async fn two_apps_exchange_an_event_and_sigint_leaves_nothing_behind() {
    let ws = workspace(&["publisher", "subscriber"]);
    let (sub_port, sub_dapr) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            r#"version: 1
common:
  resourcesPaths: ["./resources"]
  env: {{ FROM_FILE: common, TOPIC: greetings }}
apps:
  - appID: subscriber
    appDirPath: ./apps/subscriber
    appPort: {sub_port}
    daprHTTPPort: {sub_dapr}
    command: ["{TEST_APP}"]
    env: {{ ROLE: subscriber, FROM_FILE: app }}
  - appDirPath: ./apps/publisher
    command: ["{TEST_APP}"]
    env: {{ ROLE: publisher }}
"#
        ),
    );
    let mut runner = run(&file);
    let out = runner
        .stdout
        .wait_for("== APP - subscriber == received n=")
        .await;
    assert!(
        out.contains("from=\"publisher\""),
        "CloudEvent source = publisher's app id (from appDirPath)\n{out}"
    );

    // The environment the Dapr CLI gives, common env merged under the app's.
    for line in [
        "== APP - subscriber == env APP_ID=subscriber".to_owned(),
        format!("== APP - subscriber == env APP_PORT={sub_port}"),
        format!("== APP - subscriber == env DAPR_HTTP_PORT={sub_dapr}"),
        "== APP - subscriber == env APP_PROTOCOL=http".to_owned(),
        "== APP - subscriber == env FROM_FILE=app".to_owned(),
        "== APP - publisher == env FROM_FILE=common".to_owned(),
        "== APP - publisher == env APP_PORT=<unset>".to_owned(),
    ] {
        assert!(out.contains(&line), "missing {line:?} in\n{out}");
    }
    for app in ["subscriber", "publisher"] {
        let grpc = format!("== APP - {app} == env DAPR_GRPC_PORT=");
        let value = out.lines().find_map(|l| l.strip_prefix(&grpc)).unwrap();
        assert!(
            value.parse::<u16>().is_ok(),
            "DAPR_GRPC_PORT is a port: {value}"
        );
        let cwd = ws.path().join("apps").join(app).canonicalize().unwrap();
        assert!(
            out.contains(&format!("cwd={}", cwd.display())),
            "cwd = appDirPath for {app}\n{out}"
        );
    }
    let err = runner
        .stderr
        .wait_for("== APP - publisher == a line on stderr")
        .await;
    assert!(err.contains("== APP - subscriber == a line on stderr"));

    let children: Vec<i32> = ["subscriber", "publisher"]
        .iter()
        .flat_map(|a| pids(&out, a))
        .collect();
    assert_eq!(children.len(), 2, "{out}");
    assert!(children.iter().all(|p| alive(*p)));

    runner.signal(Signal::SIGINT);
    let status = runner.wait_exit().await;
    assert!(
        status.success(),
        "clean stop after SIGINT: {status:?}\n{}",
        runner.stderr.text()
    );
    for pid in children {
        eventually(&format!("app pid {pid} gone"), || async move {
            (!alive(pid)).then_some(())
        })
        .await;
    }
    assert!(
        healthz(sub_dapr).await.is_none(),
        "the sidecar port is closed"
    );
}

#[tokio::test]
async fn an_app_that_exits_on_its_own_is_reported_and_the_others_keep_running() {
    let ws = workspace(&["quitter", "stayer"]);
    let (stay_port, stay_dapr) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            r#"version: 1
common: {{ resourcesPaths: [./resources] }}
apps:
  - appDirPath: apps/quitter
    command: ["{TEST_APP}"]
    env: {{ EXIT_AFTER_MS: "50", EXIT_CODE: "3" }}
  - appDirPath: apps/stayer
    appPort: {stay_port}
    daprHTTPPort: {stay_dapr}
    command: ["{TEST_APP}"]
"#
        ),
    );
    let mut runner = run(&file);
    let err = runner.stderr.wait_for("exited on its own").await;
    let line = err
        .lines()
        .find(|l| l.contains("exited on its own"))
        .unwrap();
    assert!(
        line.contains("quitter") && line.contains("exit code 3"),
        "{line}"
    );
    assert!(
        runner
            .stdout
            .text()
            .contains("== APP - quitter == exiting with 3")
    );

    assert_eq!(
        healthz(stay_dapr).await,
        Some(204),
        "the other app's sidecar keeps running"
    );
    let stayer = pids(
        &runner.stdout.wait_for("== APP - stayer == started").await,
        "stayer",
    );
    assert!(alive(stayer[0]), "the other app keeps running");

    runner.signal(Signal::SIGTERM);
    let status = runner.wait_exit().await;
    assert_eq!(status.code(), Some(1), "an app failed during the run");
    eventually("stayer gone", || async {
        (!alive(stayer[0])).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_yaml_is_a_clear_error_naming_file_and_key() {
    let ws = workspace(&["a"]);
    let file = write_run_file(
        ws.path(),
        "version: 1\napps:\n  - appDirPath: apps/a\n    appPort: eighty\n",
    );
    let mut runner = run(&file);
    let status = runner.wait_exit().await;
    assert_eq!(status.code(), Some(1));
    let err = runner.stderr.text();
    assert!(
        err.contains(&file.display().to_string()) && err.contains("apps[0].appPort"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let file = write_run_file(ws.path(), "apps:\n  - appDirPath: apps/a\n");
    let mut runner = run(&file);
    assert_eq!(runner.wait_exit().await.code(), Some(1));
    assert!(
        runner.stderr.text().contains("`version`"),
        "{}",
        runner.stderr.text()
    );
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error_and_nothing_is_left_running() {
    let ws = workspace(&["first", "second"]);
    let taken = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let file = write_run_file(
        ws.path(),
        &format!(
            r#"version: 1
common: {{ resourcesPaths: [./resources] }}
apps:
  - appDirPath: apps/first
    command: ["{TEST_APP}"]
    env: {{ ROLE: publisher }}
  - appDirPath: apps/second
    daprHTTPPort: {port}
"#
        ),
    );
    let mut runner = run(&file);
    let status = runner.wait_exit().await;
    assert_eq!(status.code(), Some(1));
    let err = runner.stderr.text();
    assert!(
        err.contains("second") && err.contains(&format!("port {port} is already in use")),
        "{err}"
    );
    let out = runner.stdout.text();
    for pid in pids(&out, "first") {
        eventually("first app stopped", || async move {
            (!alive(pid)).then_some(())
        })
        .await;
    }
}

/// Sidecar-only apps (no `command`) share one runtime: state keys are per app unless the store
/// says `keyPrefix: none`, and one app can invoke another. Key prefixes:
/// <https://docs.dapr.io/developing-applications/building-blocks/state-management/howto-share-state/>
#[tokio::test]
async fn shared_runtime_key_prefixing_and_service_invocation() {
    let ws = workspace(&["a", "b"]);
    let app_b = TestApp::start(json!([])).await;
    app_b.respond_with(|r| {
        if r.path == "/orders/42" {
            (
                StatusCode::CREATED,
                format!("made {}", String::from_utf8_lossy(&r.body)),
            )
        } else {
            (StatusCode::NOT_FOUND, String::new())
        }
    });
    let (a_dapr, b_dapr) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            r#"version: 1
common: {{ resourcesPaths: [./resources] }}
apps:
  - {{ appID: app-a, appDirPath: apps/a, daprHTTPPort: {a_dapr} }}
  - {{ appID: app-b, appDirPath: apps/b, daprHTTPPort: {b_dapr}, appPort: {} }}
"#,
            app_b.port
        ),
    );
    let runner = run(&file);
    let a = format!("http://127.0.0.1:{a_dapr}");
    let b = format!("http://127.0.0.1:{b_dapr}");
    // Ready, not only outbound-healthy: app-b joins service invocation before its readiness.
    eventually("both sidecars ready", || async {
        (ready(a_dapr).await == Some(204) && ready(b_dapr).await == Some(204)).then_some(())
    })
    .await;

    for store in [STATE, "shared-state"] {
        let r = http()
            .post(format!("{a}/v1.0/state/{store}"))
            .json(&json!([{"key": "k", "value": store}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let r = http()
        .get(format!("{b}/v1.0/state/{STATE}/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        204,
        "default keyPrefix appid: app-b cannot see app-a's key"
    );
    let r = http()
        .get(format!("{a}/v1.0/state/{STATE}/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), STATE);
    let r = http()
        .get(format!("{b}/v1.0/state/shared-state/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "keyPrefix none: shared");
    assert_eq!(r.json::<Value>().await.unwrap(), "shared-state");

    let r = http()
        .post(format!("{a}/v1.0/invoke/app-b/method/orders/42?x=1"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "made hi");
    let got = app_b.received_on("/orders/42");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, axum::http::Method::POST);
    assert_eq!(got[0].query.as_deref(), Some("x=1"));
    drop(runner);
}

#[tokio::test]
async fn app_resources_directory_wins_over_common() {
    // apps/b/.dapr/resources defines only a state store, so app b has no pub/sub: an app's own
    // resources directory wins over `common`'s, as `dapr run -f` resolves them
    // (https://docs.dapr.io/developing-applications/local-development/multi-app-dapr-run/multi-app-template/).
    let ws = workspace(&["a", "b/.dapr/resources"]);
    std::fs::write(
        ws.path().join("apps/b/.dapr/resources/state.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: b-state}\nspec: {type: state.in-memory, version: v1}\n",
    )
    .unwrap();
    let (a_dapr, b_dapr) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            "version: 1\ncommon: {{resourcesPaths: [./resources]}}\napps:\n  - {{appDirPath: apps/a, daprHTTPPort: {a_dapr}}}\n  - {{appDirPath: apps/b, daprHTTPPort: {b_dapr}}}\n"
        ),
    );
    let _runner = run(&file);
    eventually("both sidecars up", || async {
        (healthz(a_dapr).await == Some(204) && healthz(b_dapr).await == Some(204)).then_some(())
    })
    .await;
    let names = |port: u16| async move {
        let m: Value = http()
            .get(format!("http://127.0.0.1:{port}/v1.0/metadata"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut n: Vec<String> = m["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(b_dapr).await, vec!["b-state"]);
    assert!(names(a_dapr).await.contains(&PUBSUB.to_owned()));
    assert!(!names(a_dapr).await.contains(&"b-state".to_owned()));
    let r = http()
        .post(format!("http://127.0.0.1:{b_dapr}/v1.0/publish/{PUBSUB}/t"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "app b does not see common's pub/sub");
}

#[tokio::test]
async fn a_second_signal_kills_apps_that_ignore_sigterm() {
    let ws = workspace(&["stubborn"]);
    let file = write_run_file(
        ws.path(),
        r#"version: 1
apps:
  - appDirPath: apps/stubborn
    command: ["sh", "-c", "trap '' TERM; echo started pid=$$; while :; do sleep 0.1; done"]
"#,
    );
    let args = [
        "run",
        "-f",
        &file.display().to_string(),
        "--shutdown-grace-seconds",
        "600",
    ]
    .map(String::from);
    let mut runner = Proc::spawn(&args, &[]);
    let out = runner
        .stdout
        .wait_for("== APP - stubborn == started pid=")
        .await;
    let pid = pids(&out, "stubborn")[0];
    runner.signal(Signal::SIGINT);
    runner.stderr.wait_for("stopping apps and sidecars").await;
    assert!(
        alive(pid),
        "the app ignores SIGTERM, so it is still there during the grace period"
    );
    runner.signal(Signal::SIGINT);
    // The grace period is 10 minutes; the deadline of wait_exit is far shorter.
    let status = runner.wait_exit().await;
    assert!(status.success(), "{status:?}");
    eventually("stubborn app killed", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    assert!(runner.stderr.text().contains("second signal"));
}

#[tokio::test]
async fn a_command_that_cannot_start_is_a_clear_error() {
    let ws = workspace(&["ghost"]);
    let file = write_run_file(
        ws.path(),
        "version: 1\ncommon: {resourcesPaths: [./resources]}\napps:\n  - {appDirPath: apps/ghost, command: [/no/such/program]}\n",
    );
    let mut runner = run(&file);
    assert_eq!(runner.wait_exit().await.code(), Some(1));
    let err = runner.stderr.text();
    assert!(
        err.contains("ghost") && err.contains("/no/such/program"),
        "{err}"
    );
}

#[tokio::test]
async fn a_relative_command_runs_from_the_app_directory() {
    use std::os::unix::fs::PermissionsExt;
    let ws = workspace(&["scripted"]);
    let script = ws.path().join("apps/scripted/hello.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"hello from $APP_ID in $(pwd)\"\nexec sleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = write_run_file(
        ws.path(),
        "version: 1\napps:\n  - {appDirPath: apps/scripted, command: [./hello.sh]}\n",
    );
    let mut runner = run(&file);
    let dir = ws.path().join("apps/scripted").canonicalize().unwrap();
    runner
        .stdout
        .wait_for(&format!(
            "== APP - scripted == hello from scripted in {}",
            dir.display()
        ))
        .await;
    runner.signal(Signal::SIGTERM);
    assert!(runner.wait_exit().await.success());
}
