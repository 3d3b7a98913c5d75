//! PoseInverter training data, training and the colour baseline.

use skeleguide_engine::inverter::ColorDecoder;
use skeleguide_engine::metrics::pose::{count_exact, pck, PckCount};
use skeleguide_trainer::data::rng::Rng;
use skeleguide_trainer::inverter::{sample, visible_truth, Backgrounds, Degrade};

#[test]
fn colour_baseline_recovers_clean_layouts_on_black() {
    let bg = Backgrounds {
        black_only: true,
        ..Default::default()
    };
    // On black the baseline's class map is exact, so this measures the decoding step the
    // network shares: grouping overlapping people, short limbs hidden under their joints at
    // stick width 1-2 px, joints mostly covered by later ones.
    let mut rng = Rng::new(3);
    let dec = ColorDecoder::default();
    let (mut total, mut counts) = (PckCount::default(), 0);
    let n = 150;
    for _ in 0..n {
        let s = sample(&mut rng, &bg, Degrade::Clean);
        let gt = visible_truth(&s.poses);
        let pred = dec.invert(&s.image).unwrap();
        let r = pck(&pred, &gt, 0.05);
        total.add(r);
        counts += count_exact(&pred, &gt) as usize;
    }
    eprintln!("pck {} count {}", total.value(), counts as f64 / n as f64);
    // the clean-layout targets of assets/models/tiny/INVERTER.md: PCK and count accuracy 0.98
    assert!(total.value() >= 0.98, "{total:?}");
    assert!(
        counts as f64 / n as f64 >= 0.98,
        "count accuracy {counts}/{n}"
    );
}

#[test]
fn training_a_few_steps_lowers_the_held_out_loss() {
    use skeleguide_engine::inverter::{InverterConfig, PoseInverter};
    use skeleguide_trainer::inverter::{batch, held_out_loss, train, TrainOptions};
    let cfg = InverterConfig {
        work_size: 128,
        stem: 8,
        width: 12,
        blocks: 1,
    };
    let bg = Backgrounds::default();
    let dev = candle_core::Device::Cpu;
    // fixed held-out batches from another seed
    let mut rng = Rng::new(99);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let s: Vec<_> = (0..4)
                .map(|_| sample(&mut rng, &bg, Degrade::Clean))
                .collect();
            batch(&s, &cfg, 64, &mut rng, &dev).unwrap()
        })
        .collect();
    let opts = TrainOptions {
        steps: 1,
        batch: 4,
        crop: 64,
        lr: 3e-3,
        seed: 5,
        config: cfg,
        time_budget: None,
        ae_model: None,
        ae_share: 0.0,
        init: None,
    };
    // the same seed: the 1-step model is (almost) the initial model
    let start = train(&opts, &bg, |_, _| true).unwrap();
    let before = held_out_loss(&start, &held).unwrap();
    let mut losses = Vec::new();
    let trained: PoseInverter = train(
        &TrainOptions {
            steps: 40,
            ..opts.clone()
        },
        &bg,
        |_, l| {
            losses.push(l);
            true
        },
    )
    .unwrap();
    let after = held_out_loss(&trained, &held).unwrap();
    eprintln!(
        "held-out loss {before} -> {after}; train {:?}",
        &losses[..3]
    );
    assert!(after < 0.8 * before, "held-out loss {before} -> {after}");
    assert!(losses.iter().all(|l| l.is_finite()));
    // Fine-tuning starts from the saved weights, in their architecture (not `config`'s): one
    // step at a negligible lr keeps the trained model's loss, not the fresh one's.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inverter.safetensors");
    trained.save(&file).unwrap();
    let tuned = train(
        &TrainOptions {
            steps: 1,
            lr: 1e-12,
            config: InverterConfig { stem: 4, ..cfg },
            init: Some(file),
            ..opts.clone()
        },
        &bg,
        |_, _| true,
    )
    .unwrap();
    assert_eq!(tuned.config(), trained.config());
    let kept = held_out_loss(&tuned, &held).unwrap();
    assert!(
        (kept - after).abs() < 1e-3 * after.max(1e-3),
        "{after} -> {kept}"
    );
    let missing = TrainOptions {
        init: Some(dir.path().join("nope.safetensors")),
        ..opts
    };
    let msg = training_error(&missing, &bg);
    assert!(msg.contains("nope.safetensors"), "{msg}");
}

#[test]
fn eval_inverter_measures_the_autoencoder_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_skeleguide-train");
    let model = dir.path().join("m");
    let o = std::process::Command::new(bin)
        .args(["init", "--preset", "tiny", "--seed", "3", "--out"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::create_dir(dir.path().join("none")).unwrap();
    let o = std::process::Command::new(bin)
        .args(["eval-inverter", "--count", "3", "--json", "--ae-model"])
        .arg(&model)
        .arg("--fixtures")
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in [
        "pck_after_ae",
        "baseline_pck_after_ae",
        "count_acc_after_ae",
    ] {
        let x = v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
    // A random autoencoder destroys the layout: far below the clean baseline.
    assert!(
        v["baseline_pck_after_ae"].as_f64().unwrap() < v["baseline_pck"].as_f64().unwrap(),
        "{v}"
    );
    // A missing model directory is named.
    let o = std::process::Command::new(bin)
        .args(["eval-inverter", "--count", "1", "--ae-model"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
}

#[test]
fn training_can_degrade_layouts_through_a_model_autoencoder() {
    use skeleguide_engine::inverter::InverterConfig;
    use skeleguide_engine::pipeline::AeRoundTrip;
    use skeleguide_trainer::inverter::{sample_at, train, TrainOptions};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 3).unwrap();
    let ae = AeRoundTrip::load(&model, &candle_core::Device::Cpu).unwrap();
    // a layout of any size comes back at its own size, changed by the (random) autoencoder
    let bg = Backgrounds::default();
    let mut rng = Rng::new(4);
    let s = sample_at(200, 150, &mut rng, &bg, Degrade::Clean);
    let r = ae.round_trip(&s.image).unwrap();
    assert_eq!(r.dimensions(), (200, 150));
    assert_ne!(r, s.image);
    // training with every layout round-tripped runs, and its loss is finite
    let opts = TrainOptions {
        steps: 2,
        batch: 2,
        crop: 32,
        config: InverterConfig {
            work_size: 64,
            stem: 4,
            width: 8,
            blocks: 1,
        },
        ae_model: Some(model.clone()),
        ae_share: 1.0,
        ..Default::default()
    };
    let mut losses = Vec::new();
    train(&opts, &bg, |_, l| {
        losses.push(l);
        true
    })
    .unwrap();
    assert_eq!(losses.len(), 2);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // a missing model directory is named
    let bad = TrainOptions {
        ae_model: Some(dir.path().join("nope")),
        ..opts
    };
    let msg = training_error(&bad, &bg);
    assert!(msg.contains("nope"), "{msg}");
}

/// The error message of a training run that must fail.
fn training_error(opts: &skeleguide_trainer::inverter::TrainOptions, bg: &Backgrounds) -> String {
    match skeleguide_trainer::inverter::train(opts, bg, |_, _| true) {
        Ok(_) => panic!("training succeeded with {opts:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn pose_prior_is_the_generators_statistics() {
    // the decoder's bone-length prior (engine::inverter::POSE_PRIOR) is measured on the
    // inverter's training poses: 20,000 draws of random_people on a 512-px canvas (lengths at
    // least 2 px), with this seed; a change to the pose model shows here
    use skeleguide_engine::inverter::POSE_PRIOR;
    use skeleguide_trainer::inverter::random_people;
    let mut rng = Rng::new(0x5E_ED0F_9A1A);
    let mut acc = vec![(0.0f64, 0.0f64, 0usize); POSE_PRIOR.len()];
    for _ in 0..20_000 {
        for p in &random_people(512, 512, &mut rng).people {
            let len = |k: usize| p.limb_length(k).map(|l| l.max(2.0));
            for (i, &(k, l, _, _)) in POSE_PRIOR.iter().enumerate() {
                if let (Some(u), Some(v)) = (len(k), len(l)) {
                    let r = (u / v).ln();
                    acc[i].0 += r;
                    acc[i].1 += r * r;
                    acc[i].2 += 1;
                }
            }
        }
    }
    let measured: Vec<(usize, usize, f64, f64)> = POSE_PRIOR
        .iter()
        .zip(&acc)
        .map(|(&(k, l, _, _), &(s, ss, n))| {
            let mean = s / n as f64;
            (k, l, mean, (ss / n as f64 - mean * mean).sqrt())
        })
        .collect();
    for (&(k, l, mean, sd), &(_, _, m, d)) in POSE_PRIOR.iter().zip(&measured) {
        assert!(
            (mean - m).abs() < 6e-4 && (sd - d).abs() < 6e-4,
            "limbs {k}/{l}: table ({mean}, {sd}), measured ({m:.3}, {d:.3}); all measured: {measured:.3?}"
        );
    }
}

#[test]
fn the_inverter_command_writes_weights_that_lower_the_held_out_loss() {
    use skeleguide_engine::inverter::PoseInverter;
    use skeleguide_trainer::inverter::{batch, held_out_loss};
    let dir = tempfile::tempdir().unwrap();
    let train = |steps: &str| {
        let out = dir.path().join(format!("steps{steps}"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
            .args(["inverter", "--steps", steps, "--batch", "4", "--crop", "64"])
            .args([
                "--stem", "8", "--width", "12", "--blocks", "1", "--scenes", "4",
            ])
            .args(["--ae-model", "none", "--lr", "3e-3", "--seed", "5", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        let file = out.join(skeleguide_engine::modeldir::INVERTER_FILE);
        assert!(err.contains(&format!("trained {steps} steps")), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
        let ema: f32 = err
            .split("final loss (ema) ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{err}"));
        let model = PoseInverter::load(&file, &candle_core::Device::Cpu).unwrap();
        (model, ema)
    };
    // the same seed: one step is (almost) the initial model
    let (start, first_loss) = train("1");
    let (trained, last_ema) = train("30");
    let cfg = *trained.config();
    assert_eq!((cfg.stem, cfg.width, cfg.blocks), (8, 12, 1));
    // fixed held-out batches from another seed
    let bg = Backgrounds::default();
    let mut rng = Rng::new(99);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let s: Vec<_> = (0..4)
                .map(|_| sample(&mut rng, &bg, Degrade::Clean))
                .collect();
            batch(&s, &cfg, 64, &mut rng, &candle_core::Device::Cpu).unwrap()
        })
        .collect();
    let before = held_out_loss(&start, &held).unwrap();
    let after = held_out_loss(&trained, &held).unwrap();
    assert!(after < 0.8 * before, "held-out loss {before} -> {after}");
    assert!(
        last_ema < first_loss,
        "reported loss {first_loss} -> {last_ema}"
    );
}
