//! `TinyAe`: shapes, round trips at 128 px and a non-square size, save/load, named errors,
//! and that training lowers the loss. The `#[ignore]`d `tiny_ae_psnr_budget` measures the
//! held-out PSNR after a timed training run (`TINY_AE_SECONDS`, default 300) on procedural
//! scenes with stick figures.

use candle_core::{DType, Device, Tensor};
use skeleguide_engine::model::lora::SplitMix64;
use skeleguide_engine::model::tiny_ae::{latent_stats, psnr};
use skeleguide_engine::model::{
    train_tiny_ae, Autoencoder, ModelError, TinyAe, TinyAeConfig, TinyAeTrainOptions, TinyAeTrainer,
};
use std::time::Instant;

const DEV: Device = Device::Cpu;

// ------------------------------------------------------------------ procedural scenes

use skeleguide_engine::pose::LIMBS;

/// The layout palette (the engine's), as floats.
fn color(i: usize) -> [f32; 3] {
    skeleguide_engine::pose::COLORS[i].map(|c| c as f32)
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[f32; 3]>,
}

impl Canvas {
    fn put(&mut self, x: i64, y: i64, c: [f32; 3], a: f32) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let p = &mut self.px[y as usize * self.w + x as usize];
            for k in 0..3 {
                p[k] = p[k] * (1.0 - a) + c[k] * a;
            }
        }
    }
    fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [f32; 3]) {
        for y in y0.max(0.0) as i64..y1.min(self.h as f64) as i64 {
            for x in x0.max(0.0) as i64..x1.min(self.w as f64) as i64 {
                self.put(x, y, c, 1.0);
            }
        }
    }
    /// A thick segment (capsule) from a to b.
    fn segment(&mut self, a: (f64, f64), b: (f64, f64), r: f64, c: [f32; 3]) {
        let (x0, x1) = (a.0.min(b.0) - r, a.0.max(b.0) + r);
        let (y0, y1) = (a.1.min(b.1) - r, a.1.max(b.1) + r);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let l2 = (dx * dx + dy * dy).max(1e-9);
        for y in y0.floor() as i64..=y1.ceil() as i64 {
            for x in x0.floor() as i64..=x1.ceil() as i64 {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = (((px - a.0) * dx + (py - a.1) * dy) / l2).clamp(0.0, 1.0);
                let (qx, qy) = (a.0 + t * dx - px, a.1 + t * dy - py);
                let d = (qx * qx + qy * qy).sqrt();
                let cov = (r + 0.5 - d).clamp(0.0, 1.0) as f32;
                if cov > 0.0 {
                    self.put(x, y, c, cov);
                }
            }
        }
    }
}

fn rgb(rng: &mut SplitMix64) -> [f32; 3] {
    [
        rng.next_f64() as f32 * 255.0,
        rng.next_f64() as f32 * 255.0,
        rng.next_f64() as f32 * 255.0,
    ]
}

/// A random scene: wall and floor gradients, furniture-like boxes, 1-2 stick figures drawn
/// like an OpenPose layout. Returns CHW f32 in [-1, 1].
fn scene(seed: u64, w: usize, h: usize) -> Vec<f32> {
    let mut rng = SplitMix64(seed.wrapping_mul(0x9E37_79B9).wrapping_add(7));
    let mut cv = Canvas {
        w,
        h,
        px: vec![[0.0; 3]; w * h],
    };
    let (wall_a, wall_b, floor_a, floor_b) =
        (rgb(&mut rng), rgb(&mut rng), rgb(&mut rng), rgb(&mut rng));
    let horizon = h as f64 * (0.35 + 0.35 * rng.next_f64());
    for y in 0..h {
        for x in 0..w {
            let (a, b, t) = if (y as f64) < horizon {
                (wall_a, wall_b, y as f64 / horizon)
            } else {
                (
                    floor_a,
                    floor_b,
                    (y as f64 - horizon) / (h as f64 - horizon),
                )
            };
            let t = (t * 0.8 + 0.2 * x as f64 / w as f64) as f32;
            let mut c = [0.0; 3];
            for k in 0..3 {
                c[k] = a[k] * (1.0 - t) + b[k] * t;
            }
            cv.px[y * w + x] = c;
        }
    }
    let s = w.min(h) as f64;
    for _ in 0..(1 + (rng.next_u64() % 4)) {
        let bw = s * (0.1 + 0.3 * rng.next_f64());
        let bh = s * (0.05 + 0.3 * rng.next_f64());
        let x0 = rng.next_f64() * w as f64;
        let y0 = horizon - bh * 0.5 + rng.next_f64() * (h as f64 - horizon);
        let c = rgb(&mut rng);
        cv.rect(x0, y0, x0 + bw, y0 + bh, c);
        // a darker "front" face
        cv.rect(
            x0,
            y0 + bh,
            x0 + bw,
            y0 + bh * 1.2,
            [c[0] * 0.6, c[1] * 0.6, c[2] * 0.6],
        );
    }
    for _ in 0..(1 + (rng.next_u64() % 2)) {
        let height = s * (0.35 + 0.4 * rng.next_f64());
        let cx = w as f64 * (0.15 + 0.7 * rng.next_f64());
        let top = (h as f64 - height) * rng.next_f64();
        let u = height / 8.0;
        let j = |rng: &mut SplitMix64, x: f64, y: f64| {
            (
                cx + x * u + (rng.next_f64() - 0.5) * u,
                top + y * u + (rng.next_f64() - 0.5) * u,
            )
        };
        let pts: Vec<(f64, f64)> = vec![
            j(&mut rng, 0.0, 0.5),   // nose
            j(&mut rng, 0.0, 1.5),   // neck
            j(&mut rng, -1.0, 1.6),  // r shoulder
            j(&mut rng, -1.4, 2.8),  // r elbow
            j(&mut rng, -1.6, 4.0),  // r wrist
            j(&mut rng, 1.0, 1.6),   // l shoulder
            j(&mut rng, 1.4, 2.8),   // l elbow
            j(&mut rng, 1.6, 4.0),   // l wrist
            j(&mut rng, -0.6, 4.2),  // r hip
            j(&mut rng, -0.7, 6.0),  // r knee
            j(&mut rng, -0.8, 7.8),  // r ankle
            j(&mut rng, 0.6, 4.2),   // l hip
            j(&mut rng, 0.7, 6.0),   // l knee
            j(&mut rng, 0.8, 7.8),   // l ankle
            j(&mut rng, -0.2, 0.3),  // r eye
            j(&mut rng, 0.2, 0.3),   // l eye
            j(&mut rng, -0.45, 0.4), // r ear
            j(&mut rng, 0.45, 0.4),  // l ear
        ];
        let stick = (4.0 * s / 512.0).max(1.0);
        for (i, (a, b)) in LIMBS.iter().enumerate() {
            let c = color(i);
            cv.segment(
                pts[*a],
                pts[*b],
                stick,
                [c[0] * 0.6, c[1] * 0.6, c[2] * 0.6],
            );
        }
        for (i, p) in pts.iter().enumerate() {
            cv.segment(*p, *p, stick, color(i));
        }
    }
    let mut out = vec![0f32; 3 * w * h];
    for (i, p) in cv.px.iter().enumerate() {
        for k in 0..3 {
            out[k * w * h + i] = p[k] / 127.5 - 1.0;
        }
    }
    out
}

fn batch(seed: u64, n: usize, w: usize, h: usize) -> Tensor {
    let mut v = Vec::with_capacity(n * 3 * w * h);
    for i in 0..n {
        v.extend(scene(seed * 1000 + i as u64, w, h));
    }
    Tensor::from_vec(v, (n, 3, h, w), &DEV).unwrap()
}

// ------------------------------------------------------------------ tests

#[test]
fn default_config_is_div8_16_channels() {
    let cfg = TinyAeConfig::default();
    assert_eq!(cfg.downsample(), 8);
    assert_eq!(cfg.latent_channels, 16);
    let ae = TinyAe::random(&cfg, 1, &DEV).unwrap();
    assert_eq!(ae.downsample(), 8);
    assert_eq!(ae.latent_channels(), 16);
    let json = serde_json::to_string(&cfg).unwrap();
    let back: TinyAeConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    // Missing fields take their defaults.
    let partial: TinyAeConfig = serde_json::from_str(r#"{"latent_channels": 8}"#).unwrap();
    assert_eq!(partial.latent_channels, 8);
    assert_eq!(partial.widths, cfg.widths);
}

#[test]
fn round_trip_shapes_square_and_non_square() {
    let ae = TinyAe::random(&TinyAeConfig::default(), 3, &DEV).unwrap();
    for (n, h, w) in [(2, 128, 128), (1, 64, 96), (1, 8, 8)] {
        let x = batch(1, n, w, h);
        let z = ae.encode(&x).unwrap();
        assert_eq!(z.dims(), &[n, 16, h / 8, w / 8]);
        let y = ae.decode(&z).unwrap();
        assert_eq!(y.dims(), &[n, 3, h, w]);
        let r = ae.forward_train(&x).unwrap();
        assert_eq!(r.dims(), &[n, 3, h, w]);
        let d = (&r - &y).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
    }
}

#[test]
fn scale_and_shift_apply_to_latents_only() {
    let mut cfg = TinyAeConfig::default();
    let a = TinyAe::random(&cfg, 5, &DEV).unwrap();
    cfg.scale_factor = 0.5;
    cfg.shift_factor = 0.25;
    let b = TinyAe::from_tensors(a.parameters().clone(), &cfg, &DEV).unwrap();
    let x = batch(2, 1, 32, 32);
    let za = a.encode(&x).unwrap();
    let zb = b.encode(&x).unwrap();
    let want = ((&za - 0.25).unwrap() * 0.5).unwrap();
    let d = (&zb - &want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    let ya = a.decode(&za).unwrap();
    let yb = b.decode(&zb).unwrap();
    let d = (&ya - &yb).unwrap().abs().unwrap().max_all().unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
}

#[test]
fn bad_inputs_are_errors() {
    let ae = TinyAe::random(&TinyAeConfig::default(), 3, &DEV).unwrap();
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &DEV).unwrap();
    assert!(ae.encode(&z(&[1, 3, 30, 32])).is_err());
    assert!(ae.encode(&z(&[1, 1, 32, 32])).is_err());
    assert!(ae.encode(&z(&[3, 32, 32])).is_err());
    assert!(ae.encode(&z(&[0, 3, 32, 32])).is_err());
    assert!(ae.decode(&z(&[1, 4, 4, 4])).is_err());
    assert!(ae.forward_train(&z(&[1, 3, 12, 16])).is_err());
    let bad = TinyAeConfig {
        enc_blocks: vec![1],
        ..Default::default()
    };
    assert!(matches!(
        TinyAe::random(&bad, 0, &DEV).unwrap_err(),
        ModelError::InvalidConfig(_)
    ));
}

#[test]
fn save_load_round_trip_and_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ae.safetensors");
    let cfg = TinyAeConfig::default();
    let ae = TinyAe::random(&cfg, 9, &DEV).unwrap();
    ae.save(&p).unwrap();
    let back = TinyAe::load(&p, &cfg, &DEV).unwrap();
    let x = batch(3, 1, 32, 32);
    let d = (ae.encode(&x).unwrap() - back.encode(&x).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);

    let mut map = ae.parameters().clone();
    map.remove("dec.s1.block0.conv2.weight");
    candle_core::safetensors::save(&map, &p).unwrap();
    match TinyAe::load(&p, &cfg, &DEV).unwrap_err() {
        ModelError::MissingTensor { name, expected } => {
            assert_eq!(name, "dec.s1.block0.conv2.weight");
            assert_eq!(expected, vec![64, 9 * 64]);
        }
        e => panic!("unexpected {e}"),
    }
    // Another config than the file's.
    ae.save(&p).unwrap();
    let wider = TinyAeConfig {
        widths: vec![32, 64, 96],
        ..Default::default()
    };
    match TinyAe::load(&p, &wider, &DEV).unwrap_err() {
        ModelError::ShapeMismatch { name, .. } => assert!(name.starts_with("enc.s2")),
        e => panic!("unexpected {e}"),
    }
    assert!(matches!(
        TinyAe::load(&dir.path().join("none.safetensors"), &cfg, &DEV).unwrap_err(),
        ModelError::Io { .. }
    ));
}

#[test]
fn training_steps_lower_the_loss() {
    let cfg = TinyAeConfig::default();
    let opts = TinyAeTrainOptions {
        lr: 2e-3,
        ..Default::default()
    };
    let mut tr = TinyAeTrainer::new(&cfg, &opts, &DEV).unwrap();
    let x = batch(11, 4, 32, 32);
    let first = tr.step(&x).unwrap();
    let mut last = first;
    for _ in 0..25 {
        last = tr.step(&x).unwrap();
    }
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    let m = tr.metrics();
    assert_eq!(m.steps, 26);
    assert_eq!(m.images, 26 * 4);
    // The snapshot is a frozen copy that reconstructs like the trained model.
    let snap = tr.snapshot().unwrap();
    let p_live = psnr(&tr.model().forward_train(&x).unwrap(), &x).unwrap();
    let p_snap = psnr(&snap.decode(&snap.encode(&x).unwrap()).unwrap(), &x).unwrap();
    assert!((p_live - p_snap).abs() < 1e-3);
}

#[test]
fn the_weighted_loss_is_the_mse_of_the_weighted_pixels_and_has_gradients() {
    use skeleguide_engine::model::tiny_ae::weighted_mse;
    let x = batch(3, 2, 16, 16);
    let y = batch(4, 2, 16, 16);
    let val = |t: Tensor| t.to_scalar::<f32>().unwrap();
    let plain = val((&x - &y).unwrap().sqr().unwrap().mean_all().unwrap());
    // No weights and uniform weights are both the plain MSE.
    assert_eq!(val(weighted_mse(&x, &y, None).unwrap()), plain);
    let ones = Tensor::ones((2, 1, 16, 16), DType::F32, &DEV).unwrap();
    let w3 = (ones * 3.0).unwrap();
    assert!((val(weighted_mse(&x, &y, Some(&w3)).unwrap()) - plain).abs() < 1e-6);
    // Weight on one 4x4 block only: the MSE over that block.
    let mut m = vec![0f32; 2 * 16 * 16];
    for r in 4..8 {
        for c in 8..12 {
            m[r * 16 + c] = 1.0;
        }
    }
    let w = Tensor::from_vec(m, (2, 1, 16, 16), &DEV).unwrap();
    let block = |t: &Tensor| t.narrow(2, 4, 4).unwrap().narrow(3, 8, 4).unwrap();
    let want = val((block(&x) - block(&y))
        .unwrap()
        .sqr()
        .unwrap()
        .narrow(0, 0, 1)
        .unwrap()
        .mean_all()
        .unwrap());
    assert!((val(weighted_mse(&x, &y, Some(&w)).unwrap()) - want).abs() < 1e-5);
    // It trains: a weighted step changes the weights and lowers the weighted loss.
    let mut tr = TinyAeTrainer::new(&TinyAeConfig::default(), &Default::default(), &DEV).unwrap();
    let first = tr.step_weighted(&x, Some(&w)).unwrap();
    let mut last = first;
    for _ in 0..15 {
        last = tr.step_weighted(&x, Some(&w)).unwrap();
    }
    assert!(last < 0.5 * first, "weighted loss {first} -> {last}");
}

#[test]
fn train_tiny_ae_api_runs_and_stops_on_request() {
    let cfg = TinyAeConfig {
        widths: vec![8, 16, 16],
        ..Default::default()
    };
    let batches = (0..100u64).map(|i| Ok(batch(i, 2, 16, 16)));
    let mut calls = 0;
    let (model, m) = train_tiny_ae(&cfg, &DEV, batches, 10, 1e-3, |step, total, loss| {
        calls += 1;
        assert_eq!(total, 10);
        assert!(loss.is_finite());
        step < 4
    })
    .unwrap();
    assert_eq!(calls, 4);
    assert_eq!(m.steps, 4);
    let (mean, std) = latent_stats(&model, &batch(200, 2, 16, 16)).unwrap();
    assert!(mean.is_finite() && std > 0.0);
}

/// Timed training on procedural scenes, then PSNR on held-out 128 px scenes.
/// Measured: 28.39 dB after 480 s (`TINY_AE_LR=3e-3`, 1180 steps, 19.7 img/s) pinned to 2
/// cores of an idle Xeon; 26.54 dB after 300 s on the shared 2-core dev machine (7.1 img/s).
/// `TINY_AE_PNG=out.png` writes originals over reconstructions.
/// `TINY_AE_SECONDS=300 cargo test --release -p skeleguide-engine --test ae_tiny -- --ignored --nocapture`
#[test]
#[ignore]
fn tiny_ae_psnr_budget() {
    let secs: f64 = std::env::var("TINY_AE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300.0);
    let crop: usize = std::env::var("TINY_AE_CROP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let bs: usize = std::env::var("TINY_AE_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let lr: f64 = std::env::var("TINY_AE_LR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2e-3);
    let cfg = TinyAeConfig::default();
    let held_out = batch(999_999, 16, 128, 128);
    let opts = TinyAeTrainOptions {
        lr,
        ..Default::default()
    };
    let mut tr = TinyAeTrainer::new(&cfg, &opts, &DEV).unwrap();
    println!("TinyAe params: {}", tr.model().num_params());
    let t0 = Instant::now();
    let mut gen_s = 0.0;
    let mut step = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        let g = Instant::now();
        // Crops of full 128 px scenes keep the 128 px scale statistics.
        let full = batch(step + 1, bs, 128, 128);
        let (oy, ox) = (((step * 5) % 9) as usize * 8, ((step * 7) % 9) as usize * 8);
        let ox = ox.min(128 - crop);
        let oy = oy.min(128 - crop);
        let x = full
            .narrow(2, oy, crop)
            .unwrap()
            .narrow(3, ox, crop)
            .unwrap()
            .contiguous()
            .unwrap();
        gen_s += g.elapsed().as_secs_f64();
        let frac = t0.elapsed().as_secs_f64() / secs;
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * frac).cos());
        let warm = ((step + 1) as f64 / 30.0).min(1.0);
        tr.set_learning_rate(lr * warm * (0.05 + 0.95 * cos));
        let loss = tr.step(&x).unwrap();
        step += 1;
        if step % 20 == 0 {
            println!(
                "step {step} t={:.0}s loss {loss:.5} train-psnr {:.2}",
                t0.elapsed().as_secs_f64(),
                tr.metrics().last_psnr
            );
        }
    }
    let m = tr.metrics().clone();
    let model = tr.snapshot().unwrap();
    let mut ps = Vec::new();
    for i in 0..4 {
        let x = held_out.narrow(0, i * 4, 4).unwrap();
        let y = model.decode(&model.encode(&x).unwrap()).unwrap();
        ps.push(psnr(&y, &x).unwrap());
    }
    let held = ps.iter().sum::<f64>() / ps.len() as f64;
    let t_enc = Instant::now();
    let x1 = held_out.narrow(0, 0, 1).unwrap();
    let z = model.encode(&x1).unwrap();
    let enc_ms = t_enc.elapsed().as_secs_f64() * 1e3;
    let t_dec = Instant::now();
    model.decode(&z).unwrap();
    let dec_ms = t_dec.elapsed().as_secs_f64() * 1e3;
    let (mean, std) = latent_stats(&model, &held_out).unwrap();
    println!(
        "RESULT steps {} images {} train-time {:.1}s (+{gen_s:.1}s data) {:.2} img/s at {crop}px \
         batch {bs}; held-out PSNR {held:.2} dB (16 scenes, 128px); encode {enc_ms:.1} ms, \
         decode {dec_ms:.1} ms per 128px image; latent mean {mean:.3} std {std:.3}",
        m.steps,
        m.images,
        m.seconds,
        m.images_per_second()
    );
    if let Ok(p) = std::env::var("TINY_AE_PNG") {
        // Originals (top row) over reconstructions (bottom row), 4 held-out scenes.
        let x = held_out.narrow(0, 0, 4).unwrap();
        let y = model.decode(&model.encode(&x).unwrap()).unwrap();
        let to_u8 = |t: &Tensor| -> Vec<f32> {
            ((t.clamp(-1f32, 1f32).unwrap() + 1.0).unwrap() * 127.5)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (xv, yv) = (to_u8(&x), to_u8(&y));
        let mut img = image::RgbImage::new(4 * 128, 2 * 128);
        for (row, v) in [(0u32, &xv), (1, &yv)] {
            for i in 0..4usize {
                for yy in 0..128usize {
                    for xx in 0..128usize {
                        let px = |c: usize| v[((i * 3 + c) * 128 + yy) * 128 + xx] as u8;
                        img.put_pixel(
                            (i * 128 + xx) as u32,
                            row * 128 + yy as u32,
                            image::Rgb([px(0), px(1), px(2)]),
                        );
                    }
                }
            }
        }
        img.save(&p).unwrap();
    }
    if let Ok(p) = std::env::var("TINY_AE_SAVE") {
        model.save(std::path::Path::new(&p)).unwrap();
    }
}
