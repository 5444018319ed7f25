use super::*;

fn plan() -> (tempfile::TempDir, RunPlan) {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"version: 1
apps:
  - appID: api
    appDirPath: .
    appPort: 8080
    daprHTTPPort: 3500
    env: { PORT: "8080", SELF: "http://127.0.0.1:3500/v1.0", OTHER: "18080 8081", NAME: api }
  - appID: worker
    appDirPath: .
"#;
    let plan = crate::runfile::parse(&dir.path().join("dapr.yaml"), text, None).unwrap();
    (dir, plan)
}

#[test]
fn a_flag_parses_and_bad_ones_say_what_is_wrong() {
    assert_eq!(
        "email-worker=3".parse::<Scale>().unwrap(),
        Scale {
            app_id: "email-worker".into(),
            replicas: 3
        }
    );
    for bad in ["email-worker", "=2", " =2"] {
        let err = bad.parse::<Scale>().unwrap_err();
        assert_eq!(err, ScaleFlagError::Syntax { value: bad.into() });
        assert!(err.to_string().contains("expected APP=N"), "{err}");
    }
    for bad in ["w=0", "w=-1", "w=two", "w=", "w=65"] {
        let err = bad.parse::<Scale>().unwrap_err();
        assert!(
            matches!(err, ScaleFlagError::Count { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("from 1 to 64"), "{err}");
    }
}

#[test]
fn applying_sets_counts_and_rejects_unknown_or_repeated_apps() {
    let (_dir, mut plan) = plan();
    apply(&mut plan, &["api=3".parse().unwrap()]).unwrap();
    assert_eq!(plan.apps[0].replicas, 3);
    assert_eq!(plan.apps[1].replicas, 1, "an app not named keeps one");

    let err = apply(&mut plan, &["nobody=2".parse().unwrap()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--scale nobody: no app \"nobody\" in the run file (its apps: api, worker)"
    );
    let twice = ["worker=2".parse().unwrap(), "worker=3".parse().unwrap()];
    let err = apply(&mut plan, &twice).unwrap_err();
    assert_eq!(
        err,
        ScaleError::Repeated {
            app_id: "worker".into()
        }
    );
}

#[test]
fn instances_are_labelled_with_their_index_only_when_there_are_several() {
    let (_dir, mut plan) = plan();
    let labels = |app: &AppPlan| {
        instances(app)
            .into_iter()
            .map(|i| (i.index, i.label))
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&plan.apps[1]), vec![(1, "worker".to_owned())]);
    plan.apps[0].replicas = 2;
    assert_eq!(
        labels(&plan.apps[0]),
        vec![(1, "api#1".to_owned()), (2, "api#2".to_owned())]
    );
}

#[test]
fn the_first_instance_keeps_the_files_ports_and_the_others_get_their_own() {
    let (_dir, plan) = plan();
    let api = &plan.apps[0];
    let mut next = 40000;
    let mut free = || {
        next += 1;
        next
    };
    let first = ports(api, 1, &mut free);
    assert_eq!(first.app_port, Some(8080));
    assert_eq!(first.dapr_http_port, 3500);
    let second = ports(api, 2, &mut free);
    assert_eq!(second.dapr_http_port, 0, "the sidecar picks a free port");
    let mut all = vec![
        second.app_port.unwrap(),
        second.dapr_grpc_port,
        second.metrics_port,
        first.dapr_grpc_port,
        first.metrics_port,
    ];
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 5, "no port is shared: {first:?} {second:?}");
    assert_eq!(
        ports(&plan.apps[1], 2, &mut free).app_port,
        None,
        "no app port in the file: none for any instance"
    );
}

#[test]
fn env_values_carrying_the_files_ports_get_the_instances_ports() {
    let (_dir, plan) = plan();
    let api = &plan.apps[0];
    let p = InstancePorts {
        app_port: Some(41001),
        dapr_http_port: 0,
        dapr_grpc_port: 41002,
        metrics_port: 41003,
    };
    assert_eq!(instance_env(api, 1, &p, 3500), api.env, "first: unchanged");
    let env = instance_env(api, 2, &p, 41004);
    assert_eq!(env["PORT"], "41001");
    assert_eq!(env["SELF"], "http://127.0.0.1:41004/v1.0");
    assert_eq!(env["OTHER"], "18080 8081", "other numbers stay as they are");
    assert_eq!(env["NAME"], "api");
}
