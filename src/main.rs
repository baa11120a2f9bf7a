//! Start-up only: telemetry, settings, the application. A failure to start is
//! printed as one readable line per cause and exits with status 1.

use std::process::ExitCode;

use flashguard::causes;
use flashguard::configuration::Settings;
use flashguard::psp::keys::KeyFiles;
use flashguard::startup::Application;
use flashguard::telemetry::{self, GENERATED_KEYS_DIR};

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut lines = causes::lines(&*error).into_iter();
            eprintln!(
                "flashguard could not start: {}",
                lines.next().unwrap_or_default()
            );
            for cause in lines {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = Settings::from_env();
    // Key pairs generated at an earlier start are used again.
    let key_files = KeyFiles::new(GENERATED_KEYS_DIR);
    key_files.fill_unset(&mut settings.providers);
    let data_dir = settings.embedded_data_dir();
    let (secrets, providers) = (settings.secrets.clone(), settings.providers.clone());
    let application = Application::build(settings).await?;
    // Written only once the server holds its port: an instance that fails to
    // start must not overwrite the secrets of the one that runs.
    let generated = telemetry::report_generated_secrets(&secrets, &providers)?;
    let generated_keys = key_files.write_generated(&application.state().provider_keys)?;
    let url = application.url();
    // The embedded default on loopback is a learner's own machine: the lab link
    // carries the admin token in its fragment (a fragment is never sent to a server).
    let lab_link = (data_dir.is_some() && application.is_loopback()).then(|| {
        use secrecy::ExposeSecret;
        format!("{url}/lab#token={}", secrets.admin_token.expose_secret())
    });
    telemetry::announce(&telemetry::Banner {
        url: &url,
        data_dir: data_dir.as_deref(),
        lab_link: lab_link.as_deref(),
        generated_secrets: generated.as_deref(),
        generated_keys: generated_keys.as_deref(),
    });
    application.run_until_stopped().await?;
    Ok(())
}
