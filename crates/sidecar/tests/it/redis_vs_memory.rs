//! Differential test: the same pseudo-random sequence of state operations against
//! `state.in-memory` (which copies Redis' ETag semantics) and `state.redis` must give the same
//! statuses, error codes, ETags and values, so code tested on the in-memory default behaves the
//! same on Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_redis;

use serde_json::{Value, json};
use support_redis::RedisServer;

/// xorshift64*: deterministic, no dependency on a particular `rand` API.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Builds the same request for a given sidecar endpoint.
type MakeRequest = Box<dyn Fn(&str) -> reqwest::RequestBuilder>;

/// (status, errorCode or etag, body) of one call; what both stores must agree on.
type Outcome = (u16, Option<String>, Value);

async fn call(req: reqwest::RequestBuilder) -> Outcome {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        // Messages differ (store error texts); the code is the contract.
        return (
            status,
            body["errorCode"].as_str().map(String::from),
            Value::Null,
        );
    }
    (status, etag, body)
}

fn etag_variant(rng: &mut Rng, current: Option<&str>) -> Option<String> {
    match rng.below(5) {
        0 | 1 => None,
        2 => current.map(String::from).or(Some("1".into())),
        3 => Some(format!("{}", rng.below(4))),
        _ => Some("not-a-number".into()),
    }
}

fn concurrency(rng: &mut Rng) -> Value {
    match rng.below(4) {
        0 => json!({"concurrency": "first-write"}),
        1 => json!({"concurrency": "last-write"}),
        _ => json!({}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_memory_and_redis_agree_on_state_semantics() {
    let server = RedisServer::start();
    let (redis_cluster, _dir) = support_redis::cluster(&server, &[]).await;
    let memory_cluster = sidecar_testing::Cluster::in_memory().await.unwrap();
    let redis = redis_cluster
        .sidecar("task-api")
        .start()
        .await
        .unwrap()
        .http_endpoint();
    let memory = memory_cluster
        .sidecar("task-api")
        .start()
        .await
        .unwrap()
        .http_endpoint();
    let http = reqwest::Client::new();
    // Another sequence: STATE_DIFF_SEED=<u64>.
    let seed = std::env::var("STATE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1234_ABCD_0001_u64);
    let mut rng = Rng(seed | 1);
    let keys = ["a", "b", "c"];

    for step in 0..400 {
        let key = keys[rng.below(3) as usize];
        // The etag Redis currently has for the key (both stores should have the same).
        let current = call(http.get(format!("{redis}/v1.0/state/todo-state/{key}")))
            .await
            .1;
        let (what, make): (String, MakeRequest) = match rng.below(10) {
            0..=4 => {
                let mut item = json!({"key": key, "value": {"v": rng.below(100)}, "options": concurrency(&mut rng)});
                if let Some(e) = etag_variant(&mut rng, current.as_deref()) {
                    item["etag"] = json!(e);
                }
                if rng.below(6) == 0 {
                    item["metadata"] =
                        json!({"ttlInSeconds": if rng.below(2) == 0 { "100" } else { "-1" }});
                }
                let body = json!([item]);
                let http = http.clone();
                (
                    format!("save {body}"),
                    Box::new(move |base| {
                        http.post(format!("{base}/v1.0/state/todo-state"))
                            .json(&body)
                    }),
                )
            }
            5..=6 => {
                let http = http.clone();
                let key = key.to_string();
                (
                    format!("get {key}"),
                    Box::new(move |base| http.get(format!("{base}/v1.0/state/todo-state/{key}"))),
                )
            }
            7..=8 => {
                let etag = etag_variant(&mut rng, current.as_deref());
                let http = http.clone();
                let key = key.to_string();
                (
                    format!("delete {key} {etag:?}"),
                    Box::new(move |base| {
                        let mut r = http.delete(format!("{base}/v1.0/state/todo-state/{key}"));
                        if let Some(e) = &etag {
                            r = r.header("if-match", e);
                        }
                        r
                    }),
                )
            }
            _ => {
                let mut ops = Vec::new();
                for _ in 0..(1 + rng.below(3)) {
                    let k = keys[rng.below(3) as usize];
                    let mut request = json!({"key": k, "options": concurrency(&mut rng)});
                    if let Some(e) = etag_variant(&mut rng, None) {
                        request["etag"] = json!(e);
                    }
                    let op = if rng.below(3) == 0 {
                        "delete"
                    } else {
                        request["value"] = json!(rng.below(100));
                        "upsert"
                    };
                    ops.push(json!({"operation": op, "request": request}));
                }
                let body = json!({"operations": ops});
                let http = http.clone();
                (
                    format!("transaction {body}"),
                    Box::new(move |base| {
                        http.post(format!("{base}/v1.0/state/todo-state/transaction"))
                            .json(&body)
                    }),
                )
            }
        };
        let on_redis = call(make(&redis)).await;
        let on_memory = call(make(&memory)).await;
        assert_eq!(on_redis, on_memory, "step {step}: {what}");
        // And the stored state agrees after every step.
        for k in keys {
            let r = call(http.get(format!("{redis}/v1.0/state/todo-state/{k}"))).await;
            let m = call(http.get(format!("{memory}/v1.0/state/todo-state/{k}"))).await;
            assert_eq!(r, m, "step {step}: key {k} after {what}");
        }
    }
    redis_cluster.shutdown().await;
    memory_cluster.shutdown().await;
}
