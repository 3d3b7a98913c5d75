//! The tiny model shipped in `assets/models/tiny` is complete, small enough, and is what the CLI
//! uses without `--model`: `generate` gives an image of the scene's size with its metadata, and
//! by default it is the user's photo with a person added: the scene's own pixels outside the
//! person region, where `--no-keep-background` gives a re-encoded copy.

use skeleguide_engine::imageio::read_png_text;
use skeleguide_engine::metrics::image::psnr_masked;
use skeleguide_engine::modeldir::{self, ModelConfig};
use skeleguide_engine::pipeline::{default_device, Pipeline, RunOptions};
use skeleguide_tests::skeleguide_bin;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

const PROMPT: &str = "a man in a blue shirt sitting on the bench";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped() -> PathBuf {
    repo().join("assets/models/tiny")
}

#[test]
fn the_shipped_model_is_complete_and_small() {
    let dir = shipped();
    let cfg = modeldir::check(&dir).expect("assets/models/tiny is a complete model directory");
    assert_eq!(cfg.preset, "tiny");
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 60 * 1024 * 1024, "{total} bytes");
    let card = std::fs::read_to_string(dir.join(modeldir::CARD_FILE)).unwrap();
    assert!(
        card.contains("skeleguide-train train"),
        "the card says how to reproduce it"
    );
}

#[test]
fn a_broken_inverter_file_is_named_when_the_model_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(shipped()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != modeldir::INVERTER_FILE {
            std::os::unix::fs::symlink(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    modeldir::check(dir.path()).expect("complete without an inverter");
    std::fs::write(dir.path().join(modeldir::INVERTER_FILE), b"not safetensors").unwrap();
    let err = modeldir::check(dir.path()).unwrap_err().to_string();
    assert!(err.contains(modeldir::INVERTER_FILE), "{err}");
}

fn generate(scene: &Path, out: &Path, layout: &Path, keep: bool) {
    let mut cmd = Command::new(skeleguide_bin());
    cmd.env_remove("SKELEGUIDE_MODEL").args([
        "generate",
        "--scene",
        scene.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "--seed",
        "3",
        "--steps",
        "8",
        "-o",
        out.to_str().unwrap(),
        "--layout-out",
        layout.to_str().unwrap(),
    ]);
    if !keep {
        cmd.arg("--no-keep-background");
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn generate_without_model_uses_the_shipped_one_and_keeps_the_background() {
    let scene_path = repo().join("assets/scenes/park.png");
    let scene = image::open(&scene_path).unwrap().to_rgb8();
    let d = tempfile::tempdir().unwrap();
    let (plain, keep, layout_png) = (
        d.path().join("plain.png"),
        d.path().join("keep.png"),
        d.path().join("layout.png"),
    );
    generate(&scene_path, &plain, &layout_png, false);
    generate(&scene_path, &keep, &layout_png, true);
    let id = ModelConfig::load(&shipped()).unwrap().id();
    for p in [&plain, &keep] {
        let img = image::open(p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), scene.dimensions());
        let text = read_png_text(p).unwrap();
        let get = |k: &str| text.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("prompt").as_deref(), Some(PROMPT));
        assert_eq!(get("seed").as_deref(), Some("3"));
        assert_eq!(get("model"), Some(id.clone()));
    }
    let exact = |p: &Path| {
        let img = image::open(p).unwrap().to_rgb8();
        let same = img
            .pixels()
            .zip(scene.pixels())
            .filter(|(a, b)| a == b)
            .count();
        same as f64 / (scene.width() * scene.height()) as f64
    };
    let replaced = exact(&plain);
    assert!(
        replaced < 0.05,
        "--no-keep-background is the model's whole image: {replaced}"
    );
    // the person region of this run, as the pipeline finds it from the reasoned layout; the
    // library run must be the CLI's, or the region would belong to another layout
    let mut p = Pipeline::load(&shipped(), &default_device().unwrap()).unwrap();
    let opts = RunOptions {
        steps: 8,
        seed: 3,
        keep_background: true,
        guidance: None,
        candidates: None,
        contrast: None,
    };
    let (layout, generated) = p
        .generate(
            &scene,
            PROMPT,
            &opts,
            &mut |_, _, _| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    let kept = image::open(&keep).unwrap().to_rgb8();
    assert!(
        generated == kept && layout.image == image::open(&layout_png).unwrap().to_rgb8(),
        "the library's generate differs from the CLI's"
    );
    let alpha = p.person_alpha(&scene, &layout).unwrap();
    let (mut outside, mut changed_outside, mut changed_inside) = (0usize, Vec::new(), 0usize);
    for (x, y, a) in alpha.enumerate_pixels() {
        let same = kept.get_pixel(x, y) == scene.get_pixel(x, y);
        if a.0[0] == 0 {
            outside += 1;
            if !same {
                changed_outside.push((x, y));
            }
        } else {
            changed_inside += !same as usize;
        }
    }
    let share = outside as f64 / (scene.width() * scene.height()) as f64;
    eprintln!("outside the person region: {share:.3} of the image");
    assert!(
        changed_outside.is_empty(),
        "{} pixels outside the person region are not the scene's, the first at {:?}",
        changed_outside.len(),
        changed_outside.first()
    );
    assert!(
        share > 0.5,
        "the person region leaves only {share:.3} of the scene outside"
    );
    assert!(changed_inside > 0, "no person was blended in");
    let outside = image::GrayImage::from_pixel(scene.width(), scene.height(), image::Luma([0]));
    let p = psnr_masked(&image::open(&plain).unwrap().to_rgb8(), &scene, &outside).unwrap();
    eprintln!("PSNR of the re-encoded copy against the scene: {p:?} dB");
}
