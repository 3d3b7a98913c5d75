//! Bad input never panics and never leaves a partial file: every case below must exit with
//! code 2, print one line naming the file and what is wrong, and write no output.

use skeleguide_tests::{png_header, run};
use std::path::Path;

fn body(n: usize) -> String {
    let v: Vec<String> = (0..n).map(|i| format!("{}", 10 + i)).collect();
    v.join(",")
}

fn people(n: usize) -> String {
    let one = format!(r#"{{"pose_keypoints_2d":[{}]}}"#, body(54));
    vec![one; n].join(",")
}

fn frame(people_json: &str, w: &str, h: &str) -> String {
    format!(r#"{{"people":[{people_json}],"canvas_width":{w},"canvas_height":{h}}}"#)
}

struct Case {
    name: &'static str,
    file: Vec<u8>,
    /// "pose" (input is a pose file for convert/draw/info) or "scene" (input is a scene image).
    kind: &'static str,
    expect: &'static str,
}

fn case(name: &'static str, text: impl Into<String>, expect: &'static str) -> Case {
    Case {
        name,
        file: text.into().into_bytes(),
        kind: "pose",
        expect,
    }
}

fn cases() -> Vec<Case> {
    let good = people(1);
    vec![
        case(
            "truncated.json",
            r#"{"people":[{"pose_keypoints_2d":[1,2,"#,
            "malformed JSON",
        ),
        case("empty.json", "", "empty"),
        Case {
            name: "binary.json",
            file: vec![0xff, 0xfe, 0x00, 0x9c, 0x80],
            kind: "pose",
            expect: "UTF-8",
        },
        case(
            "nan.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":[NaN,{}]}}"#, body(53)),
                "512",
                "512",
            ),
            "NaN",
        ),
        case(
            "infinity.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":[Infinity,{}]}}"#, body(53)),
                "512",
                "512",
            ),
            "Infinity",
        ),
        case(
            "overflow.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":[1e400,{}]}}"#, body(53)),
                "512",
                "512",
            ),
            "malformed JSON",
        ),
        case(
            "absurd.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":[5e6,{}]}}"#, body(53)),
                "512",
                "512",
            ),
            "pose_keypoints_2d[0]",
        ),
        case(
            "short_body.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":[{}]}}"#, body(51)),
                "512",
                "512",
            ),
            "expected 54 (COCO-18) or 75 (BODY_25)",
        ),
        case(
            "not_triples.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":[{}]}}"#, body(55)),
                "512",
                "512",
            ),
            "not a multiple of 3",
        ),
        case(
            "short_hand.json",
            frame(
                &format!(
                    r#"{{"pose_keypoints_2d":[{}],"hand_left_keypoints_2d":[{}]}}"#,
                    body(54),
                    body(60)
                ),
                "512",
                "512",
            ),
            "hand_left_keypoints_2d: 20 points; expected 21",
        ),
        case(
            "short_face.json",
            frame(
                &format!(
                    r#"{{"pose_keypoints_2d":[{}],"face_keypoints_2d":[{}]}}"#,
                    body(54),
                    body(30)
                ),
                "512",
                "512",
            ),
            "face_keypoints_2d",
        ),
        case(
            "zero_canvas.json",
            frame(&good, "0", "512"),
            "canvas_width: 0 is not a positive canvas size",
        ),
        case(
            "negative_canvas.json",
            frame(&good, "512", "-3"),
            "canvas_height: -3 is not a positive",
        ),
        case(
            "fractional_canvas.json",
            frame(&good, "512.5", "512"),
            "canvas_width: 512.5 is not a whole number",
        ),
        case(
            "string_canvas.json",
            frame(&good, "\"512\"", "512"),
            "canvas_width: is a string",
        ),
        case(
            "too_many_people.json",
            frame(&people(1001), "512", "512"),
            "1001 people; at most 1000",
        ),
        case(
            "people_not_list.json",
            r#"{"people":{"a":1},"canvas_width":5,"canvas_height":5}"#,
            "people: is a object",
        ),
        case(
            "person_not_object.json",
            r#"{"people":[[1,2,3]],"canvas_width":5,"canvas_height":5}"#,
            "people[0]: is a list",
        ),
        case(
            "string_value.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":["7",{}]}}"#, body(53)),
                "512",
                "512",
            ),
            "pose_keypoints_2d[0]: is a string",
        ),
        case(
            "null_value.json",
            frame(
                &format!(r#"{{"pose_keypoints_2d":[{},null]}}"#, body(53)),
                "512",
                "512",
            ),
            "pose_keypoints_2d[53]: is a null",
        ),
        case(
            "animals.json",
            r#"{"people":[],"animals":[[1,2,1,3,4,1]],"canvas_width":64,"canvas_height":64}"#,
            "AP-10K",
        ),
        case("unknown.json", r#"{"foo":1,"bar":[]}"#, "keys [bar, foo]"),
        case("string.json", r#""hello""#, "found a JSON string"),
        case("empty_list.json", "[]", "empty list"),
        case(
            "frame_no_canvas.json",
            format!(r#"[{{"people":[{good}]}}]"#),
            "[0]: has no `canvas_width`",
        ),
        case(
            "coco_bad_image.json",
            r#"{"images":[{"id":1,"width":10,"height":10}],"annotations":[{"image_id":5,"keypoints":[]}],"categories":[{"id":1,"name":"person"}]}"#,
            "annotations[0].image_id: 5 is not in `images`",
        ),
        case(
            "coco_16_points.json",
            format!(
                r#"{{"images":[{{"id":1,"width":10,"height":10}}],"annotations":[{{"image_id":1,"category_id":1,"keypoints":[{}]}}],"categories":[{{"id":1,"name":"person"}}]}}"#,
                body(48)
            ),
            "16 points; COCO person keypoints have 17",
        ),
        Case {
            name: "garbage.png",
            file: b"\x89PNG\r\n\x1a\nthis is not really a png".to_vec(),
            kind: "scene",
            expect: "garbage.png",
        },
        Case {
            name: "huge.png",
            file: png_header(20_000, 20_000),
            kind: "scene",
            expect: "400 megapixels",
        },
        Case {
            name: "text.png",
            file: b"hello world".to_vec(),
            kind: "scene",
            expect: "not a PNG or JPEG",
        },
    ]
}

fn assert_clean_failure(
    out: &std::process::Output,
    file: &str,
    expect: &str,
    dir: &Path,
    before: usize,
    what: &str,
) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: exit code; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: one line expected: {err}"
    );
    assert!(
        err.contains(file),
        "{what}: message must name {file}: {err}"
    );
    assert!(
        err.contains(expect),
        "{what}: expected `{expect}` in: {err}"
    );
    let now = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(
        now,
        before,
        "{what}: an output or temp file was left in {}",
        dir.display()
    );
}

#[test]
fn malformed_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = cases();
    assert!(cases.len() >= 20);
    let good_pose = d.join("good.json");
    std::fs::write(&good_pose, frame(&people(1), "64", "64")).unwrap();
    for c in &cases {
        let input = d.join(c.name);
        std::fs::write(&input, &c.file).unwrap();
    }
    let before = std::fs::read_dir(d).unwrap().count();
    let out_json = d.join("out.json");
    let out_png = d.join("out.png");
    for c in &cases {
        let input = d.join(c.name);
        let i = input.to_str().unwrap();
        if c.kind == "pose" {
            let r = run(&["pose", "convert", i, "-o", out_json.to_str().unwrap()]);
            assert_clean_failure(
                &r,
                c.name,
                c.expect,
                d,
                before,
                &format!("convert {}", c.name),
            );
            let r = run(&[
                "pose",
                "draw",
                "--pose",
                i,
                "-o",
                out_png.to_str().unwrap(),
                "--mask-out",
                d.join("m.png").to_str().unwrap(),
            ]);
            assert_clean_failure(&r, c.name, c.expect, d, before, &format!("draw {}", c.name));
            let r = run(&["pose", "info", i]);
            assert_clean_failure(&r, c.name, c.expect, d, before, &format!("info {}", c.name));
        } else {
            let r = run(&[
                "pose",
                "draw",
                "--pose",
                good_pose.to_str().unwrap(),
                "--scene",
                i,
                "-o",
                out_png.to_str().unwrap(),
            ]);
            assert_clean_failure(
                &r,
                c.name,
                c.expect,
                d,
                before,
                &format!("draw --scene {}", c.name),
            );
        }
    }
}

#[test]
fn bad_paths_and_arguments_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = d.join("good.json");
    std::fs::write(&good, frame(&people(1), "64", "64")).unwrap();
    let g = good.to_str().unwrap();
    let before = std::fs::read_dir(d).unwrap().count();
    let missing_dir = d.join("no/such/dir/out.json");
    let r = run(&["pose", "convert", g, "-o", missing_dir.to_str().unwrap()]);
    assert_clean_failure(
        &r,
        "out.json",
        "does not exist",
        d,
        before,
        "missing output dir",
    );
    let r = run(&["pose", "convert", g, "-o", d.to_str().unwrap()]);
    assert_clean_failure(
        &r,
        d.to_str().unwrap(),
        "is a directory",
        d,
        before,
        "output is a directory",
    );
    // the mask cannot be written: the layout must not be left behind either
    let r = run(&[
        "pose",
        "draw",
        "--pose",
        g,
        "-o",
        d.join("l.png").to_str().unwrap(),
        "--mask-out",
        missing_dir.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &r,
        "out.json",
        "does not exist",
        d,
        before,
        "unwritable mask",
    );
    let r = run(&["pose", "info", d.join("absent.json").to_str().unwrap()]);
    assert_clean_failure(&r, "absent.json", "cannot read", d, before, "missing input");
    let r = run(&["pose", "info", d.to_str().unwrap()]);
    assert_clean_failure(
        &r,
        d.to_str().unwrap(),
        "is a directory",
        d,
        before,
        "input is a directory",
    );
    let r = run(&["pose", "convert", g, "-o", "x.json", "--canvas", "0x5"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("must be between 1 and"));
    let r = run(&[
        "pose",
        "draw",
        "--pose",
        g,
        "-o",
        d.join("l.png").to_str().unwrap(),
        "--frame",
        "3",
    ]);
    assert_clean_failure(
        &r,
        "good.json",
        "--frame 3",
        d,
        before,
        "frame out of range",
    );
}

#[test]
fn read_only_directory_is_refused_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = d.join("good.json");
    std::fs::write(&good, frame(&people(1), "64", "64")).unwrap();
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(&ro, perm).unwrap();
    // root can write anywhere; the check only means something for a normal user
    let probe = ro.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        let _ = std::fs::remove_file(&probe);
        skeleguide_tests::skip("running as a user who can write to read-only directories");
        return;
    }
    let r = run(&[
        "pose",
        "convert",
        good.to_str().unwrap(),
        "-o",
        ro.join("o.json").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
}

#[test]
fn pipeline_commands_refuse_a_bad_scene_pose_or_prompts_file_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 1).unwrap();
    skeleguide_tests::small_scene(d);
    std::fs::write(d.join("good.json"), frame(&people(1), "48", "32")).unwrap();
    let prompts = d.join("prompts.txt");
    std::fs::write(&prompts, "a man standing\n").unwrap();
    let files: [(&str, &[u8]); 4] = [
        ("garbage.png", b"\x89PNG\r\n\x1a\nnot really a png"),
        (
            "truncated.json",
            br#"{"people":[{"pose_keypoints_2d":[1,2,"#,
        ),
        ("comments.txt", b"# only a comment\n\n"),
        ("control.txt", b"a man\x07 waving\n"),
    ];
    for (name, bytes) in files {
        std::fs::write(d.join(name), bytes).unwrap();
    }
    let before = std::fs::read_dir(d).unwrap().count();
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let (m, s, g, pr) = (p("model"), p("scene.png"), p("good.json"), p("prompts.txt"));
    let (out, out_dir) = (p("out.png"), p("batch"));
    let common = |cmd: &str, scene: &str| -> Vec<String> {
        let v = [cmd, "--scene", scene, "--model", &m, "--steps", "1"];
        v.iter().map(|a| a.to_string()).collect()
    };
    let with = |mut v: Vec<String>, rest: &[&str]| {
        v.extend(rest.iter().map(|a| a.to_string()));
        v
    };
    let single =
        |cmd: &str, scene: &str| with(common(cmd, scene), &["--prompt", "a man", "-o", &out]);
    let batch = |scene: &str, prompts: &str| {
        with(
            common("batch", scene),
            &["--prompts", prompts, "--seeds", "0..1", "--out", &out_dir],
        )
    };
    // (arguments, the file the one line must name, what it must say)
    let mut cases: Vec<(Vec<String>, &str, &str)> = Vec::new();
    for (scene, name, expect) in [
        (
            p("garbage.png"),
            "garbage.png",
            "cannot read the image header",
        ),
        (p("absent.png"), "absent.png", "cannot read"),
    ] {
        cases.push((single("generate", &scene), name, expect));
        cases.push((single("reason", &scene), name, expect));
        cases.push((
            with(single("render", &scene), &["--pose", &g]),
            name,
            expect,
        ));
        cases.push((batch(&scene, &pr), name, expect));
    }
    for (bad, name, expect) in [
        (p("truncated.json"), "truncated.json", "malformed JSON"),
        (p("absent.json"), "absent.json", "cannot read"),
    ] {
        cases.push((with(single("render", &s), &["--pose", &bad]), name, expect));
        cases.push((with(batch(&s, &pr), &["--pose", &bad]), name, expect));
    }
    cases.push((
        with(single("render", &s), &["--layout", &p("garbage.png")]),
        "garbage.png",
        "cannot read the image header",
    ));
    for (bad, name, expect) in [
        (p("comments.txt"), "comments.txt", "no prompts"),
        (p("control.txt"), "control.txt", "line 1"),
        (p("absent.txt"), "absent.txt", "cannot read"),
    ] {
        cases.push((batch(&s, &bad), name, expect));
    }
    for (args, name, expect) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let what = format!("{} {name}", a[0]);
        assert_clean_failure(&run(&a), name, expect, d, before, &what);
    }
}

#[test]
fn gui_refuses_a_bad_scene_pose_or_model_before_opening_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("garbage.png"), b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    std::fs::write(d.join("garbage.json"), b"{\"people\": [").unwrap();
    let no_weights = d.join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    let before = std::fs::read_dir(d).unwrap().count();
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let cases = [
        ("--scene", p("garbage.png"), "garbage.png", "image header"),
        ("--scene", p("absent.png"), "absent.png", "cannot read"),
        ("--pose", p("garbage.json"), "garbage.json", "JSON"),
        ("--model", p("absent-model"), "absent-model", "not found"),
        ("--model", p("no-weights"), "config.json", "cannot read"),
    ];
    for (flag, path, name, expect) in cases {
        // no display either way: a window that tried to open would fail with another message
        let r = std::process::Command::new(skeleguide_tests::skeleguide_bin())
            .args(["gui", flag, &path])
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!err.contains("window"), "gui {flag} {name}: {err}");
        assert_clean_failure(&r, name, expect, d, before, &format!("gui {flag} {name}"));
    }
}
