//! audit-logger binary: settings, tracing, run.

use audit_logger::{Application, Settings};
use service_kit::LayeredSettings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing(events::apps::AUDIT_LOGGER)?;
    let settings = Settings::load()?;
    tracing::info!(
        port = settings.app_port,
        chunk_size = settings.trail_chunk_size,
        "starting audit-logger"
    );
    Application::build(settings)
        .await?
        .run_until_stopped()
        .await?;
    Ok(())
}
