//! The learning pages, in the reader's language: `/learn`, `/learn/interview`,
//! `/learn/defenses/{id}`, `/learn/topics/{id}`, `/learn/glossary`,
//! `/learn/problems` and `/learn/problems/{code}`. A missing page under
//! `/learn` is answered in the reader's language too: an HTML page for a
//! browser, problem details (title and detail translated) for anything else.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LANGUAGE, CONTENT_TYPE};
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, web};
use askama::Template;

use crate::error::{ApiError, Problem, problem_body};
use crate::lab::experiments::{self, Experiment};
use crate::learn::content::{self, LESSON_SECTIONS};
use crate::learn::curriculum::{self, CONCEPT_PATH, Stop, Topic};
use crate::learn::diagrams::Drawing;
use crate::learn::excerpts;
use crate::learn::glossary::{GLOSSARY, Term};
use crate::learn::lessons::{self, Lesson};
use crate::problems::{PROBLEM_CONTENT_TYPE, ProblemCode, ProblemSpec};
use crate::routes::pages::render;
use crate::routes::viewer::Viewer;
use crate::switches::{Defense, DefenseInfo};
use crate::text::Lang;

/// A defense as the pages list it.
struct DefenseLine {
    id: &'static str,
    layer: &'static str,
    info: DefenseInfo,
}

impl DefenseLine {
    fn lesson_path(&self) -> String {
        format!("/learn/defenses/{}", self.id)
    }

    fn of(defense: Defense) -> Self {
        let info = defense.info();
        Self {
            id: defense.id(),
            layer: info.layer.into(),
            info,
        }
    }
}

fn defense_lines() -> Vec<DefenseLine> {
    Defense::all().map(DefenseLine::of).collect()
}

/// A stop on a path, as a link.
struct StopLink {
    href: String,
    title: &'static str,
}

fn stop_links(stops: &[Stop], lang: Lang) -> Vec<StopLink> {
    stops
        .iter()
        .map(|stop| StopLink {
            href: lang.link(&stop.path()),
            title: stop.title(lang),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "learn.html")]
struct LearnPage {
    viewer: Viewer,
    what: String,
    paths: String,
    how: String,
    order: String,
    defenses: Vec<DefenseLine>,
    concept_path: Vec<StopLink>,
    request_path: Vec<StopLink>,
}

/// `/learn`: 幂等 defined, the two paths, the layers, the order of checks.
#[get("/learn")]
async fn index(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    let lang = viewer.lang;
    render(&LearnPage {
        what: content::section("index", lang, "what"),
        paths: content::section("index", lang, "paths"),
        how: content::section("index", lang, "how"),
        order: content::section("index", lang, "order"),
        defenses: defense_lines(),
        concept_path: stop_links(CONCEPT_PATH, lang),
        request_path: stop_links(&curriculum::request_path(), lang),
        viewer,
    })
}

#[derive(Template)]
#[template(path = "interview.html")]
struct InterviewPage {
    viewer: Viewer,
    questions: Vec<(String, String)>,
}

/// `/learn/interview`: the two-minute answer, the classic questions with model
/// answers, and the common answers that need correcting.
#[get("/learn/interview")]
async fn interview(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    render(&InterviewPage {
        questions: content::all_sections("interview", viewer.lang),
        viewer,
    })
}

#[derive(Template)]
#[template(path = "glossary.html")]
struct GlossaryPage {
    viewer: Viewer,
    terms: &'static [Term],
}

/// `/learn/glossary`: the term table, Chinese ↔ English.
#[get("/learn/glossary")]
async fn glossary(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    render(&GlossaryPage {
        viewer,
        terms: GLOSSARY,
    })
}

/// A problem code as the index lists it.
struct ProblemLine {
    code: &'static str,
    spec: ProblemSpec,
    defense: Option<DefenseLine>,
}

impl ProblemLine {
    fn path(&self) -> String {
        format!("/learn/problems/{}", self.code)
    }
}

#[derive(Template)]
#[template(path = "problems.html")]
struct ProblemsPage {
    viewer: Viewer,
    problems: Vec<ProblemLine>,
}

/// `/learn/problems`: every problem code the API answers with.
#[get("/learn/problems")]
async fn problems(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    let problems = ProblemCode::all()
        .map(|code| {
            let spec = code.spec();
            ProblemLine {
                code: code.as_str(),
                defense: spec.defense.map(DefenseLine::of),
                spec,
            }
        })
        .collect();
    render(&ProblemsPage { viewer, problems })
}

#[derive(Template)]
#[template(path = "topic.html")]
struct TopicPage {
    viewer: Viewer,
    title: &'static str,
    sections: Vec<String>,
    next: Option<StopLink>,
}

/// `/learn/topics/{id}`: background that several lessons assume.
#[get("/learn/topics/{id}")]
async fn topic(viewer: Viewer, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some(topic) = Topic::from_id(&id) else {
        return Ok(not_found_page(viewer));
    };
    let lang = viewer.lang;
    render(&TopicPage {
        title: lang.pick(&topic.title()),
        sections: topic
            .sections()
            .iter()
            .map(|name| content::section(topic.id(), lang, name))
            .collect(),
        next: next_link(Stop::Topic(topic), lang),
        viewer,
    })
}

/// The next stop on the concept path, as a link.
fn next_link(stop: Stop, lang: Lang) -> Option<StopLink> {
    curriculum::next_on_concept_path(stop).map(|next| StopLink {
        href: lang.link(&next.path()),
        title: next.title(lang),
    })
}

/// One excerpt of real code, cut from this build.
struct CodeView {
    caption: &'static str,
    path: &'static str,
    language: &'static str,
    code: String,
}

/// A lesson's prose sections, rendered.
struct Prose {
    story: String,
    place: String,
    pitfalls: String,
    off: String,
    interview: String,
}

impl Prose {
    fn of(defense: Defense, lang: Lang) -> Self {
        let [story, place, pitfalls, off, talk] =
            LESSON_SECTIONS.map(|name| content::section(defense.id(), lang, name));
        Self {
            story,
            place,
            pitfalls,
            off,
            interview: talk,
        }
    }
}

#[derive(Template)]
#[template(path = "lesson.html")]
struct LessonPage {
    viewer: Viewer,
    id: &'static str,
    info: DefenseInfo,
    layer: &'static str,
    prose: Prose,
    assumes: Vec<StopLink>,
    /// The defense a request meets before this one, and the one after.
    before: Option<DefenseLine>,
    after: Option<DefenseLine>,
    /// The next page on the concept path.
    next: Option<StopLink>,
    race: Drawing,
    defended: Drawing,
    code: Vec<CodeView>,
    checks: &'static [&'static str],
    experiments: Vec<&'static Experiment>,
    /// The experiments the simulator can replay as a sale (their ids).
    simulated: Vec<&'static str>,
    /// The sale page's guide, for a browser defense (no experiment).
    guide_path: String,
}

/// `/learn/defenses/{id}`: the lesson of one defense.
#[get("/learn/defenses/{id}")]
async fn lesson(viewer: Viewer, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some((defense, taught)) =
        Defense::from_id(&id).and_then(|defense| Some((defense, lessons::lesson(defense)?)))
    else {
        return Ok(not_found_page(viewer));
    };
    let lang = viewer.lang;
    let (before, after) = neighbours(defense);
    render(&LessonPage {
        id: defense.id(),
        info: defense.info(),
        layer: defense.info().layer.into(),
        prose: Prose::of(defense, lang),
        assumes: stop_links(curriculum::assumes(defense), lang),
        before,
        after,
        next: next_link(Stop::Lesson(defense), lang),
        race: taught.race.draw(lang),
        defended: taught.defended.draw(lang),
        code: code_of(&taught, &viewer)?,
        checks: taught.checks,
        experiments: experiments::for_defense(defense),
        simulated: experiments::for_defense(defense)
            .into_iter()
            .filter(|experiment| crate::lab::simulator::preset_scenario(experiment).is_some())
            .map(|experiment| experiment.id)
            .collect(),
        guide_path: format!("/?guide={}", defense.id()),
        viewer,
    })
}

/// The defenses just in front of and just behind `defense`.
fn neighbours(defense: Defense) -> (Option<DefenseLine>, Option<DefenseLine>) {
    let all: Vec<Defense> = Defense::all().collect();
    let at = all.iter().position(|d| *d == defense);
    let before = at
        .and_then(|i| i.checked_sub(1))
        .map(|i| DefenseLine::of(all[i]));
    let after = at.and_then(|i| all.get(i + 1)).map(|d| DefenseLine::of(*d));
    (before, after)
}

/// The lesson's excerpts; a missing marker is a server error (and a failing test).
fn code_of(taught: &Lesson, viewer: &Viewer) -> Result<Vec<CodeView>, ApiError> {
    taught
        .excerpts
        .iter()
        .map(|excerpt| {
            let code = excerpts::excerpt(excerpt.path, excerpt.cut).ok_or_else(|| {
                ApiError::Internal(format!("lesson excerpt missing in {}", excerpt.path))
            })?;
            Ok(CodeView {
                caption: viewer.t(&excerpt.caption),
                path: excerpt.path,
                language: excerpt.language,
                code,
            })
        })
        .collect()
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage {
    viewer: Viewer,
    code: &'static str,
    spec: ProblemSpec,
    defense: Option<DefenseLine>,
}

/// `/learn/problems/<code>`: the page every problem's `type` links to.
#[get("/learn/problems/{code}")]
async fn problem(viewer: Viewer, code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some(code) = ProblemCode::from_code(&code) else {
        return Ok(not_found_page(viewer));
    };
    let spec = code.spec();
    render(&ProblemPage {
        viewer,
        code: code.as_str(),
        defense: spec.defense.map(DefenseLine::of),
        spec,
    })
}

/// A page under `/learn` that does not exist, in the reader's language: the
/// `not_found` problem as a page for a browser, as problem details otherwise.
pub fn not_found_page(viewer: Viewer) -> HttpResponse {
    let code = ProblemCode::NotFound;
    let spec = code.spec();
    let (lang, wants_html) = (viewer.lang, viewer.wants_html);
    let page = ProblemPage {
        viewer,
        code: code.as_str(),
        spec,
        defense: None,
    };
    let mut response = HttpResponse::build(StatusCode::NOT_FOUND);
    response.insert_header((CONTENT_LANGUAGE, lang.code()));
    match page.render() {
        Ok(html) if wants_html => response
            .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
            .body(html),
        _ => response
            .insert_header((CONTENT_TYPE, PROBLEM_CONTENT_TYPE))
            .body(problem_body(&Problem {
                type_uri: code.type_uri(),
                title: lang.pick(&spec.title),
                status: spec.status,
                detail: lang.pick(&spec.explanation).to_string(),
                code: code.as_str(),
                dependency: None,
            })),
    }
}

/// The not-found answer for a path nothing matched: under `/learn`, in the
/// reader's language (see [`not_found_page`]).
pub fn not_found_under_learn(request: &HttpRequest) -> Option<HttpResponse> {
    let path = request.path();
    if path != "/learn" && !path.starts_with("/learn/") {
        return None;
    }
    let viewer = Viewer::extract(request).into_inner().ok()?;
    Some(not_found_page(viewer))
}
