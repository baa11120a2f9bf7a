//! HTML pages (askama templates under templates/). The full sale UI grows here.

use actix_web::{HttpResponse, get, web};
use askama::Template;

use crate::defenses::Defense;
use crate::error::{ApiError, problem_title};
use crate::startup::AppState;
use crate::store::products::{self, Product};

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    products: Vec<Product>,
    defenses: Vec<(&'static str, bool)>,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage<'a> {
    code: &'a str,
    title: &'static str,
    explanation: &'static str,
}

fn render(template: &impl Template) -> Result<HttpResponse, ApiError> {
    let html = template
        .render()
        .map_err(|error| ApiError::Internal(format!("template: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

#[get("/")]
async fn index(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let page = IndexPage {
        products: products::list(&state.db).await?,
        defenses: Defense::ALL
            .into_iter()
            .map(|defense| (defense.id(), state.switches.is_on(defense)))
            .collect(),
    };
    render(&page)
}

/// `/learn/problems/<code>`: the page every problem's `type` links to.
#[get("/learn/problems/{code}")]
async fn problem(code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let explanation = problem_explanation(&code).ok_or(ApiError::NotFound)?;
    render(&ProblemPage {
        code: &code,
        title: problem_title(&code),
        explanation,
    })
}

fn problem_explanation(code: &str) -> Option<&'static str> {
    Some(match code {
        "idempotency_key_missing" => {
            "Every POST that changes state must carry an Idempotency-Key header: one key per business action (one opening of the confirm popup). Without it the server cannot tell a retry from a new intent."
        }
        "idempotency_key_invalid" => {
            "An idempotency key is 1 to 255 visible ASCII characters. A UUID is a good choice."
        }
        "idempotency_key_reused" => {
            "The idempotency_key defense stores a fingerprint of the first request sent with a key. The same key with a different body is a client bug: a new intent needs a new key."
        }
        "request_in_progress" => {
            "The idempotency_key defense saw this key while its first request was still running. Wait for Retry-After seconds and retry with the same key: you will get the stored answer."
        }
        "malformed_body" => {
            "The body is not JSON of the expected shape. Nothing was stored, so the same key can be used again with a correct body."
        }
        "invalid_quantity" => {
            "Quantity must be a whole number from 1 to 10 per order in this flash sale."
        }
        "invalid_username" => "A demo username is 1 to 32 letters, digits, '_', '-' or '.'.",
        "invalid_request" => "A field of the request is out of range; the detail says which.",
        "product_not_found" => "There is no product with this id. Nothing was stored with the key.",
        "order_not_found" => {
            "There is no such order among yours. Other users' orders are not visible."
        }
        "not_found" => "There is nothing at this address.",
        "sold_out" => {
            "The stock is gone. This is an outcome of the business: it is stored with the idempotency key and replayed to every retry of the same key."
        }
        "busy_retry" => {
            "The version_lock defense lost the optimistic-lock race too many times on a hot stock row. Nothing was stored: retry with the same key after Retry-After."
        }
        "unauthorized" => {
            "Log in with POST /api/login and send the token as 'Authorization: Bearer <token>'. Tokens are signed by the server and cannot be forged."
        }
        "admin_unauthorized" => {
            "The admin API needs 'Authorization: Bearer <ADMIN_TOKEN>'. When ADMIN_TOKEN is unset the server generates one and writes it to the log at start."
        }
        "unknown_defense" => {
            "The admin API only knows the defenses listed by GET /api/admin/defenses."
        }
        "key_store_unavailable" => "Redis did not answer. Retry shortly.",
        "internal_error" => {
            "The server failed. Nothing was stored with the key, so a retry can succeed."
        }
        _ => return None,
    })
}
