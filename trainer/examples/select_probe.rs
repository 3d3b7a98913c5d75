//! Which rule should choose among stage-1 candidates: for each held-out scene, `M` candidates
//! are sampled at the model's defaults (as `generate` and `eval` sample them) and read back by
//! the PoseInverter once, at the working size as the pipeline reads them; the probe then
//! replays, for the first `K` candidates, what each choosing rule would have kept: count
//! accuracy, pose PCKh and limb ratio error of the kept layout against the ground truth, and the
//! best any rule could keep.
//!
//! `cargo run --release -p skeleguide-trainer --example select_probe -- MODEL DATA [COUNT] [M]`

use anyhow::bail;
use skeleguide_engine::metrics::pose::{count_exact, pckh_aligned, PckCount};
use skeleguide_engine::pipeline::{self, Pipeline, RunOptions};
use skeleguide_engine::select::{self, Score};
use skeleguide_trainer::data::body::LIMB_RATIOS;
use skeleguide_trainer::data::Manifest;
use skeleguide_trainer::eval::appearance::limb_ratio_error;
use skeleguide_trainer::eval::PCKH_ALPHA;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// One candidate of one scene: its reading's score and how it compares with the ground truth.
struct Candidate {
    score: Score,
    count_right: bool,
    pose: PckCount,
    limb_errors: Vec<f64>,
}

/// The order a rule puts candidates in: the count right, minus the count's gap, then a
/// quality.
type Key = (bool, i64, f64);

/// A choosing rule: a key per candidate, the largest kept (the earliest on ties).
struct Rule {
    name: String,
    key: Box<dyn Fn(&Score) -> Key>,
}

fn rules() -> Vec<Rule> {
    let mut out = vec![
        Rule {
            name: "count, then completeness".into(),
            key: Box::new(|s| (s.count_right, s.count_gap, s.completeness)),
        },
        Rule {
            name: "count, then body fit".into(),
            key: Box::new(|s| (s.count_right, s.count_gap, s.body_fit)),
        },
    ];
    for w in [0.01, 0.03, 0.1, 0.3] {
        out.push(Rule {
            name: format!(
                "count, then completeness + {w} × body fit{}",
                if w == select::BODY_FIT_WEIGHT {
                    " (shipped)"
                } else {
                    ""
                }
            ),
            key: Box::new(move |s| (s.count_right, s.count_gap, s.shape_weighing_fit(w))),
        });
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: select_probe MODEL DATA [COUNT] [M]");
    }
    let model = PathBuf::from(&args[0]);
    let manifest = Manifest::open(&PathBuf::from(&args[1]))?;
    let count: usize = args.get(2).map_or(Ok(100), |a| a.parse())?;
    let m: usize = args.get(3).map_or(Ok(8), |a| a.parse())?;
    let device = pipeline::default_device()?;
    let mut pipe = Pipeline::load(&model, &device)?;
    let cancel = AtomicBool::new(false);
    let mut scenes: Vec<Vec<Candidate>> = Vec::new();
    for (i, rec) in manifest.records.iter().take(count).enumerate() {
        let sample = rec.load()?;
        let asked = select::asked_count(&sample.prompt);
        let opts = RunOptions {
            seed: i as u64,
            candidates: Some(m),
            ..RunOptions::default()
        };
        let candidates = pipe.reason_candidates(
            &sample.background,
            &sample.prompt,
            &opts,
            &mut |_, _, _| {},
            &cancel,
        )?;
        let mut cands = Vec::new();
        for c in &candidates {
            let poses = pipe.invert_image(&c.image)?;
            let fin = poses.resized(sample.background.width(), sample.background.height());
            cands.push(Candidate {
                score: select::score(&poses, asked),
                count_right: count_exact(&fin, &sample.poses),
                pose: pckh_aligned(&fin, &sample.poses, PCKH_ALPHA),
                limb_errors: fin
                    .people
                    .iter()
                    .filter_map(|p| limb_ratio_error(p, &LIMB_RATIOS))
                    .collect(),
            });
        }
        scenes.push(cands);
        eprint!("\r{}/{count}", i + 1);
    }
    eprintln!();
    println!("{} scenes, {m} candidates each", scenes.len());
    println!("| K | rule | count_acc | pose PCKh | limb ratio err | completeness |");
    println!("|---|---|---|---|---|---|");
    let mut ks = vec![1, m / 2, m * 3 / 4, m];
    ks.retain(|&k| k >= 1);
    ks.dedup();
    for k in ks {
        for rule in rules() {
            let (mut right, mut pose, mut limbs, mut complete) =
                (0usize, PckCount::default(), Vec::new(), 0.0);
            for cands in &scenes {
                let mut best = 0;
                for (c, cand) in cands.iter().enumerate().take(k).skip(1) {
                    if (rule.key)(&cand.score) > (rule.key)(&cands[best].score) {
                        best = c;
                    }
                }
                let kept = &cands[best];
                right += kept.count_right as usize;
                pose.add(kept.pose);
                limbs.extend(&kept.limb_errors);
                complete += kept.score.completeness;
            }
            let n = scenes.len() as f64;
            println!(
                "| {k} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                rule.name,
                right as f64 / n,
                pose.value(),
                limbs.iter().sum::<f64>() / limbs.len().max(1) as f64,
                complete / n
            );
            if k == 1 {
                break;
            }
        }
        if k > 1 {
            // the ceiling of any rule: each scene's candidate with the most joints placed
            let mut pose = PckCount::default();
            for cands in &scenes {
                let best = cands[..k]
                    .iter()
                    .max_by_key(|c| c.pose.correct)
                    .expect("a candidate");
                pose.add(best.pose);
            }
            println!(
                "| {k} | the most joints placed (no rule can do better) | | {:.3} | | |",
                pose.value()
            );
        }
    }
    Ok(())
}
