//! Sequence diagrams of a race and of its defense, as data, drawn as inline SVG
//! by `templates/partials/sequence.html` (no image files, no CDN).

use crate::text::{Lang, Text, text};

/// How a step reads: part of the story, the damage, or the defense at work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Plain,
    Bad,
    Good,
}

/// One message from one actor to another (or a note, when `from == to`).
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub from: usize,
    pub to: usize,
    pub label: Text,
    pub mark: Mark,
}

pub const fn plain(from: usize, to: usize, zh: &'static str, en: &'static str) -> Step {
    Step {
        from,
        to,
        label: text(zh, en),
        mark: Mark::Plain,
    }
}

pub const fn bad(from: usize, to: usize, zh: &'static str, en: &'static str) -> Step {
    Step {
        from,
        to,
        label: text(zh, en),
        mark: Mark::Bad,
    }
}

pub const fn good(from: usize, to: usize, zh: &'static str, en: &'static str) -> Step {
    Step {
        from,
        to,
        label: text(zh, en),
        mark: Mark::Good,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Sequence {
    pub actors: &'static [Text],
    pub steps: &'static [Step],
}

const COLUMN: i64 = 170;
const MARGIN: i64 = 95;
const ROW: i64 = 34;
const TOP: i64 = 64;

/// A diagram with its geometry computed, ready for the template.
#[derive(Debug)]
pub struct Drawing {
    pub width: i64,
    pub height: i64,
    pub actors: Vec<(i64, &'static str)>,
    pub arrows: Vec<Arrow>,
}

#[derive(Debug)]
pub struct Arrow {
    pub x1: i64,
    pub x2: i64,
    pub y: i64,
    /// Where the label is centred.
    pub label_x: i64,
    pub label: &'static str,
    /// `plain`, `bad` or `good` (a CSS class).
    pub class: &'static str,
    /// A note on one lifeline rather than a message.
    pub note: bool,
}

fn x_of(actor: usize) -> i64 {
    MARGIN + COLUMN * i64::try_from(actor).unwrap_or(0)
}

impl Sequence {
    pub fn draw(&self, lang: Lang) -> Drawing {
        let arrows = self
            .steps
            .iter()
            .enumerate()
            .map(|(row, step)| arrow(step, TOP + ROW * i64::try_from(row).unwrap_or(0), lang))
            .collect::<Vec<_>>();
        Drawing {
            width: x_of(self.actors.len().saturating_sub(1)) + MARGIN,
            height: TOP + ROW * i64::try_from(self.steps.len()).unwrap_or(0) + 10,
            actors: self
                .actors
                .iter()
                .enumerate()
                .map(|(i, name)| (x_of(i), lang.pick(name)))
                .collect(),
            arrows,
        }
    }
}

fn arrow(step: &Step, y: i64, lang: Lang) -> Arrow {
    let (x1, x2) = (x_of(step.from), x_of(step.to));
    Arrow {
        x1,
        x2,
        y,
        label_x: (x1 + x2) / 2,
        label: lang.pick(&step.label),
        class: match step.mark {
            Mark::Plain => "plain",
            Mark::Bad => "bad",
            Mark::Good => "good",
        },
        note: step.from == step.to,
    }
}
