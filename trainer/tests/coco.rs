//! `import-coco`: a manifest data set from COCO keypoint annotations plus supplied backgrounds.

use serde_json::json;
use skeleguide_engine::pose::skeleton::joint;
use skeleguide_engine::pose::{read_pose_file, ImportOptions, PoseFormat};
use skeleguide_trainer::data::coco::{count_prompt, import_coco, CocoImport};
use skeleguide_trainer::data::Manifest;
use std::path::Path;
use std::process::Command;

/// COCO-17 keypoints (x, y, v) of a standing person centred at `cx`.
fn person(cx: f64) -> Vec<f64> {
    let pts = [
        (0.0, 8.0),   // nose
        (-1.5, 7.0),  // left eye
        (1.5, 7.0),   // right eye
        (-3.0, 8.0),  // left ear
        (3.0, 8.0),   // right ear
        (-5.0, 14.0), // left shoulder
        (5.0, 14.0),  // right shoulder
        (-7.0, 22.0), // left elbow
        (7.0, 22.0),  // right elbow
        (-8.0, 29.0), // left wrist
        (8.0, 29.0),  // right wrist
        (-3.0, 28.0), // left hip
        (3.0, 28.0),  // right hip
        (-3.0, 36.0), // left knee
        (3.0, 36.0),  // right knee
        (-3.0, 44.0), // left ankle
        (3.0, 44.0),  // right ankle
    ];
    pts.iter().flat_map(|&(x, y)| [cx + x, y, 2.0]).collect()
}

/// A tiny COCO keypoint file over three 80x48 images: one person, two people, and one with an
/// unlabelled (all-zero) annotation that must be skipped.
fn write_fixture(d: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let images = d.join("images");
    let bgs = d.join("backgrounds");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&bgs).unwrap();
    let photo = |seed: u8| {
        image::RgbImage::from_fn(80, 48, |x, y| {
            image::Rgb([(x * 3) as u8 ^ seed, (y * 5) as u8, seed])
        })
    };
    for (i, name) in ["a.png", "b.png", "c.png"].iter().enumerate() {
        photo(i as u8 * 40).save(images.join(name)).unwrap();
    }
    // backgrounds: a.png by the same name, b as a JPEG with the same stem, c.png too
    photo(200).save(bgs.join("a.png")).unwrap();
    photo(210).save(bgs.join("b.jpg")).unwrap();
    photo(220).save(bgs.join("c.png")).unwrap();
    let img = |id: i64, name: &str| json!({"id": id, "file_name": name, "width": 80, "height": 48});
    let ann = |id: i64, image: i64, kp: Vec<f64>| {
        json!({"id": id, "image_id": image, "category_id": 1, "keypoints": kp,
               "num_keypoints": kp.iter().skip(2).step_by(3).filter(|v| **v > 0.0).count()})
    };
    let coco = json!({
        "images": [img(1, "a.png"), img(2, "b.png"), img(3, "c.png")],
        "annotations": [
            ann(10, 1, person(40.0)),
            ann(11, 2, person(20.0)),
            ann(12, 2, person(60.0)),
            ann(13, 3, vec![0.0; 51]),
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": []}],
    });
    let ann_path = d.join("person_keypoints.json");
    std::fs::write(&ann_path, coco.to_string()).unwrap();
    (ann_path, images, bgs)
}

fn opts(ann: &Path, images: &Path, bgs: Option<&Path>, out: &Path) -> CocoImport {
    CocoImport {
        annotations: ann.to_path_buf(),
        images: images.to_path_buf(),
        backgrounds: bgs.map(Path::to_path_buf),
        captions: None,
        out: out.to_path_buf(),
    }
}

#[test]
fn builds_a_manifest_from_a_coco_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ann, images, bgs) = write_fixture(d);
    let out = d.join("data");
    let s = import_coco(&opts(&ann, &images, Some(&bgs), &out), &|| {}).unwrap();
    assert_eq!((s.written, s.skipped_no_people, s.captioned), (2, 1, 0));
    let m = Manifest::open(&out).unwrap();
    assert_eq!(m.len(), 2);
    let a = m.records[0].load().unwrap();
    let b = m.records[1].load().unwrap();
    assert_eq!(a.prompt, "a person");
    assert_eq!(b.prompt, "two people");
    assert_eq!(a.poses.people.len(), 1);
    assert_eq!(b.poses.people.len(), 2);
    // the data set holds its own files: the background is b.jpg's bytes, inside `out`
    let bg = &m.records[1].background;
    assert!(bg.starts_with(&out), "{}", bg.display());
    assert_eq!(bg.extension().unwrap(), "jpg");
    assert_eq!(
        std::fs::read(bg).unwrap(),
        std::fs::read(bgs.join("b.jpg")).unwrap()
    );
    // COCO-17 -> OpenPose-18: the neck is the mean of the shoulders
    let p = &a.poses.people[0];
    let neck = p.joints[joint::NECK].unwrap();
    assert_eq!((neck.x, neck.y), (40.0, 14.0));
    let nose = p.joints[joint::NOSE].unwrap();
    assert_eq!((nose.x, nose.y), (40.0, 8.0));
    // the mask covers the skeleton and leaves the far corner free
    let mask = a.mask.unwrap();
    assert_eq!(mask.get_pixel(40, 20).0[0], 255);
    assert_eq!(mask.get_pixel(0, 0).0[0], 0);
    assert_eq!(a.background.dimensions(), (80, 48));
    // the written poses are ControlNet JSON at the image's size
    let doc = read_pose_file(&m.records[1].poses, &ImportOptions::default()).unwrap();
    assert_eq!(doc.format, PoseFormat::ControlNet);
    assert_eq!((doc.frames[0].width, doc.frames[0].height), (80, 48));
}

#[test]
fn captions_become_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ann, images, bgs) = write_fixture(d);
    let caps = d.join("captions.json");
    let c = json!({
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [
            {"id": 1, "image_id": 1, "caption": "A man standing in a field."},
            {"id": 2, "image_id": 1, "caption": "second caption"},
        ],
    });
    std::fs::write(&caps, c.to_string()).unwrap();
    let mut o = opts(&ann, &images, Some(&bgs), &d.join("data"));
    o.captions = Some(caps.clone());
    let s = import_coco(&o, &|| {}).unwrap();
    assert_eq!(s.captioned, 1);
    let m = Manifest::open(&d.join("data")).unwrap();
    assert_eq!(m.records[0].prompt, "A man standing in a field.");
    assert_eq!(m.records[1].prompt, "two people");
    // a broken captions file names the file and the field
    std::fs::write(&caps, r#"{"images": [], "annotations": [{"image_id": 5}]}"#).unwrap();
    let e = import_coco(&o, &|| {}).unwrap_err().to_string();
    assert!(
        e.contains("captions.json") && e.contains("annotations[0].caption"),
        "{e}"
    );
}

#[test]
fn refuses_without_backgrounds_or_with_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ann, images, bgs) = write_fixture(d);
    let out = d.join("data");
    let e = import_coco(&opts(&ann, &images, None, &out), &|| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("--backgrounds is required"), "{e}");
    assert!(!out.exists(), "nothing may be written on refusal");

    // a missing background is named
    std::fs::remove_file(bgs.join("b.jpg")).unwrap();
    let e = import_coco(&opts(&ann, &images, Some(&bgs), &out), &|| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing background") && e.contains("b.png"),
        "{e}"
    );
    assert!(!out.exists());

    // a background of another size is named with both sizes
    image::RgbImage::new(64, 48)
        .save(bgs.join("b.png"))
        .unwrap();
    let e = import_coco(&opts(&ann, &images, Some(&bgs), &out), &|| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&bgs.join("b.png").display().to_string())
            && e.contains("64x48")
            && e.contains("80x48"),
        "{e}"
    );

    // the CLI says it in one line, exit code 2
    let o = Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["import-coco", "--annotations"])
        .arg(&ann)
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--backgrounds is required"), "{err}");

    // not a COCO file
    let cn = d.join("controlnet.json");
    std::fs::write(
        &cn,
        r#"{"canvas_width": 80, "canvas_height": 48, "people": []}"#,
    )
    .unwrap();
    image::RgbImage::new(80, 48)
        .save(bgs.join("b.png"))
        .unwrap();
    let e = import_coco(&opts(&cn, &images, Some(&bgs), &out), &|| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("controlnet.json") && e.contains("not a COCO keypoint"),
        "{e}"
    );
}

#[test]
fn count_prompts() {
    assert_eq!(count_prompt(1), "a person");
    assert_eq!(count_prompt(3), "three people");
    assert_eq!(count_prompt(12), "12 people");
}

/// The shared real-world pose fixtures (`../shared/fixtures/poses`, or under
/// `$SKELEGUIDE_SHARED`), or `None` after one `SKIPPED: ` line where they are absent, as in a
/// user's clone. Where `SKELEGUIDE_REQUIRE_TEST_DEPS` is set (`.ci/run` sets it), their absence
/// fails instead, like the end-to-end tests' `skeleguide_tests::shared_poses`.
fn shared_poses() -> Option<std::path::PathBuf> {
    let root = match std::env::var_os("SKELEGUIDE_SHARED") {
        Some(p) => std::path::PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = root.join("fixtures/poses");
    if dir.is_dir() {
        return Some(dir);
    }
    let reason = format!(
        "{} is absent (a user's clone has no ../shared); set SKELEGUIDE_SHARED to run this test",
        dir.display()
    );
    let required =
        std::env::var_os("SKELEGUIDE_REQUIRE_TEST_DEPS").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{reason}; SKELEGUIDE_REQUIRE_TEST_DEPS is set, so this fails instead of skipping"
    );
    eprintln!("SKIPPED: {reason}");
    None
}

/// COCO keypoint files among the shared real-world fixtures, if any.
#[test]
fn imports_shared_coco_fixtures() {
    let Some(dir) = shared_poses() else {
        return;
    };
    let mut found = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let Ok(doc) = read_pose_file(&p, &ImportOptions::default()) else {
            continue;
        };
        if doc.format != PoseFormat::CocoKeypoints {
            continue;
        }
        found += 1;
        // flat images and backgrounds of the annotated sizes
        let t = tempfile::tempdir().unwrap();
        let (images, bgs) = (t.path().join("i"), t.path().join("b"));
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&bgs).unwrap();
        let mut with_people = 0;
        for (f, name) in doc.frames.iter().zip(&doc.frame_names) {
            let name = name.as_deref().unwrap();
            let img = image::RgbImage::new(f.width, f.height);
            img.save(images.join(name)).unwrap();
            img.save(bgs.join(name)).unwrap();
            with_people += f.people.iter().any(|p| p.present_count() > 0) as usize;
        }
        let s = import_coco(&opts(&p, &images, Some(&bgs), &t.path().join("d")), &|| {}).unwrap();
        assert_eq!(s.written, with_people, "{}", p.display());
        Manifest::open(&t.path().join("d")).unwrap();
    }
    if found == 0 {
        eprintln!("SKIPPED: no COCO keypoint file in {}", dir.display());
    }
}

/// Imported real data (no synthetic facts, any image size) goes through eval.
#[test]
fn eval_runs_on_imported_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ann, images, bgs) = write_fixture(d);
    let data = d.join("data");
    import_coco(&opts(&ann, &images, Some(&bgs), &data), &|| {}).unwrap();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 0).unwrap();
    let o = skeleguide_trainer::eval::EvalOptions {
        steps: Some(1),
        keep_images: 1,
        ..Default::default()
    };
    let (r, imgs) = skeleguide_trainer::eval::evaluate(&model, &data, &o, &mut |_, _| {}).unwrap();
    assert_eq!(r.examples, 2);
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].output.dimensions(), (80, 48));
    assert!(r.bg_psnr_plain.is_some());
    // real data has no colour facts: null with a reason (the inverter's, or the facts')
    assert!(r.color_acc.is_none());
    assert!(!r.null_reasons["color_acc"].is_empty());
}

#[test]
fn a_file_name_outside_the_images_folder_is_refused_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ann, images, bgs) = write_fixture(d);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ann).unwrap()).unwrap();
    v["images"][0]["file_name"] = "../../../../etc/passwd".into();
    std::fs::write(&ann, v.to_string()).unwrap();
    let err = import_coco(&opts(&ann, &images, Some(&bgs), &d.join("data")), &|| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("images[0].file_name") && err.contains("leaves"),
        "{err}"
    );
    assert!(!d.join("data").exists(), "nothing written");
}

#[test]
fn the_import_coco_command_writes_a_data_set_the_trainer_trains_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ann, images, bgs) = write_fixture(d);
    let bin = env!("CARGO_BIN_EXE_skeleguide-train");
    let data = d.join("data");
    let o = Command::new(bin)
        .arg("import-coco")
        .arg("--annotations")
        .arg(&ann)
        .arg("--images")
        .arg(&images)
        .arg("--backgrounds")
        .arg(&bgs)
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("wrote 2 records (0 with COCO captions)")
            && err.contains("skipped 1 images without a labelled person"),
        "{err}"
    );
    let m = Manifest::open(&data).unwrap();
    let prompts: Vec<String> = m.records.iter().map(|r| r.load().unwrap().prompt).collect();
    assert_eq!(prompts, ["a person", "two people"]);
    // the trainer reads it: two phase-1 steps on a random base
    let base = d.join("base");
    skeleguide_engine::modeldir::init_random(&base, "tiny", 2).unwrap();
    let config = d.join("train.toml");
    std::fs::write(
        &config,
        format!(
            "preset = \"tiny\"\nbase_model = {:?}\nseed = 1\nbatch = 2\ncheckpoint_every = 10\n\
             [optim]\nlr = 1e-3\ngrad_clip = 1.0\nprompt_dropout = 0.0\ncond_dropout = 0.0\nlambda_reason = 0.5\nlambda_render = 1.0\n\
             [data]\n[lora]\nrank = 4\nalpha = 4.0\n[phase1]\nsteps = 2\n[phase2]\nsteps = 1\n[phase3]\nsteps = 1\n",
            base.display().to_string()
        ),
    )
    .unwrap();
    let run = d.join("run");
    let o = Command::new(bin)
        .args(["train", "--phase", "1", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("phase     1: 2 steps (2 run now)"), "{err}");
    let log = std::fs::read_to_string(run.join("train.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["phase"], "1", "{l}");
            v["loss"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 2);
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    assert!(run
        .join("model")
        .join(skeleguide_engine::modeldir::lora_file(
            skeleguide_engine::modeldir::SKELETAL
        ))
        .is_file());
}
