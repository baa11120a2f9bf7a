//! Logging: one `tracing` subscriber (filter from `RUST_LOG`, default `info`),
//! a span and a request id for every request (tracing-actix-web), the id echoed
//! in `X-Request-Id`. Errors are logged once, by tracing-actix-web's logger, with
//! their debug form (the cause chain); rendering an error has no side effects.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing_actix_web::RequestId;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; safe to call more than once (tests do).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_target(false)
        .try_init();
}

pub async fn echo_request_id(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.to_string());
    let mut response = next.call(request).await?;
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), id);
    }
    Ok(response)
}

/// Where generated secrets are written, so the operator can find them.
pub const GENERATED_SECRETS_FILE: &str = "data/generated-secrets.env";

/// Where generated key pairs of the payment channels are kept (`psp::keys`).
pub const GENERATED_KEYS_DIR: &str = "data";

/// Writes secrets that were generated (their variable was unset) to
/// [`GENERATED_SECRETS_FILE`], readable by the owner only, and logs where they are.
/// Returns a one-line report for the banner when there were any.
pub fn report_generated_secrets(
    secrets: &crate::configuration::Secrets,
    providers: &crate::configuration::ProviderSettings,
) -> Result<Option<String>, std::io::Error> {
    use secrecy::ExposeSecret;
    if secrets.generated.is_empty() {
        return Ok(None);
    }
    let value_of = |name: &str| match name {
        "ADMIN_TOKEN" => secrets.admin_token.expose_secret(),
        "PSP_SECRET" => secrets.psp_secret.expose_secret(),
        "WECHATPAY_APIV3_KEY" => providers.wechatpay_apiv3_key.expose_secret(),
        _ => secrets.session_secret.expose_secret(),
    };
    let mut contents = String::from("# generated at start because these variables were unset\n");
    for name in &secrets.generated {
        contents.push_str(&format!("{name}={}\n", value_of(name)));
    }
    let path = std::path::Path::new(GENERATED_SECRETS_FILE);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_private(path, &contents)?;
    tracing::warn!(
        generated = ?secrets.generated,
        file = GENERATED_SECRETS_FILE,
        "secrets not set in the environment were generated at random; find them in the file"
    );
    Ok(Some(format!(
        "{} not set: generated at random, see {GENERATED_SECRETS_FILE}",
        secrets.generated.join(", ")
    )))
}

#[cfg(unix)]
pub fn write_private(path: &std::path::Path, contents: &str) -> Result<(), std::io::Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to a file it creates: narrow an existing one too.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
pub fn write_private(path: &std::path::Path, contents: &str) -> Result<(), std::io::Error> {
    std::fs::write(path, contents)
}

/// What the start-up banner tells.
#[derive(Debug)]
pub struct Banner<'a> {
    pub url: &'a str,
    /// Where the embedded default keeps its data, when it is in use.
    pub data_dir: Option<&'a std::path::Path>,
    /// The lab's link with the admin token (embedded default on loopback only).
    pub lab_link: Option<&'a str>,
    pub generated_secrets: Option<&'a str>,
    /// Where generated key pairs of the payment channels were written.
    pub generated_keys: Option<&'a str>,
}

/// The start-up banner on standard output: where to point the browser, and
/// where the embedded default keeps its data. A closed standard output (a pipe
/// whose reader left) does not stop the server.
pub fn announce(banner: &Banner<'_>) {
    use std::io::Write;
    let url = banner.url;
    let mut lines = vec![
        format!("flashguard is listening on {url}"),
        format!(
            "  sale page: {url}/   learn: {url}/learn   audit: {url}/api/audit   readiness: {url}/readyz"
        ),
    ];
    if let Some(link) = banner.lab_link {
        lines.push(format!("  lab (this link carries the admin token): {link}"));
    }
    if let Some(dir) = banner.data_dir {
        lines.push(format!(
            "  data: {} (SQLite file and generated secrets; stop the server and delete it to start over)",
            dir.display()
        ));
    }
    for report in [banner.generated_secrets, banner.generated_keys]
        .into_iter()
        .flatten()
    {
        lines.push(format!("  {report}"));
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}
