//! The verdict of one check of a run, as printed and written to `verdicts.json`.

use serde::{Deserialize, Serialize};

/// How many problems a verdict lists in full; the rest are counted.
pub const MAX_PROBLEMS: usize = 20;

/// The verdict of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The check, e.g. `register: linearizable`.
    pub check: String,
    /// True when the check passed.
    pub ok: bool,
    /// One line with the figures the check looked at (operations, outcomes).
    pub summary: String,
    /// What is wrong, one line each, at most [`MAX_PROBLEMS`].
    pub problems: Vec<String>,
    /// Problems beyond [`MAX_PROBLEMS`] not listed.
    pub more_problems: usize,
}

impl Verdict {
    /// A verdict from the problems found: ok when there are none.
    pub fn from_problems(check: &str, summary: String, mut problems: Vec<String>) -> Verdict {
        let more = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        Verdict {
            check: check.to_string(),
            ok: problems.is_empty(),
            summary,
            problems,
            more_problems: more,
        }
    }

    /// The verdict as text: `PASS check: summary` and one indented line per problem.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} {}: {}\n",
            if self.ok { "PASS" } else { "FAIL" },
            self.check,
            self.summary
        );
        for p in &self.problems {
            s.push_str(&format!("    {p}\n"));
        }
        if self.more_problems > 0 {
            s.push_str(&format!("    ... and {} more\n", self.more_problems));
        }
        s
    }
}
