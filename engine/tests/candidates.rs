//! Several stage-1 candidates, on the shipped tiny model: the layout kept is one of the
//! candidates each seed gives alone, and no other candidate reads back better for the prompt.

use image::RgbImage;
use skeleguide_engine::pipeline::{Layout, Pipeline, RunOptions};
use skeleguide_engine::select::{self, candidate_seed};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny")
}

fn scene() -> RgbImage {
    RgbImage::from_fn(192, 128, |x, y| {
        image::Rgb([(60 + x / 3) as u8, (90 + y / 2) as u8, 120])
    })
}

fn reason(p: &mut Pipeline, prompt: &str, seed: u64, candidates: usize) -> Layout {
    let o = RunOptions {
        steps: 4,
        seed,
        candidates: Some(candidates),
        ..Default::default()
    };
    p.reason(
        &scene(),
        prompt,
        &o,
        &mut |_, _, _| {},
        &AtomicBool::new(false),
    )
    .unwrap()
}

#[test]
fn the_kept_layout_is_the_best_read_candidate() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    let prompt = "two people in red and blue shirts standing in the park";
    let asked = select::asked_count(prompt);
    assert_eq!(asked, Some(2));
    let k = 4;
    let alone: Vec<Layout> = (0..k)
        .map(|i| reason(&mut p, prompt, candidate_seed(9, i), 1))
        .collect();
    let scores: Vec<select::Score> = alone
        .iter()
        .map(|l| select::score(&p.invert(l).unwrap(), asked))
        .collect();
    let kept = reason(&mut p, prompt, 9, k);
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
        reason(&mut p, prompt, 9, 1).image == alone[0].image,
        "one candidate is the call's own seed"
    );
}

#[test]
fn a_candidate_count_out_of_range_is_refused_by_name() {
    let mut p = Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap();
    for k in [0, select::MAX_CANDIDATES + 1] {
        let o = RunOptions {
            steps: 2,
            candidates: Some(k),
            ..Default::default()
        };
        let err = p
            .reason(
                &scene(),
                "a man",
                &o,
                &mut |_, _, _| {},
                &AtomicBool::new(false),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("candidates = {k}")), "{err}");
    }
}
