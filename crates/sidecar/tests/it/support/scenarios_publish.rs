//! Scenarios of `conformance_publish.rs`, run against each [`Backend`] (in-memory and Redis
//! components): the test entry points live in `conformance_*.rs`.

use serde_json::{Value, json};

use super::*;

const TOPIC: &str = "orders";

async fn pair(backend: &Backend) -> Pair {
    Pair::start(
        "publisher-app",
        json!([sub(TOPIC, "/orders")]),
        &[("components.yaml", backend.components())],
    )
    .await
}

/// Publishes and returns the parsed CloudEvent delivered for it (the n-th delivery on /orders).
async fn roundtrip(
    p: &Pair,
    query: &str,
    ct: Option<&str>,
    body: &'static [u8],
) -> (Value, super::Received) {
    let before = p.app.received_on("/orders").len();
    let resp = p.sidecar.publish(PUBSUB, TOPIC, query, ct, body).await;
    assert_no_content(resp).await;
    let got = p.app.wait_for("/orders", before + 1).await;
    let rec = got[before].clone();
    (rec.json(), rec)
}

fn is_rfc3339_seconds(s: &str) -> bool {
    // e.g. 2025-01-01T10:00:00Z or 2025-01-01T10:00:00+02:00: no fractional seconds.
    chrono_like(s) && !s.contains('.')
}

fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.as_bytes()[13] == b':'
}

pub async fn json_publish_is_wrapped_field_by_field(backend: &Backend) {
    let p = pair(backend).await;
    let (ce, rec) = roundtrip(&p, "", Some("application/json"), br#"{"b":1,"a":"x<y"}"#).await;

    assert_eq!(
        ce["data"],
        json!({"a": "x<y", "b": 1}),
        "JSON body embedded under data"
    );
    assert!(ce.get("data_base64").is_none());
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(ce["source"], "publisher-app", "source = publisher app id");
    assert_eq!(ce["type"], "com.dapr.event.sent");
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["topic"], TOPIC);
    assert_eq!(ce["pubsubname"], PUBSUB);
    let id = ce["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "UUID id: {id}");
    assert_eq!(id.as_bytes()[14], b'4', "UUIDv4 id: {id}");
    let time = ce["time"].as_str().unwrap();
    assert!(is_rfc3339_seconds(time), "time to the second: {time}");
    assert!(
        ce.get("traceid").is_some() && ce["traceid"] == ce["traceparent"],
        "{ce}"
    );
    assert!(
        ce.get("tracestate").is_some(),
        "tracestate key always present: {ce}"
    );
    assert!(ce.get("subject").is_none());
    assert!(ce.get("expiration").is_none(), "no TTL, no expiration");

    assert_eq!(
        rec.header("content-type").as_deref(),
        Some("application/cloudevents+json")
    );
    assert_eq!(rec.header("pubsubname").as_deref(), Some(PUBSUB));
    assert_eq!(rec.method, axum::http::Method::POST);
    let tp = rec
        .header("traceparent")
        .expect("delivery carries a traceparent (child span)");
    assert_eq!(tp.len(), 55, "W3C traceparent: {tp}");
}

pub async fn datacontenttype_is_passed_through_verbatim(backend: &Backend) {
    let p = pair(backend).await;
    let (ce, _) = roundtrip(
        &p,
        "",
        Some("application/json; charset=utf-8"),
        br#"{"k":1}"#,
    )
    .await;
    assert_eq!(ce["datacontenttype"], "application/json; charset=utf-8");
    assert_eq!(
        ce["data"],
        json!({"k": 1}),
        "parameters are ignored when choosing placement"
    );

    let (ce, _) = roundtrip(&p, "", Some("text/plain"), b"hello").await;
    assert_eq!(ce["datacontenttype"], "text/plain");
    assert_eq!(ce["data"], "hello");

    let (ce, _) = roundtrip(&p, "", None, b"no header").await;
    assert_eq!(
        ce["datacontenttype"], "text/plain",
        "missing Content-Type means text/plain"
    );
    assert_eq!(ce["data"], "no header");
}

pub async fn invalid_json_and_vendor_json_become_strings(backend: &Backend) {
    let p = pair(backend).await;
    let (ce, _) = roundtrip(&p, "", Some("application/json"), b"{not json").await;
    assert_eq!(ce["data"], "{not json");
    assert_eq!(ce["datacontenttype"], "application/json");

    let (ce, _) = roundtrip(&p, "", Some("application/vnd.todo+json"), br#"{"a":1}"#).await;
    assert_eq!(
        ce["data"], r#"{"a":1}"#,
        "+json types other than the CE one are text"
    );
}

pub async fn binary_content_goes_to_data_base64(backend: &Backend) {
    let p = pair(backend).await;
    let (ce, _) = roundtrip(&p, "", Some("application/octet-stream"), b"\x00\x01\xffab").await;
    assert_eq!(ce["data_base64"], "AAH/YWI=", "standard alphabet, padded");
    assert!(ce.get("data").is_none(), "{ce}");
    assert_eq!(ce["datacontenttype"], "application/octet-stream");
}

pub async fn cloudevent_metadata_overrides(backend: &Backend) {
    let p = pair(backend).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let query = format!(
        "?metadata.cloudevent.id=evt-1&metadata.CloudEvent.Source=elsewhere&metadata.cloudevent.type=task-created&metadata.cloudevent.traceparent={tp}&metadata.cloudevent.tracestate=k%3Dv"
    );
    let before = p.app.received_on("/orders").len();
    let resp = p
        .sidecar
        .publish(PUBSUB, TOPIC, &query, Some("application/json"), "{}")
        .await;
    assert_no_content(resp).await;
    let ce = p.app.wait_for("/orders", before + 1).await[before].json();
    assert_eq!(ce["id"], "evt-1");
    assert_eq!(
        ce["source"], "elsewhere",
        "override names are case-insensitive"
    );
    assert_eq!(ce["type"], "task-created");
    assert_eq!(ce["traceparent"], tp);
    assert_eq!(ce["traceid"], tp, "traceparent override sets traceid too");
    assert_eq!(ce["tracestate"], "k=v");
}

pub async fn raw_payload_is_delivered_unwrapped(backend: &Backend) {
    let p = pair(backend).await;
    let before = p.app.received_on("/orders").len();
    let body = r#"{"raw":true,"n":1}"#;
    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            "?metadata.rawPayload=true",
            Some("application/json"),
            body,
        )
        .await;
    assert_no_content(resp).await;
    let rec = p.app.wait_for("/orders", before + 1).await[before].clone();
    assert_eq!(
        rec.body.as_ref(),
        body.as_bytes(),
        "no envelope, bytes as published"
    );

    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            "?metadata.rawPayload=yes",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_error(resp, 400, "ERR_PUBSUB_REQUEST_METADATA").await;
}

pub async fn own_cloudevent_passes_through_with_daprs_edits(backend: &Backend) {
    let p = pair(backend).await;
    let own = json!({
        "specversion": "1.0", "id": "mine-1", "source": "my-source", "type": "my.type",
        "topic": "wrong", "pubsubname": "wrong", "myext": "kept", "data": {"x": 1},
        "datacontenttype": "application/json"
    });
    let q = "?metadata.cloudevent.id=ignored&metadata.cloudevent.type=ignored";
    let before = p.app.received_on("/orders").len();
    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            q,
            Some("application/cloudevents+json"),
            own.to_string(),
        )
        .await;
    assert_no_content(resp).await;
    let ce = p.app.wait_for("/orders", before + 1).await[before].json();
    assert_eq!(
        ce["id"], "mine-1",
        "overrides are ignored for an own CloudEvent"
    );
    assert_eq!(ce["type"], "my.type");
    assert_eq!(ce["source"], "my-source");
    assert_eq!(ce["topic"], TOPIC, "topic always overwritten");
    assert_eq!(ce["pubsubname"], PUBSUB, "pubsubname always overwritten");
    assert_eq!(ce["myext"], "kept", "extension attributes pass through");
    assert_eq!(ce["data"], json!({"x": 1}));
    assert!(ce["time"].is_string(), "time added");
    assert!(
        ce["traceid"].is_string() && ce["traceid"] == ce["traceparent"],
        "{ce}"
    );
    assert!(ce.get("tracestate").is_some(), "{ce}");

    // Missing attributes get defaults, but no id and no datacontenttype are invented.
    let bare = json!({"data": "d", "traceparent": "00-11111111111111111111111111111111-2222222222222222-01"});
    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            "",
            Some("application/cloudevents+json"),
            bare.to_string(),
        )
        .await;
    assert_no_content(resp).await;
    let ce = p.app.wait_for("/orders", before + 2).await[before + 1].json();
    assert_eq!(
        ce["source"], "Dapr",
        "default source of an own CE is \"Dapr\""
    );
    assert_eq!(ce["type"], "com.dapr.event.sent");
    assert_eq!(ce["specversion"], "1.0");
    assert!(ce.get("id").is_none(), "id is not generated: {ce}");
    assert!(ce.get("datacontenttype").is_none(), "{ce}");
    assert_ne!(
        ce["traceparent"], "00-11111111111111111111111111111111-2222222222222222-01",
        "a CE with traceparent but no traceid gets it overwritten"
    );

    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            "",
            Some("application/cloudevents+json"),
            "[1,2]",
        )
        .await;
    assert_error(resp, 500, "ERR_PUBSUB_CLOUD_EVENTS_SER").await;
}

pub async fn ttl_sets_expiration_and_expired_events_are_dead_lettered_not_delivered(
    backend: &Backend,
) {
    // The dead-letter copy keeps the original bytes, `expiration` included, so a normal
    // subscription to the DLQ topic would drop it as expired too. A raw-payload subscription
    // (components-contrib's `FromRawPayload`) wraps the bytes in a fresh CloudEvent, which makes
    // the copy observable.
    let subs = json!([
        {"pubsubname": PUBSUB, "topic": TOPIC, "route": "/orders", "deadLetterTopic": "orders-dlq"},
        {"pubsubname": PUBSUB, "topic": "orders-dlq", "route": "/dlq", "metadata": {"rawPayload": "true"}},
    ]);
    let p = Pair::start(
        "ttl-app",
        subs,
        &[("components.yaml", backend.components())],
    )
    .await;

    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            "?metadata.ttlInSeconds=120",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_no_content(resp).await;
    let ce = p.app.wait_for("/orders", 1).await[0].json();
    let exp = ce["expiration"]
        .as_str()
        .expect("expiration set for a component without native TTL");
    assert!(
        chrono_like(exp) && exp.ends_with('Z'),
        "RFC 3339 UTC: {exp}"
    );
    assert!(
        exp > ce["time"].as_str().unwrap(),
        "expiration after time: {ce}"
    );

    let expired = json!({"specversion": "1.0", "id": "old-1", "source": "s", "type": "t",
                         "expiration": "2000-01-01T00:00:00Z", "data": {}});
    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            "",
            Some("application/cloudevents+json"),
            expired.to_string(),
        )
        .await;
    assert_no_content(resp).await;
    let dlq = p.app.wait_for("/dlq", 1).await[0].json();
    assert_eq!(
        dlq["source"], "Dapr",
        "raw-payload delivery wraps in a new CloudEvent: {dlq}"
    );
    assert_eq!(dlq["datacontenttype"], "application/octet-stream");
    use base64::Engine as _;
    let inner = base64::engine::general_purpose::STANDARD
        .decode(dlq["data_base64"].as_str().unwrap())
        .unwrap();
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    assert_eq!(
        inner["id"], "old-1",
        "expired event forwarded to the dead-letter topic"
    );
    assert!(
        p.app
            .received_on("/orders")
            .iter()
            .all(|r| r.json()["id"] != "old-1"),
        "an expired event is never delivered"
    );
}

pub async fn publish_errors(backend: &Backend) {
    let p = pair(backend).await;
    let resp = p
        .sidecar
        .publish("no-such-pubsub", TOPIC, "", Some("application/json"), "{}")
        .await;
    assert_error(resp, 404, "ERR_PUBSUB_NOT_FOUND").await;

    let resp = p
        .sidecar
        .publish(
            "restricted-pubsub",
            "other-topic",
            "",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_error(resp, 403, "ERR_PUBSUB_FORBIDDEN").await;

    let resp = p
        .sidecar
        .publish(
            "restricted-pubsub",
            "allowed-topic",
            "",
            Some("application/json"),
            "{}",
        )
        .await;
    assert_no_content(resp).await;

    // PUT is accepted like POST.
    let resp = http()
        .put(p.sidecar.url(&format!("/v1.0/publish/{PUBSUB}/{TOPIC}")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_no_content(resp).await;
}

/// Kafka differs: its topic names allow only letters, digits, `.`, `_` and `-`, so the broker
/// refuses the publish (500 `ERR_PUBSUB_PUBLISH_MESSAGE`, as daprd answers a component error).
pub async fn topic_may_contain_slashes(backend: &Backend) {
    let p = Pair::start(
        "slash-app",
        json!([sub("a/b", "/ab")]),
        &[("components.yaml", backend.components())],
    )
    .await;
    let resp = p
        .sidecar
        .publish(PUBSUB, "a/b", "", Some("text/plain"), "x")
        .await;
    if backend.is_kafka() {
        assert_error(resp, 500, "ERR_PUBSUB_PUBLISH_MESSAGE").await;
        return;
    }
    assert_no_content(resp).await;
    let got = p.app.wait_for("/ab", 1).await;
    assert_eq!(got[0].json()["topic"], "a/b");
}

async fn bulk(p: &Pair, pubsub: &str, query: &str, entries: Value) -> reqwest::Response {
    http()
        .post(p.sidecar.url(&format!(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{TOPIC}{query}"
        )))
        .json(&entries)
        .send()
        .await
        .unwrap()
}

pub async fn bulk_publish_wraps_each_entry(backend: &Backend) {
    let p = pair(backend).await;
    let entries = json!([
        {"entryId": "1", "event": {"n": 1}, "contentType": "application/json"},
        {"entryId": "2", "event": "plain", "contentType": "text/plain",
         "metadata": {"cloudevent.type": "from-entry"}},
    ]);
    let resp = bulk(&p, PUBSUB, "?metadata.cloudevent.source=bulk-src", entries).await;
    assert_no_content(resp).await;
    let got = p.app.wait_for("/orders", 2).await;
    let by_type = |t: &str| {
        got.iter()
            .map(super::Received::json)
            .find(|c| c["datacontenttype"] == t)
            .unwrap()
    };
    let json_ce = by_type("application/json");
    assert_eq!(json_ce["data"], json!({"n": 1}));
    assert_eq!(
        json_ce["source"], "publisher-app",
        "entries without metadata get no query overrides"
    );
    let text_ce = by_type("text/plain");
    assert_eq!(text_ce["data"], "plain");
    assert_eq!(text_ce["type"], "from-entry");
    assert_eq!(
        text_ce["source"], "bulk-src",
        "query metadata merged under the entry's own"
    );

    let dup = json!([
        {"entryId": "x", "event": 1, "contentType": "application/json"},
        {"entryId": "x", "event": 2, "contentType": "application/json"},
    ]);
    assert_error(
        bulk(&p, PUBSUB, "", dup).await,
        400,
        "ERR_PUBSUB_EVENTS_SER",
    )
    .await;
    let one = json!([{"entryId": "1", "event": 1, "contentType": "application/json"}]);
    assert_error(
        bulk(&p, "no-such-pubsub", "", one).await,
        404,
        "ERR_PUBSUB_NOT_FOUND",
    )
    .await;
}

pub async fn json_numbers_keep_their_literals(backend: &Backend) {
    let p = pair(backend).await;
    let (_, rec) = roundtrip(
        &p,
        "",
        Some("application/json"),
        br#"{"big": 12345678901234567890, "dec": 1.10, "exp": 1E+2, "list": [0.50]}"#,
    )
    .await;
    let text = String::from_utf8(rec.body.to_vec()).unwrap();
    assert!(
        text.contains(r#""data":{"big":12345678901234567890,"dec":1.10,"exp":1E+2,"list":[0.50]}"#),
        "number literals kept, keys sorted, whitespace dropped: {text}"
    );

    // An own CloudEvent keeps its numbers too, in data and in extension attributes.
    let before = p.app.received_on("/orders").len();
    let own = r#"{"specversion":"1.0","id":"n-1","source":"s","type":"t","seq":10.0,"data":{"v":99999999999999999999}}"#;
    let resp = p
        .sidecar
        .publish(PUBSUB, TOPIC, "", Some("application/cloudevents+json"), own)
        .await;
    assert_no_content(resp).await;
    let rec = p.app.wait_for("/orders", before + 1).await[before].clone();
    let text = String::from_utf8(rec.body.to_vec()).unwrap();
    assert!(
        text.contains(r#""data":{"v":99999999999999999999}"#) && text.contains(r#""seq":10.0"#),
        "{text}"
    );
}

pub async fn data_placement_edge_cases(backend: &Backend) {
    let p = pair(backend).await;
    // components-contrib's isContentType does not trim: a space before ';' makes it non-JSON.
    let (ce, _) = roundtrip(
        &p,
        "",
        Some("application/json ;charset=utf-8"),
        br#"{"a":1}"#,
    )
    .await;
    assert_eq!(ce["data"], r#"{"a":1}"#, "{ce}");
    // unmarshalPrecise decodes the first JSON value and ignores the rest of the body.
    let (ce, _) = roundtrip(&p, "", Some("application/json"), br#"{"a":1} trailing"#).await;
    assert_eq!(ce["data"], json!({"a": 1}), "{ce}");
    // Empty overrides fall back to NewCloudEventsEnvelope's defaults ("Dapr", not the app id).
    let (ce, _) = roundtrip(
        &p,
        "?metadata.cloudevent.id=&metadata.cloudevent.source=&metadata.cloudevent.type=",
        Some("text/plain"),
        b"x",
    )
    .await;
    assert_eq!(ce["source"], "Dapr", "{ce}");
    assert_eq!(ce["type"], "com.dapr.event.sent", "{ce}");
    assert_eq!(ce["id"].as_str().unwrap().len(), 36, "{ce}");
    // FromCloudEvent checks source/type/specversion for nil: an explicit null gets the default.
    let before = p.app.received_on("/orders").len();
    let own = r#"{"id":"null-1","source":null,"type":null,"specversion":null,"data":"d"}"#;
    let resp = p
        .sidecar
        .publish(PUBSUB, TOPIC, "", Some("application/cloudevents+json"), own)
        .await;
    assert_no_content(resp).await;
    let ce = p.app.wait_for("/orders", before + 1).await[before].json();
    assert_eq!(ce["source"], "Dapr", "{ce}");
    assert_eq!(ce["type"], "com.dapr.event.sent", "{ce}");
    assert_eq!(ce["specversion"], "1.0", "{ce}");
}

/// Seconds from the event's `time` to its `expiration`.
fn ttl_of(ce: &Value) -> Option<i64> {
    let parse = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(ce.get(k)?.as_str()?)
            .ok()
            .map(|t| t.timestamp())
    };
    Some(parse("expiration")? - parse("time")?)
}

pub async fn ttl_metadata_follows_try_get_ttl(backend: &Backend) {
    let p = pair(backend).await;
    let cases: [(&str, Option<std::ops::RangeInclusive<i64>>); 6] = [
        // `ttl` is read before `ttlInSeconds`.
        (
            "?metadata.ttl=100s&metadata.ttlInSeconds=5000",
            Some(99..=101),
        ),
        // Either key takes a Go duration, or else whole seconds.
        ("?metadata.ttlInSeconds=2m", Some(119..=121)),
        ("?metadata.ttl=300", Some(299..=301)),
        // Whole seconds must be above zero; otherwise no TTL at all.
        ("?metadata.ttlInSeconds=-5", None),
        // An empty `ttl` hides `ttlInSeconds`.
        ("?metadata.ttl=&metadata.ttlInSeconds=100", None),
        ("?metadata.TTLINSECONDS=200", Some(199..=201)),
    ];
    for (query, expected) in cases {
        let (ce, _) = roundtrip(&p, query, Some("text/plain"), b"x").await;
        match expected {
            Some(range) => {
                let ttl = ttl_of(&ce).unwrap_or_else(|| panic!("{query}: no expiration in {ce}"));
                assert!(range.contains(&ttl), "{query}: ttl {ttl} in {ce}");
            }
            None => assert!(ce.get("expiration").is_none(), "{query}: {ce}"),
        }
    }
}

pub async fn empty_raw_payload_means_false(backend: &Backend) {
    let p = pair(backend).await;
    let (ce, _) = roundtrip(
        &p,
        "?metadata.rawPayload=",
        Some("application/json"),
        br#"{"k":1}"#,
    )
    .await;
    assert_eq!(ce["data"], json!({"k": 1}), "wrapped as usual: {ce}");
    let resp = p
        .sidecar
        .publish(
            PUBSUB,
            TOPIC,
            "?metadata.rawPayload=maybe",
            Some("application/json"),
            "{}",
        )
        .await;
    let body = assert_error(resp, 400, "ERR_PUBSUB_REQUEST_METADATA").await;
    assert_eq!(
        body["message"],
        "failed deserializing metadata. Error: rawPayload value must be a valid boolean: actual is 'maybe'"
    );
}
