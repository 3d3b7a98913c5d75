//! Tests of the MM-DiT, its condition stream, the K/V cache and the LoRA sets.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use candle_transformers::models::flux::WithForward;
use skeleguide_engine::model::lora::SplitMix64;
use skeleguide_engine::model::{
    image_ids, pack_latents, random_weights, save_weights, text_ids, unpack_latents, CondCache,
    Condition, DitConfig, DitInputs, LoraSpec, LoraTarget, MmDit, Mode, ModelError,
};

const DEV: Device = Device::Cpu;

fn small_cfg(guidance: bool) -> DitConfig {
    DitConfig {
        in_channels: 16,
        vec_in_dim: 16,
        context_in_dim: 24,
        hidden_size: 64,
        mlp_ratio: 4.0,
        num_heads: 2,
        depth: 2,
        depth_single_blocks: 2,
        axes_dim: vec![8, 12, 12],
        theta: 10_000,
        qkv_bias: true,
        guidance_embed: guidance,
    }
}

fn rnd(shape: &[usize], seed: u64, std: f64) -> Tensor {
    let mut r = SplitMix64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (r.next_normal() * std) as f32).collect();
    Tensor::from_vec(v, shape, &DEV).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).unwrap().sqr().unwrap().sum_all().unwrap();
    let n = b.sqr().unwrap().sum_all().unwrap();
    let d: f32 = d.to_scalar().unwrap();
    let n: f32 = n.to_scalar().unwrap();
    (d as f64).sqrt() / (n as f64).sqrt().max(1e-30)
}

/// Mean squared error of `out` against `target`.
fn mse(out: &Tensor, target: &Tensor) -> Tensor {
    out.sub(target).unwrap().sqr().unwrap().mean_all().unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    let m: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    m as f64
}

struct Batch {
    img: Tensor,
    img_ids: Tensor,
    txt: Tensor,
    txt_ids: Tensor,
    t: Tensor,
    y: Tensor,
    g: Tensor,
    cond: Tensor,
}

impl Batch {
    fn new(cfg: &DitConfig, b: usize, seed: u64) -> Self {
        let (gh, gw, nt) = (4, 4, 5);
        let n = gh * gw;
        Batch {
            img: rnd(&[b, n, cfg.in_channels], seed, 1.0),
            img_ids: image_ids(b, gh, gw, &DEV, DType::F32).unwrap(),
            txt: rnd(&[b, nt, cfg.context_in_dim], seed + 1, 1.0),
            txt_ids: text_ids(b, nt, &DEV, DType::F32).unwrap(),
            t: Tensor::from_vec(
                (0..b).map(|i| 0.3 + 0.1 * i as f32).collect::<Vec<_>>(),
                b,
                &DEV,
            )
            .unwrap(),
            y: rnd(&[b, cfg.vec_in_dim], seed + 2, 1.0),
            g: Tensor::from_vec(vec![3.5f32; b], b, &DEV).unwrap(),
            cond: rnd(&[b, n, cfg.in_channels], seed + 3, 1.0),
        }
    }

    fn inputs(&self) -> DitInputs<'_> {
        DitInputs {
            img: &self.img,
            img_ids: &self.img_ids,
            txt: &self.txt,
            txt_ids: &self.txt_ids,
            timesteps: &self.t,
            y: &self.y,
            guidance: Some(&self.g),
        }
    }

    fn cond(&self) -> Condition<'_> {
        Condition::Tokens {
            tokens: &self.cond,
            ids: &self.img_ids,
        }
    }
}

fn model(cfg: &DitConfig, seed: u64) -> MmDit {
    let w = random_weights(cfg, seed, &DEV, DType::F32).unwrap();
    MmDit::from_tensors(cfg, w, &DEV, DType::F32).unwrap()
}

/// Adds a set and gives its B matrices random values (a fresh B is zero).
fn add_random_set(m: &mut MmDit, name: &str, rank: usize, seed: u64) -> Vec<Var> {
    let spec = LoraSpec {
        rank,
        alpha: rank as f64 * 2.0,
        targets: LoraTarget::ALL.to_vec(),
        seed,
    };
    m.loras_mut().add(name, &spec).unwrap();
    let vars = m.loras_mut().make_trainable(name).unwrap();
    for (i, v) in vars.iter().enumerate() {
        if i % 2 == 1 {
            v.set(&rnd(v.dims(), seed * 1000 + i as u64, 0.05)).unwrap();
        }
    }
    vars
}

#[test]
fn tensor_names_match_candle_transformers() {
    for guidance in [false, true] {
        let cfg = small_cfg(guidance);
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &DEV);
        candle_transformers::models::flux::model::Flux::new(&cfg.to_candle_flux(), vb).unwrap();
        let mut theirs: Vec<(String, Vec<usize>)> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        theirs.sort();
        let mut ours = skeleguide_engine::model::bfl_tensor_shapes(&cfg);
        ours.sort();
        assert_eq!(ours, theirs);
    }
}

#[test]
fn parity_with_candle_transformers_flux() {
    for guidance in [true, false] {
        let cfg = small_cfg(guidance);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flux_small.safetensors");
        let w = random_weights(&cfg, 7, &DEV, DType::F32).unwrap();
        save_weights(&w, &path).unwrap();
        let ours = MmDit::load(&path, &cfg, &DEV, DType::F32).unwrap();
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &DEV) }.unwrap();
        let reference =
            candle_transformers::models::flux::model::Flux::new(&cfg.to_candle_flux(), vb).unwrap();
        let b = Batch::new(&cfg, 2, 11);
        let expected = reference
            .forward(
                &b.img,
                &b.img_ids,
                &b.txt,
                &b.txt_ids,
                &b.t,
                &b.y,
                Some(&b.g),
            )
            .unwrap();
        for mode in [Mode::Fast, Mode::Train] {
            let got = ours.forward(&b.inputs(), Condition::None, mode).unwrap();
            assert_eq!(got.dims(), expected.dims());
            let e = rel_err(&got, &expected);
            assert!(e <= 1e-5, "guidance {guidance} {mode:?}: rel err {e}");
        }
    }
}

#[test]
fn fast_and_train_paths_agree_with_condition_and_lora() {
    let cfg = small_cfg(true);
    let mut m = model(&cfg, 3);
    add_random_set(&mut m, "skeletal", 4, 5);
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    m.loras_mut().freeze("skeletal").unwrap();
    let b = Batch::new(&cfg, 2, 21);
    let fast = m.forward(&b.inputs(), b.cond(), Mode::Fast).unwrap();
    let train = m.forward(&b.inputs(), b.cond(), Mode::Train).unwrap();
    let e = rel_err(&fast, &train);
    assert!(e <= 1e-5, "rel err {e}");
    // The condition really changes the prediction.
    let plain = m.forward(&b.inputs(), Condition::None, Mode::Fast).unwrap();
    assert!(rel_err(&plain, &fast) > 1e-3);
}

#[test]
fn fresh_lora_set_leaves_output_unchanged() {
    let cfg = small_cfg(false);
    let mut m = model(&cfg, 4);
    let b = Batch::new(&cfg, 1, 31);
    let base = m.forward(&b.inputs(), b.cond(), Mode::Fast).unwrap();
    m.loras_mut()
        .add("appearance", &LoraSpec::default())
        .unwrap();
    m.loras_mut().set_active(Some("appearance")).unwrap();
    let with = m.forward(&b.inputs(), b.cond(), Mode::Fast).unwrap();
    assert_eq!(max_abs(&base, &with), 0.0);
    assert!(matches!(
        m.loras_mut().set_active(Some("nope")),
        Err(ModelError::UnknownLoraSet(_))
    ));
}

/// A tiny Euler loop (σ linear 1 -> 0): the cached and uncached runs agree to 1e-5.
#[test]
fn cached_and_uncached_sampling_agree() {
    let cfg = small_cfg(true);
    let mut m = model(&cfg, 8);
    add_random_set(&mut m, "skeletal", 4, 9);
    m.loras_mut().freeze("skeletal").unwrap();
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let b = Batch::new(&cfg, 2, 41);
    let steps = 6;
    let sig: Vec<f32> = (0..=steps).map(|i| 1.0 - i as f32 / steps as f32).collect();
    let cache: CondCache = m
        .build_cond_cache(&b.cond, &b.img_ids, &b.y, Mode::Fast)
        .unwrap();
    assert_eq!(cache.num_layers(), cfg.depth + cfg.depth_single_blocks);
    let run = |cached: bool| -> Tensor {
        let mut x = b.img.clone();
        for s in 0..steps {
            let t = Tensor::from_vec(vec![sig[s]; 2], 2, &DEV).unwrap();
            let inp = DitInputs {
                img: &x,
                timesteps: &t,
                ..b.inputs()
            };
            let cond = if cached {
                Condition::Cached(&cache)
            } else {
                b.cond()
            };
            let v = m.forward(&inp, cond, Mode::Fast).unwrap();
            x = (&x + (v * (sig[s + 1] - sig[s]) as f64).unwrap()).unwrap();
        }
        x
    };
    let a = run(true);
    let u = run(false);
    let e = max_abs(&a, &u);
    assert!(e <= 1e-5, "max abs diff {e}");
    assert!(rel_err(&a, &u) <= 1e-5);
}

#[test]
fn cache_is_keyed_by_lora_set_and_pooled_vector() {
    let cfg = small_cfg(false);
    let mut m = model(&cfg, 12);
    add_random_set(&mut m, "skeletal", 2, 1);
    add_random_set(&mut m, "appearance", 3, 2);
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let b = Batch::new(&cfg, 1, 51);
    let mut slot = None;
    assert!(m
        .ensure_cond_cache(&mut slot, &b.cond, &b.img_ids, &b.y)
        .unwrap());
    assert!(!m
        .ensure_cond_cache(&mut slot, &b.cond, &b.img_ids, &b.y)
        .unwrap());
    m.loras_mut().set_active(Some("appearance")).unwrap();
    let cache = slot.clone().unwrap();
    let r = m.forward(&b.inputs(), Condition::Cached(&cache), Mode::Fast);
    assert!(matches!(r, Err(ModelError::StaleCache(_))), "{r:?}");
    let other_y = (&b.y + 1.0).unwrap();
    let inp = DitInputs {
        y: &other_y,
        ..b.inputs()
    };
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let r = m.forward(&inp, Condition::Cached(&cache), Mode::Fast);
    assert!(matches!(r, Err(ModelError::StaleCache(_))), "{r:?}");
    m.loras_mut().set_active(Some("appearance")).unwrap();
    assert!(m
        .ensure_cond_cache(&mut slot, &b.cond, &b.img_ids, &b.y)
        .unwrap());
    let cached = m
        .forward(
            &b.inputs(),
            Condition::Cached(slot.as_ref().unwrap()),
            Mode::Fast,
        )
        .unwrap();
    let direct = m.forward(&b.inputs(), b.cond(), Mode::Fast).unwrap();
    assert!(max_abs(&cached, &direct) <= 1e-6);
}

/// Every trainable tensor of both sets (q, k and v adapters, A and B) gets a non-zero gradient
/// in the joint phase, where both sets are used in one loss. B starts at zero, which makes the
/// gradient of A exactly zero at the very first step, so the test gives B random values first.
#[test]
fn every_lora_parameter_gets_a_gradient() {
    let cfg = small_cfg(true);
    let mut m = model(&cfg, 13);
    let sk = add_random_set(&mut m, "skeletal", 4, 3);
    let ap = add_random_set(&mut m, "appearance", 2, 4);
    let n_blocks = cfg.depth + cfg.depth_single_blocks;
    // q, k, v per block, minus the dead q of the last block; A and B each.
    assert_eq!(sk.len(), 2 * (3 * n_blocks - 1));
    let b = Batch::new(&cfg, 2, 61);
    let target = rnd(b.img.dims(), 99, 1.0);
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let l1 = m
        .forward(&b.inputs(), b.cond(), Mode::Train)
        .unwrap()
        .sub(&target)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    m.loras_mut().set_active(Some("appearance")).unwrap();
    let l2 = m
        .forward(&b.inputs(), b.cond(), Mode::Train)
        .unwrap()
        .sub(&target)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let loss = ((l1 * 0.5).unwrap() + l2).unwrap();
    let grads = loss.backward().unwrap();
    for (set, vars) in [("skeletal", &sk), ("appearance", &ap)] {
        for (i, v) in vars.iter().enumerate() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{set} var {i} {:?} has no gradient", v.dims()));
            let s: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(s > 0.0, "{set} var {i} {:?} has a zero gradient", v.dims());
            // Every row of every adapter matrix moves (q and k rows included).
            let rows: Vec<f32> = g.abs().unwrap().sum(1).unwrap().to_vec1().unwrap();
            assert!(
                rows.iter().all(|r| *r > 0.0),
                "{set} var {i}: a row has zero gradient"
            );
        }
    }
    // A few AdamW steps reduce the loss of the skeletal set.
    let mut opt = candle_nn::AdamW::new(
        sk.clone(),
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )
    .unwrap();
    use candle_nn::Optimizer;
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let mut losses = Vec::new();
    for _ in 0..5 {
        let loss = m
            .forward(&b.inputs(), b.cond(), Mode::Train)
            .unwrap()
            .sub(&target)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        opt.backward_step(&loss).unwrap();
    }
    assert!(losses[4] < losses[0], "{losses:?}");
}

#[test]
fn lora_save_load_roundtrip_and_base_mismatch() {
    let cfg = small_cfg(false);
    let mut m = model(&cfg, 14);
    add_random_set(&mut m, "skeletal", 4, 6);
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let b = Batch::new(&cfg, 1, 71);
    let before = m.forward(&b.inputs(), b.cond(), Mode::Fast).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skeletal.safetensors");
    m.loras().save("skeletal", &path).unwrap();

    let mut m2 = model(&cfg, 14);
    let name = m2.loras_mut().load(&path).unwrap();
    assert_eq!(name, "skeletal");
    let set = m2.loras().get("skeletal").unwrap();
    assert_eq!(set.rank(), 4);
    assert_eq!(set.alpha(), 8.0);
    assert_eq!(set.targets(), &LoraTarget::ALL);
    assert!(!set.is_trainable());
    m2.loras_mut().set_active(Some("skeletal")).unwrap();
    let after = m2.forward(&b.inputs(), b.cond(), Mode::Fast).unwrap();
    assert_eq!(max_abs(&before, &after), 0.0);

    // Another base: clear error.
    let mut other_cfg = cfg.clone();
    other_cfg.depth_single_blocks = 3;
    let mut m3 = model(&other_cfg, 1);
    match m3.loras_mut().load(&path) {
        Err(e @ ModelError::LoraBaseMismatch { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&cfg.hash()) && msg.contains(&other_cfg.hash()),
                "{msg}"
            );
        }
        r => panic!("expected a base mismatch, got {r:?}"),
    }
    // A safetensors file without our metadata.
    let plain = dir.path().join("plain.safetensors");
    save_weights(&random_weights(&cfg, 1, &DEV, DType::F32).unwrap(), &plain).unwrap();
    assert!(matches!(
        m2.loras_mut().load(&plain),
        Err(ModelError::BadLoraFile { .. })
    ));
    // Duplicate names are refused by `add`.
    assert!(matches!(
        m2.loras_mut().add("skeletal", &LoraSpec::default()),
        Err(ModelError::DuplicateLoraSet(_))
    ));
}

#[test]
fn checkpoint_errors_name_the_tensor_and_shapes() {
    let cfg = small_cfg(true);
    let mut w = random_weights(&cfg, 1, &DEV, DType::F32).unwrap();
    w.remove("double_blocks.1.img_attn.qkv.weight");
    match MmDit::from_tensors(&cfg, w, &DEV, DType::F32) {
        Err(ModelError::MissingTensor { name, expected }) => {
            assert_eq!(name, "double_blocks.1.img_attn.qkv.weight");
            assert_eq!(expected, vec![192, 64]);
        }
        r => panic!("expected MissingTensor, got {:?}", r.err()),
    }
    let mut w = random_weights(&cfg, 1, &DEV, DType::F32).unwrap();
    w.insert(
        "single_blocks.0.linear1.weight".into(),
        Tensor::zeros((10, 64), DType::F32, &DEV).unwrap(),
    );
    match MmDit::from_tensors(&cfg, w, &DEV, DType::F32) {
        Err(e @ ModelError::ShapeMismatch { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("single_blocks.0.linear1.weight"), "{msg}");
            assert!(
                msg.contains("[10, 64]") && msg.contains("[448, 64]"),
                "{msg}"
            );
        }
        r => panic!("expected ShapeMismatch, got {:?}", r.err()),
    }
    let w = random_weights(&cfg, 1, &DEV, DType::F32).unwrap();
    assert!(matches!(
        MmDit::from_tensors(&cfg, w, &DEV, DType::BF16),
        Err(ModelError::UnsupportedDtype { .. })
    ));
    assert!(MmDit::load("/nonexistent/x.safetensors", &cfg, &DEV, DType::F32).is_err());
}

#[test]
fn bad_inputs_give_clear_errors() {
    let cfg = small_cfg(true);
    let m = model(&cfg, 2);
    let b = Batch::new(&cfg, 1, 81);
    let img64 = b.img.to_dtype(DType::F64).unwrap();
    let r = m.forward(
        &DitInputs {
            img: &img64,
            ..b.inputs()
        },
        Condition::None,
        Mode::Fast,
    );
    assert!(matches!(r, Err(ModelError::WrongDtype { .. })), "{r:?}");
    let short = b.txt.narrow(2, 0, 3).unwrap();
    let r = m.forward(
        &DitInputs {
            txt: &short,
            ..b.inputs()
        },
        Condition::None,
        Mode::Fast,
    );
    match r {
        Err(ModelError::BadInput { name, .. }) => assert_eq!(name, "txt"),
        r => panic!("{r:?}"),
    }
    let bad_cond = rnd(&[2, 16, 16], 1, 1.0);
    let r = m.forward(
        &b.inputs(),
        Condition::Tokens {
            tokens: &bad_cond,
            ids: &b.img_ids,
        },
        Mode::Fast,
    );
    assert!(matches!(r, Err(ModelError::BadInput { .. })), "{r:?}");
    assert!(matches!(
        skeleguide_engine::model::device::parse_device("tpu"),
        Err(ModelError::DeviceUnavailable(_))
    ));
    if !skeleguide_engine::model::device::cuda_compiled() {
        assert!(matches!(
            skeleguide_engine::model::device::parse_device("cuda:0"),
            Err(ModelError::DeviceUnavailable(_))
        ));
    }
}

#[test]
fn configs_presets_json_and_hash() {
    for p in skeleguide_engine::model::PRESETS {
        let c = DitConfig::preset(p).unwrap();
        c.validate().unwrap();
        let back = DitConfig::from_json_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.hash(), c.hash());
    }
    let tiny = DitConfig::tiny();
    assert_eq!(
        (
            tiny.hidden_size,
            tiny.num_heads,
            tiny.depth,
            tiny.depth_single_blocks,
            tiny.in_channels
        ),
        (256, 4, 2, 4, 64)
    );
    assert_ne!(
        DitConfig::flux_dev().hash(),
        DitConfig::flux_schnell().hash()
    );
    let mut bad = DitConfig::tiny();
    bad.axes_dim = vec![8, 8, 8];
    assert!(matches!(bad.validate(), Err(ModelError::InvalidConfig(_))));
    assert!(DitConfig::preset("flux-pro").is_err());
    assert!(DitConfig::from_json_str("{\"hidden_size\": 3}").is_err());
}

#[test]
fn pack_unpack_roundtrip() {
    let lat = rnd(&[2, 16, 6, 8], 5, 1.0);
    let p = pack_latents(&lat).unwrap();
    assert_eq!(p.dims(), &[2, 12, 64]);
    let u = unpack_latents(&p, 3, 4).unwrap();
    assert_eq!(max_abs(&lat, &u), 0.0);
}

#[test]
fn bench_runs_quickly_in_smoke_mode() {
    let r = skeleguide_engine::model::bench::bench_dit(
        &skeleguide_engine::model::bench::BenchOptions::quick(),
    )
    .unwrap();
    assert_eq!(r.rows.len(), 1);
    assert!(r.rows[0].dit_forward_ms > 0.0 && r.train_step_ms > 0.0);
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["rows"][0]["stage_sampling_ms_cached"].is_number());
    assert!(format!("{r}").contains("reference ms"));
}

/// The `tiny` preset at a batch large enough for the fused kernels' parallel paths: the fast
/// path agrees with the training path, with and without the condition cache.
#[test]
fn tiny_preset_fast_path_matches_training_path() {
    let cfg = DitConfig::tiny();
    let mut m = model(&cfg, 21);
    add_random_set(&mut m, "skeletal", 8, 2);
    m.loras_mut().freeze("skeletal").unwrap();
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let (bs, g, nt) = (3, 8, 12);
    let img = rnd(&[bs, g * g, 64], 1, 1.0);
    let cond = rnd(&[bs, g * g, 64], 2, 1.0);
    let ids = image_ids(bs, g, g, &DEV, DType::F32).unwrap();
    let txt = rnd(&[bs, nt, cfg.context_in_dim], 3, 1.0);
    let tids = text_ids(bs, nt, &DEV, DType::F32).unwrap();
    let y = rnd(&[bs, cfg.vec_in_dim], 4, 1.0);
    let t = Tensor::new(&[0.9f32, 0.5, 0.1], &DEV).unwrap();
    let inp = DitInputs {
        img: &img,
        img_ids: &ids,
        txt: &txt,
        txt_ids: &tids,
        timesteps: &t,
        y: &y,
        guidance: None,
    };
    let c = Condition::Tokens {
        tokens: &cond,
        ids: &ids,
    };
    let fast = m.forward(&inp, c, Mode::Fast).unwrap();
    let train = m.forward(&inp, c, Mode::Train).unwrap();
    let e = rel_err(&fast, &train);
    assert!(e <= 1e-5, "rel err {e}");
    let cache = m.build_cond_cache(&cond, &ids, &y, Mode::Fast).unwrap();
    let cached = m
        .forward(&inp, Condition::Cached(&cache), Mode::Fast)
        .unwrap();
    assert!(rel_err(&cached, &train) <= 1e-5);
    let plain_fast = m.forward(&inp, Condition::None, Mode::Fast).unwrap();
    let plain_train = m.forward(&inp, Condition::None, Mode::Train).unwrap();
    assert!(rel_err(&plain_fast, &plain_train) <= 1e-5);
}

/// The fused differentiable kernels of the training path give the same loss and the same LoRA
/// gradients as plain candle primitives.
#[test]
fn fused_training_kernels_match_primitive_ops() {
    let cfg = small_cfg(true);
    let mut m = model(&cfg, 17);
    let vars = add_random_set(&mut m, "skeletal", 4, 7);
    m.loras_mut().set_active(Some("skeletal")).unwrap();
    let b = Batch::new(&cfg, 2, 91);
    let target = rnd(b.img.dims(), 5, 1.0);
    let run = |m: &MmDit| {
        let loss = m
            .forward(&b.inputs(), b.cond(), Mode::Train)
            .unwrap()
            .sub(&target)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let g = loss.backward().unwrap();
        let grads: Vec<Tensor> = vars
            .iter()
            .map(|v| g.get(v.as_tensor()).unwrap().clone())
            .collect();
        (loss.to_scalar::<f32>().unwrap(), grads)
    };
    let (l_fused, g_fused) = run(&m);
    m.set_fused_training(false);
    let (l_prim, g_prim) = run(&m);
    assert!(
        ((l_fused - l_prim) / l_prim).abs() < 1e-5,
        "{l_fused} vs {l_prim}"
    );
    for (i, (a, p)) in g_fused.iter().zip(&g_prim).enumerate() {
        let e = rel_err(a, p);
        assert!(e < 1e-4, "var {i}: gradient rel err {e}");
    }
}

/// A trainable base (phase 0): the fused training kernels give the same loss and the same
/// gradient of every base weight as plain candle primitives, and no weight is left without one.
#[test]
fn fused_training_of_a_trainable_base_matches_primitive_ops() {
    let cfg = small_cfg(true);
    let vars: Vec<(String, Var)> = random_weights(&cfg, 23, &DEV, DType::F32)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, Var::from_tensor(&t).unwrap()))
        .collect();
    let build = || {
        let map = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        MmDit::new_trainable(&cfg, VarBuilder::from_tensors(map, DType::F32, &DEV)).unwrap()
    };
    let b = Batch::new(&cfg, 3, 41);
    let target = rnd(b.img.dims(), 9, 1.0);
    let run = |m: &MmDit| {
        let loss = m
            .forward(&b.inputs(), Condition::None, Mode::Train)
            .unwrap()
            .sub(&target)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let g = loss.backward().unwrap();
        let grads: Vec<Option<Tensor>> = vars
            .iter()
            .map(|(_, v)| g.get(v.as_tensor()).cloned())
            .collect();
        (loss.to_scalar::<f32>().unwrap(), grads)
    };
    let fused = build();
    let (l_fused, g_fused) = run(&fused);
    let mut plain = build();
    plain.set_fused_training(false);
    let (l_prim, g_prim) = run(&plain);
    assert!(
        ((l_fused - l_prim) / l_prim).abs() < 1e-5,
        "{l_fused} vs {l_prim}"
    );
    for ((name, _), (a, p)) in vars.iter().zip(g_fused.iter().zip(&g_prim)) {
        let (a, p) = match (a, p) {
            (Some(a), Some(p)) => (a, p),
            _ => panic!(
                "{name}: no gradient (fused {}, plain {})",
                a.is_some(),
                p.is_some()
            ),
        };
        let e = rel_err(a, p);
        assert!(e < 1e-5, "{name}: gradient rel err {e}");
        assert!(
            max_abs(a, &a.zeros_like().unwrap()) > 0.0,
            "{name}: zero gradient"
        );
    }
}

/// Activation checkpointing changes neither the loss nor any LoRA gradient (both sets in one
/// joint loss, the fused CPU kernels and the plain primitives), and AdamW steps from it follow
/// the same path.
#[test]
fn checkpointed_training_matches_the_plain_backward() {
    let cfg = small_cfg(true);
    let mut m = model(&cfg, 29);
    let sk = add_random_set(&mut m, "skeletal", 4, 5);
    let ap = add_random_set(&mut m, "appearance", 2, 6);
    let vars: Vec<Var> = sk.iter().chain(&ap).cloned().collect();
    let b = Batch::new(&cfg, 2, 71);
    let target = rnd(b.img.dims(), 17, 1.0);
    let joint_loss = |m: &mut MmDit| {
        let mut loss: Option<Tensor> = None;
        for (set, w) in [("skeletal", 0.5), ("appearance", 1.0)] {
            m.loras_mut().set_active(Some(set)).unwrap();
            let out = m.forward(&b.inputs(), b.cond(), Mode::Train).unwrap();
            let l = (mse(&out, &target) * w).unwrap();
            loss = Some(match loss {
                None => l,
                Some(s) => (s + l).unwrap(),
            });
        }
        loss.unwrap()
    };
    for fused in [true, false] {
        m.set_fused_training(fused);
        let mut runs = Vec::new();
        for ckpt in [false, true] {
            m.set_activation_checkpointing(ckpt).unwrap();
            assert_eq!(m.activation_checkpointing(), ckpt);
            let loss = joint_loss(&mut m);
            let g = loss.backward().unwrap();
            let grads: Vec<Tensor> = vars
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    g.get(v.as_tensor())
                        .unwrap_or_else(|| {
                            panic!("fused {fused} ckpt {ckpt}: var {i} has no gradient")
                        })
                        .clone()
                })
                .collect();
            runs.push((loss.to_scalar::<f32>().unwrap(), grads));
        }
        let ((l_plain, g_plain), (l_ckpt, g_ckpt)) = (&runs[0], &runs[1]);
        assert!(
            ((l_plain - l_ckpt) / l_plain).abs() <= 1e-6,
            "fused {fused}: loss {l_plain} vs {l_ckpt}"
        );
        for (i, (p, c)) in g_plain.iter().zip(g_ckpt).enumerate() {
            let e = rel_err(c, p);
            assert!(e <= 1e-6, "fused {fused}: var {i}: gradient rel err {e}");
        }
    }
    // Three AdamW steps with and without checkpointing end at the same weights.
    let start: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect();
    let mut finals = Vec::new();
    for ckpt in [false, true] {
        for (v, s) in vars.iter().zip(&start) {
            v.set(s).unwrap();
        }
        m.set_activation_checkpointing(ckpt).unwrap();
        let mut opt = candle_nn::AdamW::new(
            vars.clone(),
            candle_nn::ParamsAdamW {
                lr: 1e-3,
                ..Default::default()
            },
        )
        .unwrap();
        use candle_nn::Optimizer;
        for _ in 0..3 {
            let loss = joint_loss(&mut m);
            opt.backward_step(&loss).unwrap();
        }
        finals.push(
            vars.iter()
                .map(|v| v.as_tensor().copy().unwrap())
                .collect::<Vec<_>>(),
        );
    }
    for (i, (a, c)) in finals[0].iter().zip(&finals[1]).enumerate() {
        let e = rel_err(c, a);
        assert!(e <= 1e-6, "var {i}: weights after 3 steps differ by {e}");
    }
}

/// Checkpointing with a LoRA set lacking the key adapter, and with no condition at all, gives
/// the plain backward's values and gradients.
#[test]
fn checkpointing_matches_with_some_adapters_missing_and_without_a_condition() {
    let cfg = small_cfg(true);
    let mut m = model(&cfg, 31);
    // no key adapter: the checkpointed blocks must hand each weight back to its own slot
    let spec = LoraSpec {
        rank: 3,
        alpha: 6.0,
        targets: vec![LoraTarget::Q, LoraTarget::V],
        seed: 8,
    };
    m.loras_mut().add("qv", &spec).unwrap();
    let vars = m.loras_mut().make_trainable("qv").unwrap();
    for (i, v) in vars.iter().enumerate() {
        v.set(&rnd(v.dims(), 800 + i as u64, 0.05)).unwrap();
    }
    m.loras_mut().set_active(Some("qv")).unwrap();
    let b = Batch::new(&cfg, 2, 73);
    let target = rnd(b.img.dims(), 19, 1.0);
    // the image tokens as a variable: without a condition only they carry a gradient
    let img = Var::from_tensor(&b.img).unwrap();
    for cond in [true, false] {
        let mut runs = Vec::new();
        for ckpt in [false, true] {
            m.set_activation_checkpointing(ckpt).unwrap();
            let inputs = DitInputs {
                img: img.as_tensor(),
                ..b.inputs()
            };
            let c = if cond { b.cond() } else { Condition::None };
            let out = m.forward(&inputs, c, Mode::Train).unwrap();
            let loss = mse(&out, &target);
            let g = loss.backward().unwrap();
            let mut grads = vec![g.get(img.as_tensor()).expect("image gradient").clone()];
            if cond {
                for (i, v) in vars.iter().enumerate() {
                    let gv = g.get(v.as_tensor());
                    grads.push(gv.unwrap_or_else(|| panic!("var {i}: no gradient")).clone());
                }
            }
            runs.push((out, grads));
        }
        let ((out_plain, g_plain), (out_ckpt, g_ckpt)) = (&runs[0], &runs[1]);
        let e = rel_err(out_ckpt, out_plain);
        assert!(e <= 1e-6, "condition {cond}: output rel err {e}");
        for (i, (p, c)) in g_plain.iter().zip(g_ckpt).enumerate() {
            let e = rel_err(c, p);
            assert!(e <= 1e-6, "condition {cond}: gradient {i} rel err {e}");
        }
    }
}

/// Checkpointing recomputes blocks from frozen base weights: a trainable base is refused, with
/// a message saying why.
#[test]
fn checkpointing_refuses_a_trainable_base() {
    let cfg = small_cfg(false);
    let map = random_weights(&cfg, 31, &DEV, DType::F32).unwrap();
    let mut m =
        MmDit::new_trainable(&cfg, VarBuilder::from_tensors(map, DType::F32, &DEV)).unwrap();
    let e = m
        .set_activation_checkpointing(true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("frozen base"), "{e}");
    assert!(m.set_activation_checkpointing(false).is_ok());
}
