//! The training curriculum: every phase runs and lowers its fixed-batch loss, each phase
//! changes exactly the parameters it trains, the render loss of phase 2 reaches the skeletal
//! LoRA, and bad configs are named. Resuming after SIGKILL is in `resume.rs`.

mod common;

use candle_core::backprop::GradStore;
use candle_core::Var;
use common::dataset;
use skeleguide_engine::model::{max_abs_diff, TextEncoder, TinyText};
use skeleguide_engine::modeldir::{self, Method, APPEARANCE, SKELETAL};
use skeleguide_engine::pipeline::Pipeline;
use skeleguide_trainer::config::TrainConfig;
use skeleguide_trainer::phases::{self, PhaseSel, TrainArgs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The tensors of a safetensors file, by name (metadata order is not stable, values are).
fn tensors(p: &Path) -> BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(p, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn smoke_config() -> TrainConfig {
    TrainConfig::load(&repo_file("trainer/configs/tiny-smoke.toml")).unwrap()
}

/// Phase `phase` of `cfg` on `data` into `out`, alone, fresh, without progress bars.
fn phase_args(cfg: &TrainConfig, out: &Path, data: &Path, phase: u8) -> TrainArgs {
    TrainArgs {
        config: cfg.clone(),
        out: out.to_path_buf(),
        phase: PhaseSel::One(phase),
        resume: false,
        data: Some(data.to_path_buf()),
        progress: false,
        group: None,
        stop_at: None,
    }
}

fn run_phase(cfg: &TrainConfig, out: &Path, data: &Path, phase: u8) -> phases::PhaseSummary {
    let mut s = phases::train(&phase_args(cfg, out, data, phase)).unwrap();
    let last = s.pop().unwrap();
    eprintln!(
        "phase {}: {:.1} s, loss {:.4} -> {:.4}",
        last.phase, last.seconds, last.eval_before, last.eval_after
    );
    last
}

fn fixed_batch_config() -> TrainConfig {
    let mut cfg = smoke_config();
    // A fixed batch: the two examples, no dropout, a high lr: the loss must fall quickly.
    cfg.batch = 2;
    cfg.data.limit = 2;
    cfg.optim.prompt_dropout = 0.0;
    cfg.optim.cond_dropout = 0.0;
    cfg.optim.lr = 3e-3;
    cfg
}

fn model_files(m: &Path) -> [BTreeMap<String, Vec<f32>>; 5] {
    [
        modeldir::BASE_FILE.to_string(),
        modeldir::AE_FILE.to_string(),
        modeldir::TEXT_FILE.to_string(),
        modeldir::lora_file(SKELETAL),
        modeldir::lora_file(APPEARANCE),
    ]
    .map(|f| tensors(&m.join(f)))
}

#[test]
fn phase0_trains_the_whole_base_and_writes_a_loadable_model() {
    let data = dataset(2);
    let out = tempfile::tempdir().unwrap();
    let mut cfg = fixed_batch_config();
    let p0 = cfg.phase0.as_mut().unwrap();
    p0.ae_steps = 4;
    p0.dit_steps = 8;
    p0.dit_lr = 2e-3;
    cfg.checkpoint_every = 4;
    let m = phases::model_dir(out.path());
    let s0 = run_phase(&cfg, out.path(), data.path(), 0);
    assert_eq!(s0.phase, "0-dit");
    assert!(
        s0.eval_after < s0.eval_before * 0.9,
        "phase 0 (base DiT) loss {} -> {}",
        s0.eval_before,
        s0.eval_after
    );
    Pipeline::load(&m, &candle_core::Device::Cpu).expect("phase 0 writes a loadable model");
    let fresh = skeleguide_engine::model::random_weights(
        &skeleguide_engine::model::DitConfig::tiny(),
        cfg.seed,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    let trained = tensors(&m.join(modeldir::BASE_FILE));
    let changed = fresh
        .iter()
        .filter(|(k, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap() != trained[k.as_str()])
        .count();
    assert!(
        changed * 10 >= fresh.len() * 9,
        "phase 0 trains the whole base: only {changed} of {} tensors changed",
        fresh.len()
    );
    // The text encoder was trained with it: its tensors moved from their seeded start.
    let mc = modeldir::ModelConfig::load(&m).unwrap();
    let modeldir::TextSpec::Tiny { config } = &mc.text else {
        panic!("tiny text expected")
    };
    let start = skeleguide_engine::model::TinyText::random(
        config,
        cfg.seed.wrapping_add(202),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let text = tensors(&m.join(modeldir::TEXT_FILE));
    let moved = start
        .parameters()
        .iter()
        .filter(|(k, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap() != text[k.as_str()])
        .count();
    assert_eq!(
        moved,
        start.parameters().len(),
        "every text-encoder tensor is trained"
    );
    let log = std::fs::read_to_string(out.path().join("train.jsonl")).unwrap();
    assert_eq!(
        log.lines().count(),
        4 + 8,
        "one record per step of 0-ae and 0-dit"
    );
    assert_eq!(mc.method, Method::Skeleguide);
    assert_eq!(mc.lora[SKELETAL].rank, cfg.lora.rank);

    // The checkpoint at step 4 also wrote the base as it was then, as a model of its own.
    let mid = phases::checkpoint_model_dir(out.path());
    Pipeline::load(&mid, &candle_core::Device::Cpu).expect("the mid-phase base loads");
    let card = std::fs::read_to_string(mid.join(modeldir::CARD_FILE)).unwrap();
    assert!(card.contains("step 4 of 8 of phase 0"), "{card}");
    let [mid_base, mid_ae, ..] = model_files(&mid);
    assert_eq!(mid_ae, tensors(&m.join(modeldir::AE_FILE)));
    assert_ne!(
        mid_base, trained,
        "the mid-phase base is step 4's, not the last step's"
    );
}

#[test]
fn phase0_adopts_an_autoencoder_and_pretrains_the_base_on_layouts_too() {
    let data = dataset(2);
    let src = repo_file("assets/models/tiny");
    let run = |share: f64| {
        let out = tempfile::tempdir().unwrap();
        let mut cfg = fixed_batch_config();
        let p0 = cfg.phase0.as_mut().unwrap();
        p0.ae_steps = 0;
        p0.ae_from = Some(src.clone());
        p0.layout_share = share;
        p0.dit_steps = 8;
        p0.dit_lr = 2e-3;
        let s = run_phase(&cfg, out.path(), data.path(), 0);
        assert!(
            s.eval_after < s.eval_before * 0.9,
            "layout share {share}: base loss {} -> {}",
            s.eval_before,
            s.eval_after
        );
        (out, s.eval_before)
    };
    let (mixed, before_mixed) = run(1.0);
    let (photos, before_photos) = run(0.0);
    // The fixed evaluation batch is layouts in one run and photos in the other.
    assert_ne!(before_mixed, before_photos);
    let (m, mp) = (
        phases::model_dir(mixed.path()),
        phases::model_dir(photos.path()),
    );
    for m in [&m, &mp] {
        assert_eq!(
            std::fs::read(m.join(modeldir::AE_FILE)).unwrap(),
            std::fs::read(src.join(modeldir::AE_FILE)).unwrap(),
            "the adopted autoencoder is copied unchanged"
        );
    }
    let (mc, shipped) = (
        modeldir::ModelConfig::load(&m).unwrap(),
        modeldir::ModelConfig::load(&src).unwrap(),
    );
    assert_eq!(mc.ae, shipped.ae, "its latent statistics come with it");
    assert_eq!(mc.reason_prefix, modeldir::TINY_REASON_PREFIX);
    assert_eq!(
        modeldir::ModelConfig::load(&mp).unwrap().reason_prefix,
        "",
        "a base never shown layouts gets no stage-1 cue"
    );
    let modeldir::TextSpec::Tiny { config } = &mc.text else {
        panic!("tiny text expected")
    };
    for w in ["pose", "layout"] {
        assert!(
            config.vocab.iter().any(|v| v == w),
            "{w} is in the vocabulary"
        );
    }
    // Phase 1 trains stage 1 on the cue and the pipeline samples with it.
    let mut cfg = fixed_batch_config();
    cfg.phase1.steps = 2;
    run_phase(&cfg, mixed.path(), data.path(), 1);
    let mut p = Pipeline::load(&m, &candle_core::Device::Cpu).unwrap();
    assert_eq!(p.config().reason_prompt("a man"), "pose layout a man");
    let scene = image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 150]));
    let opts = skeleguide_engine::pipeline::RunOptions {
        steps: 2,
        ..Default::default()
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    p.reason(&scene, "a man", &opts, &mut |_, _, _| {}, &cancel)
        .expect("stage 1 runs on a layout-pretrained base");
}

/// `phase0.dit_from` continues a trained base: the run starts from its weights (the fixed
/// batch's loss is where the first run left it), keeps its vocabulary, and trains on.
#[test]
fn phase0_continues_a_base_from_its_model_directory() {
    let data = dataset(2);
    let shipped = repo_file("assets/models/tiny");
    let mut cfg = fixed_batch_config();
    let p0 = cfg.phase0.as_mut().unwrap();
    p0.ae_steps = 0;
    p0.ae_from = Some(shipped);
    p0.layout_share = 0.5;
    p0.dit_steps = 3;
    p0.dit_lr = 2e-3;
    let first = tempfile::tempdir().unwrap();
    let a = run_phase(&cfg, first.path(), data.path(), 0);
    let src = phases::model_dir(first.path());
    let p0 = cfg.phase0.as_mut().unwrap();
    p0.ae_from = Some(src.clone());
    p0.dit_from = Some(src.clone());
    let second = tempfile::tempdir().unwrap();
    let b = run_phase(&cfg, second.path(), data.path(), 0);
    assert_eq!(
        b.eval_before, a.eval_after,
        "the continued run starts where the first ended"
    );
    assert!(
        b.eval_after < b.eval_before,
        "and trains on: {} -> {}",
        b.eval_before,
        b.eval_after
    );
    let m = phases::model_dir(second.path());
    let (was, now) = (
        modeldir::ModelConfig::load(&src).unwrap(),
        modeldir::ModelConfig::load(&m).unwrap(),
    );
    assert_eq!(
        now.text, was.text,
        "the vocabulary and text length are the source's"
    );
    assert_eq!(now.reason_prefix, was.reason_prefix);
    assert_ne!(
        tensors(&m.join(modeldir::BASE_FILE)),
        tensors(&src.join(modeldir::BASE_FILE))
    );

    // a shorter text length than the source's is named
    let mut other = cfg.clone();
    other.phase0.as_mut().unwrap().text_max_len = 16;
    let out = tempfile::tempdir().unwrap();
    let e = phases::train(&phase_args(&other, out.path(), data.path(), 0))
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("phase0.text_max_len = 16") && e.contains("reads 32 tokens"),
        "{e}"
    );

    // a longer one grows the learnt positions, each new one starting as the source's last
    let mut longer = cfg.clone();
    longer.phase0.as_mut().unwrap().text_max_len = 48;
    let out = tempfile::tempdir().unwrap();
    let c = run_phase(&longer, out.path(), data.path(), 0);
    assert!(
        c.eval_after < c.eval_before,
        "{} -> {}",
        c.eval_before,
        c.eval_after
    );
    let m = phases::model_dir(out.path());
    let modeldir::TextSpec::Tiny { config: tc } = modeldir::ModelConfig::load(&m).unwrap().text
    else {
        panic!("the tiny text encoder")
    };
    assert_eq!(tc.max_len, 48);
    let pos = |dir: &Path| {
        candle_core::safetensors::load(dir.join(modeldir::TEXT_FILE), &candle_core::Device::Cpu)
            .unwrap()
            .remove(TinyText::POSITIONS)
            .unwrap()
    };
    let (was, now) = (pos(&src), pos(&m));
    assert_eq!(
        (was.dims2().unwrap(), now.dims2().unwrap()),
        ((32, tc.dim), (48, tc.dim))
    );
    let row = |t: &candle_core::Tensor, i: usize| t.narrow(0, i, 1).unwrap();
    // three AdamW steps at lr 2e-3 move a weight by well under 0.02
    let moved = 0.02;
    assert!(
        max_abs_diff(&row(&was, 30), &row(&was, 31)) > moved,
        "two learnt positions differ"
    );
    for i in 0..48 {
        assert!(
            max_abs_diff(&row(&now, i), &row(&was, i.min(31))) < moved,
            "position {i} starts from the source's"
        );
    }
    // a prompt the source cut at 32 tokens is now read whole
    let text =
        TinyText::load(&m.join(modeldir::TEXT_FILE), &tc, &candle_core::Device::Cpu).unwrap();
    let long = ["a man in a red shirt"; 6].join(" and ");
    let (ids, cut) = text.tokenize(&long);
    assert_eq!((ids.len(), cut), (42, false), "41 words and <bos>");
    assert_eq!(text.encode(&[&long]).unwrap().tokens.dims()[1], 48);
}

#[test]
fn phase0_autoencoder_architecture_is_configurable_and_the_dit_follows_it() {
    let data = dataset(2);
    let out = tempfile::tempdir().unwrap();
    let mut cfg = fixed_batch_config();
    let p0 = cfg.phase0.as_mut().unwrap();
    p0.ae_steps = 2;
    p0.dit_steps = 2;
    p0.ae = Some(skeleguide_engine::model::TinyAeConfig {
        latent_channels: 8,
        widths: vec![16, 16, 32],
        ..Default::default()
    });
    run_phase(&cfg, out.path(), data.path(), 0);
    let m = phases::model_dir(out.path());
    let mc = modeldir::ModelConfig::load(&m).unwrap();
    assert_eq!(mc.dit.in_channels, 32, "2x2 patches of 8 latent channels");
    let modeldir::AeSpec::Tiny { config } = &mc.ae else {
        panic!("tiny autoencoder expected")
    };
    assert_eq!(
        (config.latent_channels, config.widths.clone()),
        (8, vec![16, 16, 32])
    );
    Pipeline::load(&m, &candle_core::Device::Cpu).expect("a loadable model");
}

#[test]
fn phases_1_to_3_lower_their_loss_and_train_only_their_loras() {
    let data = dataset(2);
    let base = tempfile::tempdir().unwrap();
    modeldir::init_random(base.path(), "tiny", 9).unwrap();
    let out = tempfile::tempdir().unwrap();
    // Phases 1-3 continue the run's own model directory (real files, as after phase 0), so a
    // write to the base, autoencoder or text encoder would show.
    let m = phases::model_dir(out.path());
    std::fs::create_dir_all(&m).unwrap();
    for e in std::fs::read_dir(base.path()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), m.join(e.file_name())).unwrap();
    }
    let mut cfg = fixed_batch_config();
    cfg.phase1.steps = 6;
    cfg.phase2.steps = 4;
    cfg.phase3.steps = 6;
    // Phase 2 at its own learning rate; the others at optim.lr.
    cfg.phase2.lr = Some(1e-3);

    let s1 = run_phase(&cfg, out.path(), data.path(), 1);
    assert!(
        s1.eval_after < s1.eval_before,
        "phase 1: {} -> {}",
        s1.eval_before,
        s1.eval_after
    );
    let after1 = model_files(&m);
    let base0 = model_files(base.path());
    assert!(after1[0] == base0[0], "phase 1 leaves the base frozen");
    assert!(
        after1[1] == base0[1],
        "phase 1 leaves the autoencoder frozen"
    );
    assert!(
        after1[2] == base0[2],
        "phase 1 leaves the text encoder frozen"
    );
    assert!(after1[3] != base0[3], "phase 1 trains the skeletal LoRA");
    // A fresh appearance set has B = 0; training would have moved it.
    let b_zero = |t: &BTreeMap<String, Vec<f32>>| {
        let bs: Vec<_> = t.iter().filter(|(k, _)| k.ends_with("lora_B")).collect();
        !bs.is_empty() && bs.iter().all(|(_, v)| v.iter().all(|x| *x == 0.0))
    };
    assert!(
        b_zero(&after1[4]),
        "phase 1 does not train the appearance LoRA"
    );
    assert!(!b_zero(&after1[3]), "phase 1 moves the skeletal LoRA's B");

    let s2 = run_phase(&cfg, out.path(), data.path(), 2);
    assert!(
        s2.eval_after < s2.eval_before,
        "phase 2: {} -> {}",
        s2.eval_before,
        s2.eval_after
    );
    let after2 = model_files(&m);
    assert!(after2[0] == base0[0], "phase 2 leaves the base frozen");
    assert!(after2[3] != after1[3], "phase 2 trains the skeletal LoRA");
    assert!(after2[4] != after1[4], "phase 2 trains the appearance LoRA");

    let s3 = run_phase(&cfg, out.path(), data.path(), 3);
    assert!(
        s3.eval_after < s3.eval_before,
        "phase 3: {} -> {}",
        s3.eval_before,
        s3.eval_after
    );
    let after3 = model_files(&m);
    assert!(after3[0] == base0[0], "phase 3 leaves the base frozen");
    assert!(
        after3[3] == after2[3],
        "phase 3 leaves the skeletal LoRA unchanged"
    );
    assert!(after3[4] != after2[4], "phase 3 trains the appearance LoRA");

    // The log continues across the separate phase runs, with both loss terms in phase 2.
    let log = std::fs::read_to_string(out.path().join("train.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 6 + 4 + 6);
    let p2: Vec<_> = recs.iter().filter(|r| r["phase"] == "2").collect();
    assert_eq!(p2.len(), 4);
    assert!(p2
        .iter()
        .all(|r| r["loss_reason"].is_number() && r["loss_render"].is_number()));
    for r in &recs {
        let want = if r["phase"] == "2" { 1e-3 } else { 3e-3 };
        assert_eq!(r["lr"].as_f64(), Some(want), "phase {}'s lr", r["phase"]);
    }
    assert!(out.path().join("loss.png").is_file());
    Pipeline::load(&m, &candle_core::Device::Cpu).expect("a loadable model after phase 3");
}

#[test]
fn focus_weights_the_strokes_and_the_person_and_still_lowers_the_loss() {
    let data = dataset(2);
    let base = tempfile::tempdir().unwrap();
    modeldir::init_random(base.path(), "tiny", 9).unwrap();
    // One phase from the same weights, plain and with the strokes' and person's tokens
    // weighted: the fixed batch's loss is another number before training, and still falls.
    let run = |focus: f64, phase: u8, method: Method| {
        let mut cfg = fixed_batch_config();
        cfg.method = method;
        cfg.base_model = Some(base.path().to_path_buf());
        cfg.optim.reason_focus = focus;
        cfg.optim.render_focus = focus;
        cfg.phase1.steps = 6;
        cfg.phase3.steps = 6;
        let out = tempfile::tempdir().unwrap();
        run_phase(&cfg, out.path(), data.path(), phase)
    };
    // the implicit baseline weights its joint sequence of image and layout tokens
    for (phase, method) in [
        (1, Method::Skeleguide),
        (3, Method::Skeleguide),
        (3, Method::Implicit),
    ] {
        let plain = run(0.0, phase, method);
        let focused = run(8.0, phase, method);
        assert!(
            (plain.eval_before - focused.eval_before).abs() > 1e-6 * plain.eval_before,
            "phase {phase} ({method:?}): the focus changes the loss ({} vs {})",
            plain.eval_before,
            focused.eval_before
        );
        assert!(
            focused.eval_after < focused.eval_before,
            "phase {phase} ({method:?}) with focus: {} -> {}",
            focused.eval_before,
            focused.eval_after
        );
    }
}

fn grads_nonzero(g: &GradStore, vars: &[Var]) -> usize {
    vars.iter()
        .filter(|v| {
            g.get(v.as_tensor())
                .map(|t| {
                    t.abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        > 0.0
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn phase2_render_loss_alone_reaches_the_skeletal_lora() {
    let data = dataset(2);
    let model = tempfile::tempdir().unwrap();
    modeldir::init_random(model.path(), "tiny", 3).unwrap();
    let (loss, skel, app) = phases::phase2_render_loss(model.path(), data.path(), 2, 5).unwrap();
    let g = loss.backward().unwrap();
    let s = grads_nonzero(&g, &skel);
    let a = grads_nonzero(&g, &app);
    assert!(
        s > 0,
        "L_render must train the skeletal LoRA through M̂ (0 of {} skeletal tensors got a gradient)",
        skel.len()
    );
    assert!(a > 0, "and the appearance LoRA");
}

/// With `ema_decay`, phase 0 writes the weights' moving average as the model, checkpoints it,
/// and a run resumed half-way ends with the same average as one run straight through.
#[test]
fn phase0_keeps_a_moving_average_across_a_resume_and_writes_it() {
    let data = dataset(2);
    let mut cfg = fixed_batch_config();
    let p0 = cfg.phase0.as_mut().unwrap();
    p0.ae_steps = 2;
    p0.dit_steps = 4;
    p0.ema_decay = Some(0.5);
    let straight = tempfile::tempdir().unwrap();
    run_phase(&cfg, straight.path(), data.path(), 0);
    let base = tensors(&phases::model_dir(straight.path()).join(modeldir::BASE_FILE));
    let ck = tensors(&straight.path().join("checkpoint.safetensors"));
    let name = "double_blocks.0.img_attn.qkv.weight";
    assert_eq!(base[name], ck[&format!("ema.dit.{name}")]);
    assert_ne!(base[name], ck[&format!("param.dit.{name}")]);

    let halves = tempfile::tempdir().unwrap();
    let mut first = cfg.clone();
    first.phase0.as_mut().unwrap().dit_steps = 2;
    run_phase(&first, halves.path(), data.path(), 0);
    let args = TrainArgs {
        resume: true,
        ..phase_args(&cfg, halves.path(), data.path(), 0)
    };
    phases::train(&args).unwrap();
    let resumed = tensors(&phases::model_dir(halves.path()).join(modeldir::BASE_FILE));
    assert_eq!(resumed, base, "the resumed run's moving average differs");
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo_file("trainer/configs/tiny-smoke.toml")).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "synthetic size",
            good.replace("synth_size = 128", "synth_size = 7"),
            "data.synth_size = 7",
        ),
        (
            "least person height",
            good.replace(
                "synth_size = 128",
                "synth_size = 128\nmin_person_height = 0.9",
            ),
            "data.min_person_height = 0.9",
        ),
        (
            "top-level typo",
            good.replace("batch = 2", "batch = 2\nbatchsize = 3"),
            "batchsize",
        ),
        (
            "table typo",
            good.replace("grad_clip = 1.0", "grad_clip = 1.0\nlearning_rate = 1.0"),
            "learning_rate",
        ),
        (
            "bad probability",
            good.replace("prompt_dropout = 0.1", "prompt_dropout = 1.5"),
            "optim.prompt_dropout",
        ),
        (
            "a phase's learning rate",
            good.replace("[phase2]\nsteps = 6\n", "[phase2]\nsteps = 6\nlr = -1e-4\n"),
            "phase2.lr = -0.0001",
        ),
        (
            "negative focus",
            good.replace("grad_clip = 1.0", "grad_clip = 1.0\nreason_focus = -1.0"),
            "optim.reason_focus = -1",
        ),
        (
            "missing table",
            good.replace("[phase2]\nsteps = 6\n", ""),
            "phase2",
        ),
        (
            "bad method",
            good.replace("method = \"skeleguide\"", "method = \"two-stage\""),
            "two-stage",
        ),
        (
            "bad preset",
            good.replace("preset = \"tiny\"", "preset = \"sdxl\""),
            "preset",
        ),
        (
            "wrong type",
            good.replace("batch = 2", "batch = \"two\""),
            "batch",
        ),
        (
            "bad autoencoder",
            good.replace("[phase1]", "[phase0.ae]\nwidths = []\n\n[phase1]"),
            "phase0.ae",
        ),
        (
            "phase0 with base_model",
            good.replace("seed = 1", "seed = 1\nbase_model = \"/tmp\""),
            "phase0",
        ),
        (
            "adopted and trained autoencoder",
            good.replace(
                "dit_steps = 6",
                "dit_steps = 6\nae_from = \"assets/models/tiny\"",
            ),
            "phase0.ae_from",
        ),
        (
            "bad layout share",
            good.replace("dit_steps = 6", "dit_steps = 6\nlayout_share = 1.5"),
            "phase0.layout_share",
        ),
        (
            "short text encoder",
            good.replace("dit_steps = 6", "dit_steps = 6\ntext_max_len = 3"),
            "phase0.text_max_len",
        ),
        (
            "a base continued on another autoencoder",
            good.replace(
                "ae_steps = 6",
                "ae_steps = 0\nae_from = \"a\"\ndit_from = \"b\"",
            ),
            "phase0.dit_from = b: phase0.ae_from must name the same",
        ),
        (
            "EMA decay of 1",
            good.replace("dit_steps = 6", "dit_steps = 6\nema_decay = 1.0"),
            "phase0.ema_decay",
        ),
        (
            "unknown schedule",
            good.replace("dit_steps = 6", "dit_steps = 6\ndit_schedule = \"linear\""),
            "dit_schedule",
        ),
        (
            "flux without base",
            good.replace("preset = \"tiny\"", "preset = \"flux-dev\""),
            "base_model",
        ),
    ];
    for (what, text, key) in cases {
        let p = dir.path().join(format!("{}.toml", what.replace(' ', "_")));
        std::fs::write(&p, &text).unwrap();
        let e = TrainConfig::load(&p).expect_err(what).to_string();
        assert!(e.contains(&p.display().to_string()), "{what}: {e}");
        assert!(e.contains(key), "{what}: {e}");
    }
    // Every shipped config parses.
    let mut shipped: Vec<_> = std::fs::read_dir(repo_file("trainer/configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    shipped.sort();
    assert!(shipped.len() >= 9, "{shipped:?}");
    for p in &shipped {
        TrainConfig::load(p).unwrap_or_else(|e| panic!("{e}"));
    }
    // The ablation's four configs: each its file's method, all on the same LoRA step budget.
    let mut budgets = Vec::new();
    for m in ["skeleguide", "single-stage", "implicit", "stage1-only"] {
        let c = TrainConfig::load(&repo_file(&format!("trainer/configs/ablation/{m}.toml")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(skeleguide_trainer::eval::method_name(c.method), m);
        budgets.push(phases::lora_budget(&c));
    }
    assert!(budgets.iter().all(|&b| b == budgets[0]), "{budgets:?}");
    // The CLI reports them and exits with an error; a phase the method lacks is refused.
    let bin = env!("CARGO_BIN_EXE_skeleguide-train");
    let p = dir.path().join("typo.toml");
    std::fs::write(&p, good.replace("batch = 2", "batch = 2\nbatchsize = 3")).unwrap();
    let o = Command::new(bin)
        .args(["train", "--config"])
        .arg(&p)
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("typo.toml") && err.contains("batchsize"),
        "{err}"
    );
    let p = dir.path().join("s1.toml");
    std::fs::write(
        &p,
        good.replace("method = \"skeleguide\"", "method = \"stage1-only\""),
    )
    .unwrap();
    let o = Command::new(bin)
        .args(["train", "--phase", "2", "--config"])
        .arg(&p)
        .arg("--out")
        .arg(dir.path().join("o2"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--phase 2") && err.contains("stage1-only"),
        "{err}"
    );
}

#[test]
fn a_trainable_base_gets_a_gradient_in_every_tensor() {
    use candle_core::{DType, Device, Tensor};
    use skeleguide_engine::model::{
        image_ids, random_weights, text_ids, Condition, DitConfig, DitInputs, MmDit, Mode,
    };
    let dev = Device::Cpu;
    let cfg = DitConfig::tiny();
    let vars: Vec<(String, Var)> = random_weights(&cfg, 1, &dev, DType::F32)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, Var::from_tensor(&t).unwrap()))
        .collect();
    let map = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let dit = MmDit::new_trainable(
        &cfg,
        candle_nn::VarBuilder::from_tensors(map, DType::F32, &dev),
    )
    .unwrap();
    let (b, th, tw, nt) = (1, 2, 3, 4);
    let img = Tensor::randn(0f32, 1.0, (b, th * tw, cfg.in_channels), &dev).unwrap();
    let txt = Tensor::randn(0f32, 1.0, (b, nt, cfg.context_in_dim), &dev).unwrap();
    let y = Tensor::randn(0f32, 1.0, (b, cfg.vec_in_dim), &dev).unwrap();
    let t = Tensor::new(&[0.4f32], &dev).unwrap();
    let inp = DitInputs {
        img: &img,
        img_ids: &image_ids(b, th, tw, &dev, DType::F32).unwrap(),
        txt: &txt,
        txt_ids: &text_ids(b, nt, &dev, DType::F32).unwrap(),
        timesteps: &t,
        y: &y,
        guidance: None,
    };
    let out = dit.forward(&inp, Condition::None, Mode::Train).unwrap();
    let g = out.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let missing: Vec<&str> = vars
        .iter()
        .filter(|(_, v)| {
            g.get(v.as_tensor())
                .map(|t| {
                    t.abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        == 0.0
                })
                .unwrap_or(true)
        })
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

#[test]
fn baselines_train_and_generate_through_the_pipeline() {
    use skeleguide_engine::pipeline::RunOptions;
    use std::sync::atomic::AtomicBool;
    let data = dataset(2);
    let base = tempfile::tempdir().unwrap();
    modeldir::init_random(base.path(), "tiny", 2).unwrap();
    let scene = skeleguide_trainer::data::Manifest::open(data.path())
        .unwrap()
        .records[0]
        .load()
        .unwrap()
        .background;
    let cancel = AtomicBool::new(false);
    let opts = RunOptions {
        steps: 2,
        seed: 1,
        keep_background: false,
        guidance: None,
        candidates: None,
        contrast: None,
    };
    for method in [Method::SingleStage, Method::Implicit, Method::Stage1Only] {
        let out = tempfile::tempdir().unwrap();
        let mut cfg = fixed_batch_config();
        cfg.method = method;
        cfg.phase0 = None;
        cfg.base_model = Some(base.path().to_path_buf());
        cfg.phase1.steps = 2;
        cfg.phase2.steps = 2;
        cfg.phase3.steps = 2;
        cfg.sample_every = 2;
        cfg.sample_count = 1;
        cfg.sample_steps = 2;
        let args = TrainArgs {
            phase: PhaseSel::All,
            ..phase_args(&cfg, out.path(), data.path(), 0)
        };
        let s = phases::train(&args).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.phase.as_str()).collect();
        let expected: &[&str] = match method {
            Method::Stage1Only => &["1", "3"],
            _ => &["3"],
        };
        assert_eq!(names, expected, "{method:?}");
        let m = phases::model_dir(out.path());
        assert_eq!(modeldir::ModelConfig::load(&m).unwrap().method, method);
        let grids: Vec<_> = std::fs::read_dir(out.path().join("samples"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            grids.iter().any(|g| g.starts_with("phase3-")),
            "{method:?}: {grids:?}"
        );
        let mut pl = Pipeline::load(&m, &candle_core::Device::Cpu).unwrap();
        let (layout, img) = pl
            .generate(&scene, "a man standing", &opts, &mut |_, _, _| {}, &cancel)
            .unwrap();
        assert_eq!(img.dimensions(), scene.dimensions());
        assert_eq!(layout.image.dimensions(), scene.dimensions());
        match method {
            Method::SingleStage => {
                let e = pl
                    .reason(&scene, "a man", &opts, &mut |_, _, _| {}, &cancel)
                    .expect_err("single-stage has no reasoning stage")
                    .to_string();
                assert!(e.contains("single-stage"), "{e}");
                assert!(layout.image == scene, "its stand-in layout is the scene");
            }
            Method::Implicit => {
                let e = pl
                    .render(&scene, &layout, "a man", &opts, &mut |_, _, _| {}, &cancel)
                    .expect_err("implicit cannot render on a given layout")
                    .to_string();
                assert!(e.contains("implicit"), "{e}");
                // The jointly sampled layout is decoded (not the scene, not the image).
                assert!(layout.image != scene && layout.image != img);
                let l2 = pl
                    .reason(&scene, "a man standing", &opts, &mut |_, _, _| {}, &cancel)
                    .unwrap();
                assert!(
                    l2.image == layout.image,
                    "reason = the layout half of generate"
                );
            }
            _ => {
                pl.reason(&scene, "a man", &opts, &mut |_, _, _| {}, &cancel)
                    .unwrap();
            }
        }
    }
}
