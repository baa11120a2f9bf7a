//! Who is looking at a page, and in which language: the user from the session
//! cookie, and the language from `?lang=zh|en`, then the `flashguard_lang`
//! cookie the page's toggle sets, then `Accept-Language`, then English. The
//! page also knows which database engine serves it (an experiment for one
//! engine says so elsewhere).

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{ACCEPT, ACCEPT_LANGUAGE};
use actix_web::{FromRequest, HttpRequest, web};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::lab::experiments::Experiment;
use crate::state::AppState;
use crate::store::db::Backend;
use crate::text::{Lang, Text};

pub const LANG_COOKIE: &str = "flashguard_lang";

/// What every page knows about its reader.
#[derive(Debug)]
pub struct Viewer {
    pub user: Option<AuthUser>,
    pub lang: Lang,
    /// The request prefers HTML (a browser): a missing page is a page too.
    pub wants_html: bool,
    /// The database engine of this server.
    pub engine: Backend,
}

impl Viewer {
    pub fn username(&self) -> &str {
        self.user.as_ref().map_or("", |user| user.username.as_str())
    }

    /// `text` in the reader's language (for templates).
    pub fn t(&self, text: &Text) -> &'static str {
        self.lang.pick(text)
    }

    pub fn is_zh(&self) -> bool {
        self.lang == Lang::Zh
    }

    /// Whether `experiment` can run on this server's engine.
    pub fn can_run(&self, experiment: &Experiment) -> bool {
        experiment.runs_on(self.engine)
    }

    /// A link to a page of this site that keeps the reader's language.
    pub fn link(&self, href: &str) -> String {
        self.lang.link(href)
    }
}

impl FromRequest for Viewer {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = AuthUser::from_request(request, payload).into_inner().ok();
        ready(Ok(Self {
            user,
            lang: lang_of(request),
            wants_html: wants_html(request),
            engine: request
                .app_data::<web::Data<AppState>>()
                .map_or(Backend::Sqlite, |state| state.db.backend()),
        }))
    }
}

/// The reader's language.
pub fn lang_of(request: &HttpRequest) -> Lang {
    query_lang(request.query_string())
        .or_else(|| {
            request
                .cookie(LANG_COOKIE)
                .and_then(|c| Lang::parse(c.value()))
        })
        .or_else(|| {
            let header = request.headers().get(ACCEPT_LANGUAGE)?.to_str().ok()?;
            accepted_lang(header)
        })
        .unwrap_or_default()
}

/// Whether the client asked for HTML (browsers send `Accept: text/html,…`).
pub fn wants_html(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The language named in the query string, if any (`?lang=zh`).
pub fn query_lang(query: &str) -> Option<Lang> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "lang")
        .and_then(|(_, value)| Lang::parse(value))
}

/// The first language of `Accept-Language` (by q-value) that is ours.
fn accepted_lang(header: &str) -> Option<Lang> {
    let mut ranges: Vec<(f32, Lang)> = header
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let tag = parts.next()?.trim();
            let quality = parts
                .find_map(|part| part.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or(tag);
            Some((quality, Lang::parse(primary)?))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges.first().map(|(_, lang)| *lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_is_read_by_quality() {
        assert_eq!(accepted_lang("zh-CN,zh;q=0.9,en;q=0.8"), Some(Lang::Zh));
        assert_eq!(accepted_lang("en-US,en;q=0.9,zh;q=0.8"), Some(Lang::En));
        assert_eq!(accepted_lang("fr;q=0.9, zh;q=0.5, de"), Some(Lang::Zh));
        assert_eq!(accepted_lang("fr, de"), None);
    }

    #[test]
    fn the_query_names_the_language() {
        assert_eq!(query_lang("lang=zh"), Some(Lang::Zh));
        assert_eq!(query_lang("a=1&lang=en"), Some(Lang::En));
        assert_eq!(query_lang("lang=xx"), None);
    }
}
