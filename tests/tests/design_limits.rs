//! docs/DESIGN.md lists every input limit of `engine/src/limits.rs` with its value: a limit added,
//! removed or changed in one place and not the other fails here.

use skeleguide_engine::limits::*;
use std::path::Path;

fn repo_text(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)).unwrap()
}

/// Each limit with its value as DESIGN.md writes it (sizes in bytes as MiB / GiB).
fn documented() -> Vec<(&'static str, String)> {
    let mib = |b: u64| format!("{} MiB", b >> 20);
    let gib = |b: u64| format!("{} GiB", b >> 30);
    let grouped = |n: u64| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    vec![
        ("MAX_PIXELS", grouped(MAX_PIXELS)),
        ("MAX_CANVAS_SIDE", grouped(MAX_CANVAS_SIDE)),
        ("MAX_COORD", format!("{MAX_COORD:e}")),
        ("MAX_PEOPLE", MAX_PEOPLE.to_string()),
        ("MAX_POSE_FILE_BYTES", gib(MAX_POSE_FILE_BYTES)),
        ("MAX_IMAGE_FILE_BYTES", gib(MAX_IMAGE_FILE_BYTES)),
        ("MAX_CONFIG_BYTES", mib(MAX_CONFIG_BYTES)),
        ("MAX_PROMPTS_FILE_BYTES", mib(MAX_PROMPTS_FILE_BYTES)),
        ("MAX_STREAM_BYTES", mib(MAX_STREAM_BYTES)),
        ("MAX_PROMPT_CHARS", MAX_PROMPT_CHARS.to_string()),
        ("MAX_RESOLUTION", MAX_RESOLUTION.to_string()),
        ("MAX_BLOCKS", MAX_BLOCKS.to_string()),
        ("MAX_WIDTH", grouped(MAX_WIDTH as u64)),
        ("MAX_BATCH", grouped(MAX_BATCH as u64)),
        ("MAX_LORA_RANK", MAX_LORA_RANK.to_string()),
        (
            "MAX_JPEG_PIXELS_PER_BYTE",
            MAX_JPEG_PIXELS_PER_BYTE.to_string(),
        ),
    ]
}

#[test]
fn every_limit_is_documented_with_its_value() {
    let source = repo_text("engine/src/limits.rs");
    let mut declared: Vec<&str> = source
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| l.split(':').next())
        .collect();
    declared.sort();
    let mut listed: Vec<&str> = documented().iter().map(|(n, _)| *n).collect();
    listed.sort();
    assert_eq!(declared, listed, "limits.rs and this test's list differ");
    let design = repo_text("docs/DESIGN.md");
    for (name, value) in documented() {
        let row = design
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("docs/DESIGN.md has no row for {name}"));
        let cell = row.split('|').nth(2).unwrap_or_default().trim();
        assert!(
            cell.starts_with(&value),
            "{name}: DESIGN.md says {cell:?}, the code {value}"
        );
    }
}
