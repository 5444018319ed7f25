//! The email-worker binary: settings, tracing, run.

use email_worker::{Application, Settings};
use service_kit::LayeredSettings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service_kit::init_tracing(&settings.common.app_id)?;
    service_kit::run::<Application>(settings).await?;
    Ok(())
}
