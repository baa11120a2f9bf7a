//! The request deadline's middleware (the deadline itself: `crate::deadline`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::deadline::within;
use crate::error::ApiError;
use crate::state::AppState;

/// Whether a path runs under the deadline: the API, but not the admin's or
/// the lab's requests, nor the audit (resets, experiments, simulations and
/// a full audit run long on purpose).
fn has_deadline(path: &str) -> bool {
    path.starts_with("/api/")
        && !["/api/admin/", "/api/lab/", "/api/audit"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// Middleware: the API's requests run under `REQUEST_DEADLINE_MS`. Past it
/// the answer is the error's (the request itself went with the dropped work:
/// actix renders the error, and the middlewares outside see it as one).
pub async fn enforce(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let bound = request
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.settings.request_deadline());
    let Some(bound) = bound.filter(|_| has_deadline(request.path())) else {
        return next.call(request).await;
    };
    let path = request.path().to_string();
    match within(bound, next.call(request)).await {
        Ok(response) => response,
        Err(dependency) => {
            tracing::warn!(dependency, path, "request deadline passed");
            Err(ApiError::DeadlinePassed { dependency }.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_and_the_lab_run_without_it() {
        assert!(has_deadline("/api/orders"));
        assert!(!has_deadline("/api/admin/reset"));
        assert!(!has_deadline("/api/lab/experiments/x/run"));
        assert!(!has_deadline("/api/audit"));
        assert!(!has_deadline("/learn"));
    }
}
