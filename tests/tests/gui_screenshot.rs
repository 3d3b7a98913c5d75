//! The real window, headless: `skeleguide gui --screenshot` under Xvfb renders one full frame
//! through wgpu (Mesa lavapipe or llvmpipe) and exits. Skips when Xvfb is not installed
//! (scripts/setup-system.sh installs it; CI runs that script and fails on the skip).

use skeleguide_tests::{shared_poses, skeleguide_bin, skip_missing};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn xvfb() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("Xvfb"))
            .find(|p| p.exists())
    })
}

#[test]
fn screenshot_mode_renders_the_window() {
    let Some(xvfb) = xvfb() else {
        skip_missing("Xvfb is not installed (run scripts/setup-system.sh)");
        return;
    };
    // asked before Xvfb starts: a required fixture that is missing fails with no server left
    let fixtures = shared_poses();
    // -displayfd: Xvfb picks a free display itself and writes its number to stdout only once
    // it accepts connections, so neither a busy display number nor a slow start (a loaded CI
    // machine) can race the window below.
    let mut server = Command::new(xvfb)
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1600x1000x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Xvfb");
    let mut line = String::new();
    let ready = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("Xvfb stdout")),
        &mut line,
    );
    let number = line.trim();
    if ready.is_err() || number.is_empty() || number.parse::<u32>().is_err() {
        let _ = server.kill();
        let _ = server.wait();
        panic!("Xvfb did not report a display ({ready:?}, {line:?})");
    }
    let display = format!(":{number}");
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let mut cmd = Command::new(skeleguide_bin());
    cmd.args(["gui", "--screenshot", shot.to_str().unwrap()])
        .env("DISPLAY", &display)
        .env("XDG_RUNTIME_DIR", dir.path());
    if let Some(p) = &fixtures {
        cmd.args([
            "--pose",
            p.join("controlnet_editor_768x512_hands.json")
                .to_str()
                .unwrap(),
        ]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| s.success()),
        "screenshot mode failed or hung: {err}"
    );
    let img = image::open(&shot).expect("screenshot PNG").into_rgb8();
    assert_eq!(img.dimensions(), (1280, 800));
    // a real frame, not a blank one: panels, canvas and (with the fixture) the skeleton colours
    let distinct: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 50, "only {} colours", distinct.len());
    if fixtures.is_some() {
        assert!(
            img.pixels().any(|p| p.0 == [255, 0, 0]),
            "no red nose joint in the screenshot"
        );
    }
}
