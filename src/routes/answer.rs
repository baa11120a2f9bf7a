//! The HTTP of a keyed request's answer: the flows answer with data
//! (`flows::keyed::Answered`, `Reply`, `StoredResponse`), and this is where it
//! becomes a response: the stored status, content type and body byte for byte,
//! `Flashguard-Defense` for the defense that answered, and on a replay
//! `Idempotent-Replayed: true` (docs/design.md §4).

use actix_web::HttpResponse;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use crate::defenses::idempotency_key::{Reply, StoredResponse};
use crate::flows::keyed::Answered;
use crate::switches::{DEFENSE_HEADER, Defense};

const REPLAYED_HEADER: &str = "idempotent-replayed";

pub fn respond(answered: Answered) -> HttpResponse {
    match answered {
        Answered::Fresh(reply) => send(reply),
        Answered::Replayed(stored) => replay(stored),
    }
}

/// This request's own answer, marked with the defense that produced it.
fn send(reply: Reply) -> HttpResponse {
    let mut response = stored(reply.stored);
    if let Some(defense) = reply.defense {
        mark(&mut response, defense);
    }
    response
}

/// A stored answer sent again, marked as a replay and as the key's work.
pub fn replay(stored_answer: StoredResponse) -> HttpResponse {
    let mut response = stored(stored_answer);
    response.headers_mut().insert(
        HeaderName::from_static(REPLAYED_HEADER),
        HeaderValue::from_static("true"),
    );
    mark(&mut response, Defense::IdempotencyKey);
    response
}

/// The answer as stored, its body moved into the response (not copied).
fn stored(stored: StoredResponse) -> HttpResponse {
    HttpResponse::build(stored.status)
        .insert_header((CONTENT_TYPE, stored.content_type.as_str()))
        .body(stored.body)
}

fn mark(response: &mut HttpResponse, defense: Defense) {
    response.headers_mut().insert(
        HeaderName::from_static(DEFENSE_HEADER),
        HeaderValue::from_static(defense.id()),
    );
}
