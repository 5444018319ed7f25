//! reminder-scheduler binary: settings, tracing, run.

use reminder_scheduler::{Application, Settings};
use service_kit::LayeredSettings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing(events::apps::REMINDER_SCHEDULER)?;
    let settings = Settings::load()?;
    tracing::info!(
        port = settings.app_port,
        lead_time = %humantime::format_duration(settings.reminder_lead_time),
        scan_interval = %humantime::format_duration(settings.scan_interval),
        "starting reminder-scheduler"
    );
    Application::build(settings)
        .await?
        .run_until_stopped()
        .await?;
    Ok(())
}
