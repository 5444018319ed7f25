//! Scenarios of `conformance_api.rs`, run against each [`Backend`] (in-memory and Redis
//! components): the test entry points live in `conformance_*.rs`.

use serde_json::{Value, json};

use super::*;

pub async fn healthz_waits_for_the_app_port_but_outbound_does_not(backend: &Backend) {
    // Reserve a port for the app without listening on it yet.
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let app_port = std_listener.local_addr().unwrap().port();
    drop(std_listener);
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let sc = Sidecar::start(SidecarSpec {
        app_id: "late-app".into(),
        app_port: Some(app_port),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    // Sidecar::start already saw outbound 204; the app is not up, so healthz is 500.
    let r = http().get(sc.url("/v1.0/healthz")).send().await.unwrap();
    assert_error(r, 500, "ERR_HEALTH_NOT_READY").await;
    let r = http()
        .get(sc.url("/v1.0/healthz/outbound"))
        .send()
        .await
        .unwrap();
    assert_no_content(r).await;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    let _app = TestApp::serve(listener, json!([]));
    sc.wait_ready().await;
    let r = http().get(sc.url("/v1.0/healthz")).send().await.unwrap();
    assert_no_content(r).await;
    let r = http()
        .get(sc.url("/v1.0/healthz?appid=other"))
        .send()
        .await
        .unwrap();
    assert_error(r, 500, "ERR_HEALTH_APPID_NOT_MATCH").await;
}

pub async fn metadata_shape(backend: &Backend) {
    let p = Pair::start(
        "meta-app",
        json!([sub("m", "/m")]),
        &[("components.yaml", backend.components())],
    )
    .await;
    let r = http()
        .put(p.sidecar.url("/v1.0/metadata/owner"))
        .body("team-a")
        .send()
        .await
        .unwrap();
    assert_no_content(r).await;

    let r = http()
        .get(p.sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["id"], "meta-app");
    assert!(m["runtimeVersion"].is_string());
    assert_eq!(m["extended"]["owner"], "team-a");
    let comps = m["components"].as_array().unwrap();
    let pubsub = comps.iter().find(|c| c["name"] == PUBSUB).unwrap();
    assert_eq!(pubsub["type"], backend.pubsub_type());
    assert_eq!(pubsub["version"], "v1");
    assert!(
        comps
            .iter()
            .any(|c| c["name"] == STATE && c["type"] == backend.state_type())
    );
    let subs = m["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{m}");
    assert_eq!(subs[0]["pubsubname"], PUBSUB);
    assert_eq!(subs[0]["topic"], "m");
    assert_eq!(subs[0]["type"], "PROGRAMMATIC");
    assert_eq!(subs[0]["rules"][0]["path"], "/m");
    assert!(
        subs[0]["rules"][0].get("match").is_none(),
        "a rule without match omits it"
    );
    let conn = &m["appConnectionProperties"];
    assert_eq!(conn["port"], p.app.port);
    assert_eq!(conn["protocol"], "http");
    assert_eq!(conn["channelAddress"], "127.0.0.1");
}

pub async fn api_token_protects_everything_but_healthz(backend: &Backend) {
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let sc = Sidecar::start(SidecarSpec {
        app_id: "guarded".into(),
        resources: vec![dir.path().to_path_buf()],
        api_token: Some("s3cret".into()),
        ..SidecarSpec::default()
    })
    .await;
    for (token, expect_ok) in [
        (None, false),
        (Some("wrong"), false),
        (Some("s3cret"), true),
    ] {
        let mut req = http().get(sc.url("/v1.0/metadata"));
        if let Some(t) = token {
            req = req.header("dapr-api-token", t);
        }
        let r = req.send().await.unwrap();
        if expect_ok {
            assert_eq!(r.status(), 200);
        } else {
            assert_eq!(r.status(), 401, "token {token:?}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")
            );
            assert_eq!(r.text().await.unwrap().trim_end(), "invalid api token");
        }
    }
    let r = sc
        .publish(PUBSUB, "x", "", Some("application/json"), "{}")
        .await;
    assert_eq!(r.status(), 401, "publish needs the token");
    let r = http()
        .get(sc.url(&format!("/v1.0/state/{STATE}/k")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "state needs the token");
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let r = http().get(sc.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 204, "{path} is exempt");
    }
}

pub async fn body_limit_follows_max_body_size(backend: &Backend) {
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let sc = Sidecar::start(SidecarSpec {
        app_id: "small".into(),
        resources: vec![dir.path().to_path_buf()],
        extra_args: vec!["--max-body-size".into(), "1Ki".into()],
        ..SidecarSpec::default()
    })
    .await;
    let r = sc
        .publish(PUBSUB, "t", "", Some("text/plain"), vec![b'x'; 512])
        .await;
    assert_eq!(r.status(), 204);
    let r = sc
        .publish(PUBSUB, "t", "", Some("text/plain"), vec![b'x'; 4096])
        .await;
    assert_eq!(r.status(), 413, "beyond --max-body-size");
}

pub async fn port_in_use_is_a_clear_error(_backend: &Backend) {
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut proc = Proc::spawn(
        &[
            "--app-id".into(),
            "clash".into(),
            "--dapr-http-port".into(),
            port.to_string(),
            "--dapr-listen-addresses".into(),
            "127.0.0.1".into(),
        ],
        &[],
    );
    let status = proc.wait_exit().await;
    assert!(!status.success());
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a panic (101) or a signal"
    );
    let err = proc.stderr.text();
    assert!(
        err.contains(&format!("port {port} is already in use")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

pub async fn unsupported_daprd_flags_fail_naming_the_flag(_backend: &Backend) {
    let mut proc = Proc::spawn(
        &[
            "--app-id".into(),
            "x".into(),
            "--app-protocol".into(),
            "grpc".into(),
        ],
        &[],
    );
    let status = proc.wait_exit().await;
    assert_eq!(status.code(), Some(1));
    let err = proc.stderr.text();
    assert!(
        err.contains("--app-protocol") && err.contains("not supported"),
        "{err}"
    );
}

pub async fn go_style_flags_and_default_valued_unsupported_flags_are_accepted(backend: &Backend) {
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let port = free_port();
    let args: Vec<String> = [
        "-app-id",
        "gostyle",
        "-dapr-http-port",
        &port.to_string(),
        "-resources-path",
        &dir.path().display().to_string(),
        "-dapr-grpc-port",
        "50001",
        "-app-protocol",
        "http",
        "-metrics-port",
        "9091",
        "-dapr-listen-addresses",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let proc = Proc::spawn(&args, &[]);
    let sc = Sidecar {
        proc,
        port,
        base: format!("http://127.0.0.1:{port}"),
    };
    sc.wait_outbound().await;
    let m: Value = http()
        .get(sc.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["id"], "gostyle");
    sc.proc.stderr.wait_for("metrics-port").await;
}

pub async fn sigterm_stops_the_sidecar_cleanly(backend: &Backend) {
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let mut sc = Sidecar::start(SidecarSpec {
        app_id: "stopper".into(),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    sc.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let status = sc.proc.wait_exit().await;
    assert!(status.success(), "{status:?}");
}

/// The `@type` names of an error body's `details`, in order (empty when there are none).
fn detail_types(body: &Value) -> Vec<String> {
    body.get("details")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    d["@type"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches("type.googleapis.com/google.rpc.")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn error_info(body: &Value) -> Value {
    body["details"]
        .as_array()
        .and_then(|ds| {
            ds.iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        })
        .cloned()
        .unwrap_or(Value::Null)
}

pub async fn error_bodies_have_daprds_shape_per_error(backend: &Backend) {
    let p = Pair::start(
        "shape-app",
        json!([]),
        &[("components.yaml", backend.components())],
    )
    .await;

    // `messages.ErrMalformedRequest` is a legacy APIError: no details.
    let r = http()
        .post(p.sidecar.url(&format!("/v1.0/state/{STATE}")))
        .body("not json")
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 400, "ERR_MALFORMED_REQUEST").await;
    assert!(body.get("details").is_none(), "legacy shape: {body}");
    let r = http()
        .post(p.sidecar.url(&format!("/v1.0/state/{STATE}")))
        .json(&json!([{"value": 1}]))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 400, "ERR_MALFORMED_REQUEST").await;
    assert_eq!(body["message"], "\"key\" is a required field", "{body}");
    assert!(body.get("details").is_none(), "legacy shape: {body}");

    // A state store that is not found: ErrorInfo only, with the app id.
    let r = http()
        .get(p.sidecar.url("/v1.0/state/no-such-store/k"))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 400, "ERR_STATE_STORE_NOT_FOUND").await;
    assert_eq!(detail_types(&body), ["ErrorInfo"], "{body}");
    assert_eq!(error_info(&body)["reason"], "DAPR_STATE_NOT_FOUND");
    assert_eq!(error_info(&body)["metadata"], json!({"appID": "shape-app"}));

    // An illegal key: field violation, resource, then ErrorInfo with a nil (null) metadata map.
    let r = http()
        .get(p.sidecar.url(&format!("/v1.0/state/{STATE}/a%7C%7Cb")))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 400, "ERR_MALFORMED_REQUEST").await;
    assert_eq!(
        detail_types(&body),
        ["BadRequest", "ResourceInfo", "ErrorInfo"],
        "{body}"
    );
    assert_eq!(body["details"][0]["field_violations"][0]["field"], "a||b");
    assert_eq!(body["details"][1]["resource_name"], STATE);
    assert_eq!(body["details"][1]["description"], "");
    assert_eq!(error_info(&body)["reason"], "DAPR_STATE_ILLEGAL_KEY");
    assert!(error_info(&body)["metadata"].is_null(), "{body}");

    // An unknown pub/sub: no ResourceInfo, the request metadata in the ErrorInfo.
    let r = p
        .sidecar
        .publish("no-such-pubsub", "t", "?metadata.k=v", None, "x")
        .await;
    let body = assert_error(r, 404, "ERR_PUBSUB_NOT_FOUND").await;
    assert_eq!(detail_types(&body), ["ErrorInfo"], "{body}");
    assert_eq!(error_info(&body)["metadata"], json!({"k": "v"}));

    // A forbidden topic: ResourceInfo first, then ErrorInfo with topic and cause.
    let r = p
        .sidecar
        .publish("restricted-pubsub", "other-topic", "", None, "x")
        .await;
    let body = assert_error(r, 403, "ERR_PUBSUB_FORBIDDEN").await;
    assert_eq!(detail_types(&body), ["ResourceInfo", "ErrorInfo"], "{body}");
    assert_eq!(body["details"][0]["resource_name"], "restricted-pubsub");
    assert_eq!(
        error_info(&body)["metadata"],
        json!({"topic": "other-topic", "error": body["message"]})
    );

    // Bulk publish errors are rich too, one reason per failing step.
    let bulk = |body: &'static str| {
        http()
            .post(
                p.sidecar
                    .url(&format!("/v1.0-alpha1/publish/bulk/{PUBSUB}/orders")),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let body = assert_error(bulk("{").await.unwrap(), 400, "ERR_PUBSUB_EVENTS_SER").await;
    assert_eq!(detail_types(&body), ["ResourceInfo", "ErrorInfo"], "{body}");
    assert_eq!(error_info(&body)["reason"], "DAPR_PUBSUB_UNMARSHAL_EVENTS");
    assert_eq!(error_info(&body)["metadata"], json!({"appID": "shape-app"}));
    let body = assert_error(
        bulk(r#"[{"event":"x","contentType":"text/plain"}]"#)
            .await
            .unwrap(),
        400,
        "ERR_PUBSUB_EVENTS_SER",
    )
    .await;
    assert_eq!(error_info(&body)["reason"], "DAPR_PUBSUB_MARSHAL_EVENTS");
    let body = assert_error(
        bulk(r#"[{"entryId":"1","event":{"a":1},"contentType":"text/plain"}]"#)
            .await
            .unwrap(),
        400,
        "ERR_PUBSUB_EVENTS_SER",
    )
    .await;
    assert_eq!(error_info(&body)["reason"], "DAPR_PUBSUB_MARSHAL_ENVELOPE");

    // No state store at all: rich, without a ResourceInfo.
    let bare = Sidecar::start(SidecarSpec {
        app_id: "bare-app".into(),
        ..SidecarSpec::default()
    })
    .await;
    let r = http()
        .get(bare.url(&format!("/v1.0/state/{STATE}/k")))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 500, "ERR_STATE_STORE_NOT_CONFIGURED").await;
    assert_eq!(detail_types(&body), ["ErrorInfo"], "{body}");
    assert_eq!(error_info(&body)["reason"], "DAPR_STATE_NOT_CONFIGURED");
    assert_eq!(error_info(&body)["metadata"], json!({"appID": "bare-app"}));
}

pub async fn metadata_keeps_the_fields_daprd_never_omits(backend: &Backend) {
    let p = Pair::start(
        "meta-full-app",
        json!([sub("m", "/m")]),
        &[("components.yaml", backend.components())],
    )
    .await;
    let m: Value = http()
        .get(p.sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["extended"]["daprRuntimeVersion"], m["runtimeVersion"],
        "extended always carries daprRuntimeVersion: {m}"
    );
    assert_eq!(m["workflows"], json!({}), "{m}");
    assert_eq!(m["actorRuntime"]["hostReady"], false, "{m}");
    let sub = &m["subscriptions"][0];
    assert!(
        sub.get("metadata").is_none(),
        "empty subscription metadata is omitted: {m}"
    );
    assert_eq!(sub["deadLetterTopic"], "", "never omitted: {m}");

    // Without an app, appConnectionProperties is still there, without a port.
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let bare = Sidecar::start(SidecarSpec {
        app_id: "no-app".into(),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    let m: Value = http()
        .get(bare.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["appConnectionProperties"],
        json!({"protocol": "http", "channelAddress": "127.0.0.1"}),
        "{m}"
    );
    assert_eq!(m["extended"]["daprRuntimeVersion"], m["runtimeVersion"]);
    assert!(m.get("subscriptions").is_none(), "{m}");
}
