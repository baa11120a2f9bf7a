//! Start-up only: telemetry, settings, the application.

use flashguard::configuration::Settings;
use flashguard::startup::Application;
use flashguard::telemetry;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init();
    let settings = Settings::from_env()?;
    let generated = telemetry::report_generated_secrets(&settings)?;
    let application = Application::build(settings).await?;
    telemetry::announce(&application.url(), generated.as_deref());
    application.run_until_stopped().await?;
    Ok(())
}
