//! Data-parallel training through the CPU all-reduce backend: N ranks at batch b/N take the same
//! steps as one rank at batch b.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use skeleguide_engine::model::adamw::{AdamW, AdamWParams};
use skeleguide_engine::model::allreduce::{AllReduce, ThreadGroup};
use skeleguide_engine::model::lora::SplitMix64;
use skeleguide_engine::model::{
    image_ids, random_weights, text_ids, Condition, DitConfig, DitInputs, MmDit, Mode,
};
use std::collections::HashMap;
use std::time::Duration;

const DEV: Device = Device::Cpu;

fn cfg() -> DitConfig {
    DitConfig {
        in_channels: 16,
        vec_in_dim: 16,
        context_in_dim: 24,
        hidden_size: 64,
        mlp_ratio: 4.0,
        num_heads: 2,
        depth: 1,
        depth_single_blocks: 2,
        axes_dim: vec![8, 12, 12],
        theta: 10_000,
        qkv_bias: true,
        guidance_embed: false,
    }
}

fn rnd(shape: &[usize], seed: u64) -> Tensor {
    let mut r = SplitMix64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.next_normal() as f32).collect();
    Tensor::from_vec(v, shape, &DEV).unwrap()
}

/// One step's global batch: noisy latents, text, pooled vector, σ and the target.
struct Batch {
    img: Tensor,
    txt: Tensor,
    y: Tensor,
    t: Tensor,
    target: Tensor,
}

impl Batch {
    fn new(cfg: &DitConfig, b: usize, step: u64) -> Self {
        Self {
            img: rnd(&[b, 16, cfg.in_channels], 10 * step + 1),
            txt: rnd(&[b, 5, cfg.context_in_dim], 10 * step + 2),
            y: rnd(&[b, cfg.vec_in_dim], 10 * step + 3),
            t: Tensor::from_vec(
                (0..b).map(|i| 0.1 + 0.2 * i as f32).collect::<Vec<_>>(),
                b,
                &DEV,
            )
            .unwrap(),
            target: rnd(&[b, 16, cfg.in_channels], 10 * step + 4),
        }
    }

    /// Rows `start..start + len`.
    fn rows(&self, start: usize, len: usize) -> Self {
        let n = |t: &Tensor| t.narrow(0, start, len).unwrap().contiguous().unwrap();
        Self {
            img: n(&self.img),
            txt: n(&self.txt),
            y: n(&self.y),
            t: n(&self.t),
            target: n(&self.target),
        }
    }
}

/// A trainable base and its optimiser, from the same initial weights on every rank.
fn replica(cfg: &DitConfig) -> (Vec<(String, Var)>, AdamW) {
    let mut vars: Vec<(String, Var)> = random_weights(cfg, 5, &DEV, DType::F32)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, Var::from_tensor(&t).unwrap()))
        .collect();
    // The same order on every rank: the reduction pairs buffers by position.
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let opt = AdamW::new(
        vars.clone(),
        AdamWParams {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
    )
    .unwrap();
    (vars, opt)
}

/// The flow-matching-style loss of `batch` (mean over its rows).
fn loss(cfg: &DitConfig, vars: &[(String, Var)], batch: &Batch) -> Tensor {
    let map: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let dit = MmDit::new_trainable(cfg, VarBuilder::from_tensors(map, DType::F32, &DEV)).unwrap();
    let b = batch.img.dim(0).unwrap();
    let inp = DitInputs {
        img: &batch.img,
        img_ids: &image_ids(b, 4, 4, &DEV, DType::F32).unwrap(),
        txt: &batch.txt,
        txt_ids: &text_ids(b, 5, &DEV, DType::F32).unwrap(),
        timesteps: &batch.t,
        y: &batch.y,
        guidance: None,
    };
    let out = dit.forward(&inp, Condition::None, Mode::Train).unwrap();
    (out - &batch.target)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
}

fn weights(vars: &[(String, Var)]) -> Vec<Vec<f32>> {
    vars.iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

#[test]
fn n_ranks_at_batch_b_over_n_take_the_steps_of_one_rank_at_batch_b() {
    let cfg = cfg();
    let (batch, steps, n) = (4, 3, 2);
    let (vars, mut opt) = replica(&cfg);
    for step in 0..steps {
        let l = loss(&cfg, &vars, &Batch::new(&cfg, batch, step));
        opt.step(&l.backward().unwrap(), 1.0).unwrap();
    }
    let single = weights(&vars);

    let group = ThreadGroup::ranks(n, Duration::from_secs(300));
    let ranks: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
        let hs: Vec<_> = group
            .iter()
            .map(|rank| {
                let cfg = &cfg;
                s.spawn(move || {
                    let (vars, mut opt) = replica(cfg);
                    let per = batch / rank.world_size();
                    for step in 0..steps {
                        let shard = Batch::new(cfg, batch, step).rows(rank.rank() * per, per);
                        let l = loss(cfg, &vars, &shard);
                        opt.step_reduced(&l.backward().unwrap(), 1.0, rank).unwrap();
                    }
                    weights(&vars)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, w) in ranks.iter().enumerate() {
        // Relative error ‖a − b‖ / ‖b‖ of all the weights together: f32 sums over the half
        // batches round differently from the whole batch's, and AdamW's first steps amplify
        // that where a gradient is near zero (a few biases reach 1e-5). Each tensor is checked
        // too, at a bound a tensor left out of the reduction would exceed many times over.
        let (mut d_all, mut n_all) = (0f64, 0f64);
        for ((name, _), (a, b)) in vars.iter().zip(w.iter().zip(&single)) {
            let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
            let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            let rel = (d / n.max(1e-30)).sqrt();
            assert!(rel <= 1e-4, "rank {r}, {name}: relative error {rel:e}");
            d_all += d;
            n_all += n;
        }
        let rel = (d_all / n_all).sqrt();
        eprintln!("rank {r}: relative error of the weights {rel:e}");
        assert!(
            rel <= 1e-6,
            "rank {r}: relative error of the weights {rel:e}"
        );
    }
    // The ranks did move the weights.
    let (init, _) = replica(&cfg);
    assert_ne!(weights(&init), single);
}

#[test]
fn a_rank_that_fails_mid_run_stops_the_others_with_its_reason() {
    let cfg = cfg();
    let group = ThreadGroup::ranks(2, Duration::from_secs(300));
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let hs: Vec<_> = group
            .iter()
            .map(|rank| {
                let cfg = &cfg;
                s.spawn(move || {
                    let (vars, mut opt) = replica(cfg);
                    for step in 0..4 {
                        if rank.rank() == 1 && step == 2 {
                            rank.abort("cannot read its shard");
                            return Err("aborted".to_string());
                        }
                        let shard = Batch::new(cfg, 4, step).rows(2 * rank.rank(), 2);
                        let l = loss(cfg, &vars, &shard);
                        opt.step_reduced(&l.backward().unwrap(), 1.0, rank)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let e = results[0].as_ref().unwrap_err();
    assert!(
        e.contains("rank 1") && e.contains("cannot read its shard"),
        "{e}"
    );
}

/// Parameters off the host fast path (f64 here, a GPU in practice) reduce their gradients
/// through host buffers: two ranks still take one rank's steps.
#[test]
fn gradients_off_the_host_path_are_reduced_through_host_buffers() {
    let x = rnd(&[8, 3], 41).to_dtype(DType::F64).unwrap();
    let y = rnd(&[8, 2], 42).to_dtype(DType::F64).unwrap();
    let params = AdamWParams {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let start = rnd(&[3, 2], 43).to_dtype(DType::F64).unwrap();
    let new_var = || Var::from_tensor(&start).unwrap();
    let loss = |w: &Var, rows: std::ops::Range<usize>| {
        let (xs, ys) = (
            x.narrow(0, rows.start, rows.len()).unwrap(),
            y.narrow(0, rows.start, rows.len()).unwrap(),
        );
        (xs.matmul(w.as_tensor()).unwrap() - ys)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
    };
    let alone = new_var();
    let mut opt = AdamW::new(vec![("w".into(), alone.clone())], params.clone()).unwrap();
    for _ in 0..3 {
        opt.step(&loss(&alone, 0..8).backward().unwrap(), 1.0)
            .unwrap();
    }
    let expected: Vec<f64> = alone.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    let ranks = ThreadGroup::ranks(2, Duration::from_secs(30));
    let results: Vec<Vec<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .iter()
            .map(|rank| {
                let (loss, new_var, params) = (&loss, &new_var, params.clone());
                s.spawn(move || {
                    let w = new_var();
                    let mut opt = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
                    let rows = rank.rank() * 4..rank.rank() * 4 + 4;
                    for _ in 0..3 {
                        let g = loss(&w, rows.clone()).backward().unwrap();
                        opt.step_reduced(&g, 1.0, rank).unwrap();
                    }
                    w.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for got in results {
        for (a, b) in got.iter().zip(&expected) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{got:?} vs {expected:?}"
            );
        }
    }
}
