//! The console in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` through the node scripts of `crates/e2e/browser`.
//!
//! * The page alone, against a stand-in backend with hostile data (`page.test.mjs`): every view
//!   renders, data stays text, live updates land, replay sends its guard header.
//! * The page of a real run (`console.e2e.mjs`): `sidecar run -f` with the four services and the
//!   console on a free port; a task titled `<img src=x onerror=alert(1)>` is created through the
//!   API and seen arriving live with its deliveries, its email, a dead letter replayed from the
//!   page, the title always as text; each view is screenshotted (into `docs/console/` when
//!   `CONSOLE_SCREENSHOTS_DIR=docs/console`, otherwise into the test's temporary folder).
//!
//! Needs `cargo build --workspace --bins`, node, `npm ci` in `crates/e2e/browser` and Chromium:
//! `scripts/test.sh` sees to all of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::durability_support::token;

use std::path::PathBuf;
use std::time::Duration;

use e2e::{Binaries, BrowserTests, RunFile, System, poll_until};
use service_testing::free_port;
use yaml_serde::Value;

const TASK_API: &str = "task-api";
/// The views the real-run script screenshots, one PNG each.
const SCREENSHOTS: &[&str] = &[
    "apps",
    "events",
    "emails",
    "dead-letters",
    "state",
    "traces",
    "trace",
    "logs",
];

fn browser_tests() -> BrowserTests {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    BrowserTests::locate(&workspace).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_passed(what: &str, run: &e2e::ScriptRun) {
    eprintln!("===== {what} =====\n{}", run.output);
    assert!(run.success, "{what} failed:\n{}", run.output);
}

#[tokio::test]
async fn the_console_page_renders_hostile_data_as_text_in_every_view() {
    let tests = browser_tests();
    let run = tests
        .run(
            &["--test", "--test-concurrency=1", "page.test.mjs"],
            &[],
            Duration::from_secs(240),
        )
        .await
        .unwrap();
    assert_passed("the console page's browser tests", &run);
    assert!(run.output.contains("# fail 0"), "{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_task_moving_through_the_run() {
    let tests = browser_tests();
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.yaml")).unwrap();
    let secret = run_file.setting(TASK_API, "JWT_SECRET").unwrap();
    let pubsub = run_file.setting(TASK_API, "PUBSUB_NAME").unwrap();
    let (file, apps) = run_file.write(dir.path(), bins.workspace(), &bins).unwrap();
    // The console on a port of its own (the run file's `console` key), so runs in parallel
    // do not meet on the default one.
    let console_port = free_port();
    let mut doc: Value = yaml_serde::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut console = yaml_serde::Mapping::new();
    console.insert("port".into(), u64::from(console_port).into());
    doc.as_mapping_mut()
        .unwrap()
        .insert("console".into(), Value::Mapping(console));
    std::fs::write(&file, yaml_serde::to_string(&doc).unwrap()).unwrap();

    let mut run = System::start(&bins, &file, apps, dir.path().join("run.log")).unwrap();
    run.wait_ready(Duration::from_secs(90)).await.unwrap();
    let console_url = format!("http://127.0.0.1:{console_port}");
    let http = reqwest::Client::new();
    poll_until("the console's API", Duration::from_secs(30), || {
        let request = http.get(format!("{console_url}/api/apps")).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await
    .unwrap();
    assert!(
        run.output().contains(&console_url),
        "the runner prints the console's URL at start"
    );

    let task_api = run.app(TASK_API).unwrap();
    let user = uuid::Uuid::new_v4().to_string();
    let email = format!("console-{}@example.com", &user[..8]);
    let shots = match std::env::var("CONSOLE_SCREENSHOTS_DIR") {
        Ok(d) if !d.is_empty() => bins.workspace().join(d),
        _ => dir.path().join("screenshots"),
    };
    let env = [
        ("CONSOLE_URL", console_url.clone()),
        (
            "TASK_API_URL",
            format!("http://127.0.0.1:{}", task_api.app_port),
        ),
        (
            "TASK_API_TOKEN",
            token(&bins, &secret, &user, &email).unwrap(),
        ),
        (
            "PUBLISH_URL",
            format!(
                "http://127.0.0.1:{}/v1.0/publish/{pubsub}/task-created",
                task_api.dapr_http_port
            ),
        ),
        ("SCREENSHOTS", shots.display().to_string()),
    ];
    let script = tests
        .run(&["console.e2e.mjs"], &env, Duration::from_secs(300))
        .await
        .unwrap();
    assert_passed("the console's end-to-end browser test", &script);
    for name in SCREENSHOTS {
        let png = shots.join(format!("{name}.png"));
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "no screenshot {}", png.display());
    }
    let status = run.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "the run ended with {status}");
}
