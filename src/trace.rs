//! The per-request trace: the path one request took through the layers
//! (`cache miss > key claimed > gate: unit taken > version conflict, retry 1 >
//! commit > answer stored with the key`). While the lab turns tracing on, every
//! answer carries it in `Flashguard-Trace`, and the buy and pay popups draw it as
//! a timeline under each answer. Off, recording a step costs one failed
//! task-local lookup.

use std::cell::RefCell;
use std::future::Future;

pub const TRACE_HEADER: &str = "flashguard-trace";
/// Between two steps in the header (ASCII: header values are not Unicode).
pub const SEPARATOR: &str = " > ";

tokio::task_local! {
    static STEPS: RefCell<Vec<String>>;
}

/// Records one step of the current request, if it is being traced.
pub fn step(text: impl Into<String>) {
    let _ = STEPS.try_with(|steps| steps.borrow_mut().push(text.into()));
}

/// Runs `work`, recording the steps it takes; returns its output and the steps.
pub async fn traced<F: Future>(work: F) -> (F::Output, Vec<String>) {
    STEPS
        .scope(RefCell::new(Vec::new()), async {
            let output = work.await;
            let steps = STEPS.with(|steps| steps.take());
            (output, steps)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_are_recorded_only_inside_a_trace() {
        step("nobody listens");
        let ((), steps) = traced(async {
            step("first");
            step(String::from("second"));
        })
        .await;
        assert_eq!(steps, ["first", "second"]);
    }
}
