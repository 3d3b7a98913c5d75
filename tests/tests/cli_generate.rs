//! End-to-end `generate`, `reason` and `render` on a randomly initialised tiny model directory.

use skeleguide_engine::imageio::read_png_text;
use skeleguide_tests::{run, skeleguide_bin};
use std::path::Path;

/// `batch`'s arguments shared by these tests.
fn batch_args(
    scene: &Path,
    prompts: &Path,
    seeds: &str,
    model: &Path,
    steps: &str,
    out: &Path,
) -> Vec<String> {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    vec![
        "batch".into(),
        "--scene".into(),
        path(scene),
        "--prompts".into(),
        path(prompts),
        "--seeds".into(),
        seeds.into(),
        "--model".into(),
        path(model),
        "--steps".into(),
        steps.into(),
        "--out".into(),
        path(out),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

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

    // render on a small person, keeping the background exactly outside them
    let pose = d.join("pose.json");
    std::fs::write(&pose, r#"{"people":[{"pose_keypoints_2d":[50,50,1,50,60,1,44,60,1,42,72,1,41,82,1,56,60,1,58,72,1,59,82,1,46,82,1,46,96,1,46,110,1,54,82,1,54,96,1,54,110,1,48,48,1,52,48,1,46,49,1,54,49,1]}],"canvas_width":200,"canvas_height":150}"#).unwrap();
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
    assert_eq!(r.dimensions(), sc.dimensions());
    // The person region reaches past the joints by a stroke, the growth and the feather
    // (engine::composite: 1/32 + 1/32 of the longest side) and a pixel of scaling: a tenth of
    // the longest side around the joints' box holds it. Every pixel beyond is the scene's.
    let margin = 0.1 * 200.0;
    let (x0, x1, y0, y1) = (41.0 - margin, 59.0 + margin, 48.0 - margin, 110.0 + margin);
    let (mut outside, mut wrong, mut changed_inside) = (0usize, Vec::new(), 0usize);
    for (x, y, p) in r.enumerate_pixels() {
        let same = p == sc.get_pixel(x, y);
        let (fx, fy) = (x as f64, y as f64);
        if fx < x0 || fx > x1 || fy < y0 || fy > y1 {
            outside += 1;
            if !same {
                wrong.push((x, y));
            }
        } else {
            changed_inside += !same as usize;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} pixels outside the person are not the scene's, the first at {:?}",
        wrong.len(),
        wrong.first()
    );
    assert!(outside > 200 * 150 * 3 / 4, "{outside} pixels outside");
    assert!(changed_inside > 0, "no person was blended in");
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
    let mut args = batch_args(&scene, &prompts, "3..4", &model, "1", &out);
    args.extend(["--pose".to_string(), pose.to_str().unwrap().to_string()]);
    let r = run(&strs(&args));
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
    let r = run(&strs(&args));
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
        run(&strs(&batch_args(
            &scene, prompts, seeds, &model, steps, &out,
        )))
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

/// The files of a batch folder, by name, with their bytes.
fn folder_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// `(written, already there)` from a batch's last stderr line.
fn batch_counts(out: &std::process::Output) -> (usize, usize) {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("batch: "))
        .unwrap_or_else(|| panic!("no batch summary in {err}"));
    let n = |after: &str| -> usize {
        line.split(after)
            .next()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    (n(" written"), n(" already there"))
}

#[test]
fn an_interrupted_batch_resumes_to_the_same_files_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 4).unwrap();
    let scene = d.join("scene.png");
    image::RgbImage::from_fn(96, 64, |x, y| image::Rgb([x as u8, y as u8, 9]))
        .save(&scene)
        .unwrap();
    let prompts = d.join("prompts.txt");
    std::fs::write(&prompts, "a man in a red shirt standing\na woman sitting\n").unwrap();
    // every item reasons its own layout: nothing of one item may leak into the next
    let args = |out: &Path| batch_args(&scene, &prompts, "0..5", &model, "2", out);
    let (whole, resumed) = (d.join("whole"), d.join("resumed"));
    let r = run(&strs(&args(&whole)));
    ok(&r);
    assert_eq!(batch_counts(&r), (12, 0));
    // interrupted (Ctrl+C) once its first result is in the manifest
    let mut child = std::process::Command::new(skeleguide_bin())
        .args(args(&resumed))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let manifest = resumed.join("manifest.jsonl");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&manifest).is_ok_and(|m| !m.is_empty()) {
        assert!(start.elapsed().as_secs() < 120, "no result appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(
        !child.wait().unwrap().success(),
        "the batch ended before the interrupt"
    );
    let done_before = folder_files(&resumed)
        .keys()
        .filter(|n| n.ends_with(".png") && !n.ends_with("-layout.png"))
        .count();
    assert!(
        (1..12).contains(&done_before),
        "{done_before} results before resuming"
    );
    let r = run(&strs(&args(&resumed)));
    ok(&r);
    assert_eq!(batch_counts(&r), (12 - done_before, done_before));
    // the same files, byte for byte: images, sidecars and the manifest
    let (a, b) = (folder_files(&whole), folder_files(&resumed));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the resumed folder holds other files"
    );
    for (name, bytes) in &a {
        assert!(&b[name] == bytes, "{name} differs after resuming");
    }
}

#[test]
fn a_result_missing_from_the_manifest_is_read_back_from_its_png_never_relabelled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 4).unwrap();
    let scene = d.join("scene.png");
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 9]))
        .save(&scene)
        .unwrap();
    let prompts = d.join("prompts.txt");
    std::fs::write(&prompts, "a man standing\n").unwrap();
    let out = d.join("out");
    let batch = || {
        run(&strs(&batch_args(
            &scene, &prompts, "0..2", &model, "1", &out,
        )))
    };
    ok(&batch());
    let before = folder_files(&out);
    let manifest = out.join("manifest.jsonl");
    let full = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(full.lines().count(), 3);
    let without = |image: &str| -> String {
        full.lines()
            .filter(|l| !l.contains(&format!("\"image\":\"{image}\"")))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    // a PNG the manifest lost (a batch killed between the two writes): its settings are read
    // from its own text chunks, it is kept, not made again, and its record comes back as it was
    std::fs::write(&manifest, without("p000-s1.png")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap().lines().count(),
        2
    );
    let r = batch();
    ok(&r);
    assert_eq!(batch_counts(&r), (0, 3));
    assert!(folder_files(&out) == before, "the folder changed");
    // the whole manifest lost: rebuilt the same
    std::fs::remove_file(&manifest).unwrap();
    ok(&batch());
    assert!(folder_files(&out) == before, "the folder changed");
    // a PNG made with seed 0 under seed 1's name, not in the manifest: refused, not relabelled
    std::fs::copy(out.join("p000-s0.png"), out.join("p000-s1.png")).unwrap();
    std::fs::write(&manifest, without("p000-s1.png")).unwrap();
    let staged = folder_files(&out);
    let r = batch();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("p000-s1.png") && err.contains("other settings") && err.contains("seed 0"),
        "{err}"
    );
    assert!(
        folder_files(&out) == staged,
        "a refused batch changed the folder"
    );
    // a PNG without settings (saved again by another program): refused as well
    std::fs::write(out.join("p000-s1.png"), &before["p000-s1.png"]).unwrap();
    image::open(out.join("p000-s2.png"))
        .unwrap()
        .save(out.join("p000-s2.png"))
        .unwrap();
    std::fs::write(&manifest, without("p000-s2.png")).unwrap();
    let staged = folder_files(&out);
    let r = batch();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("p000-s2.png") && err.contains("not made by a SkeleGuide batch"),
        "{err}"
    );
    assert!(
        folder_files(&out) == staged,
        "a refused batch changed the folder"
    );
}
