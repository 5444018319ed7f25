//! audit-logger binary: settings, tracing, run.

use audit_logger::{Application, Settings};
use service_kit::LayeredSettings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service_kit::init_tracing(&settings.common.app_id)?;
    service_kit::run::<Application>(settings).await?;
    Ok(())
}
