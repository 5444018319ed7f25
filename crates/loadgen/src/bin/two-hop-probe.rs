//! `two-hop-probe`: the two-hop limit of the create benchmark as a process of its own, for
//! `scripts/bench-table.sh`. An axum handler for `POST /api/tasks` makes the two sidecar calls a
//! create needs at the least (one state transaction, one publish, through `dapr-http` as the
//! services make them), but to a server in this process that answers every request at once with
//! 204. What it reaches is the HTTP cost of a handler making two calls: a ceiling for task-api,
//! whose sidecar also stores and delivers.
//!
//!   two-hop-probe --listen 127.0.0.1:18090
//!
//! `GET /healthz` answers 204 once both servers listen. Loopback addresses only.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;
use dapr_http::{DaprClient, DaprSettings, PublishOptions, SaveItem, TransactionOp};
use serde_json::{Value, json};
use uuid::Uuid;

/// Serves the two-hop limit probe: POST /api/tasks makes a state transaction and a publish to
/// a built-in server that answers at once.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the handler listens (a loopback address).
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: SocketAddr,
}

#[derive(Clone)]
struct Probe {
    dapr: DaprClient,
}

/// Decode, one transaction, one publish, answer 201; as the create benchmark's bare handler.
async fn create(State(probe): State<Probe>, Json(body): Json<Value>) -> StatusCode {
    let id = Uuid::now_v7();
    let Ok(item) = SaveItem::new(format!("task:{id}"), &body) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    if probe
        .dapr
        .transact_state("todo-state", &[TransactionOp::Upsert(item.first_write())])
        .await
        .is_err()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let Ok(payload) = serde_json::to_vec(&json!({"task_id": id, "task": body})) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let options = PublishOptions {
        cloudevent_id: Some(Uuid::now_v7().to_string()),
        cloudevent_type: Some("task-created".into()),
        partition_key: Some(id.to_string()),
        ..Default::default()
    };
    match probe
        .dapr
        .publish_with("todo-pubsub", "task-created", payload.into(), options)
        .await
    {
        Ok(()) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {}: only loopback addresses are allowed",
        args.listen
    );
    let null = axum::Router::new().fallback(|| async { StatusCode::NO_CONTENT });
    let listener = tokio::net::TcpListener::bind((args.listen.ip(), 0)).await?;
    let null_endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, null).await });

    let dapr = DaprClient::new(DaprSettings::with_endpoint(null_endpoint))?;
    let router = axum::Router::new()
        .route("/api/tasks", post(create))
        .route("/healthz", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(Probe { dapr });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?;
    eprintln!("two-hop probe listening on {}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match serve(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
