//! The binary starts and reports its version (this also makes `cargo test` build it for the
//! end-to-end tests crate).

#[test]
fn prints_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skeleguide"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("skeleguide "));
}
