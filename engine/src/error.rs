//! Error helpers of the engine's file-facing code: how a path appears in messages and the
//! one-line rendering of an error chain for terminals.

use std::path::Path;

/// Re-exported from `pose` (where it is defined) so that `error::PoseError` keeps working.
pub use crate::pose::PoseError;

/// How a path appears in messages.
pub(crate) fn display_path(p: &Path) -> String {
    p.display().to_string()
}

/// An error and its causes as one line for a terminal: each cause is added once (a message
/// that already quotes its cause is not followed by it again) and line breaks become spaces.
pub fn one_line(chain: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for msg in chain {
        let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        if msg.is_empty() || out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_already_quoted_are_not_repeated_and_lines_join() {
        let io = "No such file or directory (os error 2)".to_string();
        assert_eq!(
            one_line([format!("p.json: cannot read: {io}"), io]),
            "p.json: cannot read: No such file or directory (os error 2)"
        );
        assert_eq!(
            one_line([
                "a.toml: bad\n  |\n1 | x = \n".to_string(),
                "expected a value".into()
            ]),
            "a.toml: bad | 1 | x =: expected a value"
        );
    }
}
