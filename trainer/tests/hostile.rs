//! `skeleguide-train train` given bad input: refused in one line naming the file and field,
//! before anything is allocated for it, and with nothing left behind.

use std::path::Path;
use std::process::{Command, Output};

fn smoke_config() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(repo.join("configs/tiny-smoke.toml")).unwrap()
}

fn train(config: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` in: {err}");
    }
}

#[test]
fn a_batch_past_the_limit_is_refused_by_field_before_training() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("big.toml");
    std::fs::write(
        &cfg,
        smoke_config().replace("batch = 2", "batch = 100000000"),
    )
    .unwrap();
    let t = std::time::Instant::now();
    refused(
        &train(&cfg, &d.path().join("run"), &[]),
        &["big.toml", "batch", "limit"],
    );
    assert!(t.elapsed().as_secs() < 20, "refused before any work");
    assert!(!d.path().join("run/train.jsonl").exists());
}

#[test]
fn a_failed_run_leaves_no_empty_log() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("smoke.toml");
    std::fs::write(&cfg, smoke_config()).unwrap();
    let run = d.path().join("run");
    let out = train(
        &cfg,
        &run,
        &["--data", d.path().join("missing").to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!run.join("train.jsonl").exists(), "{err}");
}
