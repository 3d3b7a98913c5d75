//! CLI flows: convert, draw and info on real files written by other tools, and their options.

use skeleguide_engine::pose::{self, ImportOptions};
use skeleguide_tests::{run, shared_poses};

fn ok(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn help_lists_the_subcommands() {
    let out = ok(&run(&["--help"]));
    assert!(
        out.contains("Usage") && out.contains("pose") && out.contains("gui"),
        "{out}"
    );
}

#[test]
fn no_subcommand_opens_the_gui_and_fails_cleanly_without_a_display() {
    let out = std::process::Command::new(skeleguide_tests::skeleguide_bin())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot open the window") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn info_on_real_files() {
    let Some(dir) = shared_poses() else { return };
    let out = ok(&run(&[
        "pose",
        "info",
        dir.join("controlnet_editor_768x512_hands.json")
            .to_str()
            .unwrap(),
    ]));
    assert!(out.contains("ControlNet"), "{out}");
    assert!(out.contains("canvas 768x512"), "{out}");
    assert!(out.contains("person 0: 12/18 joints present; missing: right_hip, right_knee, right_ankle, left_hip, left_knee, left_ankle; with left hand, right hand"), "{out}");
    let cmu = dir.join("openpose_cmu_body25_face_hands.json");
    let out = ok(&run(&[
        "pose",
        "info",
        cmu.to_str().unwrap(),
        "--canvas",
        "1280x720",
    ]));
    assert!(
        out.contains("CMU OpenPose")
            && out.contains("canvas 1280x720 (given)")
            && out.contains("with left hand, right hand, face"),
        "{out}"
    );
    assert!(out.contains("points outside the canvas: none"), "{out}");
    // a canvas too small puts points outside, and info says which
    let out = ok(&run(&[
        "pose",
        "info",
        cmu.to_str().unwrap(),
        "--canvas",
        "640x360",
    ]));
    assert!(
        !out.contains("nose at (627.4, 245.4)") && out.contains("left_shoulder at (790.0, 368.8)"),
        "{out}"
    );
}

#[test]
fn convert_and_draw_real_files() {
    let Some(dir) = shared_poses() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cmu = dir.join("openpose_cmu_body25_face_hands.json");
    let out = tmp.path().join("cmu.json");
    ok(&run(&[
        "pose",
        "convert",
        cmu.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--canvas",
        "1280x720",
    ]));
    let doc = pose::read_pose_file(&out, &ImportOptions::default()).unwrap();
    assert_eq!(doc.format, pose::PoseFormat::ControlNet);
    assert_eq!((doc.frames[0].width, doc.frames[0].height), (1280, 720));
    // confidences become 1.0 for the ControlNet tools
    assert!(doc.frames[0].people[0]
        .joints
        .iter()
        .flatten()
        .all(|k| k.confidence == 1.0));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        v["people"][0]["hand_left_keypoints_2d"]
            .as_array()
            .unwrap()
            .len(),
        63
    );
    assert_eq!(
        v["people"][0]["face_keypoints_2d"]
            .as_array()
            .unwrap()
            .len(),
        210
    );

    // normalised output reads back to the same pixels
    let norm = tmp.path().join("norm.json");
    ok(&run(&[
        "pose",
        "convert",
        out.to_str().unwrap(),
        "-o",
        norm.to_str().unwrap(),
        "--normalized",
    ]));
    let back = pose::read_pose_file(&norm, &ImportOptions::default()).unwrap();
    assert!(back.normalized);
    let (a, b) = (&doc.frames[0].people[0], &back.frames[0].people[0]);
    for (x, y) in a.joints.iter().zip(&b.joints) {
        assert_eq!(x.is_some(), y.is_some());
        if let (Some(x), Some(y)) = (x, y) {
            assert!((x.x - y.x).abs() < 1e-9 && (x.y - y.y).abs() < 1e-9);
        }
    }

    // draw on a scene and on black, with the mask
    let editor = dir.join("controlnet_editor_768x512_hands.json");
    let layout = tmp.path().join("layout.png");
    let mask = tmp.path().join("mask.png");
    ok(&run(&[
        "pose",
        "draw",
        "--pose",
        editor.to_str().unwrap(),
        "-o",
        layout.to_str().unwrap(),
        "--mask-out",
        mask.to_str().unwrap(),
    ]));
    let img = image::open(&layout).unwrap().into_rgb8();
    assert_eq!(img.dimensions(), (768, 512));
    // nose joint (367, 172) is red; the neck (367, 301) is orange
    assert_eq!(img.get_pixel(367, 172).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(367, 301).0, [255, 85, 0]);
    let m = image::open(&mask).unwrap().into_luma8();
    assert_eq!(m.get_pixel(367, 172).0[0], 255);
    assert_eq!(m.get_pixel(5, 5).0[0], 0);

    let scene_path = tmp.path().join("scene.png");
    image::RgbImage::from_pixel(384, 256, image::Rgb([40, 80, 120]))
        .save(&scene_path)
        .unwrap();
    ok(&run(&[
        "pose",
        "draw",
        "--pose",
        editor.to_str().unwrap(),
        "--scene",
        scene_path.to_str().unwrap(),
        "-o",
        layout.to_str().unwrap(),
    ]));
    let img = image::open(&layout).unwrap().into_rgb8();
    assert_eq!(img.dimensions(), (384, 256)); // the pose is scaled to the scene
    assert_eq!(img.get_pixel(183, 86).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(2, 2).0, [40, 80, 120]);
}

#[test]
fn convert_keeps_the_real_confidences_only_with_keep_confidence() {
    let tmp = tempfile::tempdir().unwrap();
    // 18 joints; every fourth is missing (0,0,0), the others carry confidences 0.25, 0.5, 0.75
    let (mut body, mut conf) = (Vec::new(), Vec::new());
    for j in 0..18 {
        let c = if j % 4 == 3 {
            0.0
        } else {
            0.25 * (1 + j % 3) as f64
        };
        let (x, y) = if c > 0.0 {
            (10 + 2 * j, 5 + 3 * j)
        } else {
            (0, 0)
        };
        body.push(format!("{x},{y},{c}"));
        conf.push(c);
    }
    let input = tmp.path().join("detected.json");
    std::fs::write(
        &input,
        format!(
            r#"{{"people":[{{"pose_keypoints_2d":[{}]}}],"canvas_width":64,"canvas_height":64}}"#,
            body.join(",")
        ),
    )
    .unwrap();
    let convert = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = vec!["pose", "convert", input.to_str().unwrap(), "-o"];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        ok(&run(&args));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        v["people"][0]["pose_keypoints_2d"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    let kept = convert("kept.json", &["--keep-confidence"]);
    let plain = convert("plain.json", &[]);
    assert_eq!(kept.len(), 54);
    for j in 0..18 {
        let (k, p) = (&kept[3 * j..3 * j + 3], &plain[3 * j..3 * j + 3]);
        assert_eq!(k[..2], p[..2], "joint {j}: the same position either way");
        assert_eq!(
            k[2], conf[j],
            "joint {j}: the detector's confidence is kept"
        );
        let one = if conf[j] > 0.0 { 1.0 } else { 0.0 };
        assert_eq!(
            p[2], one,
            "joint {j}: 1.0 for the ControlNet tools, 0 when missing"
        );
    }
    // the kept confidences read back as they were written
    let back =
        pose::read_pose_file(&tmp.path().join("kept.json"), &ImportOptions::default()).unwrap();
    let read: Vec<f64> = back.frames[0].people[0]
        .joints
        .iter()
        .map(|k| k.as_ref().map_or(0.0, |k| k.confidence))
        .collect();
    assert_eq!(read, conf);
}

#[test]
fn draw_grows_the_mask_by_exactly_the_mask_margin() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h) = (64u32, 48u32);
    let mut set = pose::PoseSet::new(w, h);
    set.people
        .push(pose::edit::default_person((32.0, 24.0), 36.0));
    let input = tmp.path().join("person.json");
    pose::write_pose_file(&input, &[set], pose::ExportOptions::default()).unwrap();
    let mask = |margin: Option<&str>| {
        let (layout, m) = (tmp.path().join("l.png"), tmp.path().join("m.png"));
        let mut args = vec!["pose", "draw", "--pose", input.to_str().unwrap(), "-o"];
        args.extend([layout.to_str().unwrap(), "--mask-out", m.to_str().unwrap()]);
        if let Some(margin) = margin {
            args.extend(["--mask-margin", margin]);
        }
        ok(&run(&args));
        image::open(&m).unwrap().into_luma8()
    };
    let core = mask(Some("0"));
    assert_eq!(core.dimensions(), (w, h));
    let inside: Vec<(i64, i64)> = core
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] == 255)
        .map(|(x, y, _)| (x as i64, y as i64))
        .collect();
    assert!(!inside.is_empty() && inside.len() < (w * h / 4) as usize);
    for r in [3i64, 8] {
        let grown = if r == 8 {
            mask(None) // the default margin
        } else {
            mask(Some(&r.to_string()))
        };
        for (x, y, p) in grown.enumerate_pixels() {
            let near = inside.iter().any(|&(cx, cy)| {
                let (dx, dy) = (x as i64 - cx, y as i64 - cy);
                dx * dx + dy * dy <= r * r
            });
            // the mask is binary: every pixel within r of the skeleton, and only those
            assert_eq!(
                p.0[0],
                if near { 255 } else { 0 },
                "margin {r} at ({x}, {y})"
            );
        }
    }
}

/// Runs `skeleguide` and returns (stdout, stderr), failing on a non-zero exit.
fn ok_both(args: &[&str]) -> (String, String) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    (ok(&out), err)
}

#[test]
fn info_counts_off_canvas_joints_per_person_and_convert_writes_what_editors_read() {
    let tmp = tempfile::tempdir().unwrap();
    // a web editor file (fkunn1326 layout) on 200x100: person 0 has two joints off the canvas and
    // one missing, person 1 one joint off the canvas, person 2 none
    let joint = |p: usize, j: usize| -> Option<(f64, f64)> {
        match (p, j) {
            (0, 3) => Some((-12.5, 40.0)),
            (0, 9) => Some((250.0, 99.0)),
            (0, 5) => None,
            (1, 17) => Some((20.0, 100.0)),
            _ => Some((10.0 + j as f64 * 9.5, 5.0 + p as f64 * 30.0)),
        }
    };
    let mut pts = Vec::new();
    for p in 0..3 {
        for j in 0..18 {
            pts.push(match joint(p, j) {
                Some((x, y)) => format!("[{x}, {y}]"),
                None => "null".into(),
            });
        }
    }
    let input = tmp.path().join("editor.json");
    std::fs::write(
        &input,
        format!(
            r#"{{"width": 200, "height": 100, "keypoints": [{}]}}"#,
            pts.join(", ")
        ),
    )
    .unwrap();
    let out = ok(&run(&["pose", "info", input.to_str().unwrap()]));
    assert!(out.contains("web openpose-editor"), "{out}");
    assert!(
        out.contains("canvas 200x100 (from the file), 3 people"),
        "{out}"
    );
    assert!(out.contains("points outside the canvas: 3\n"), "{out}");
    assert!(
        out.contains("    person 0: 2 of 18 joints outside the canvas: right_elbow at (-12.5, 40.0), right_knee at (250.0, 99.0)\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "    person 1: 1 of 18 joints outside the canvas: left_ear at (20.0, 100.0)\n"
        ),
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.contains("person 2") && l.contains("outside")),
        "{out}"
    );

    // convert: canvas written, present joints exactly where they were with c = 1.0, missing ones
    // 0,0,0, the off-canvas ones kept as they are
    let conv = tmp.path().join("out.json");
    ok(&run(&[
        "pose",
        "convert",
        input.to_str().unwrap(),
        "-o",
        conv.to_str().unwrap(),
    ]));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conv).unwrap()).unwrap();
    assert_eq!(v["canvas_width"].as_u64(), Some(200));
    assert_eq!(v["canvas_height"].as_u64(), Some(100));
    let people = v["people"].as_array().unwrap();
    assert_eq!(people.len(), 3);
    for (p, person) in people.iter().enumerate() {
        let k: Vec<f64> = person["pose_keypoints_2d"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_f64().unwrap())
            .collect();
        assert_eq!(k.len(), 54);
        for j in 0..18 {
            let want = match joint(p, j) {
                Some((x, y)) => [x, y, 1.0],
                None => [0.0, 0.0, 0.0],
            };
            assert_eq!(k[3 * j..3 * j + 3], want, "person {p} joint {j}");
        }
        for part in [
            "face_keypoints_2d",
            "hand_left_keypoints_2d",
            "hand_right_keypoints_2d",
        ] {
            assert!(person[part].is_null(), "{part}");
        }
    }
    // the converted file reports the same joints outside
    let again = ok(&run(&["pose", "info", conv.to_str().unwrap()]));
    assert!(
        again.contains("person 0: 2 of 18 joints outside the canvas"),
        "{again}"
    );

    // normalised output with a point past the right edge: the tools would read it as pixels
    let norm = tmp.path().join("norm.json");
    let (_, err) = ok_both(&[
        "pose",
        "convert",
        input.to_str().unwrap(),
        "-o",
        norm.to_str().unwrap(),
        "--normalized",
    ]);
    assert!(err.contains("read such a file as pixels"), "{err}");
}

#[test]
fn convert_dwpose_predictions_warns_once_about_the_feet() {
    let tmp = tempfile::tempdir().unwrap();
    let det = |dx: f64| {
        let pts: Vec<[f64; 2]> = (0..133)
            .map(|k| [dx + k as f64, 50.0 + k as f64 / 2.0])
            .collect();
        format!(
            r#"{{"keypoints": {}, "keypoint_scores": {}}}"#,
            serde_json::to_string(&pts).unwrap(),
            serde_json::to_string(&vec![0.8; 133]).unwrap()
        )
    };
    let input = tmp.path().join("dwpose.json");
    std::fs::write(&input, format!("[{}, {}]", det(0.0), det(200.0))).unwrap();
    let out = tmp.path().join("out.json");
    let (_, err) = ok_both(&[
        "pose",
        "convert",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--canvas",
        "512x384",
    ]);
    assert_eq!(err.matches("foot points").count(), 1, "{err}");
    assert!(err.contains("of 2 person(s)"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["canvas_width"].as_u64(), Some(512));
    let p = &v["people"][1];
    let body: Vec<f64> = p["pose_keypoints_2d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_f64().unwrap())
        .collect();
    // nose <- COCO 0; neck = mean of COCO 5 and 6; confidences 1.0
    assert_eq!(body[..6], [200.0, 50.0, 1.0, 205.5, 52.75, 1.0]);
    let face = p["face_keypoints_2d"].as_array().unwrap();
    assert_eq!(face.len(), 210);
    assert_eq!(face[0].as_f64(), Some(223.0));
    assert!(face[204..].iter().all(|n| n.as_f64() == Some(0.0)));
    assert_eq!(p["hand_right_keypoints_2d"].as_array().unwrap().len(), 63);
    let info = ok(&run(&["pose", "info", input.to_str().unwrap()]));
    assert!(info.contains("DWPose"), "{info}");
    assert!(info.contains("with left hand, right hand, face"), "{info}");
}

#[test]
fn convert_reproduces_the_openpose_editors_own_file() {
    let Some(dir) = shared_poses() else { return };
    // sd-webui-openpose-editor wrote this file; our output must hold the same numbers
    let editor = dir.join("controlnet_editor_768x512_hands.json");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.json");
    ok(&run(&[
        "pose",
        "convert",
        editor.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]));
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (a, b) = (read(&editor), read(&out));
    assert_eq!(a["canvas_width"].as_u64(), b["canvas_width"].as_u64());
    assert_eq!(a["canvas_height"].as_u64(), b["canvas_height"].as_u64());
    let nums = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_f64().unwrap())
            .collect()
    };
    for key in [
        "pose_keypoints_2d",
        "hand_left_keypoints_2d",
        "hand_right_keypoints_2d",
    ] {
        assert_eq!(
            nums(&a["people"][0][key]),
            nums(&b["people"][0][key]),
            "{key}"
        );
    }
}

#[test]
fn draw_hands_and_face_match_the_opencv_annotator_reference() {
    // the engine's OpenCV reference with hands and face (make_opencv_parts_reference.py)
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/data");
    let input = data.join("opencv_parts_512x512.json");
    let reference = image::open(data.join("opencv_parts_512x512.png"))
        .unwrap()
        .into_rgb8();
    let tmp = tempfile::tempdir().unwrap();
    let draw = |flags: &[&str]| {
        let out = tmp.path().join("layout.png");
        let mut args = vec!["pose", "draw", "--pose", input.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.extend(["-o", out.to_str().unwrap()]);
        ok(&run(&args));
        image::open(&out).unwrap().into_rgb8()
    };
    assert_eq!(draw(&["--hands", "--face"]), reference);
    // without the flags the body alone is drawn: hand and face pixels are missing
    let body = draw(&[]);
    let doc = pose::read_pose_file(&input, &ImportOptions::default()).unwrap();
    assert_eq!(body, pose::draw_layout(None, &doc.frames[0]));
    assert_ne!(body, reference);
    let hands = draw(&["--hands"]);
    assert!(hands != body && hands != reference);
}
