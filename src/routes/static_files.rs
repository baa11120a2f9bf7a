//! `/static/*`: the page's JavaScript, CSS and icons, embedded in the binary at
//! build time (`rust-embed`, also in debug builds), so the binary runs from any
//! directory. Each file is served with its content type and a strong `ETag` (a
//! prefix of its SHA-256); `Cache-Control: no-cache` makes browsers revalidate,
//! and a matching `If-None-Match` is answered `304 Not Modified` with no body.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use actix_web::{HttpRequest, HttpResponse, get, web};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

#[get("/static/{path:.*}")]
async fn asset(request: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let file = Assets::get(&path).ok_or(ApiError::NotFound)?;
    let etag = entity_tag(&file.metadata.sha256_hash());
    if if_none_match(&request, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((ETAG, etag))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type(file.metadata.mimetype())))
        .insert_header((ETAG, etag))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(file.data.into_owned()))
}

/// `"<first 16 hex digits of the SHA-256>"`: changes whenever the content does.
fn entity_tag(sha256: &[u8; 32]) -> String {
    format!("\"{}\"", hex::encode(&sha256[..8]))
}

/// Whether the browser already holds this version (`If-None-Match: "…", "…"` or `*`).
fn if_none_match(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        })
}

/// Text types get an explicit UTF-8 charset.
fn content_type(mime: &str) -> String {
    let is_text =
        mime.starts_with("text/") || mime.ends_with("javascript") || mime.ends_with("+xml");
    if is_text {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_assets_are_embedded_with_their_types() {
        let script = Assets::get("app.js").expect("app.js is embedded");
        assert!(script.metadata.mimetype().contains("javascript"));
        let style = Assets::get("app.css").expect("app.css is embedded");
        assert_eq!(style.metadata.mimetype(), "text/css");
        assert!(Assets::get("../Cargo.toml").is_none());
    }

    #[test]
    fn text_types_carry_a_charset() {
        assert_eq!(content_type("text/css"), "text/css; charset=utf-8");
        assert_eq!(
            content_type("text/javascript"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("image/png"), "image/png");
    }
}
