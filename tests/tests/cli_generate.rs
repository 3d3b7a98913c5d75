//! End-to-end `generate`, `reason` and `render` on a randomly initialised tiny model directory.

use skeleguide_engine::imageio::read_png_text;
use skeleguide_tests::{run, skeleguide_bin};
use std::path::Path;

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generate_reason_render_on_a_random_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 3).unwrap();
    let scene = d.join("scene.png");
    image::RgbImage::from_fn(200, 150, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 60])
    })
    .save(&scene)
    .unwrap();
    let (s, m) = (scene.to_str().unwrap(), model.to_str().unwrap());
    let out = d.join("out.png");
    let layout = d.join("layout.png");
    let prompt = "a woman in a green shirt sitting on the bench ☕";
    ok(&run(&[
        "generate",
        "--scene",
        s,
        "--prompt",
        prompt,
        "--model",
        m,
        "--steps",
        "2",
        "--seed",
        "5",
        "-o",
        out.to_str().unwrap(),
        "--layout-out",
        layout.to_str().unwrap(),
    ]));
    let img = image::open(&out).unwrap().into_rgb8();
    assert_eq!(img.dimensions(), (200, 150));
    assert_eq!(
        image::open(&layout).unwrap().into_rgb8().dimensions(),
        (200, 150)
    );
    let text = read_png_text(&out).unwrap();
    let get = |k: &str| {
        text.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("prompt").as_deref(), Some(prompt));
    assert_eq!(get("seed").as_deref(), Some("5"));
    assert_eq!(get("steps").as_deref(), Some("2"));
    assert!(get("model").unwrap().starts_with("tiny-"));

    // same seed, same bytes; another seed, another image
    let again = d.join("again.png");
    ok(&run(&[
        "generate",
        "--scene",
        s,
        "--prompt",
        prompt,
        "--model",
        m,
        "--steps",
        "2",
        "--seed",
        "5",
        "-o",
        again.to_str().unwrap(),
    ]));
    assert_eq!(image::open(&again).unwrap().into_rgb8(), img);
    let other = d.join("other.png");
    ok(&run(&[
        "generate",
        "--scene",
        s,
        "--prompt",
        prompt,
        "--model",
        m,
        "--steps",
        "2",
        "--seed",
        "6",
        "-o",
        other.to_str().unwrap(),
    ]));
    assert_ne!(image::open(&other).unwrap().into_rgb8(), img);

    // render on a pose, keeping the background exactly outside the person
    let pose = d.join("pose.json");
    std::fs::write(&pose, r#"{"people":[{"pose_keypoints_2d":[100,30,1,100,50,1,85,50,1,80,75,1,78,95,1,115,50,1,120,75,1,122,95,1,92,95,1,92,120,1,92,145,1,108,95,1,108,120,1,108,145,1,96,27,1,104,27,1,92,29,1,108,29,1]}],"canvas_width":200,"canvas_height":150}"#).unwrap();
    let rendered = d.join("rendered.png");
    ok(&run(&[
        "render",
        "--scene",
        s,
        "--pose",
        pose.to_str().unwrap(),
        "--prompt",
        "a man",
        "--model",
        m,
        "--steps",
        "2",
        "--keep-background",
        "-o",
        rendered.to_str().unwrap(),
    ]));
    let r = image::open(&rendered).unwrap().into_rgb8();
    let sc = image::open(&scene).unwrap().into_rgb8();
    assert_eq!(r.get_pixel(2, 2), sc.get_pixel(2, 2));
    assert_eq!(r.get_pixel(197, 147), sc.get_pixel(197, 147));
    let text = read_png_text(&rendered).unwrap();
    assert!(text
        .iter()
        .any(|(k, v)| k == "pose" && v.contains("pose_keypoints_2d")));

    // reason alone
    let l2 = d.join("l2.png");
    ok(&run(&[
        "reason",
        "--scene",
        s,
        "--prompt",
        prompt,
        "--model",
        m,
        "--steps",
        "1",
        "-o",
        l2.to_str().unwrap(),
    ]));
    assert_eq!(
        image::open(&l2).unwrap().into_rgb8().dimensions(),
        (200, 150)
    );
}

#[test]
fn model_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scene = d.join("scene.png");
    image::RgbImage::new(64, 64).save(&scene).unwrap();
    let out = d.join("o.png");
    let args = |m: Option<&str>| {
        let mut v = vec![
            "generate",
            "--scene",
            scene.to_str().unwrap(),
            "--prompt",
            "a man",
            "-o",
            out.to_str().unwrap(),
        ];
        if let Some(m) = m {
            v.extend(["--model", m]);
        }
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // without --model the default comes from SKELEGUIDE_MODEL (else the shipped model): a
    // missing default directory is named in the error
    let gone = d.join("no-such-model");
    let r = std::process::Command::new(skeleguide_bin())
        .args(args(None))
        .env("SKELEGUIDE_MODEL", &gone)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("no-such-model"), "{err}");
    let missing = d.join("nope");
    let r = run(&args(Some(missing.to_str().unwrap()))
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(r.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // a model with a base checkpoint of the wrong shape names the tensor
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 1).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    cfg["dit"]["hidden_size"] = serde_json::json!(128);
    cfg["dit"]["axes_dim"] = serde_json::json!([4, 14, 14]);
    std::fs::write(model.join("config.json"), cfg.to_string()).unwrap();
    let r = run(&args(Some(model.to_str().unwrap()))
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("base.safetensors") && err.contains("expected shape"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn batch_writes_everything_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 4).unwrap();
    let scene = d.join("scene.png");
    image::RgbImage::from_fn(96, 64, |x, y| image::Rgb([x as u8, y as u8, 9]))
        .save(&scene)
        .unwrap();
    let prompts = d.join("prompts.txt");
    std::fs::write(
        &prompts,
        "# variants\na man in a red shirt standing\n\na woman sitting on the bench\n",
    )
    .unwrap();
    let pose = d.join("pose.json");
    std::fs::write(&pose, r#"{"people":[{"pose_keypoints_2d":[48,10,1,48,20,1,40,20,1,38,30,1,37,40,1,56,20,1,58,30,1,59,40,1,44,40,1,44,50,1,44,60,1,52,40,1,52,50,1,52,60,1,46,9,1,50,9,1,44,10,1,52,10,1]}],"canvas_width":96,"canvas_height":64}"#).unwrap();
    let out = d.join("out");
    let args = [
        "batch",
        "--scene",
        scene.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--seeds",
        "3..4",
        "--pose",
        pose.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let r = run(&args);
    ok(&r);
    assert!(String::from_utf8_lossy(&r.stderr).contains("4 written, 0 already there"));
    for stem in ["p000-s3", "p000-s4", "p001-s3", "p001-s4"] {
        assert!(
            out.join(format!("{stem}.png")).is_file() && out.join(format!("{stem}.json")).is_file(),
            "{stem}"
        );
    }
    let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 4);
    let first: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    assert_eq!(first["prompt"], "a man in a red shirt standing");
    assert_eq!(first["seed"], 3);
    // a killed batch resumes: only the missing item is made again
    std::fs::remove_file(out.join("p001-s3.png")).unwrap();
    let r = run(&args);
    ok(&r);
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("1 written, 3 already there"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn batches_into_one_folder_keep_every_png_in_the_manifest_and_never_relabel() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 4).unwrap();
    let scene = d.join("scene.png");
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 9]))
        .save(&scene)
        .unwrap();
    let (first, second) = (d.join("first.txt"), d.join("second.txt"));
    std::fs::write(&first, "a man standing\n").unwrap();
    std::fs::write(&second, "a woman waving\n").unwrap();
    let out = d.join("out");
    let batch = |prompts: &Path, seeds: &str, steps: &str| {
        run(&[
            "batch",
            "--scene",
            scene.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--seeds",
            seeds,
            "--model",
            model.to_str().unwrap(),
            "--steps",
            steps,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    ok(&batch(&first, "0..1", "1"));
    ok(&batch(&first, "2..3", "1"));
    let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    let seeds: Vec<u64> = manifest
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seed"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seeds,
        [0, 1, 2, 3],
        "both batches' PNGs are in the manifest"
    );
    // other settings for existing names: refused, the PNG and its record untouched
    let before = std::fs::read(out.join("p000-s1.png")).unwrap();
    let r = batch(&second, "1", "2");
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("p000-s1.png") && err.contains("other settings") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("p000-s1.png")).unwrap(), before);
    let again = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    assert_eq!(again, manifest);
    // the same settings again: all already there
    let r = batch(&first, "0..3", "1");
    ok(&r);
    assert!(String::from_utf8_lossy(&r.stderr).contains("0 written, 4 already there"));
}
