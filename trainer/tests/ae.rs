//! Phase 0 (autoencoder): training on synthetic scenes improves held-out PSNR; bad data dirs
//! give clear errors.

use skeleguide_engine::model::max_abs_diff;
use skeleguide_trainer::ae;
use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
use skeleguide_trainer::data::synth::{write_dataset, Split, SynthOptions};

fn dataset(split: Split, count: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        count,
        seed: 5,
        split,
        size: 64,
        min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
        threads: 1,
    };
    write_dataset(d.path(), &opts, &|| {}).unwrap();
    d
}

/// The images of 12 training and 3 test records (layout, image and background of each).
fn train_and_test_images() -> (Vec<ae::AeImage>, Vec<ae::AeImage>) {
    let (train, test) = (dataset(Split::Train, 12), dataset(Split::Test, 3));
    (
        ae::load_images(train.path(), usize::MAX).unwrap(),
        ae::load_images(test.path(), 3).unwrap(),
    )
}

#[test]
fn training_on_synthetic_scenes_improves_held_out_psnr() {
    let (train_imgs, test_imgs) = train_and_test_images();
    assert_eq!(
        train_imgs.len(),
        36,
        "layout, image and background of each record"
    );
    let run = |steps| ae::AeRun {
        steps,
        seed: 1,
        ..Default::default()
    };
    let (untrained, _) = ae::train(&train_imgs, &run(0), |_, _, _| true).unwrap();
    let mut losses = Vec::new();
    let (trained, taken) = ae::train(&train_imgs, &run(30), |_, _, l| {
        losses.push(l);
        true
    })
    .unwrap();
    assert_eq!(taken, 30);
    assert_eq!(losses.len(), 30);
    let (before, after) = (
        ae::held_out_psnr(&untrained, &test_imgs).unwrap(),
        ae::held_out_psnr(&trained, &test_imgs).unwrap(),
    );
    assert!(
        after > before + 0.3,
        "held-out PSNR {before:.2} -> {after:.2} dB"
    );
    // The scenes-only mean is the mean over the images that are not layouts.
    let held = ae::held_out(&trained, &test_imgs).unwrap();
    let scenes: Vec<ae::AeImage> = test_imgs
        .iter()
        .filter(|a| a.drawn.is_none())
        .cloned()
        .collect();
    assert_eq!(
        scenes.len(),
        2 * test_imgs.len() / 3,
        "image and background of each record"
    );
    let only = ae::held_out(&trained, &scenes).unwrap();
    assert!((held.scene_psnr.unwrap() - only.psnr).abs() < 1e-9);
    assert_eq!(only.scene_psnr, Some(only.psnr));
    assert!(only.skeleton_psnr.is_none() && held.skeleton_psnr.is_some());
    let layouts: Vec<ae::AeImage> = test_imgs
        .iter()
        .filter(|a| a.drawn.is_some())
        .cloned()
        .collect();
    assert!(ae::held_out(&trained, &layouts)
        .unwrap()
        .scene_psnr
        .is_none());
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[25..].iter().sum::<f32>() / 5.0;
    assert!(last < first, "loss {first} -> {last}");
}

#[test]
fn layouts_carry_their_skeleton_pixels_and_weights_follow_them() {
    use skeleguide_engine::pose::person_mask;
    use skeleguide_trainer::data::manifest::Manifest;
    let d = dataset(Split::Train, 3);
    let imgs = ae::load_images(d.path(), usize::MAX).unwrap();
    let m = Manifest::open(d.path()).unwrap();
    for (k, r) in m.records.iter().enumerate() {
        let poses = r.load().unwrap().poses;
        let (layout, image, scene) = (&imgs[3 * k], &imgs[3 * k + 1], &imgs[3 * k + 2]);
        assert!(image.drawn.is_none() && scene.drawn.is_none());
        let drawn = layout
            .drawn
            .as_ref()
            .expect("a layout has its drawn pixels");
        // The drawn pixels are the rasteriser's skeleton (its person mask), up to pixels whose
        // palette colour happens to match the scene.
        let mask = person_mask(&poses, 0);
        let (mut inside, mut total) = (0usize, 0usize);
        for (a, b) in drawn.pixels().zip(mask.pixels()) {
            assert!(
                a.0[0] == 0 || b.0[0] > 0,
                "a drawn pixel outside the skeleton"
            );
            total += (b.0[0] > 0) as usize;
            inside += (a.0[0] > 0 && b.0[0] > 0) as usize;
        }
        assert!(
            total > 0 && inside as f64 >= 0.95 * total as f64,
            "{inside}/{total}"
        );
    }
    // Crops come with weights 1 + w on skeleton pixels and 1 elsewhere.
    let (x, w) = ae::crops(&imgs, 6, 32, 1, 8.0).next().unwrap().unwrap();
    let w = w.expect("weights");
    assert_eq!(x.dims(), &[6, 3, 32, 32]);
    assert_eq!(w.dims(), &[6, 1, 32, 32]);
    let v: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|&x| x == 1.0 || x == 9.0));
    let (_, none) = ae::crops(&imgs, 2, 32, 1, 0.0).next().unwrap().unwrap();
    assert!(none.is_none(), "weight 0 is the plain MSE");
}

#[test]
fn a_decoder_fine_tune_keeps_the_latents_and_sharpens_the_skeletons() {
    use skeleguide_engine::model::Autoencoder;
    let (train_imgs, test_imgs) = train_and_test_images();
    // A briefly trained base, with latent statistics that the fine-tune must keep.
    let (mut base, _) = ae::train(
        &train_imgs,
        &ae::AeRun {
            steps: 30,
            seed: 1,
            ..Default::default()
        },
        |_, _, _| true,
    )
    .unwrap();
    let mut cfg = base.config().clone();
    (cfg.shift_factor, cfg.scale_factor) = (0.25, 1.5);
    base = skeleguide_engine::model::TinyAe::from_tensors(
        base.parameters().clone(),
        &cfg,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let base = std::sync::Arc::new(base);
    let mut losses = Vec::new();
    let (tuned, taken) = ae::train(
        &train_imgs,
        &ae::AeRun {
            steps: 40,
            seed: 2,
            lr: 1e-3,
            decoder_of: Some(base.clone()),
            ..Default::default()
        },
        |_, _, l| {
            losses.push(l);
            true
        },
    )
    .unwrap();
    assert_eq!(taken, 40);
    assert_eq!(tuned.config(), base.config(), "shift and scale are kept");
    // The encoder is untouched: its weights and the latents are bit-identical.
    let decoder = skeleguide_engine::model::tiny_ae::DECODER_PREFIX;
    for (k, t) in base.parameters() {
        if !k.starts_with(decoder) {
            assert_eq!(max_abs_diff(t, &tuned.parameters()[k]), 0.0, "{k} changed");
        }
    }
    assert!(
        base.parameters()
            .iter()
            .any(|(k, t)| k.starts_with(decoder) && max_abs_diff(t, &tuned.parameters()[k]) > 0.0),
        "the decoder learned nothing"
    );
    let x = ae::to_tensor(&[&test_imgs[0].image]).unwrap();
    assert_eq!(
        max_abs_diff(&base.encode(&x).unwrap(), &tuned.encode(&x).unwrap()),
        0.0,
        "the latents moved"
    );
    // The decoder learned: the loss fell and the held-out skeletons are sharper.
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[35..].iter().sum::<f32>() / 5.0;
    assert!(last < first, "loss {first} -> {last}");
    let (before, after) = (
        ae::held_out(&base, &test_imgs).unwrap(),
        ae::held_out(&tuned, &test_imgs).unwrap(),
    );
    let (b, a) = (before.skeleton_psnr.unwrap(), after.skeleton_psnr.unwrap());
    assert!(a > b + 0.2, "skeleton PSNR {b:.2} -> {a:.2} dB");
}

#[test]
fn a_missing_manifest_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let e = ae::load_images(&d.path().join("nope"), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn the_ae_command_takes_an_architecture_and_a_time_budget() {
    let train = dataset(Split::Train, 3);
    let test = dataset(Split::Test, 1);
    let out = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_skeleguide-train");
    let cfg = out.path().join("arch.json");
    std::fs::write(&cfg, r#"{"latent_channels": 8, "widths": [16, 16, 32]}"#).unwrap();
    let weights = out.path().join("ae.safetensors");
    let ae = |extra: &[&str]| {
        std::process::Command::new(bin)
            .arg("ae")
            .arg("--train")
            .arg(train.path())
            .arg("--test")
            .arg(test.path())
            .args(extra)
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(&weights)
            .output()
            .unwrap()
    };
    let o = ae(&[
        "--steps",
        "1000000",
        "--minutes",
        "0.05",
        "--eval",
        "2",
        "--crop",
        "32",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("held-out PSNR"), "{err}");
    // The time budget stopped it long before a million steps.
    let taken: usize = err
        .split("trained ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!((1..1000).contains(&taken), "{taken} steps");
    // The architecture is written beside the weights, and they load with it.
    let arch: skeleguide_engine::model::TinyAeConfig =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("ae.json")).unwrap())
            .unwrap();
    assert_eq!(arch.latent_channels, 8);
    skeleguide_engine::model::TinyAe::load(&weights, &arch, &candle_core::Device::Cpu).unwrap();
    // --decoder-of: a model directory's autoencoder is fine-tuned, its latent statistics kept.
    let model = out.path().join("model");
    let mc = skeleguide_engine::modeldir::init_random(&model, "tiny", 3).unwrap();
    let o = std::process::Command::new(bin)
        .arg("ae")
        .arg("--train")
        .arg(train.path())
        .arg("--test")
        .arg(test.path())
        .args(["--steps", "3", "--eval", "2", "--crop", "32"])
        .arg("--decoder-of")
        .arg(&model)
        .arg("--out")
        .arg(&weights)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("before: held-out PSNR"), "{err}");
    let arch: skeleguide_engine::model::TinyAeConfig =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("ae.json")).unwrap())
            .unwrap();
    let skeleguide_engine::modeldir::AeSpec::Tiny { config } = mc.ae else {
        panic!("the tiny preset has a tiny autoencoder")
    };
    assert_eq!(arch, config);
    // A bad architecture file is named.
    std::fs::write(&cfg, r#"{"widths": []}"#).unwrap();
    let o = ae(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("arch.json") && err.contains("widths"), "{err}");
}
