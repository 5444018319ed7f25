//! task-api binary: `task-api` serves; `task-api token` prints a development token.

use std::time::Duration;

use clap::{Parser, Subcommand};
use service_kit::LayeredSettings as _;
use task_api::{Application, Settings};

#[derive(Debug, Parser)]
#[command(name = "task-api", about = "REST API for tasks (Dapr state + events)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Print a token signed with the configured HS256 secret (JWT_SECRET).
    Token {
        #[arg(long)]
        user_id: uuid::Uuid,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token {
            user_id,
            email,
            ttl,
        } => {
            let token = task_api::auth::issue_token(&settings, user_id, &email, ttl)?;
            println!("{token}");
        }
        Command::Serve => {
            service_kit::init_tracing(&settings.common.app_id)?;
            service_kit::run::<Application>(settings).await?;
        }
    }
    Ok(())
}
