//! The email-worker binary: settings, tracing, run.

use email_worker::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing(events::apps::EMAIL_WORKER)?;
    let settings = Settings::from_env()?;
    Application::build(settings)
        .await?
        .run_until_stopped()
        .await?;
    Ok(())
}
