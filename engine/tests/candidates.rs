//! Stage 1 on the shipped tiny model: candidates sampled in one batch are, guided or not, the
//! samples their seeds give alone; the layout kept is one of them, and no other candidate reads
//! back better for the prompt;
//! a trajectory ends in the plain sample; the scene contrast is the plain sampler at scale 0
//! and draws what the layout adds to the scene firmer above it.

use image::RgbImage;
use skeleguide_engine::modeldir::{SceneContrast, TextGuidance};
use skeleguide_engine::pipeline::{Layout, Pipeline, PipelineError, RunOptions};
use skeleguide_engine::select::{self, candidate_seed};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny")
}

/// A scene of the working size itself: the choice reads the candidates at the working size, so
/// here a layout read back at the scene's size is read as the choice read it.
fn scene() -> RgbImage {
    RgbImage::from_fn(128, 96, |x, y| {
        image::Rgb([(60 + x / 2) as u8, (90 + y / 2) as u8, 120])
    })
}

/// Stage 1 of `prompt` on the test scene with `o`.
fn run(p: &mut Pipeline, prompt: &str, o: &RunOptions) -> Result<Layout, PipelineError> {
    p.reason(
        &scene(),
        prompt,
        o,
        &mut |_, _, _| {},
        &AtomicBool::new(false),
    )
}

fn reason(p: &mut Pipeline, prompt: &str, seed: u64, candidates: usize) -> Layout {
    let o = RunOptions {
        steps: 8,
        seed,
        candidates: Some(candidates),
        ..Default::default()
    };
    run(p, prompt, &o).unwrap()
}

/// The error of a two-step stage 1 with `o` (its steps replaced), which must refuse it.
fn refusal(p: &mut Pipeline, o: RunOptions) -> String {
    let o = RunOptions { steps: 2, ..o };
    run(p, "a man", &o).unwrap_err().to_string()
}

#[test]
fn the_kept_layout_is_the_best_read_candidate() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    let prompt = "two people in red and blue shirts standing in the park";
    let asked = select::asked_count(prompt);
    assert_eq!(asked, Some(2));
    let k = 4;
    let alone: Vec<Layout> = (0..k)
        .map(|i| reason(&mut p, prompt, candidate_seed(6, i), 1))
        .collect();
    let scores: Vec<select::Score> = alone
        .iter()
        .map(|l| select::score(&p.invert(l).unwrap(), asked))
        .collect();
    let kept = reason(&mut p, prompt, 6, k);
    let which = alone
        .iter()
        .position(|l| l.image == kept.image)
        .expect("the kept layout is one of the candidates");
    for (i, s) in scores.iter().enumerate() {
        assert!(
            s.partial_cmp(&scores[which]) != Some(std::cmp::Ordering::Greater),
            "candidate {i} ({s:?}) reads better than the kept {which} ({:?})",
            scores[which]
        );
    }
    assert_ne!(
        which, 0,
        "here the seed's own sample is not the best read, so the choice is exercised ({scores:?})"
    );
    assert!(
        scores.iter().filter(|s| s.count_right).count() >= 2,
        "here two candidates read the right count, so the skeletons' shape decides ({scores:?})"
    );
    assert!(
        reason(&mut p, prompt, 6, 1).image == alone[0].image,
        "one candidate is the call's own seed"
    );
}

#[test]
fn every_batched_candidate_is_the_sample_its_seed_gives_alone_guided_or_not() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    let prompt = "a woman in a red shirt standing on the street";
    for reason_guidance in [1.0, 2.0] {
        let o = |seed, k| RunOptions {
            steps: 6,
            seed,
            candidates: Some(k),
            guidance: Some(TextGuidance {
                reason: reason_guidance,
                render: 1.0,
            }),
            ..Default::default()
        };
        let batched = p
            .reason_candidates(
                &scene(),
                prompt,
                &o(7, 3),
                &mut |_, _, _| {},
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(batched.len(), 3);
        for (i, c) in batched.iter().enumerate() {
            // the scene is the working size, so the layout alone is the candidate's image
            let alone = run(&mut p, prompt, &o(candidate_seed(7, i), 1)).unwrap();
            assert!(
                alone.image == c.image,
                "guidance {reason_guidance}: candidate {i} is not its seed's own sample"
            );
        }
        assert!(batched[0].image != batched[1].image && batched[1].image != batched[2].image);
    }
}

#[test]
fn a_candidate_count_out_of_range_is_refused_by_name() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    for k in [0, select::MAX_CANDIDATES + 1] {
        let err = refusal(
            &mut p,
            RunOptions {
                candidates: Some(k),
                ..Default::default()
            },
        );
        assert!(err.contains(&format!("candidates = {k}")), "{err}");
    }
}

#[test]
fn a_trajectory_ends_in_the_plain_sample_and_its_early_layouts_are_predictions() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    let prompt = "a woman in a red shirt standing on the street";
    let o = RunOptions {
        steps: 6,
        seed: 5,
        candidates: Some(1),
        ..Default::default()
    };
    let cancel = AtomicBool::new(false);
    let t = p
        .reason_trajectory(&scene(), prompt, &o, &[1, 3], &cancel)
        .unwrap();
    assert_eq!(t.len(), 3);
    let plain = p
        .reason(&scene(), prompt, &o, &mut |_, _, _| {}, &cancel)
        .unwrap();
    assert!(t[2].image == plain.image, "the last is the finished sample");
    assert!(t[0].image != t[1].image && t[1].image != t[2].image);
    assert_eq!(t[0].image.dimensions(), scene().dimensions());
    for bad in [vec![3, 3], vec![4, 2], vec![6]] {
        let err = p
            .reason_trajectory(&scene(), prompt, &o, &bad, &cancel)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must rise and stay below the 6 steps"),
            "{err}"
        );
    }
}

fn reason_with(p: &mut Pipeline, prompt: &str, contrast: SceneContrast) -> Layout {
    let o = RunOptions {
        steps: 6,
        seed: 2,
        candidates: Some(1),
        contrast: Some(contrast),
        ..Default::default()
    };
    run(p, prompt, &o).unwrap()
}

/// Mean absolute difference of two images, per channel value.
fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn the_scene_contrast_is_the_plain_sampler_at_zero_and_moves_the_layout_from_the_scene() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    let prompt = "a man in a blue shirt standing on the street";
    let plain = reason_with(&mut p, prompt, SceneContrast::default());
    let zero_until = reason_with(
        &mut p,
        prompt,
        SceneContrast {
            scale: 0.0,
            until: 0.5,
        },
    );
    assert!(plain.image == zero_until.image, "scale 0 is off");
    // the scene as the autoencoder gives it back: what a layout adds is drawn over it
    let scene_rt = p
        .decode_latent(&p.encode_uncached(&scene()).unwrap())
        .unwrap();
    let scene_rt = image::imageops::resize(
        &scene_rt,
        scene().width(),
        scene().height(),
        image::imageops::FilterType::Triangle,
    );
    let mut last = mean_diff(&plain.image, &scene_rt);
    for scale in [0.2, 0.5] {
        let pushed = reason_with(&mut p, prompt, SceneContrast { scale, until: 0.0 });
        let d = mean_diff(&pushed.image, &scene_rt);
        assert!(
            d > last,
            "scale {scale}: {d:.2} from the scene, no more than {last:.2} at a weaker contrast"
        );
        last = d;
    }
    // below `until` the steps are plain: an `until` above every step's noise level but the
    // first leaves one pushed step, nearer the plain sample than a push throughout
    let throughout = reason_with(
        &mut p,
        prompt,
        SceneContrast {
            scale: 0.5,
            until: 0.0,
        },
    );
    let first_only = reason_with(
        &mut p,
        prompt,
        SceneContrast {
            scale: 0.5,
            until: 0.99,
        },
    );
    assert!(
        mean_diff(&first_only.image, &plain.image) < mean_diff(&throughout.image, &plain.image)
    );
}

#[test]
fn a_scene_contrast_out_of_range_is_refused_by_name() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    for (scale, until, field) in [
        (-1.0, 0.0, "scale"),
        (f64::NAN, 0.0, "scale"),
        (0.5, 1.0, "until"),
    ] {
        let err = refusal(
            &mut p,
            RunOptions {
                contrast: Some(SceneContrast { scale, until }),
                ..Default::default()
            },
        );
        assert!(
            err.starts_with(&format!("reason_contrast.{field} = ")),
            "{err}"
        );
    }
}
