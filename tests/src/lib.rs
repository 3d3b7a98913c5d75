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

/// Set (to anything but `0` or empty) where every test dependency must be present, as `.ci/run`
/// does: a missing Xvfb, wgpu adapter, `mkfifo` or shared fixture fails the test instead of
/// skipping it.
pub const REQUIRE_TEST_DEPS: &str = "SKELEGUIDE_REQUIRE_TEST_DEPS";

/// Whether [`REQUIRE_TEST_DEPS`] is set.
pub fn test_deps_required() -> bool {
    std::env::var_os(REQUIRE_TEST_DEPS).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Skips the rest of a test for a reason that may hold on any machine (running as root, say):
/// one `SKIPPED: ` line.
pub fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
}

/// Skips the rest of a test because a dependency the CI machine has is missing: one
/// `SKIPPED: ` line, or a panic where [`REQUIRE_TEST_DEPS`] is set.
pub fn skip_missing(reason: &str) {
    assert!(
        !test_deps_required(),
        "{reason}; {REQUIRE_TEST_DEPS} is set, so this fails instead of skipping"
    );
    skip(reason);
}

/// The real pose files written by other tools, or `None` (after [`skip_missing`]) when
/// `../shared` is absent, as in a user's clone. `SKELEGUIDE_SHARED` overrides the location.
pub fn shared_poses() -> Option<PathBuf> {
    let root = match std::env::var_os("SKELEGUIDE_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = root.join("fixtures/poses");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip_missing(&format!(
            "{} is absent (a user's clone has no ../shared); set SKELEGUIDE_SHARED to run this test",
            dir.display()
        ));
        None
    }
}

/// CRC-32 (ISO-HDLC), as PNG chunks use it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG whose IHDR claims `w` x `h` (and no pixel data).
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    out
}

/// Makes a FIFO at `path`; `false` (after [`skip_missing`]) where `mkfifo` is not available.
pub fn mkfifo(path: &Path) -> bool {
    let made = Command::new("mkfifo").arg(path).status();
    if !made.is_ok_and(|s| s.success()) {
        skip_missing(&format!("mkfifo cannot make {}", path.display()));
        return false;
    }
    true
}

/// A small flat scene PNG `scene.png` in `dir`.
pub fn small_scene(dir: &Path) -> PathBuf {
    let p = dir.join("scene.png");
    image::RgbImage::from_pixel(48, 32, image::Rgb([90, 120, 60]))
        .save(&p)
        .expect("write the scene");
    p
}

/// The names of the temporary files (`*.tmp`) left in `dir`.
pub fn temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}
