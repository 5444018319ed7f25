//! A tiny app for multi-app run tests that uses only the Dapr HTTP contract.
//!
//! Environment: `APP_PORT`, `DAPR_HTTP_PORT` (as `dapr run` sets them), `ROLE` = `publisher` |
//! `subscriber`, `TOPIC`, `PUBSUB_NAME` (default `todo-pubsub`), `EXIT_AFTER_MS` + `EXIT_CODE` to
//! exit on its own. It prints one line per thing it does, for the test to read through the runner's
//! `== APP - <id> ==` prefixed output. A subscriber answers `GET /whoami` with its process id.

use std::time::Duration;

use axum::Json;
use axum::routing::{get, post};
use serde_json::{Value, json};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let role = env("ROLE", "subscriber");
    let topic = env("TOPIC", "greetings");
    let pubsub = env("PUBSUB_NAME", "todo-pubsub");
    let dapr = format!("http://127.0.0.1:{}", env("DAPR_HTTP_PORT", "3500"));
    println!(
        "started pid={} role={role} cwd={}",
        std::process::id(),
        std::env::current_dir()?.display()
    );
    for var in [
        "APP_ID",
        "APP_PORT",
        "DAPR_HTTP_PORT",
        "DAPR_GRPC_PORT",
        "DAPR_METRICS_PORT",
        "APP_PROTOCOL",
        "FROM_FILE",
    ] {
        println!("env {var}={}", env(var, "<unset>"));
    }
    eprintln!("a line on stderr");

    if let Ok(ms) = std::env::var("EXIT_AFTER_MS") {
        let code: i32 = env("EXIT_CODE", "0").parse()?;
        tokio::time::sleep(Duration::from_millis(ms.parse()?)).await;
        println!("exiting with {code}");
        std::process::exit(code);
    }

    if role == "publisher" {
        let client = reqwest::Client::new();
        for n in 0u64.. {
            let url = format!("{dapr}/v1.0/publish/{pubsub}/{topic}");
            match client.post(&url).json(&json!({"n": n})).send().await {
                Ok(r) => println!("published n={n} status={}", r.status().as_u16()),
                Err(e) => println!("publish failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return Ok(());
    }

    let port = env("APP_PORT", "0");
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let subscriptions = json!([{"pubsubname": pubsub, "topic": topic, "route": "/inbox"}]);
    let app = axum::Router::new()
        .route(
            "/dapr/subscribe",
            get(move || async move { Json(subscriptions) }),
        )
        // Which process answered: the tests of scaled apps see invocations spread over instances.
        .route(
            "/whoami",
            get(|| async { Json(json!({"pid": std::process::id()})) }),
        )
        .route(
            "/inbox",
            post(|Json(ce): Json<Value>| async move {
                println!("received n={} from={}", ce["data"]["n"], ce["source"]);
                Json(json!({"status": "SUCCESS"}))
            }),
        );
    axum::serve(listener, app).await?;
    Ok(())
}
