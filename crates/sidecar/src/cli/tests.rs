#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::ffi::OsString;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    let argv = std::iter::once("sidecar")
        .chain(args.iter().copied())
        .map(OsString::from);
    Cli::try_parse_from(normalize_args(argv))
}

fn resolve(args: &[&str]) -> Result<DaprdConfig, CliError> {
    parse(args).unwrap().daprd.resolve(|_| None)
}

#[test]
fn defaults_match_daprd() {
    let cfg = resolve(&["--app-id", "task-api"]).unwrap();
    assert_eq!(cfg.app_id, "task-api");
    assert_eq!(cfg.dapr_http_port, 3500);
    assert_eq!(cfg.app_channel_address, "127.0.0.1");
    assert_eq!(cfg.max_body_size, 4 << 20);
    assert_eq!(cfg.app_port, None);
    assert_eq!(cfg.log_level, LogLevel::Info);
    assert!(cfg.listen_addresses.is_empty());
    assert!(cfg.warnings.is_empty());
}

#[test]
fn app_id_is_required_without_subcommand() {
    assert!(parse(&["--app-port", "8080"]).is_err());
}

#[test]
fn run_subcommand_takes_a_file() {
    let cli = parse(&["run", "-f", "dapr.yaml"]).unwrap();
    match cli.command {
        Some(Command::Run(run)) => assert_eq!(run.file, PathBuf::from("dapr.yaml")),
        None => panic!("expected run"),
    }
}

#[test]
fn go_style_single_dash_flags_are_accepted() {
    let cfg = resolve(&["-app-id", "a", "-app-port", "8080", "-resources-path", "x"]).unwrap();
    assert_eq!(cfg.app_port, Some(8080));
    assert_eq!(cfg.resources_paths, vec![PathBuf::from("x")]);
}

#[test]
fn resources_paths_repeat_and_merge_the_deprecated_flag() {
    let cfg = resolve(&[
        "--app-id",
        "a",
        "--resources-path",
        "r1",
        "--resources-path",
        "r2",
        "--components-path",
        "c",
    ])
    .unwrap();
    let want: Vec<PathBuf> = ["r1", "r2", "c"].iter().map(PathBuf::from).collect();
    assert_eq!(cfg.resources_paths, want);
    assert!(cfg.warnings[0].contains("deprecated"));
}

#[test]
fn tokens_come_from_the_environment() {
    let cli = parse(&["--app-id", "a"]).unwrap();
    let cfg = cli
        .daprd
        .resolve(|k| match k {
            "DAPR_API_TOKEN" => Some("t1".into()),
            "APP_API_TOKEN" => Some("t2".into()),
            _ => None,
        })
        .unwrap();
    assert_eq!(cfg.api_token.as_deref(), Some("t1"));
    assert_eq!(cfg.app_api_token.as_deref(), Some("t2"));
}

#[test]
fn log_level_is_validated() {
    assert_eq!(
        resolve(&["--app-id", "a", "--log-level", "debug"])
            .unwrap()
            .log_level,
        LogLevel::Debug
    );
    assert!(parse(&["--app-id", "a", "--log-level", "verbose"]).is_err());
}

#[test]
fn listen_addresses_parse() {
    let cfg = resolve(&[
        "--app-id",
        "a",
        "--dapr-listen-addresses",
        "127.0.0.1,[::1]",
    ])
    .unwrap();
    assert_eq!(
        cfg.listen_addresses,
        vec![IpAddr::from([127, 0, 0, 1]), "::1".parse().unwrap()]
    );
    let err = resolve(&["--app-id", "a", "--dapr-listen-addresses", "nope"]).unwrap_err();
    assert!(err.to_string().contains("dapr-listen-addresses"), "{err}");
}

#[test]
fn quantities() {
    assert_eq!(parse_quantity("4Mi"), Ok(4 << 20));
    assert_eq!(parse_quantity("4M"), Ok(4_000_000));
    assert_eq!(parse_quantity("1Ki"), Ok(1024));
    assert_eq!(parse_quantity("0.5Ki"), Ok(512));
    assert_eq!(parse_quantity("100"), Ok(100));
    assert_eq!(parse_quantity("-1"), Ok(usize::MAX));
    assert!(parse_quantity("4MB").is_err());
    assert!(parse_quantity("lots").is_err());
    let err = resolve(&["--app-id", "a", "--max-body-size", "4XB"]).unwrap_err();
    assert!(err.to_string().contains("max-body-size"), "{err}");
}

#[test]
fn legacy_request_size_is_megabytes() {
    let cfg = resolve(&["--app-id", "a", "--dapr-http-max-request-size", "8"]).unwrap();
    assert_eq!(cfg.max_body_size, 8 << 20);
}

#[test]
fn unsupported_flags_at_their_default_are_accepted() {
    let cfg = resolve(&[
        "--app-id",
        "a",
        "--dapr-grpc-port",
        "50001",
        "--app-protocol",
        "http",
        "--mode",
        "standalone",
        "--metrics-port",
        "9091",
        "--enable-metrics=false",
        "--log-as-json",
    ])
    .unwrap();
    assert!(cfg.log_as_json);
    assert!(cfg.warnings.iter().any(|w| w.contains("metrics-port")));
}

#[test]
fn unsupported_flags_that_change_behaviour_fail_naming_the_flag() {
    for (args, flag) in [
        (&["--dapr-grpc-port", "50002"][..], "--dapr-grpc-port"),
        (&["--app-protocol", "grpc"][..], "--app-protocol"),
        (&["--dapr-public-port", "3501"][..], "--dapr-public-port"),
        (&["--mode", "kubernetes"][..], "--mode"),
        (
            &["--unix-domain-socket", "/tmp"][..],
            "--unix-domain-socket",
        ),
    ] {
        let mut all = vec!["--app-id", "a"];
        all.extend_from_slice(args);
        let err = resolve(&all).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(flag) && text.contains("not supported"),
            "{text}"
        );
    }
}

#[test]
fn app_health_checks_take_daprds_flags_and_units() {
    let cfg = resolve(&["--app-id", "a"]).unwrap();
    assert_eq!(cfg.app_health, None);
    let cfg = resolve(&["--app-id", "a", "--enable-app-health-check"]).unwrap();
    assert_eq!(cfg.app_health, Some(AppHealthOptions::default()));
    let cfg = resolve(&[
        "--app-id",
        "a",
        "--enable-app-health-check=true",
        "--app-health-check-path",
        "/ready",
        "--app-health-probe-interval",
        "2",
        "--app-health-probe-timeout",
        "300",
        "--app-health-threshold",
        "1",
    ])
    .unwrap();
    let health = cfg.app_health.unwrap();
    assert_eq!(health.path, "/ready");
    assert_eq!(health.interval, std::time::Duration::from_secs(2));
    assert_eq!(health.timeout, std::time::Duration::from_millis(300));
    assert_eq!(health.threshold, 1);
}

#[test]
fn app_health_values_daprd_refuses_are_errors_and_stray_settings_warn() {
    let err = resolve(&[
        "--app-id",
        "a",
        "--enable-app-health-check",
        "--app-health-probe-interval",
        "1",
        "--app-health-probe-timeout",
        "2000",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--app-health-probe-timeout") && err.contains("2000"),
        "{err}"
    );
    let cfg = resolve(&["--app-id", "a", "--app-health-threshold", "2"]).unwrap();
    assert_eq!(cfg.app_health, None);
    assert!(
        cfg.warnings.iter().any(
            |w| w.contains("--app-health-threshold") && w.contains("--enable-app-health-check")
        ),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn unknown_flags_are_rejected_by_clap() {
    let err = parse(&["--app-id", "a", "--no-such-flag"]).unwrap_err();
    assert!(err.to_string().contains("--no-such-flag"));
}

#[test]
fn config_gives_the_access_control_and_a_bad_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "kind: Configuration\nspec:\n  accessControl:\n    defaultAction: deny\n",
    )
    .unwrap();
    let cfg = resolve(&["--app-id", "a", "--config", path.to_str().unwrap()]).unwrap();
    let acl = cfg.access_control.unwrap();
    assert!(!acl.allows("b", "public", "default", "GET", "/x"));
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("only spec.accessControl and spec.tracing are applied"))
    );

    let missing = dir.path().join("absent.yaml");
    let err = resolve(&["--app-id", "a", "--config", missing.to_str().unwrap()]).unwrap_err();
    assert!(
        err.to_string().contains("--config") && err.to_string().contains("cannot read"),
        "{err}"
    );
    std::fs::write(
        &path,
        "spec:\n  accessControl:\n    policies:\n      - {appId: b}\n",
    )
    .unwrap();
    let err = resolve(&["--app-id", "a", "--config", path.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("missing trustDomain"), "{err}");
}
