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
    assert_eq!(train_imgs.len(), 24, "image and background of each record");
    let untrained = ae::train(&train_imgs, 0, 3e-3, 1, |_, _, _| true).unwrap();
    let mut losses = Vec::new();
    let trained = ae::train(&train_imgs, 30, 3e-3, 1, |_, _, l| {
        losses.push(l);
        true
    })
    .unwrap();
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
