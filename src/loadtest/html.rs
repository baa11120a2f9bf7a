//! The load-test report as one self-contained HTML file (docs/design.md §2.6):
//! the runs' JSON, uPlot, and the chart code (`static/charts.js`,
//! `static/report.js`) inlined into `templates/report.html`, so that the file
//! opens anywhere, offline, with no server.

use askama::Template;
use serde_json::Value;

const UPLOT_JS: &str = include_str!("../../static/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../static/vendor/uplot/uPlot.min.css");
const CHARTS_JS: &str = include_str!("../../static/charts.js");
const REPORT_JS: &str = include_str!("../../static/report.js");

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    lang: &'a str,
    title: &'a str,
    uplot_css: &'a str,
    uplot_js: &'a str,
    charts_js: &'a str,
    report_js: &'a str,
    runs_json: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportFileError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a report written by `loadtest --report <file>.json`")]
    NotAReport {
        path: String,
        source: Option<serde_json::Error>,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("a report file ends in .html or .json, not {0}")]
    Extension(String),
    #[error("cannot render the report")]
    Render(#[from] askama::Error),
    #[error("cannot serialize the report")]
    Json(#[from] serde_json::Error),
}

/// The page for `runs` (each a report as JSON, with an optional `label`), in
/// `lang` (`zh` or `en`).
pub fn page(title: &str, lang: &str, runs: &[Value]) -> Result<String, ReportFileError> {
    let page = ReportPage {
        lang: if lang == "zh" { "zh" } else { "en" },
        title,
        uplot_css: UPLOT_CSS,
        uplot_js: UPLOT_JS,
        charts_js: CHARTS_JS,
        report_js: REPORT_JS,
        runs_json: script_safe(&serde_json::to_string(runs)?),
    };
    Ok(page.render()?)
}

/// JSON that cannot end its `<script>` element: every `<` (only ever inside a
/// JSON string) written as `\u003c`.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// Reads a report written with `--report <file>.json`.
pub fn read_report(path: &str) -> Result<Value, ReportFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportFileError::Read {
        path: path.to_string(),
        source,
    })?;
    let report: Value =
        serde_json::from_str(&text).map_err(|source| ReportFileError::NotAReport {
            path: path.to_string(),
            source: Some(source),
        })?;
    if !report["series"].is_array() {
        return Err(ReportFileError::NotAReport {
            path: path.to_string(),
            source: None,
        });
    }
    Ok(report)
}

/// Writes `runs` to `path`: an HTML page for `.html`, the JSON of the one run for `.json`.
pub fn write(path: &str, lang: &str, runs: &[Value]) -> Result<(), ReportFileError> {
    let text = match extension(path) {
        Some("html") => page(&title(runs), lang, runs)?,
        Some("json") if runs.len() == 1 => serde_json::to_string_pretty(&runs[0])?,
        Some("json") => serde_json::to_string_pretty(runs)?,
        _ => return Err(ReportFileError::Extension(path.to_string())),
    };
    std::fs::write(path, text).map_err(|source| ReportFileError::Write {
        path: path.to_string(),
        source,
    })
}

fn extension(path: &str) -> Option<&str> {
    std::path::Path::new(path)
        .extension()
        .and_then(|extension| extension.to_str())
}

/// "flash-sale" or "flash-sale vs double-click".
fn title(runs: &[Value]) -> String {
    let names: Vec<String> = runs
        .iter()
        .map(|run| {
            let scenario = run["scenario"].as_str().unwrap_or("run");
            match run["label"].as_str() {
                Some(label) => format!("{scenario} ({label})"),
                None => scenario.to_string(),
            }
        })
        .collect();
    names.join(" vs ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_cannot_close_the_script_element() {
        let runs = vec![
            serde_json::json!({"scenario": "</script><script>alert(1)</script>", "series": []}),
        ];
        let html = page("t", "en", &runs).expect("renders");
        assert_eq!(
            html.matches("</script>").count(),
            4,
            "only the page's own four scripts close"
        );
        assert!(html.contains("\\u003c/script>"));
    }

    #[test]
    fn a_file_that_is_not_a_report_is_refused() {
        let directory = tempfile_dir();
        let path = directory.join("not-a-report.json");
        std::fs::write(&path, "{\"requests\": 1}").expect("written");
        let error = read_report(path.to_str().expect("utf-8")).expect_err("refused");
        assert!(matches!(error, ReportFileError::NotAReport { .. }));
        let _ = std::fs::remove_dir_all(directory);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let directory = std::env::temp_dir().join(format!("fg-report-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&directory).expect("a temporary directory");
        directory
    }
}
