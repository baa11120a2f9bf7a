//! Where an attack runs, and what it hears back: the lab's HTTP client aimed
//! at this very server, with the admin token that lets it past the rate limits.

use secrecy::ExposeSecret;
use serde_json::Value;

use super::LabError;
use crate::domain::Channel;
use crate::limits::LAB_HEADER;
use crate::state::AppState;
use crate::switches::DEFENSE_HEADER;

/// Where an attack runs.
pub struct Context<'a> {
    pub state: &'a AppState,
    pub http: &'a reqwest::Client,
    pub base_url: &'a str,
    pub product_id: i64,
    pub initial_stock: i64,
    /// Prefix of the lab users' names.
    pub prefix: String,
    /// How the attack's payments are made (and notified).
    pub channel: Channel,
}

/// One answer, read once.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub defense: Option<String>,
}

impl Context<'_> {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, LabError> {
        // The lab's own requests pass the rate limits (the admin token says so).
        let admin = self.state.settings.secrets.admin_token.expose_secret();
        let response = request.header(LAB_HEADER, admin).send().await?;
        let status = response.status().as_u16();
        let defense = response
            .headers()
            .get(DEFENSE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Answer {
            status,
            body,
            defense,
        })
    }
}
