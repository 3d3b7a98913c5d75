//! The pipeline commands' optional inputs and outputs, end to end: `render --layout`,
//! `generate`/`reason --pose-out` and `batch --reason`.

use skeleguide_engine::imageio::read_png_text;
use skeleguide_engine::pose::{self, edit::default_person, ExportOptions, PoseSet};
use skeleguide_tests::run;
use std::path::{Path, PathBuf};

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tiny model shipped in the repository (it has a PoseInverter).
fn shipped_model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/models/tiny")
        .to_str()
        .unwrap()
        .to_string()
}

/// A 96x64 scene and a pose file of one standing person on the same canvas, in `d`.
fn scene_and_pose(d: &Path) -> (PathBuf, PathBuf) {
    let scene = d.join("scene.png");
    image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, 90])
    })
    .save(&scene)
    .unwrap();
    let mut set = PoseSet::new(96, 64);
    set.people.push(default_person((48.0, 32.0), 44.0));
    let pose = d.join("pose.json");
    pose::write_pose_file(&pose, &[set], ExportOptions::default()).unwrap();
    (scene, pose)
}

fn png(p: &Path) -> image::RgbImage {
    image::open(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .into_rgb8()
}

/// A text chunk of a PNG written by the CLI.
fn text_chunk(p: &Path, key: &str) -> Option<String> {
    read_png_text(p)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn render_on_a_layout_image_renders_what_its_pose_renders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (scene, pose) = scene_and_pose(d);
    let model = shipped_model();
    // the layout file another tool (here `pose draw`) made of the pose over the scene
    let layout = d.join("layout.png");
    ok(&run(&[
        "pose",
        "draw",
        "--pose",
        s(&pose),
        "--scene",
        s(&scene),
        "-o",
        s(&layout),
    ]));
    let render = |input: &[&str], out: &Path, extra: &[&str]| {
        let mut args = vec!["render", "--scene", s(&scene), "--prompt", "a man"];
        args.extend(input);
        args.extend([
            "--model",
            &model,
            "--steps",
            "2",
            "--seed",
            "3",
            "-o",
            s(out),
        ]);
        args.extend(extra);
        ok(&run(&args));
        png(out)
    };
    let whole = ["--no-keep-background"];
    let (from_pose, from_layout) = (d.join("from-pose.png"), d.join("from-layout.png"));
    let a = render(&["--pose", s(&pose)], &from_pose, &whole);
    let b = render(&["--layout", s(&layout)], &from_layout, &whole);
    assert_eq!(a.dimensions(), (96, 64));
    // the same layout image conditions stage 2 either way
    assert!(a == b, "render --layout differs from render --pose");
    // only the pose file's render knows (and records) the pose
    assert!(text_chunk(&from_pose, "pose").is_some_and(|p| p.contains("pose_keypoints_2d")));
    assert_eq!(text_chunk(&from_layout, "pose"), None);
    assert_eq!(text_chunk(&from_layout, "prompt").as_deref(), Some("a man"));
    // a layout of another size is fitted to the scene; the scene's corners are kept
    let half = d.join("half.png");
    image::imageops::resize(&png(&layout), 48, 32, image::imageops::FilterType::Triangle)
        .save(&half)
        .unwrap();
    let kept = render(&["--layout", s(&half)], &d.join("kept.png"), &[]);
    assert_eq!(kept.dimensions(), (96, 64));
    let sc = png(&scene);
    for (x, y) in [(0, 0), (95, 0), (0, 63), (95, 63)] {
        assert_eq!(kept.get_pixel(x, y), sc.get_pixel(x, y), "({x}, {y})");
    }
    assert!(kept != sc, "a person is rendered");
}

#[test]
fn pose_out_writes_the_reasoned_pose_that_the_pngs_carry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (scene, _) = scene_and_pose(d);
    let model = shipped_model();
    let common = ["--scene", s(&scene), "--prompt", "a man standing"];
    let rest = ["--model", &model, "--steps", "4", "--seed", "2"];
    let (out, layout, pose_json) = (d.join("out.png"), d.join("layout.png"), d.join("pose.json"));
    let mut args = vec!["generate"];
    args.extend(common);
    args.extend(rest);
    args.extend([
        "-o",
        s(&out),
        "--layout-out",
        s(&layout),
        "--pose-out",
        s(&pose_json),
    ]);
    ok(&run(&args));
    let text = std::fs::read_to_string(&pose_json).unwrap();
    let doc = pose::read_pose_file(&pose_json, &pose::ImportOptions::default()).unwrap();
    assert_eq!(doc.format, pose::PoseFormat::ControlNet);
    assert_eq!(doc.frames.len(), 1);
    assert_eq!((doc.frames[0].width, doc.frames[0].height), (96, 64));
    // the image and the layout record the same pose in their text chunks
    assert_eq!(text_chunk(&out, "pose").as_deref(), Some(text.as_str()));
    assert_eq!(text_chunk(&layout, "pose").as_deref(), Some(text.as_str()));
    // it is what the inverter reads from the written layout
    let inverted = d.join("inverted.json");
    ok(&run(&[
        "invert",
        s(&layout),
        "--model",
        &model,
        "-o",
        s(&inverted),
    ]));
    assert_eq!(std::fs::read_to_string(&inverted).unwrap(), text);
    // reason alone: the same stage 1, so the same layout and pose
    let (layout2, pose2) = (d.join("layout2.png"), d.join("pose2.json"));
    let mut args = vec!["reason"];
    args.extend(common);
    args.extend(rest);
    args.extend(["-o", s(&layout2), "--pose-out", s(&pose2)]);
    ok(&run(&args));
    assert!(
        png(&layout2) == png(&layout),
        "reason's layout differs from generate's"
    );
    assert_eq!(std::fs::read_to_string(&pose2).unwrap(), text);
}

#[test]
fn pose_out_uses_the_embedded_inverter_for_a_model_without_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (scene, _) = scene_and_pose(d);
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 1).unwrap();
    assert!(!model
        .join(skeleguide_engine::modeldir::INVERTER_FILE)
        .exists());
    let (out, layout, pose_json) = (d.join("out.png"), d.join("layout.png"), d.join("pose.json"));
    ok(&run(&[
        "generate",
        "--scene",
        s(&scene),
        "--prompt",
        "a man",
        "--model",
        s(&model),
        "--steps",
        "1",
        "-o",
        s(&out),
        "--layout-out",
        s(&layout),
        "--pose-out",
        s(&pose_json),
    ]));
    let text = std::fs::read_to_string(&pose_json).unwrap();
    assert_eq!(text_chunk(&out, "pose").as_deref(), Some(text.as_str()));
    // `invert` without --model reads with the same embedded weights
    let inverted = d.join("inverted.json");
    ok(&run(&["invert", s(&layout), "-o", s(&inverted)]));
    assert_eq!(std::fs::read_to_string(&inverted).unwrap(), text);
}

#[test]
fn batch_reason_reasons_a_pose_per_seed_even_with_a_given_pose() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (scene, pose) = scene_and_pose(d);
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 5).unwrap();
    let prompts = d.join("prompts.txt");
    std::fs::write(&prompts, "a man standing\n").unwrap();
    let batch = |out: &Path, reason: bool| {
        let mut args = vec!["batch", "--scene", s(&scene), "--prompts", s(&prompts)];
        args.extend(["--seeds", "0..1", "--pose", s(&pose), "--model", s(&model)]);
        args.extend(["--steps", "1", "--out", s(out)]);
        if reason {
            args.push("--reason");
        }
        ok(&run(&args));
        let mut names: Vec<String> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "manifest.jsonl",
                "p000-s0.json",
                "p000-s0.png",
                "p000-s1.json",
                "p000-s1.png"
            ]
        );
        // each image records the pose it was rendered on, which is the JSON beside it
        ["p000-s0", "p000-s1"].map(|stem| {
            let json = std::fs::read_to_string(out.join(format!("{stem}.json"))).unwrap();
            let png = out.join(format!("{stem}.png"));
            assert_eq!(
                text_chunk(&png, "pose").as_deref(),
                Some(json.as_str()),
                "{stem}"
            );
            json
        })
    };
    // without --reason every seed renders the given pose
    let converted = d.join("converted.json");
    ok(&run(&["pose", "convert", s(&pose), "-o", s(&converted)]));
    let given = std::fs::read_to_string(&converted).unwrap();
    assert_eq!(
        batch(&d.join("given"), false),
        [given.clone(), given.clone()]
    );
    // with --reason each seed's pose is the one `reason` finds for that seed
    let reasoned = batch(&d.join("reasoned"), true);
    for (seed, json) in reasoned.iter().enumerate() {
        let (layout, pose_out) = (
            d.join(format!("l{seed}.png")),
            d.join(format!("p{seed}.json")),
        );
        ok(&run(&[
            "reason",
            "--scene",
            s(&scene),
            "--prompt",
            "a man standing",
            "--model",
            s(&model),
            "--steps",
            "1",
            "--seed",
            &seed.to_string(),
            "-o",
            s(&layout),
            "--pose-out",
            s(&pose_out),
        ]));
        assert_eq!(
            *json,
            std::fs::read_to_string(&pose_out).unwrap(),
            "seed {seed}"
        );
        assert_ne!(*json, given, "seed {seed} rendered the given pose");
    }
    let manifest = std::fs::read_to_string(d.join("reasoned/manifest.jsonl")).unwrap();
    for (i, line) in manifest.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["pose"], format!("p000-s{i}.json"), "{line}");
        assert_eq!(v["seed"], i as u64, "{line}");
    }
}
