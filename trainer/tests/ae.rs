//! Phase 0 (autoencoder): training on synthetic scenes improves held-out PSNR; bad data dirs
//! give clear errors.

use skeleguide_trainer::ae;
use skeleguide_trainer::data::synth::{write_dataset, Split, SynthOptions};

fn dataset(split: Split, count: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        count,
        seed: 5,
        split,
        size: 64,
        threads: 1,
    };
    write_dataset(d.path(), &opts, &|| {}).unwrap();
    d
}

#[test]
fn training_on_synthetic_scenes_improves_held_out_psnr() {
    let train = dataset(Split::Train, 12);
    let test = dataset(Split::Test, 3);
    let train_imgs = ae::load_images(train.path(), usize::MAX).unwrap();
    let test_imgs = ae::load_images(test.path(), 3).unwrap();
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
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[25..].iter().sum::<f32>() / 5.0;
    assert!(last < first, "loss {first} -> {last}");
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
    // A bad architecture file is named.
    std::fs::write(&cfg, r#"{"widths": []}"#).unwrap();
    let o = ae(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("arch.json") && err.contains("widths"), "{err}");
}
