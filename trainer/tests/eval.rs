//! `skeleguide-train eval` on a random-init tiny model, and the eval measurements on ground truth.

use skeleguide_engine::metrics::pose::pckh;
use skeleguide_trainer::data::body::LIMB_RATIOS;
use skeleguide_trainer::data::synth::{
    example_seed, generate_example, write_dataset, Split, SynthOptions,
};
use skeleguide_trainer::eval::appearance::{limb_ratio_error, read_clothes};
use std::process::Command;

const KEYS: [&str; 15] = [
    "layout_pckh",
    "pose_pckh",
    "count_acc",
    "layout_pckh_redrawn",
    "pose_pckh_redrawn",
    "bg_psnr",
    "bg_ssim",
    "bg_psnr_plain",
    "bg_ssim_plain",
    "bg_psnr_keep_background",
    "bg_ssim_keep_background",
    "color_acc",
    "limb_ratio_err",
    "limb_ratio_err_gt",
    "ms_per_image",
];

#[test]
fn eval_runs_on_a_random_init_model_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("test");
    let opts = SynthOptions {
        count: 6,
        seed: 3,
        split: Split::Test,
        size: 128,
        threads: 1,
    };
    write_dataset(&data, &opts, &|| {}).unwrap();
    let model = d.join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 1).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .args(["--count", "5", "--steps", "2", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in KEYS {
        assert!(v.get(k).is_some(), "missing key {k}: {v}");
    }
    assert_eq!(v["examples"], 5);
    assert_eq!(v["steps"], 2);
    assert_eq!(v["method"], "skeleguide");
    // no PoseInverter in a fresh directory: the layout metrics are null, with the reason
    let reasons = &v["null_reasons"];
    for k in ["layout_pckh", "count_acc", "color_acc", "limb_ratio_err"] {
        if v[k].is_null() {
            let r = reasons[k].as_str().unwrap_or_default();
            assert!(!r.is_empty(), "{k} is null without a reason: {v}");
        }
    }
    if v["layout_pckh"].is_null() {
        assert!(reasons["layout_pckh"]
            .as_str()
            .unwrap()
            .contains("PoseInverter"));
    }
    // background metrics of a random model: finite, in range, far from a copy of the scene
    let psnr = v["bg_psnr_plain"].as_f64().unwrap();
    let ssim = v["bg_ssim_plain"].as_f64().unwrap();
    assert!(psnr > 0.0 && psnr < 30.0, "{psnr}");
    assert!(ssim > -1.0 && ssim < 0.9, "{ssim}");
    assert_eq!(v["bg_psnr"], v["bg_psnr_plain"]);
    // keep-background can only bring the background closer to the scene
    let keep = v["bg_psnr_keep_background"].as_f64().unwrap();
    assert!(keep >= psnr - 1e-9, "{keep} < {psnr}");
    // the ground truth's limb ratios are close to the body model (projection only)
    let gt = v["limb_ratio_err_gt"].as_f64().unwrap();
    assert!(gt > 0.0 && gt < 0.35, "{gt}");
    assert!(v["ms_per_image"].as_f64().unwrap() > 0.0);
    // the data's own second draw is scored on synthetic data, whatever the model
    let redrawn = v["redrawn_examples"].as_u64().unwrap();
    assert!((1..=5).contains(&redrawn), "{v}");
    for k in ["layout_pckh_redrawn", "pose_pckh_redrawn"] {
        let x = v[k].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&x), "{k}: {v}");
    }
    if v["layout_pckh"].is_null() {
        assert_eq!(reasons["pose_pckh"], reasons["layout_pckh"]);
    }

    // a bad data directory is one clear line
    let out = Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(d.join("nowhere"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

/// The colour reader and the scorers on ground truth: with the true poses on the true images,
/// eval's measurements must be (nearly) perfect, or the metrics would mislead.
#[test]
fn measurements_are_right_on_ground_truth() {
    let (mut right, mut total) = (0, 0);
    let mut limb = Vec::new();
    for i in 0..40 {
        let ex = generate_example(128, example_seed(9, Split::Test, i)).unwrap();
        let k = pckh(&ex.poses, &ex.poses, 0.5);
        let (c, t) = (k.correct, k.total);
        assert_eq!(c, t);
        for (p, f) in ex.poses.people.iter().zip(&ex.facts.people) {
            let (s, t) = read_clothes(&ex.image, p);
            right += (s == Some(f.shirt.as_str())) as usize;
            right += (t == Some(f.trousers.as_str())) as usize;
            total += 2;
            limb.extend(limb_ratio_error(p, &LIMB_RATIOS));
        }
    }
    let acc = right as f64 / total as f64;
    eprintln!("colour reader on ground truth: {acc:.3} of {total} garments");
    assert!(acc >= 0.93, "colour accuracy on ground truth {acc}");
    let mean = limb.iter().sum::<f64>() / limb.len() as f64;
    eprintln!(
        "limb ratio error of ground-truth poses: {mean:.3} over {} people",
        limb.len()
    );
    assert!(mean < 0.35, "{mean}");
}

#[test]
fn base_only_eval_reads_the_base_drawing_layouts_from_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("test");
    let opts = SynthOptions {
        count: 3,
        seed: 5,
        split: Split::Test,
        size: 128,
        threads: 1,
    };
    write_dataset(&data, &opts, &|| {}).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny");
    let run = |guidance: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
            .args(["eval", "--base-only", "--model"])
            .arg(&shipped)
            .arg("--data")
            .arg(&data)
            .args([
                "--count",
                "3",
                "--steps",
                "3",
                "--guidance-reason",
                guidance,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run("1");
    assert_eq!(v["examples"], 3);
    assert_eq!(v["steps"], 3);
    assert_eq!(v["guidance"]["reason"], 1.0);
    let count = v["count_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&count), "{v}");
    for k in ["pose_pckh", "limb_ratio_err"] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert!(v["ms_per_image"].as_f64().unwrap() > 0.0);
    // the same seeds give the same figures; guidance is a real input
    assert_eq!(run("1")["count_acc"], v["count_acc"]);
    assert_eq!(run("4")["guidance"]["reason"], 4.0);
}
