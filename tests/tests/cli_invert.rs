//! `skeleguide invert`: layout image -> pose JSON, end to end, and its bad inputs.

use skeleguide_engine::metrics::pose::pck;
use skeleguide_engine::pose::{
    draw_layout, parse_pose_json, ImportOptions, Keypoint, Pose, PoseSet,
};
use skeleguide_tests::{png_header, run};
use std::path::Path;

/// A front-facing person with its head at (x, y), about 8·s tall.
fn person(x: f64, y: f64, s: f64) -> Pose {
    let pts = [
        (0.0, 0.0),
        (0.0, 1.0),
        (-1.0, 1.0),
        (-1.4, 2.5),
        (-1.6, 4.0),
        (1.0, 1.0),
        (1.4, 2.5),
        (1.6, 4.0),
        (-0.6, 4.0),
        (-0.7, 6.0),
        (-0.7, 8.0),
        (0.6, 4.0),
        (0.7, 6.0),
        (0.7, 8.0),
        (-0.25, -0.25),
        (0.25, -0.25),
        (-0.5, -0.1),
        (0.5, -0.1),
    ];
    Pose::from_joints(std::array::from_fn(|j| {
        Some(Keypoint::new(x + s * pts[j].0, y + s * pts[j].1))
    }))
}

fn layout_set(w: u32, h: u32) -> PoseSet {
    let mut set = PoseSet::new(w, h);
    let s = h as f64 / 12.0;
    set.people.push(person(w as f64 * 0.3, h as f64 * 0.15, s));
    let mut b = person(w as f64 * 0.72, h as f64 * 0.2, s * 0.9);
    b.joints[7] = None; // a missing wrist
    set.people.push(b);
    set
}

fn read_set(path: &Path) -> PoseSet {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = parse_pose_json(&text, "out.json", &ImportOptions::default()).unwrap();
    doc.frames.into_iter().next().unwrap()
}

fn invert(args: &[&str]) -> std::process::Output {
    let mut a = vec!["invert"];
    a.extend_from_slice(args);
    run(&a)
}

#[test]
fn inverts_a_drawn_layout_at_several_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(512u32, 384u32), (200, 300), (1024, 640)] {
        let gt = layout_set(w, h);
        let png = dir.path().join(format!("layout_{w}x{h}.png"));
        draw_layout(None, &gt).save(&png).unwrap();
        // default (the colour decoder: no model directory with its own network), forced
        // colour decoder, forced shipped network
        for (mode, baseline) in [
            ("default", true),
            ("--baseline", true),
            ("--network", false),
        ] {
            let out = dir
                .path()
                .join(format!("pose_{w}x{h}_{}.json", &mode[mode.len() - 3..]));
            let mut args = vec![png.to_str().unwrap(), "-o", out.to_str().unwrap()];
            if mode != "default" {
                args.push(mode);
            }
            let o = invert(&args);
            assert!(
                o.status.success(),
                "{w}x{h} baseline={baseline}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let pred = read_set(&out);
            assert_eq!((pred.width, pred.height), (w, h));
            // every point lies on the canvas
            assert!(
                pred.points_outside().is_empty(),
                "{w}x{h} baseline={baseline}"
            );
            // both readers, the network included, find the two people at their joints: the
            // card's clean-layout target (assets/models/tiny/INVERTER.md), PCK 0.98, is every
            // one of these 35 joints within 5 % of its person's bounding-box diagonal
            assert_eq!(pred.people.len(), 2, "{w}x{h} baseline={baseline}");
            let r = pck(&pred, &gt, 0.05);
            assert!(
                r.value() >= 0.98,
                "{w}x{h} baseline={baseline}: PCK {} ({r:?})",
                r.value()
            );
            // the missing wrist stays missing
            let second = pred
                .people
                .iter()
                .max_by(|a, b| {
                    let x = |p: &Pose| p.joints[1].map_or(0.0, |k| k.x);
                    x(a).total_cmp(&x(b))
                })
                .unwrap();
            assert!(second.joints[7].is_none(), "{w}x{h} baseline={baseline}");
        }
    }
}

#[test]
fn a_model_directory_without_an_inverter_reads_a_clean_layout_by_colour() {
    let dir = tempfile::tempdir().unwrap();
    let gt = layout_set(256, 256);
    let png = dir.path().join("l.png");
    draw_layout(None, &gt).save(&png).unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let out = dir.path().join("p.json");
    let o = invert(&[
        png.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the shipped network is used"));
    let set = read_set(&out);
    assert_eq!((set.width, set.height), (256, 256));
    assert_eq!(set.people.len(), 2);
    assert!(pck(&set, &gt, 0.05).value() >= 0.95);
}

fn fails(args: &[&str], expect: &[&str]) {
    let o = invert(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for e in expect {
        assert!(err.contains(e), "{args:?}: expected `{e}` in {err}");
    }
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let out = d("out.json");
    // grayscale: a layout needs colour
    let gray = d("gray.png");
    image::GrayImage::new(32, 32).save(&gray).unwrap();
    fails(&[&gray, "-o", &out], &["gray.png", "1 channel"]);
    // zero size and a huge header
    let zero = d("zero.png");
    std::fs::write(&zero, png_header(0, 10)).unwrap();
    fails(&[&zero, "-o", &out], &["zero.png", "empty"]);
    let huge = d("huge.png");
    std::fs::write(&huge, png_header(100_000, 100_000)).unwrap();
    fails(&[&huge, "-o", &out], &["huge.png", "megapixels"]);
    // not an image, missing file
    let text = d("notes.png");
    std::fs::write(&text, "hello").unwrap();
    fails(&[&text, "-o", &out], &["notes.png"]);
    fails(&[&d("missing.png"), "-o", &out], &["missing.png"]);
    // unwritable output, bad model directory
    let ok = d("ok.png");
    draw_layout(None, &layout_set(64, 64)).save(&ok).unwrap();
    fails(&[&ok, "-o", &d("no/such/dir/out.json")], &["out.json"]);
    fails(
        &[&ok, "-o", &out, "--model", &d("nomodel")],
        &["nomodel", "not a model directory"],
    );
    // a corrupt inverter file in the model directory is named when the network reads (a
    // clean layout goes to the colour decoder and does not touch it)
    let m = d("badmodel");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(Path::new(&m).join("inverter.safetensors"), b"garbage").unwrap();
    fails(
        &[&ok, "-o", &out, "--model", &m, "--network"],
        &["inverter.safetensors"],
    );
    assert!(!Path::new(&out).exists(), "no output after failures");
}
