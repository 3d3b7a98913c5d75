//! The repository speaks of the project alone: no tracked text file names a path of the machine
//! it was written on.

use std::path::Path;
use std::process::Command;

/// Path prefixes of a development machine, temporary folders included (built from parts so
/// this file does not match).
fn machine_prefixes() -> Vec<String> {
    ["work", "root", "home", "tmp"]
        .iter()
        .map(|d| format!("/{d}/"))
        .collect()
}

/// Whether `line` holds `prefix` where an absolute path starts (not inside `$DIR/root/…`).
fn starts_a_path(line: &str, prefix: &str) -> bool {
    line.match_indices(prefix).any(|(i, _)| {
        line[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "\"'`(=:<[,".contains(c))
    })
}

#[test]
fn no_tracked_text_file_holds_a_machine_path() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let listed = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["ls-files", "-z"])
        .output();
    let files = match listed {
        Ok(o) if o.status.success() => o.stdout,
        _ => {
            skeleguide_tests::skip("not a git checkout (or no git)");
            return;
        }
    };
    let prefixes = machine_prefixes();
    let mut found = Vec::new();
    for name in files.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).to_string();
        let Ok(bytes) = std::fs::read(repo.join(&name)) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue; // binary (weights, images)
        };
        for (i, line) in text.lines().enumerate() {
            if prefixes.iter().any(|p| starts_a_path(line, p)) {
                found.push(format!("{name}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "machine paths:\n{}", found.join("\n"));
}

#[test]
fn absolute_paths_are_told_from_relative_ones() {
    let [work, root, home] = [0, 1, 2].map(|i| machine_prefixes()[i].clone());
    assert!(starts_a_path(&format!("see {work}x"), &work));
    assert!(starts_a_path(&format!("\"{home}a\""), &home));
    assert!(!starts_a_path(&format!("CU=$DIR{root}nvidia"), &root));
}
