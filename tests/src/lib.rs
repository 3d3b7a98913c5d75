//! Helpers for the end-to-end tests: the `skeleguide` binary, scratch directories and the shared
//! real-world fixtures (which live outside the repository, in `../shared`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `skeleguide` binary built by this `cargo test` run (same profile as the tests).
pub fn skeleguide_bin() -> PathBuf {
    bin("skeleguide")
}

/// A binary of the workspace, next to the test executable's `deps/` directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} not found: run the tests with `cargo test --release --workspace` so the binaries are built",
        p.display()
    );
    p
}

/// Runs `skeleguide` with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(skeleguide_bin())
        .args(args)
        .output()
        .expect("spawn skeleguide")
}

/// The real pose files written by other tools, or `None` (with a message) when `../shared` is
/// absent, as in a user's clone. `SKELEGUIDE_SHARED` overrides the location.
pub fn shared_poses() -> Option<PathBuf> {
    let root = match std::env::var_os("SKELEGUIDE_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = root.join("fixtures/poses");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (a user's clone has no ../shared); set SKELEGUIDE_SHARED to run this test",
            dir.display()
        );
        None
    }
}
