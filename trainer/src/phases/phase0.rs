//! Phase 0 of the tiny preset: the autoencoder (`0-ae`), then the base DiT with the text encoder
//! (`0-dit`).

use super::data::{draws, eval_draws, images_tensor, noise_like, Draw, Example};
use super::loss::{fm_loss, guidance, scalar, StepCtx};
use super::{
    adam_params, bar, checkpoint_model_dir, io_err, model_dir, phase_seed, Ctx, PhaseSummary,
    Result, StepDone, TrainError, AE_CONFIG_FILE,
};
use crate::checkpoint;
use crate::optim::{AdamW, AdamWParams, TrainRng};
use crate::phase::Phase;
use candle_core::{DType, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use image::{imageops, GrayImage, RgbImage};
use skeleguide_engine::model::{
    bfl_tensor_shapes, image_ids, random_weights, save_weights, text_ids, Condition, LoraSets,
    MmDit, TextEncoder, TinyAe, TinyAeConfig, TinyText, TinyTextConfig,
};
use skeleguide_engine::modeldir::{self, AeSpec, ModelConfig, TextSpec, APPEARANCE, SKELETAL};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Reconstruction MSE of `ae` on `x` (phase 0-ae's fixed-batch loss).
fn ae_eval_mse(ae: &TinyAe, x: &Tensor) -> Result<f64> {
    scalar(&(ae.forward_train(x)?.detach() - x)?.sqr()?.mean_all()?)
}

/// What phase 0-dit writes into the run's model directory: the base DiT and text encoder as they
/// are, under the run's model config.
struct BaseWeights<'a> {
    mc: &'a ModelConfig,
    dit: &'a [(String, Var)],
    text: &'a TinyText,
}

impl Ctx<'_> {
    // -------------------------------------------------------------- phase 0: autoencoder

    /// Autoencoder crops from the examples' images, scenes and layouts (a third each), and
    /// their loss weights when `skeleton_weight > 0`: a layout's skeleton pixels (where it
    /// differs from its scene) count `1 + skeleton_weight` times.
    fn ae_crops(
        &self,
        rng: &mut TrainRng,
        batch: usize,
        crop: u32,
        skeleton_weight: f32,
    ) -> Result<crate::ae::AeBatch> {
        let n = self.examples.len();
        let mut picked = Vec::with_capacity(batch);
        let mut drawn = Vec::with_capacity(batch);
        for _ in 0..batch {
            let i = rng.below(3 * n);
            let e = &self.examples[i / 3];
            let img = match i % 3 {
                0 => &e.image,
                1 => &e.scene,
                _ => &e.layout,
            };
            let (w, h) = img.dimensions();
            let (cw, ch) = (crop.min(w) / 8 * 8, crop.min(h) / 8 * 8);
            let x = rng.below((w - cw + 1) as usize) as u32 / 8 * 8;
            let y = rng.below((h - ch + 1) as usize) as u32 / 8 * 8;
            let cut = |im: &RgbImage| imageops::crop_imm(im, x, y, cw, ch).to_image();
            let crop = cut(img);
            // A layout crop: its drawn pixels against the same crop of its scene.
            drawn.push((i % 3 == 2).then(|| crate::ae::drawn_pixels(&crop, &cut(&e.scene))));
            picked.push(crop);
        }
        let x = images_tensor(&picked.iter().collect::<Vec<_>>(), &self.device)?;
        if skeleton_weight <= 0.0 {
            return Ok((x, None));
        }
        let (w, h) = picked[0].dimensions();
        let refs: Vec<Option<&GrayImage>> = drawn.iter().map(|d| d.as_ref()).collect();
        let weights =
            crate::ae::loss_weights(&refs, w, h, skeleton_weight)?.to_device(&self.device)?;
        Ok((x, Some(weights)))
    }

    pub(super) fn phase0_ae(
        &mut self,
        resume: Option<&checkpoint::Checkpoint>,
    ) -> Result<PhaseSummary> {
        let p0 = self.p0()?.clone();
        if let Some(src) = &p0.ae_from {
            return self.adopt_ae(src);
        }
        let phase = Phase::Ae;
        let ae_cfg = p0.ae.clone().unwrap_or_default();
        let vm = TinyAe::seeded_varmap(&ae_cfg, self.cfg.seed, &self.device)?;
        let model = TinyAe::new(
            VarBuilder::from_varmap(&vm, DType::F32, &self.device),
            &ae_cfg,
        )?;
        let mut vars: Vec<(String, Var)> = vm
            .data()
            .lock()
            .map_err(|_| TrainError::Config("poisoned var map".into()))?
            .iter()
            .map(|(k, v)| (format!("ae.{k}"), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut opt = AdamW::new(
            vars,
            AdamWParams {
                weight_decay: 0.0,
                ..adam_params(self.cfg, p0.ae_lr)
            },
        )?;
        let mut rng = TrainRng(phase_seed(self.cfg.seed, phase.as_str()));
        let mut start = 0;
        if let Some(c) = resume {
            c.restore(&mut opt, &self.out)?;
            rng = c.rng.clone();
            start = c.pos.step;
        }
        let eval_x = self.ae_eval_images()?;
        let eval = |m: &TinyAe| ae_eval_mse(m, &eval_x);
        let eval_before = eval(&model)?;
        let steps = p0.ae_steps;
        let pb = bar(self.progress, phase, steps, start);
        let t_phase = Instant::now();
        for step in start..steps {
            let t0 = Instant::now();
            // The schedule of `train_tiny_ae`: 5% linear warm-up, cosine decay to lr/10.
            let frac = step as f64 / steps.max(1) as f64;
            opt.params.lr =
                p0.ae_lr * skeleguide_engine::model::tiny_ae::lr_factor(step, steps, frac);
            let (x, weights) =
                self.ae_crops(&mut rng, p0.ae_batch, p0.ae_crop, p0.ae_skeleton_weight)?;
            let loss = skeleguide_engine::model::tiny_ae::weighted_mse(
                &model.forward_train(&x)?,
                &x,
                weights.as_ref(),
            )?;
            let grads = loss.backward()?;
            // Clipped like the other phases. Clipping does not stop Adam from diverging at a
            // high lr (phase0.ae_lr ≤ 1.5e-3 does); it tempers single outlier batches.
            let gn = opt.step(&grads, self.cfg.optim.grad_clip)?;
            let l = scalar(&loss)?;
            let secs = t0.elapsed().as_secs_f64();
            let done = StepDone {
                step: step + 1,
                steps,
                losses: (l, None, None),
                grad_norm: gn,
                secs,
                batch: p0.ae_batch,
            };
            self.end_step(phase, done, &pb, &rng, &opt)?;
            self.stop_if_paused(steps)?;
        }
        pb.finish_and_clear();
        let eval_after = eval(&model)?;
        // Freeze: plain tensors, latent statistics for the DiT (zero mean, unit variance).
        let params: HashMap<String, Tensor> = model
            .parameters()
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.copy()?.detach())))
            .collect::<Result<_>>()?;
        let frozen = TinyAe::from_tensors(params.clone(), &ae_cfg, &self.device)?;
        let stat_imgs: Vec<&RgbImage> = self
            .examples
            .iter()
            .take(32)
            .flat_map(|e| [&e.image, &e.scene])
            .collect();
        let (mean, std) = skeleguide_engine::model::tiny_ae::latent_stats(
            &frozen,
            &images_tensor(&stat_imgs, &self.device)?,
        )?;
        let mut final_cfg = ae_cfg.clone();
        final_cfg.shift_factor = mean;
        final_cfg.scale_factor = 1.0 / std.max(1e-6);
        let mdir = model_dir(&self.out);
        let ae_path = mdir.join(modeldir::AE_FILE);
        let tmp = ae_path.with_extension("safetensors.tmp");
        frozen.save(&tmp)?;
        std::fs::rename(&tmp, &ae_path).map_err(|e| io_err(&ae_path, e))?;
        let cfg_path = self.out.join(AE_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&final_cfg).map_err(|e| io_err(&cfg_path, e))?;
        skeleguide_engine::fsutil::write_atomic(&cfg_path, text.as_bytes())
            .map_err(|e| io_err(&cfg_path, e))?;
        self.checkpoint(phase, steps, &rng, &opt)?;
        let secs = t_phase.elapsed().as_secs_f64();
        Ok(PhaseSummary {
            phase,
            steps,
            steps_run: steps - start.min(steps),
            seconds: secs,
            samples_per_s: ((steps - start.min(steps)) * p0.ae_batch) as f64 / secs.max(1e-9),
            eval_before,
            eval_after,
        })
    }

    /// Phase 0-ae's fixed evaluation images: the first examples' whole images.
    fn ae_eval_images(&self) -> Result<Tensor> {
        let imgs: Vec<&RgbImage> = self.examples.iter().take(4).map(|e| &e.image).collect();
        images_tensor(&imgs, &self.device)
    }

    /// Phase 0-ae with `phase0.ae_from`: the model directory `src`'s tiny autoencoder, weights
    /// and latent statistics, copied unchanged into the run.
    fn adopt_ae(&mut self, src: &Path) -> Result<PhaseSummary> {
        let t0 = Instant::now();
        let mc = ModelConfig::load(src)?;
        let AeSpec::Tiny { config: ae_cfg } = &mc.ae else {
            return Err(TrainError::Config(format!(
                "phase0.ae_from = {}: its autoencoder is not the tiny one",
                src.display()
            )));
        };
        let from = src.join(modeldir::AE_FILE);
        let ae = TinyAe::load(&from, ae_cfg, &self.device)?;
        let mse = ae_eval_mse(&ae, &self.ae_eval_images()?)?;
        let ae_path = model_dir(&self.out).join(modeldir::AE_FILE);
        let tmp = ae_path.with_extension("safetensors.tmp");
        std::fs::copy(&from, &tmp).map_err(|e| io_err(&from, e))?;
        std::fs::rename(&tmp, &ae_path).map_err(|e| io_err(&ae_path, e))?;
        let cfg_path = self.out.join(AE_CONFIG_FILE);
        let text = serde_json::to_string_pretty(ae_cfg).map_err(|e| io_err(&cfg_path, e))?;
        skeleguide_engine::fsutil::write_atomic(&cfg_path, text.as_bytes())
            .map_err(|e| io_err(&cfg_path, e))?;
        Ok(PhaseSummary {
            phase: Phase::Ae,
            steps: 0,
            steps_run: 0,
            seconds: t0.elapsed().as_secs_f64(),
            samples_per_s: 0.0,
            eval_before: mse,
            eval_after: mse,
        })
    }

    // -------------------------------------------------------------- phase 0: base DiT

    /// The model config of a tiny run: its data's vocabulary, the trained AE's latent
    /// statistics, the configured LoRA rank and the method.
    fn tiny_model_config(&self) -> Result<ModelConfig> {
        let mut mc = ModelConfig::tiny();
        let cfg_path = self.out.join(AE_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| io_err(&cfg_path, format!("cannot read (run phase 0 first): {e}")))?;
        let ae_cfg: TinyAeConfig = serde_json::from_str(&text).map_err(|e| io_err(&cfg_path, e))?;
        if let Some(src) = &self.p0()?.dit_from {
            return self.continued_model_config(src, ae_cfg);
        }
        // The DiT packs 2×2 latent patches into one token.
        mc.dit.in_channels = 4 * ae_cfg.latent_channels;
        mc.ae = AeSpec::Tiny { config: ae_cfg };
        let mut texts: Vec<String> = self.examples.iter().map(|e| e.prompt.clone()).collect();
        texts.push(modeldir::default_vocabulary().join(" "));
        if self.p0()?.layout_share > 0.0 {
            mc.reason_prefix = modeldir::TINY_REASON_PREFIX.to_string();
            texts.push(mc.reason_prefix.clone());
        }
        let mut tc = TinyTextConfig::with_vocab(TinyText::build_vocab(&texts, 1));
        tc.max_len = self.p0()?.text_max_len;
        tc.token_dim = mc.dit.context_in_dim;
        tc.pooled_dim = mc.dit.vec_in_dim;
        mc.text = TextSpec::Tiny { config: tc };
        self.apply_run_settings(&mut mc);
        Ok(mc)
    }

    /// The model config of a run that continues `src`'s base: `src`'s own, with the run's
    /// LoRA settings; its autoencoder must be the one the run adopted.
    fn continued_model_config(&self, src: &Path, ae_cfg: TinyAeConfig) -> Result<ModelConfig> {
        let mut mc = ModelConfig::load(src)?;
        let key = "phase0.dit_from";
        if !matches!(&mc.ae, AeSpec::Tiny { config } if *config == ae_cfg) {
            return Err(TrainError::Config(format!(
                "{key} = {}: its autoencoder is not the run's",
                src.display()
            )));
        }
        let TextSpec::Tiny { config: tc } = &mut mc.text else {
            return Err(TrainError::Config(format!(
                "{key} = {}: its text encoder is not the tiny one",
                src.display()
            )));
        };
        // The text length may grow (new positions are learnt on), never shrink: a shorter one
        // would throw away learnt positions the base reads.
        let want = self.p0()?.text_max_len;
        if want < tc.max_len {
            return Err(TrainError::Config(format!(
                "phase0.text_max_len = {want}, but {key} = {} reads {} tokens: set it to {} or more",
                src.display(),
                tc.max_len,
                tc.max_len
            )));
        }
        tc.max_len = want;
        if self.p0()?.layout_share > 0.0 && mc.reason_prefix.is_empty() {
            return Err(TrainError::Config(format!(
                "phase0.layout_share: {key} = {} has no stage-1 prompt prefix (its base never drew layouts)",
                src.display()
            )));
        }
        self.apply_run_settings(&mut mc);
        Ok(mc)
    }

    /// `src`'s trained text encoder, its learnt positions grown to the run's `text_max_len`
    /// (`text_cfg`, which [`Self::continued_model_config`] only lets exceed the source's): each
    /// new position starts as the source's last one, so the tokens a longer prompt adds are
    /// first read like the last token the source kept. Checked by name and shape against
    /// `text_cfg`.
    fn continued_text(&self, src: &Path, text_cfg: &TinyTextConfig) -> Result<TinyText> {
        let path = src.join(modeldir::TEXT_FILE);
        let mut tensors =
            candle_core::safetensors::load(&path, &self.device).map_err(|e| io_err(&path, e))?;
        let key = TinyText::POSITIONS;
        if let Some(pos) = tensors.get(key) {
            let (len, dim) = pos.dims2()?;
            if (1..text_cfg.max_len).contains(&len) {
                let last = pos
                    .narrow(0, len - 1, 1)?
                    .broadcast_as((text_cfg.max_len - len, dim))?;
                let grown = Tensor::cat(&[pos, &last], 0)?;
                tensors.insert(key.to_string(), grown);
            }
        }
        TinyText::from_tensors(tensors, text_cfg, &self.device).map_err(|e| io_err(&path, e))
    }

    /// The base DiT's trainable weights: `phase0.dit_from`'s, or fresh ones (zeroed where
    /// adaLN-Zero asks).
    fn base_dit_start(&self, mc: &ModelConfig) -> Result<Vec<(String, Var)>> {
        let p0 = self.p0()?;
        let w: Vec<(String, Tensor)> = match &p0.dit_from {
            Some(src) => {
                let path = src.join(modeldir::BASE_FILE);
                let mut loaded = candle_core::safetensors::load(&path, &self.device)
                    .map_err(|e| io_err(&path, e))?;
                bfl_tensor_shapes(&mc.dit)
                    .into_iter()
                    .map(|(k, shape)| {
                        let t = loaded
                            .remove(&k)
                            .ok_or_else(|| io_err(&path, format!("tensor `{k}` is missing")))?;
                        if t.dims() != shape.as_slice() {
                            return Err(io_err(
                                &path,
                                format!(
                                    "tensor `{k}` has shape {:?}, expected {shape:?}",
                                    t.dims()
                                ),
                            ));
                        }
                        Ok((k, t.to_dtype(self.dtype)?))
                    })
                    .collect::<Result<_>>()?
            }
            None => random_weights(&mc.dit, self.cfg.seed, &self.device, self.dtype)?
                .into_iter()
                .map(|(k, t)| {
                    let zero = p0.adaln_zero && is_adaln_zero(&k);
                    Ok((k, if zero { t.zeros_like()? } else { t }))
                })
                .collect::<Result<_>>()?,
        };
        let mut v = w
            .into_iter()
            .map(|(k, t)| Ok((k, Var::from_tensor(&t)?)))
            .collect::<Result<Vec<_>>>()?;
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    pub(super) fn phase0_dit(
        &mut self,
        resume: Option<&checkpoint::Checkpoint>,
    ) -> Result<PhaseSummary> {
        let p0 = self.p0()?.clone();
        let phase = Phase::Dit;
        let (device, dtype, cfg) = (self.device.clone(), self.dtype, self.cfg);
        let mc = self.tiny_model_config()?;
        let (AeSpec::Tiny { config: ae_cfg }, TextSpec::Tiny { config: text_cfg }) =
            (&mc.ae, &mc.text)
        else {
            return Err(TrainError::Config(
                "phase 0 needs the tiny autoencoder and text encoder".into(),
            ));
        };
        let mdir = model_dir(&self.out);
        let ae = TinyAe::load(&mdir.join(modeldir::AE_FILE), ae_cfg, &self.device)?;
        let lat = self.latents(&ae)?;
        let dit_cfg = mc.dit.clone();
        let dit_vars = self.base_dit_start(&mc)?;
        // The text encoder's start: `dit_from`'s trained weights (checked by name and shape
        // on loading), or seeded ones.
        let text_vm = match &p0.dit_from {
            Some(src) => {
                let trained = self.continued_text(src, text_cfg)?;
                let vm = VarMap::new();
                {
                    let mut vars = vm
                        .data()
                        .lock()
                        .map_err(|_| TrainError::Config("poisoned var map".into()))?;
                    for (k, t) in trained.parameters() {
                        vars.insert(k.clone(), Var::from_tensor(t)?);
                    }
                }
                vm
            }
            None => {
                TinyText::seeded_varmap(text_cfg, self.cfg.seed.wrapping_add(202), &self.device)?
            }
        };
        let text = TinyText::new(
            VarBuilder::from_varmap(&text_vm, DType::F32, &self.device),
            text_cfg,
        )?;
        let mut text_vars: Vec<(String, Var)> = text_vm
            .data()
            .lock()
            .map_err(|_| TrainError::Config("poisoned var map".into()))?
            .iter()
            .map(|(k, v)| (format!("text.{k}"), v.clone()))
            .collect();
        text_vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut all: Vec<(String, Var)> = dit_vars
            .iter()
            .map(|(k, v)| (format!("dit.{k}"), v.clone()))
            .collect();
        all.extend(text_vars);
        let mut opt = AdamW::new(all, adam_params(self.cfg, p0.dit_lr))?;
        if let Some(d) = p0.ema_decay {
            opt = opt.with_ema(d)?;
        }
        let mut rng = TrainRng(phase_seed(self.cfg.seed, phase.as_str()));
        let mut start = 0;
        if let Some(c) = resume {
            c.restore(&mut opt, &self.out)?;
            rng = c.rng.clone();
            start = c.pos.step;
        }
        let build = || -> Result<MmDit> {
            let map: HashMap<String, Tensor> = dit_vars
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect();
            Ok(MmDit::new_trainable(
                &dit_cfg,
                VarBuilder::from_tensors(map, dtype, &device),
            )?)
        };
        let shift = mc.time_shift.then_some(lat.th * lat.tw);
        let n = self.examples.len();
        let examples = Arc::clone(&self.examples);
        // Photos, then layouts: row `i` or `n + i` of one tensor.
        let layout_share = p0.layout_share;
        let photos_and_layouts = if layout_share > 0.0 {
            Tensor::cat(&[&lat.image, &lat.layout], 0)?
        } else {
            lat.image.clone()
        };
        let loss_of =
            |dit: &MmDit, d: &[Draw], rng: &mut TrainRng, ex: &[Example]| -> Result<Tensor> {
                // Which examples are layouts: drawn after the step's other choices.
                let is_layout: Vec<bool> = d
                    .iter()
                    .map(|_| layout_share > 0.0 && rng.f64() < layout_share)
                    .collect();
                let prompts: Vec<String> = d
                    .iter()
                    .zip(&is_layout)
                    .map(|(d, &lay)| {
                        let p = if d.drop_prompt {
                            ""
                        } else {
                            ex[d.index].prompt.as_str()
                        };
                        if lay {
                            mc.reason_prompt(p)
                        } else {
                            p.to_string()
                        }
                    })
                    .collect();
                let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
                let f = text.encode(&prompts)?;
                let b = d.len();
                let rows: Vec<u32> = d
                    .iter()
                    .zip(&is_layout)
                    .map(|(d, &lay)| (d.index + if lay { n } else { 0 }) as u32)
                    .collect();
                let x =
                    photos_and_layouts.index_select(&Tensor::new(rows.as_slice(), &device)?, 0)?;
                let noise = noise_like(rng, &x)?;
                let ctx = StepCtx {
                    txt_ids: text_ids(b, f.tokens.dim(1)?, &device, dtype)?,
                    img_ids: image_ids(b, lat.th, lat.tw, &device, dtype)?,
                    txt: f.tokens,
                    y: f.pooled,
                    guidance: guidance(&dit_cfg, b, &device, dtype)?,
                    sigma: Tensor::from_vec(
                        d.iter().map(|d| d.sigma as f32).collect::<Vec<_>>(),
                        b,
                        &device,
                    )?,
                };
                fm_loss(dit, &ctx, &x, &noise, &ctx.img_ids, Condition::None, None)
            };
        let eval = |rng_seed: u64| -> Result<f64> {
            let dit = build()?;
            let mut r = TrainRng(rng_seed);
            scalar(&loss_of(&dit, &eval_draws(cfg, n), &mut r, &examples)?.detach())
        };
        let eval_seed = phase_seed(cfg.seed ^ 0xE7A1, phase.as_str());
        let eval_before = eval(eval_seed)?;
        let steps = p0.dit_steps;
        let pb = bar(self.progress, phase, steps, start);
        let base = BaseWeights {
            mc: &mc,
            dit: &dit_vars,
            text: &text,
        };
        let t_phase = Instant::now();
        for step in start..steps {
            let t0 = Instant::now();
            opt.params.lr = p0.dit_lr * p0.dit_schedule.factor(step, steps);
            let dit = build()?;
            let d = draws(&mut rng, cfg, n, shift);
            let loss = loss_of(&dit, &d, &mut rng, &examples)?;
            let grads = loss.backward()?;
            let gn = opt.step(&grads, self.cfg.optim.grad_clip)?;
            let l = scalar(&loss)?;
            let secs = t0.elapsed().as_secs_f64();
            let done = StepDone {
                step: step + 1,
                steps,
                losses: (l, None, None),
                grad_norm: gn,
                secs,
                batch: self.cfg.batch,
            };
            // The base so far, for a gate mid-phase; a failed write costs only that copy.
            if self.end_step(phase, done, &pb, &rng, &opt)? {
                if let Err(e) = self.write_checkpoint_model_dir(&base, &mut opt, step + 1, steps) {
                    pb.suspend(|| eprintln!("warning: {e}"));
                }
            }
            self.stop_if_paused(steps)?;
        }
        pb.finish_and_clear();
        // The model is the weights' moving average when the run keeps one: evaluate and write
        // it in place of the parameters, then put the parameters back for the checkpoint.
        let averaged = opt.ema_decay.is_some();
        if averaged {
            opt.swap_ema()?;
        }
        let eval_after = eval(eval_seed)?;
        self.write_base_model_dir(
            &model_dir(&self.out),
            &base,
            &format!("phase 0 (base DiT + text encoder, {steps} steps)"),
        )?;
        if averaged {
            opt.swap_ema()?;
        }
        self.checkpoint(phase, steps, &rng, &opt)?;
        let secs = t_phase.elapsed().as_secs_f64();
        let run = steps - start.min(steps);
        Ok(PhaseSummary {
            phase,
            steps,
            steps_run: run,
            seconds: secs,
            samples_per_s: (run * self.cfg.batch) as f64 / secs.max(1e-9),
            eval_before,
            eval_after,
        })
    }

    /// Writes `checkpoint_model_dir` from `base` at `step` of `steps` (the moving average when
    /// the run keeps one): into a fresh sibling folder, then renamed over the previous one.
    fn write_checkpoint_model_dir(
        &self,
        base: &BaseWeights,
        opt: &mut AdamW,
        step: usize,
        steps: usize,
    ) -> Result<()> {
        let dir = checkpoint_model_dir(&self.out);
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
        }
        let done = format!("step {step} of {steps} of phase 0 (base DiT + text encoder)");
        let averaged = opt.ema_decay.is_some();
        if averaged {
            opt.swap_ema()?;
        }
        let written = self.write_base_model_dir(&tmp, base, &done);
        if averaged {
            opt.swap_ema()?;
        }
        written?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| io_err(&dir, e))
    }

    /// Writes the complete model directory from `base` (with fresh LoRA sets); `done` says in
    /// the card how far the run is.
    fn write_base_model_dir(&self, mdir: &Path, base: &BaseWeights, done: &str) -> Result<()> {
        let TextSpec::Tiny { config: text_cfg } = &base.mc.text else {
            return Err(TrainError::Config(
                "phase 0 needs the tiny text encoder".into(),
            ));
        };
        std::fs::create_dir_all(mdir).map_err(|e| io_err(mdir, e))?;
        let ae = mdir.join(modeldir::AE_FILE);
        let run_ae = model_dir(&self.out).join(modeldir::AE_FILE);
        if ae != run_ae {
            let tmp = ae.with_extension("safetensors.tmp");
            std::fs::copy(&run_ae, &tmp).map_err(|e| io_err(&run_ae, e))?;
            std::fs::rename(&tmp, &ae).map_err(|e| io_err(&ae, e))?;
        }
        let weights: HashMap<String, Tensor> = base
            .dit
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let path = mdir.join(modeldir::BASE_FILE);
        let tmp = path.with_extension("safetensors.tmp");
        save_weights(&weights, &tmp)?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        let tpath = mdir.join(modeldir::TEXT_FILE);
        let tmp = tpath.with_extension("safetensors.tmp");
        let frozen_text = TinyText::from_tensors(
            base.text
                .parameters()
                .iter()
                .map(|(k, t)| (k.clone(), t.detach()))
                .collect(),
            text_cfg,
            &self.device,
        )?;
        frozen_text.save(&tmp)?;
        std::fs::rename(&tmp, &tpath).map_err(|e| io_err(&tpath, e))?;
        let mut sets = LoraSets::new(&base.mc.dit, &self.device, self.dtype);
        for set in [SKELETAL, APPEARANCE] {
            self.add_fresh(&mut sets, set)?;
            sets.save(set, mdir.join(modeldir::lora_file(set)))?;
        }
        self.finish_model_dir(mdir, base.mc, done)
    }
}

/// The tensors adaLN-Zero starts at zero: every modulation layer and the final layer.
fn is_adaln_zero(name: &str) -> bool {
    name.contains("_mod.lin.")
        || name.contains(".modulation.lin.")
        || name.starts_with("final_layer.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use skeleguide_engine::model::DitConfig;

    #[test]
    fn adaln_zero_names_every_modulation_and_the_final_layer_only() {
        let cfg = DitConfig::tiny();
        let names: Vec<String> = skeleguide_engine::model::bfl_tensor_shapes(&cfg)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let zero: Vec<&String> = names.iter().filter(|n| is_adaln_zero(n)).collect();
        // Weight and bias of: 2 streams x 2 double blocks, 4 single blocks, the final layer's
        // modulation and its projection.
        assert_eq!(zero.len(), 2 * (2 * 2 + 4 + 2), "{zero:?}");
        assert!(zero
            .iter()
            .all(|n| !n.contains("qkv") && !n.contains("mlp")));
    }
}
