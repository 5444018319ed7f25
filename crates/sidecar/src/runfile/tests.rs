#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(dirs: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Fixture { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("dapr.yaml")
    }

    fn parse(&self, text: &str) -> Result<RunPlan, RunFileError> {
        parse(&self.file(), text, None)
    }

    fn path(&self, p: &str) -> PathBuf {
        normalize(&self.dir.path().join(p))
    }
}

#[test]
fn minimal_file_resolves_with_cli_defaults() {
    let fx = Fixture::new(&["svc/task-api", "resources"]);
    let plan = fx
        .parse(
            "version: 1\ncommon:\n  resourcesPaths: [./resources]\napps:\n  - appDirPath: ./svc/task-api\n",
        )
        .unwrap();
    let app = &plan.apps[0];
    assert_eq!(
        app.app_id, "task-api",
        "app id defaults to the directory name"
    );
    assert_eq!(app.app_dir, fx.path("svc/task-api"));
    assert_eq!(app.resources_paths, vec![fx.path("resources")]);
    assert_eq!(app.dapr_http_port, None);
    assert_eq!(app.app_port, None);
    assert_eq!(app.app_channel_address, "127.0.0.1");
    assert_eq!(app.max_body_size, 4 << 20);
    assert!(app.command.is_empty());
    assert!(
        plan.warnings.iter().all(|w| !w.contains("unknown")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn full_app_and_env_merge() {
    let fx = Fixture::new(&["a", "a/res"]);
    let plan = fx
        .parse(
            r#"
version: 1
name: todo
common:
  env: { RUST_LOG: info, SHARED: common, PORTISH: 1 }
  logLevel: warn
  maxBodySize: 8Mi
apps:
  - appID: task-api
    appDirPath: a
    appPort: 8080
    daprHTTPPort: 3500
    daprGRPCPort: 50001
    command: ["cargo", "run", "-p", "task-api"]
    env: { SHARED: app, OWN: 42 }
    resourcesPaths: ["./res"]
    logLevel: debug
"#,
        )
        .unwrap();
    assert_eq!(plan.name.as_deref(), Some("todo"));
    let app = &plan.apps[0];
    assert_eq!(app.app_port, Some(8080));
    assert_eq!(app.dapr_http_port, Some(3500));
    assert_eq!(app.dapr_grpc_port, Some(50001));
    assert_eq!(app.command, vec!["cargo", "run", "-p", "task-api"]);
    assert_eq!(app.env["SHARED"], "app", "the app's env wins");
    assert_eq!(app.env["RUST_LOG"], "info");
    assert_eq!(
        app.env["OWN"], "42",
        "scalars are accepted as strings, like the CLI"
    );
    assert_eq!(app.env["PORTISH"], "1");
    assert_eq!(
        app.resources_paths,
        vec![fx.path("a/res")],
        "relative to appDirPath"
    );
    assert_eq!(app.log_level, Some(LogLevel::Debug));
    assert_eq!(
        app.max_body_size,
        8 << 20,
        "shared key inherited from common"
    );
}

#[test]
fn resources_precedence_app_then_local_dapr_dir_then_common() {
    let fx = Fixture::new(&["a/.dapr/resources", "b", "common-res", "b/own"]);
    let plan = fx
        .parse(
            "version: 1\ncommon: {resourcesPaths: [common-res]}\napps:\n  - appDirPath: a\n  - appDirPath: b\n  - {appID: c, appDirPath: b, resourcesPath: own}\n",
        )
        .unwrap();
    assert_eq!(
        plan.apps[0].resources_paths,
        vec![fx.path("a/.dapr/resources")]
    );
    assert_eq!(plan.apps[1].resources_paths, vec![fx.path("common-res")]);
    assert_eq!(
        plan.apps[2].resources_paths,
        vec![fx.path("b/own")],
        "deprecated resourcesPath"
    );
}

#[test]
fn home_components_dir_is_the_last_resort() {
    let fx = Fixture::new(&["a", "home/.dapr/components"]);
    let plan = parse(
        &fx.file(),
        "version: 1\napps: [{appDirPath: a}]\n",
        Some(fx.dir.path().join("home")),
    )
    .unwrap();
    assert_eq!(
        plan.apps[0].resources_paths,
        vec![fx.path("home/.dapr/components")]
    );
}

fn err(fx: &Fixture, text: &str) -> String {
    fx.parse(text).unwrap_err().to_string()
}

#[test]
fn version_is_required() {
    let fx = Fixture::new(&["a"]);
    let e = err(&fx, "apps: [{appDirPath: a}]\n");
    assert!(e.contains("dapr.yaml") && e.contains("`version`"), "{e}");
}

#[test]
fn app_dir_is_required_and_must_exist() {
    let fx = Fixture::new(&["a"]);
    let e = err(&fx, "version: 1\napps: [{appID: x}]\n");
    assert!(
        e.contains("apps[0].appDirPath") && e.contains("required"),
        "{e}"
    );
    let e = err(&fx, "version: 1\napps: [{appDirPath: nope}]\n");
    assert!(
        e.contains("apps[0].appDirPath") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn missing_resources_path_is_an_error_naming_the_key() {
    let fx = Fixture::new(&["a"]);
    let e = err(
        &fx,
        "version: 1\napps: [{appDirPath: a, resourcesPaths: [missing]}]\n",
    );
    assert!(e.contains("apps[0].resourcesPaths[0]"), "{e}");
}

#[test]
fn wrong_types_name_the_key() {
    let fx = Fixture::new(&["a"]);
    let e = err(
        &fx,
        "version: 1\napps:\n  - appDirPath: a\n    appPort: eighty\n",
    );
    assert!(e.contains("appPort") && e.contains("dapr.yaml"), "{e}");
    let e = err(
        &fx,
        "version: 1\napps:\n  - appDirPath: a\n    command: cargo run\n",
    );
    assert!(e.contains("command"), "{e}");
    let e = err(
        &fx,
        "version: 1\napps:\n  - appDirPath: a\n    daprHTTPPort: 70000\n",
    );
    assert!(e.contains("apps[0].daprHTTPPort"), "{e}");
    let e = err(&fx, "version: [1]\napps: []\n");
    assert!(e.contains("version"), "{e}");
}

#[test]
fn malformed_yaml_names_the_file() {
    let fx = Fixture::new(&[]);
    let e = err(&fx, "version: 1\napps: [\n");
    assert!(e.contains("dapr.yaml"), "{e}");
}

#[test]
fn unknown_keys_are_tolerated_with_a_warning() {
    let fx = Fixture::new(&["a"]);
    let plan = fx
        .parse("version: 1\nextra: 1\ncommon: {appPort: 9, bogus: 2}\napps: [{appDirPath: a, appPorts: 8080, runtimePath: a}]\n")
        .unwrap();
    let w = plan.warnings.join("\n");
    assert!(w.contains("`extra`"), "{w}");
    assert!(w.contains("common.bogus"), "{w}");
    assert!(w.contains("common.appPort") && w.contains("per-app"), "{w}");
    assert!(w.contains("apps[0].appPorts"), "{w}");
    assert!(
        w.contains("apps[0].runtimePath") && w.contains("no effect"),
        "{w}"
    );
    assert_eq!(plan.apps[0].app_port, None);
}

#[test]
fn unsupported_behaviour_is_an_error() {
    let fx = Fixture::new(&["a"]);
    let e = err(
        &fx,
        "version: 1\ncommon: {appProtocol: grpc}\napps: [{appDirPath: a}]\n",
    );
    assert!(e.contains("appProtocol") && e.contains("grpc"), "{e}");
    let e = err(
        &fx,
        "version: 1\napps: [{appDirPath: a, enableAppHealthCheck: true, appHealthProbeInterval: 1, appHealthProbeTimeout: 5000}]\n",
    );
    assert!(e.contains("apps[0].appHealthProbeTimeout"), "{e}");
    let e = err(
        &fx,
        "version: 1\napps: [{appDirPath: a, logLevel: chatty}]\n",
    );
    assert!(e.contains("apps[0].logLevel"), "{e}");
}

#[test]
fn duplicate_ids_and_ports_are_rejected() {
    let fx = Fixture::new(&["a", "b"]);
    let e = err(
        &fx,
        "version: 1\napps: [{appID: x, appDirPath: a}, {appID: x, appDirPath: b}]\n",
    );
    assert!(
        e.contains("apps[1].appID") && e.contains("duplicate"),
        "{e}"
    );
    let e = err(
        &fx,
        "version: 1\napps: [{appDirPath: a, daprHTTPPort: 3500}, {appDirPath: b, daprHTTPPort: 3500}]\n",
    );
    assert!(e.contains("apps[1].daprHTTPPort"), "{e}");
}

#[test]
fn no_apps_is_an_error() {
    let fx = Fixture::new(&[]);
    assert!(err(&fx, "version: 1\n").contains("no apps"));
}

#[test]
fn negative_ports_mean_unset_like_the_cli() {
    let fx = Fixture::new(&["a"]);
    let plan = fx
        .parse("version: 1\napps: [{appDirPath: a, appPort: -1, daprHTTPPort: 0}]\n")
        .unwrap();
    assert_eq!(plan.apps[0].app_port, None);
    assert_eq!(plan.apps[0].dapr_http_port, None);
}

#[test]
fn a_directory_means_its_dapr_yaml() {
    let fx = Fixture::new(&["a"]);
    std::fs::write(fx.file(), "version: 1\napps: [{appDirPath: a}]\n").unwrap();
    let plan = load(fx.dir.path()).unwrap();
    assert_eq!(plan.file, fx.path("dapr.yaml"));
    let err = load(&fx.dir.path().join("a")).unwrap_err().to_string();
    assert!(err.contains("dapr.yaml"), "{err}");
}

#[test]
fn app_health_checks_come_from_the_app_or_common() {
    let fx = Fixture::new(&["a", "b"]);
    let plan = fx
        .parse(
            "version: 1\ncommon: {enableAppHealthCheck: true, appHealthThreshold: 2}\napps:\n- {appDirPath: a, appHealthProbeInterval: 1, appHealthCheckPath: /ready}\n- {appDirPath: b, enableAppHealthCheck: false}\n",
        )
        .unwrap();
    let a = plan.apps[0].app_health.clone().unwrap();
    assert_eq!(a.path, "/ready");
    assert_eq!(a.interval, std::time::Duration::from_secs(1));
    assert_eq!(a.threshold, 2);
    assert_eq!(plan.apps[1].app_health, None);
    assert!(
        plan.warnings.iter().all(|w| !w.contains("appHealth")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn config_file_path_gives_each_app_its_access_control() {
    let fx = Fixture::new(&["a", "b"]);
    std::fs::write(
        fx.dir.path().join("a/config.yaml"),
        "kind: Configuration\nspec:\n  accessControl:\n    defaultAction: deny\n",
    )
    .unwrap();
    let plan = fx
        .parse(
            "version: 1\napps: [{appDirPath: a, configFilePath: config.yaml}, {appDirPath: b}]\n",
        )
        .unwrap();
    let acl = plan.apps[0].access_control.as_ref().unwrap();
    assert!(!acl.allows("b", "public", "default", "GET", "/x"));
    assert_eq!(plan.apps[1].access_control, None);
    assert!(!plan.warnings.join("\n").contains("configFilePath"));

    // In common, relative to the run file.
    std::fs::write(
        fx.dir.path().join("shared.yaml"),
        "kind: Configuration\nspec:\n  accessControl:\n    defaultAction: allow\n",
    )
    .unwrap();
    let plan = fx
        .parse("version: 1\ncommon: {configFilePath: shared.yaml}\napps: [{appDirPath: b}]\n")
        .unwrap();
    assert!(
        plan.apps[0]
            .access_control
            .as_ref()
            .unwrap()
            .allows("x", "public", "default", "GET", "/y")
    );

    let e = err(
        &fx,
        "version: 1\napps: [{appDirPath: b, configFilePath: missing.yaml}]\n",
    );
    assert!(
        e.contains("apps[0].configFilePath") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn the_console_key_sets_port_switch_and_address() {
    let fx = Fixture::new(&["a"]);
    let base = "version: 1\napps:\n  - appDirPath: ./a\n";
    let plan = fx.parse(base).unwrap();
    assert_eq!(plan.console, ConsoleKeys::default());
    let plan = fx
        .parse(&format!(
            "{base}console: {{port: 9100, enabled: false, address: 0.0.0.0}}\n"
        ))
        .unwrap();
    assert_eq!(
        plan.console,
        ConsoleKeys {
            port: Some(9100),
            enabled: Some(false),
            address: Some("0.0.0.0".parse().unwrap()),
        }
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let e = err(&fx, &format!("{base}console: {{port: 70000}}\n"));
    assert!(e.contains("console.port") && e.contains("70000"), "{e}");
    let e = err(&fx, &format!("{base}console: {{address: localhost-ish}}\n"));
    assert!(e.contains("console.address"), "{e}");
    let e = err(&fx, &format!("{base}console: {{prot: 1}}\n"));
    assert!(e.contains("prot"), "{e}");
}
