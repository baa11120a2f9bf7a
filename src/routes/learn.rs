//! The learning pages: `/learn`, `/learn/interview`, `/learn/defenses/{id}` and
//! `/learn/problems/{code}`, in the reader's language.

use actix_web::{HttpResponse, get, web};
use askama::Template;

use crate::error::ApiError;
use crate::lab::experiments::{self, Experiment};
use crate::learn::content;
use crate::learn::diagrams::Drawing;
use crate::learn::excerpts;
use crate::learn::glossary::GLOSSARY;
use crate::learn::lessons::{self, Lesson};
use crate::problems::{ProblemCode, ProblemSpec};
use crate::routes::pages::render;
use crate::routes::viewer::Viewer;
use crate::switches::{Defense, DefenseInfo};
use crate::text::Text;

/// A defense as the pages list it.
struct DefenseLine {
    id: &'static str,
    layer: &'static str,
    info: DefenseInfo,
}

fn defense_lines() -> Vec<DefenseLine> {
    Defense::all()
        .map(|defense| {
            let info = defense.info();
            DefenseLine {
                id: defense.id(),
                layer: info.layer.into(),
                info,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "learn.html")]
struct LearnPage {
    viewer: Viewer,
    what: String,
    how: String,
    order: String,
    defenses: Vec<DefenseLine>,
    glossary: &'static [(Text, Text)],
}

/// `/learn`: 幂等 defined, the layers, the order of checks, the glossary.
#[get("/learn")]
async fn index(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    let lang = viewer.lang;
    render(&LearnPage {
        what: content::section("index", lang, "what"),
        how: content::section("index", lang, "how"),
        order: content::section("index", lang, "order"),
        defenses: defense_lines(),
        glossary: GLOSSARY,
        viewer,
    })
}

#[derive(Template)]
#[template(path = "interview.html")]
struct InterviewPage {
    viewer: Viewer,
    questions: Vec<(String, String)>,
}

/// `/learn/interview`: the classic questions, with model answers and corrections.
#[get("/learn/interview")]
async fn interview(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    render(&InterviewPage {
        questions: content::all_sections("interview", viewer.lang),
        viewer,
    })
}

/// One excerpt of real code, cut from this build.
struct CodeView {
    caption: &'static str,
    path: &'static str,
    language: &'static str,
    code: String,
}

#[derive(Template)]
#[template(path = "lesson.html")]
struct LessonPage {
    viewer: Viewer,
    id: &'static str,
    info: DefenseInfo,
    layer: &'static str,
    story: String,
    place: String,
    pitfalls: String,
    interview: String,
    /// The defense a request meets before this one, and the one after.
    before: Option<DefenseLine>,
    after: Option<DefenseLine>,
    race: Drawing,
    defended: Drawing,
    code: Vec<CodeView>,
    checks: &'static [&'static str],
    experiment: Option<&'static Experiment>,
}

/// `/learn/defenses/{id}`: the lesson of one defense.
#[get("/learn/defenses/{id}")]
async fn lesson(viewer: Viewer, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let defense = Defense::from_id(&id).ok_or(ApiError::NotFound)?;
    let taught = lessons::lesson(defense).ok_or(ApiError::NotFound)?;
    let lang = viewer.lang;
    let section = |name| content::section(defense.id(), lang, name);
    let (before, after) = neighbours(defense);
    render(&LessonPage {
        id: defense.id(),
        info: defense.info(),
        layer: defense.info().layer.into(),
        story: section("story"),
        place: section("place"),
        pitfalls: section("pitfalls"),
        interview: section("interview"),
        before,
        after,
        race: taught.race.draw(lang),
        defended: taught.defended.draw(lang),
        code: code_of(&taught, &viewer)?,
        checks: taught.checks,
        experiment: experiments::for_defense(defense),
        viewer,
    })
}

/// The defenses just in front of and just behind `defense`.
fn neighbours(defense: Defense) -> (Option<DefenseLine>, Option<DefenseLine>) {
    let lines = defense_lines();
    let at = lines.iter().position(|line| line.id == defense.id());
    let mut lines = lines.into_iter();
    match at {
        Some(0) => (None, lines.nth(1)),
        Some(i) => {
            let before = lines.nth(i - 1);
            (before, lines.nth(1))
        }
        None => (None, None),
    }
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
    let code = ProblemCode::from_code(&code).ok_or(ApiError::NotFound)?;
    let spec = code.spec();
    let defense = spec.defense.and_then(|defense| {
        defense_lines()
            .into_iter()
            .find(|line| line.id == defense.id())
    });
    render(&ProblemPage {
        viewer,
        code: code.as_str(),
        spec,
        defense,
    })
}
