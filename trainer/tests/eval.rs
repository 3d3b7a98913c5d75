//! `skeleguide-train eval` on a random-init tiny model, and the eval measurements on ground truth.

use skeleguide_engine::metrics::pose::{pckh, PckCount};
use skeleguide_engine::pose::skeleton::joint::*;
use skeleguide_engine::pose::{Keypoint, Pose, PoseSet, NUM_JOINTS};
use skeleguide_trainer::data::body::LIMB_RATIOS;
use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
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
        min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
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

fn person(joints: &[(usize, f64, f64)]) -> Pose {
    let mut p = Pose::from_joints([None; NUM_JOINTS]);
    for &(j, x, y) in joints {
        p.joints[j] = Some(Keypoint::new(x, y));
    }
    p
}

/// PCKh counted by hand: people given in another order, an extra predicted person, a joint
/// exactly at the threshold, a missing prediction, a ground-truth joint off the canvas and a
/// person without a head size.
#[test]
fn pckh_matches_hand_counted_cases() {
    let mut gt = PoseSet::new(100, 100);
    // head size 2 x nose-neck = 20: within 10 px at PCKh@0.5
    gt.people.push(person(&[
        (NOSE, 20.0, 20.0),
        (NECK, 20.0, 30.0),
        (R_HIP, 20.0, 60.0),
        (L_HIP, 30.0, 60.0),
        (R_ANKLE, 20.0, 120.0), // off the canvas: not evaluated
    ]));
    // no nose: head size ear-ear = 8, within 4 px
    gt.people.push(person(&[
        (R_EAR, 70.0, 10.0),
        (L_EAR, 78.0, 10.0),
        (NECK, 74.0, 20.0),
        (R_HIP, 72.0, 50.0),
    ]));
    // no head at all: skipped
    gt.people
        .push(person(&[(R_HIP, 50.0, 90.0), (L_HIP, 55.0, 90.0)]));
    let mut pred = PoseSet::new(100, 100);
    pred.people.push(person(&[
        (R_EAR, 70.0, 13.0), // 3 px: right
        (L_EAR, 78.0, 15.0), // 5 px: wrong
        (NECK, 74.0, 20.0),  // right; the hip is not predicted: wrong
    ]));
    pred.people.push(person(&[
        (NOSE, 20.0, 29.0),    // 9 px: right
        (NECK, 20.0, 30.0),    // right
        (R_HIP, 20.0, 71.0),   // 11 px: wrong
        (L_HIP, 36.0, 68.0),   // exactly 10 px: right
        (R_ANKLE, 20.0, 20.0), // its ground truth is off the canvas
    ]));
    pred.people
        .push(person(&[(R_HIP, 90.0, 90.0), (L_HIP, 95.0, 90.0)]));
    let at = |f| pckh(&pred, &gt, f);
    let want = PckCount {
        correct: 5,
        total: 8,
        skipped_people: 1,
    };
    assert_eq!(at(0.5), want);
    assert_eq!(at(0.5).value(), 0.625);
    // twice the threshold: the 11 px hip and the 5 px ear become right
    assert_eq!(at(1.0).correct, 7);
    // the perfect prediction, the empty one
    assert_eq!(pckh(&gt, &gt, 0.5).correct, 8);
    assert_eq!(pckh(&PoseSet::new(100, 100), &gt, 0.5).correct, 0);
}

/// Head size as the metric's definition states it (docs/ablation.md, engine::metrics::pose):
/// 2 x nose-neck, else ear-ear, else 2.5 x eye-eye.
fn head_size_by_definition(p: &Pose) -> Option<f64> {
    let d = |a: usize, b: usize| {
        let (u, v) = (p.joints[a]?, p.joints[b]?);
        Some((u.x - v.x).hypot(u.y - v.y))
    };
    d(NOSE, NECK)
        .map(|x| 2.0 * x)
        .or_else(|| d(R_EAR, L_EAR))
        .or_else(|| d(R_EYE, L_EYE).map(|x| 2.5 * x))
        .filter(|&s| s > 0.0)
}

/// The synthetic test set's own poses, every joint moved by a known multiple of its PCKh@0.5
/// threshold (even joints 0.45, odd joints 1.4, in varied directions): the score is the share
/// of even joints among the evaluated ones, counted without the metric.
#[test]
fn pckh_of_perturbed_ground_truth_is_the_share_moved_within_the_threshold() {
    let (mut want, mut got) = (PckCount::default(), PckCount::default());
    for i in 0..40 {
        let gt = generate_example(
            128,
            DEFAULT_MIN_PERSON_HEIGHT,
            example_seed(9, Split::Test, i),
        )
        .unwrap()
        .poses;
        let mut pred = gt.clone();
        let mut expected = PckCount::default();
        for (p, g) in pred.people.iter_mut().zip(&gt.people) {
            let Some(thr) = head_size_by_definition(g).map(|h| 0.5 * h) else {
                expected.skipped_people += 1;
                continue;
            };
            for (j, k) in p.joints.iter_mut().enumerate() {
                let Some(k) = k else { continue };
                let inside =
                    k.x >= 0.0 && k.y >= 0.0 && k.x < gt.width as f64 && k.y < gt.height as f64;
                let right = j % 2 == 0;
                expected.total += inside as usize;
                expected.correct += (inside && right) as usize;
                let r = thr * if right { 0.45 } else { 1.4 };
                let angle = j as f64 * 0.9;
                k.x += r * angle.cos();
                k.y += r * angle.sin();
            }
        }
        let k = pckh(&pred, &gt, 0.5);
        assert_eq!(k, expected, "example {i}");
        want.add(expected);
        got.add(k);
    }
    assert!(want.total > 200, "{want:?}");
    assert!((0.4..0.7).contains(&got.value()), "{got:?}");
}

/// The colour reader and the scorers on ground truth: with the true poses on the true images,
/// eval's measurements must be (nearly) perfect, or the metrics would mislead.
#[test]
fn measurements_are_right_on_ground_truth() {
    let (mut right, mut total) = (0, 0);
    let mut limb = Vec::new();
    for i in 0..40 {
        let ex = generate_example(
            128,
            DEFAULT_MIN_PERSON_HEIGHT,
            example_seed(9, Split::Test, i),
        )
        .unwrap();
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
        min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
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
    // the asked-against-drawn table holds every example, its diagonal the count accuracy
    let (mut total, mut right) = (0, 0);
    for (asked, drawn) in v["count_confusion"].as_object().expect("count_confusion") {
        for (d, n) in drawn.as_object().unwrap() {
            let n = n.as_u64().unwrap();
            total += n;
            if d == asked {
                right += n;
            }
        }
    }
    assert_eq!(total, 3, "{v}");
    assert_eq!(right as f64 / 3.0, count, "{v}");
    // the same seeds give the same figures; guidance is a real input
    assert_eq!(run("1")["count_acc"], v["count_acc"]);
    assert_eq!(run("4")["guidance"]["reason"], 4.0);
    // a sheet of ground-truth layout | the base's drawing | the people read back, per example
    let sheet = dir.path().join("base.png");
    let out = Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["eval", "--base-only", "--model"])
        .arg(&shipped)
        .arg("--data")
        .arg(&data)
        .args(["--count", "3", "--steps", "2", "--samples"])
        .arg(&sheet)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&sheet).unwrap().to_rgb8();
    // three triplets of 128-px tiles in one row, 1 px between tiles, 6 px around triplets
    assert_eq!(img.dimensions(), (3 * (3 * 128 + 2) + 4 * 6, 128 + 2 * 6));
    // the first tile is the first example's ground truth drawn on black: coloured, mostly black
    let tile = image::imageops::crop_imm(&img, 6, 6, 128, 128).to_image();
    let lit = tile
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c > 40))
        .count();
    assert!(lit > 50 && lit < 128 * 128 / 2, "{lit} lit pixels");
}
