//! Outputs a hostile or careless user points at: symlinks are written through, special files
//! are written in place (never replaced by a regular file), and margins at the top of their
//! range give a mask instead of a panic.

use skeleguide_tests::{mkfifo, run, small_scene, temporary_files};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

const PNG_MAGIC: &[u8] = b"\x89PNG";

/// A one-person ControlNet pose file of 64x48.
fn pose_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("pose.json");
    let mut kp = vec![0.0f64; 18 * 3];
    for (j, (x, y)) in [(32.0, 8.0), (32.0, 14.0), (26.0, 14.0), (24.0, 22.0)]
        .into_iter()
        .enumerate()
    {
        kp[j * 3] = x;
        kp[j * 3 + 1] = y;
        kp[j * 3 + 2] = 1.0;
    }
    let doc = serde_json::json!({
        "canvas_width": 64,
        "canvas_height": 48,
        "people": [{"pose_keypoints_2d": kp}]
    });
    std::fs::write(&p, doc.to_string()).unwrap();
    p
}

fn ok(out: &std::process::Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_output_symlink_is_written_through_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let pose = pose_file(d.path());
    let target = d.path().join("target.png");
    let link = d.path().join("link.png");
    std::os::unix::fs::symlink("target.png", &link).unwrap();
    ok(&run(&[
        "pose",
        "draw",
        "--pose",
        pose.to_str().unwrap(),
        "-o",
        link.to_str().unwrap(),
    ]));
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the link is still a link");
    assert!(std::fs::read(&target).unwrap().starts_with(PNG_MAGIC));
}

#[test]
fn a_fifo_output_is_written_in_place_not_replaced() {
    let d = tempfile::tempdir().unwrap();
    let pose = pose_file(d.path());
    let fifo = d.path().join("out.png");
    if !mkfifo(&fifo) {
        return;
    }
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    ok(&run(&[
        "pose",
        "draw",
        "--pose",
        pose.to_str().unwrap(),
        "-o",
        fifo.to_str().unwrap(),
    ]));
    let bytes = reader.join().unwrap();
    assert!(
        bytes.starts_with(PNG_MAGIC),
        "the PNG went through the FIFO"
    );
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO is still a FIFO");
}

#[test]
fn mask_margins_at_the_top_of_their_range_cover_the_canvas() {
    let d = tempfile::tempdir().unwrap();
    let pose = pose_file(d.path());
    for margin in ["65536", "4294967295"] {
        let (layout, mask) = (d.path().join("l.png"), d.path().join("m.png"));
        ok(&run(&[
            "pose",
            "draw",
            "--pose",
            pose.to_str().unwrap(),
            "-o",
            layout.to_str().unwrap(),
            "--mask-out",
            mask.to_str().unwrap(),
            "--mask-margin",
            margin,
        ]));
        let m = image::open(&mask).unwrap().to_luma8();
        assert_eq!(m.dimensions(), (64, 48));
        assert!(m.pixels().all(|p| p.0[0] == 255), "margin {margin}");
    }
}

#[test]
fn a_failing_second_output_leaves_no_first_output_behind() {
    let d = tempfile::tempdir().unwrap();
    let scene = small_scene(d.path());
    let out = d.path().join("o.png");
    // /proc takes no new files, even from root
    let o = std::process::Command::new(skeleguide_tests::skeleguide_bin())
        .env_remove("SKELEGUIDE_MODEL")
        .args([
            "generate",
            "--scene",
            scene.to_str().unwrap(),
            "--prompt",
            "a man",
        ])
        .args(["--steps", "1", "-o", out.to_str().unwrap()])
        .args(["--layout-out", "/proc/skeleguide-layout.png"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("/proc/skeleguide-layout.png"), "{err}");
    assert!(!out.exists(), "no image without its layout");
    let left = temporary_files(d.path());
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_interrupt_while_outputs_are_staged_removes_their_temporary_files() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("out.png");
    if !mkfifo(&fifo) {
        return;
    }
    let scene = small_scene(d.path());
    // The layout is staged as a temporary file, then writing the image into the FIFO waits for
    // a reader that never comes: the moment to interrupt.
    let mut child = std::process::Command::new(skeleguide_tests::skeleguide_bin())
        .env_remove("SKELEGUIDE_MODEL")
        .args([
            "generate",
            "--scene",
            scene.to_str().unwrap(),
            "--prompt",
            "a man",
        ])
        .args(["--steps", "1", "-o", fifo.to_str().unwrap()])
        .arg("--layout-out")
        .arg(d.path().join("layout.png"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp_files = || temporary_files(d.path());
    let start = std::time::Instant::now();
    while tmp_files().is_empty() {
        assert!(start.elapsed().as_secs() < 60, "no temporary file appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(tmp_files().is_empty(), "{:?}", tmp_files());
    assert!(!d.path().join("layout.png").exists());
}

/// Output into a pipe whose reader has gone (`skeleguide … | head`) ends the process quietly
/// through SIGPIPE, like other command-line tools, instead of a panic.
#[test]
fn a_closed_output_pipe_ends_quietly_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let d = tempfile::tempdir().unwrap();
    let pose = pose_file(d.path());
    let mut child = Command::new(skeleguide_tests::skeleguide_bin())
        .args(["pose", "info"])
        .arg(&pose)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Ended by SIGPIPE (13), or done before the reader left.
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?} {err}",
        out.status
    );
}
