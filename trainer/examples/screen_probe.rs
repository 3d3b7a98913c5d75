//! How cheaply a stage-1 sample's people can be told in advance: for each held-out scene, `M`
//! candidates (the seeds `generate` and `eval` give them) are sampled to the end, and read
//! back by the PoseInverter early. It then replays, for `K` candidates screened each way, what
//! choosing by the early reading would have kept: count accuracy and pose PCKh of the
//! finished layout chosen, against the cost in DiT forwards.
//!
//! `cargo run --release -p skeleguide-trainer --example screen_probe -- MODEL DATA [COUNT] [M] [READS]`
//!
//! Stage 1 runs without the scene contrast (the plain sampler), as the probe was measured; it
//! was measured at stage-1 guidance 2 and with ties among right counts broken by completeness
//! alone, so at the model's current defaults its figures differ.
//!
//! READS, comma-separated (default `p6,p12,c5,c8`): `pN`, the layout the full-length sample
//! predicts at step N (a screened candidate runs on from that state); `cN`, a sample of the
//! same noise in N steps (the chosen candidate is then sampled again at full length).

use anyhow::{bail, Context};
use skeleguide_engine::metrics::pose::{count_exact, pckh_aligned, PckCount};
use skeleguide_engine::modeldir::SceneContrast;
use skeleguide_engine::pipeline::{self, Pipeline, RunOptions};
use skeleguide_engine::select;
use skeleguide_trainer::data::Manifest;
use skeleguide_trainer::eval::PCKH_ALPHA;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// One candidate of one scene: the score of its reading at each screening step and when
/// finished, and how its finished layout compares with the ground truth.
struct Candidate {
    scores: Vec<select::Score>,
    count_right: bool,
    pose: PckCount,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: screen_probe MODEL DATA [COUNT] [M] [READS]");
    }
    let model = PathBuf::from(&args[0]);
    let manifest = Manifest::open(&PathBuf::from(&args[1]))?;
    let count: usize = args.get(2).map_or(Ok(50), |a| a.parse())?;
    let m: usize = args.get(3).map_or(Ok(8), |a| a.parse())?;
    let reads: Vec<Read> = args
        .get(4)
        .map_or("p6,p12,c5,c8", |s| s.as_str())
        .split(',')
        .map(Read::parse)
        .collect::<anyhow::Result<_>>()?;
    let at: Vec<usize> = reads
        .iter()
        .filter_map(|r| match r {
            Read::Predicted(n) => Some(*n),
            Read::Coarse(_) => None,
        })
        .collect();
    let device = pipeline::default_device()?;
    let mut pipe = Pipeline::load(&model, &device)?;
    let steps = pipe.config().steps;
    let cancel = AtomicBool::new(false);
    let mut scenes: Vec<Vec<Candidate>> = Vec::new();
    for (i, rec) in manifest.records.iter().take(count).enumerate() {
        let sample = rec.load()?;
        let asked = select::asked_count(&sample.prompt);
        let mut cands = Vec::new();
        for c in 0..m {
            let opts = RunOptions {
                steps,
                seed: select::candidate_seed(i as u64, c),
                keep_background: false,
                // the sampler as it was measured: no scene contrast
                contrast: Some(SceneContrast::default()),
                ..RunOptions::default()
            };
            let layouts =
                pipe.reason_trajectory(&sample.background, &sample.prompt, &opts, &at, &cancel)?;
            let mut predicted = Vec::new();
            let mut last = None;
            for l in &layouts {
                let poses = pipe.invert(l)?;
                predicted.push(select::score(&poses, asked));
                last = Some(poses);
            }
            let mut scores = Vec::new();
            let mut next_predicted = predicted.iter();
            for r in &reads {
                scores.push(match r {
                    Read::Predicted(_) => *next_predicted.next().context("a prediction")?,
                    Read::Coarse(n) => {
                        let o = RunOptions {
                            steps: *n,
                            ..opts.clone()
                        };
                        let l = pipe.reason_trajectory(
                            &sample.background,
                            &sample.prompt,
                            &o,
                            &[],
                            &cancel,
                        )?;
                        select::score(&pipe.invert(&l[0])?, asked)
                    }
                });
            }
            scores.push(*predicted.last().context("no layout")?);
            let fin = last.context("no layout")?;
            let fin = fin.resized(sample.background.width(), sample.background.height());
            cands.push(Candidate {
                scores,
                count_right: count_exact(&fin, &sample.poses),
                pose: pckh_aligned(&fin, &sample.poses, PCKH_ALPHA),
            });
        }
        scenes.push(cands);
        eprint!("\r{}/{count}", i + 1);
    }
    eprintln!();
    let n = scenes.len() as f64;
    println!(
        "{} scenes, {m} candidates each, {steps} steps",
        scenes.len()
    );
    println!("| K | read | count_acc | pose PCKh | DiT steps per layout |");
    println!("|---|---|---|---|---|");
    let points: Vec<Read> = reads
        .iter()
        .copied()
        .chain([Read::Predicted(steps)])
        .collect();
    for k in 1..=m {
        for (j, &r) in points.iter().enumerate() {
            if k == 1 && j + 1 < points.len() {
                continue;
            }
            let (mut right, mut pose) = (0usize, PckCount::default());
            for cands in &scenes {
                let mut best = 0;
                for (c, cand) in cands.iter().enumerate().take(k).skip(1) {
                    if cand.scores[j] > cands[best].scores[j] {
                        best = c;
                    }
                }
                right += cands[best].count_right as usize;
                pose.add(cands[best].pose);
            }
            let cost = match r {
                _ if k == 1 => steps,
                Read::Predicted(s) if s == steps => k * steps,
                // s steps and one forward for the prediction; the chosen one runs on
                Read::Predicted(s) => k * (s + 1) + steps - s,
                Read::Coarse(s) => k * s + steps,
            };
            println!(
                "| {k} | {} | {:.3} | {:.3} | {cost} |",
                r.name(steps),
                right as f64 / n,
                pose.value()
            );
        }
    }
    Ok(())
}

/// How a candidate is read early.
#[derive(Clone, Copy)]
enum Read {
    /// The layout predicted at this step of the full-length sample.
    Predicted(usize),
    /// A sample of the same noise in this many steps.
    Coarse(usize),
}

impl Read {
    fn parse(s: &str) -> anyhow::Result<Self> {
        let n = |t: &str| t.parse::<usize>().with_context(|| format!("READS: {s}"));
        match s.split_at_checked(1) {
            Some(("p", t)) => Ok(Read::Predicted(n(t)?)),
            Some(("c", t)) if n(t)? > 0 => Ok(Read::Coarse(n(t)?)),
            _ => bail!("READS: {s}: use pN (predicted at step N) or cN (an N-step sample)"),
        }
    }

    fn name(self, steps: usize) -> String {
        match self {
            Read::Predicted(n) if n == steps => "finished".into(),
            Read::Predicted(n) => format!("predicted at step {n}"),
            Read::Coarse(n) => format!("{n}-step sample"),
        }
    }
}
