//! The losses: flow matching on the DiT, and the per-phase losses of the LoRA phases (`L_reason`,
//! `L_render`, phase 2's joint loss through `M̂`, the baselines').

use super::data::{
    cache_latents, cond_keep, eval_draws, gather, load_examples, noise_like, noise_rows, Draw,
    Example, Latents, TextCache,
};
use super::{Result, TrainError};
use crate::config::TrainConfig;
use crate::optim::TrainRng;
use candle_core::{DType, Device, Tensor, Var};
use skeleguide_engine::model::{
    image_ids, joint_ids, pack_latents, text_ids, Condition, DitInputs, MmDit, Mode, TinyAe,
    TinyText,
};
use skeleguide_engine::modeldir::{self, AeSpec, ModelConfig, TextSpec, APPEARANCE, SKELETAL};
use skeleguide_engine::sampling;
use std::path::Path;

// ------------------------------------------------------------------ the flow-matching loss

/// Everything a DiT call needs besides the noisy tokens and the condition.
#[derive(Clone)]
pub(super) struct StepCtx {
    pub(super) txt: Tensor,
    pub(super) y: Tensor,
    pub(super) txt_ids: Tensor,
    pub(super) img_ids: Tensor,
    pub(super) guidance: Option<Tensor>,
    pub(super) sigma: Tensor,
}

impl StepCtx {
    fn inputs<'a>(&'a self, img: &'a Tensor, img_ids: &'a Tensor) -> DitInputs<'a> {
        DitInputs {
            img,
            img_ids,
            txt: &self.txt,
            txt_ids: &self.txt_ids,
            timesteps: &self.sigma,
            y: &self.y,
            guidance: self.guidance.as_ref(),
        }
    }
}

/// FM loss of `dit` on clean tokens `x` with `noise`: MSE between `v̂(x_σ)` and `noise − x`,
/// each token weighted by `focus` (`(B, tokens, 1)`, mean 1) where given.
pub(super) fn fm_loss(
    dit: &MmDit,
    ctx: &StepCtx,
    x: &Tensor,
    noise: &Tensor,
    img_ids: &Tensor,
    cond: Condition,
    focus: Option<&Tensor>,
) -> Result<Tensor> {
    let s = ctx.sigma.unsqueeze(1)?.unsqueeze(2)?;
    let xs = (x.broadcast_mul(&(1.0 - &s)?)? + noise.broadcast_mul(&s)?)?;
    let v = dit.forward(&ctx.inputs(&xs, img_ids), cond, Mode::Train)?;
    let target = (noise - x)?;
    let err = (v - target)?.sqr()?;
    Ok(match focus {
        Some(w) => err.broadcast_mul(w)?.mean_all()?,
        None => err.mean_all()?,
    })
}

/// Token weights `1 + weight · share` of the batch's rows of each `(share, weight)` part
/// (`(N, tokens, 1)`), joined along the tokens and divided by their mean so the loss keeps its
/// scale; `None` when every weight is 0 (the plain MSE).
pub(super) fn focus_weights(parts: &[(&Tensor, f64)], d: &[Draw]) -> Result<Option<Tensor>> {
    if parts.iter().all(|(_, w)| *w == 0.0) {
        return Ok(None);
    }
    let w = parts
        .iter()
        .map(|(share, weight)| Ok(((gather(share, d)? * *weight)? + 1.0)?))
        .collect::<Result<Vec<_>>>()?;
    let w = Tensor::cat(&w, 1)?;
    let mean = w.mean_all()?;
    Ok(Some(w.broadcast_div(&mean)?))
}

pub(super) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()? as f64)
}

pub(super) fn guidance(
    cfg: &skeleguide_engine::model::DitConfig,
    b: usize,
    device: &Device,
    dtype: DType,
) -> Result<Option<Tensor>> {
    Ok(if cfg.guidance_embed {
        Some(Tensor::ones(b, dtype, device)?)
    } else {
        None
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Phase 1: `L_reason` (layout given the scene, skeletal LoRA).
    Reason,
    /// Phase 2: `λ_reason·L_reason + λ_render·L_render(M̂)`.
    Joint,
    /// Phase 3: `L_render` on the ground-truth layout (appearance LoRA).
    Render,
    /// Single-stage baseline: image given the scene (appearance LoRA).
    SceneRender,
    /// Implicit baseline: image and layout jointly given the scene (appearance LoRA).
    Implicit,
}

#[derive(Clone)]
pub(super) struct LossCtx<'a> {
    pub(super) lat: &'a Latents,
    pub(super) tc: &'a TextCache,
    pub(super) examples: &'a [Example],
    pub(super) cfg: &'a TrainConfig,
    pub(super) device: &'a Device,
    pub(super) dtype: DType,
    /// A data-parallel rank's rows of the global batch and its size: the draws passed to
    /// [`LossCtx::loss`] are those rows. `None`: the draws are the whole batch.
    pub(super) share: Option<(std::ops::Range<usize>, usize)>,
}

/// The fixed pure noise `M0` of example `index` (phase 2): the same every step.
pub fn fixed_m0_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x4D30_4D30
}

impl LossCtx<'_> {
    fn noise(&self, rng: &mut TrainRng, t: &Tensor) -> Result<Tensor> {
        match &self.share {
            Some((rows, batch)) => noise_rows(rng, t, rows.clone(), *batch),
            None => noise_like(rng, t),
        }
    }

    /// `L_reason`'s token weights: the skeleton strokes by `optim.reason_focus`.
    fn reason_focus(&self, d: &[Draw]) -> Result<Option<Tensor>> {
        focus_weights(&[(&self.lat.stroke_share, self.cfg.optim.reason_focus)], d)
    }

    /// `L_render`'s token weights: the person by `optim.render_focus`.
    fn render_focus(&self, d: &[Draw]) -> Result<Option<Tensor>> {
        focus_weights(&[(&self.lat.person_share, self.cfg.optim.render_focus)], d)
    }

    /// The batch's prompts (empty where dropped) as text features; with `reason`, in their
    /// stage-1 form.
    fn text(&self, d: &[Draw], reason: bool) -> Result<(Tensor, Tensor)> {
        let prompts: Vec<&str> = d
            .iter()
            .map(|d| {
                if d.drop_prompt {
                    ""
                } else {
                    self.examples[d.index].prompt.as_str()
                }
            })
            .collect();
        self.tc.batch(&prompts, reason)
    }

    /// The text, ids and σ of a batch; with `reason`, the prompts in their stage-1 form.
    fn step_ctx(&self, d: &[Draw], reason: bool) -> Result<StepCtx> {
        let b = d.len();
        let (txt, y) = self.text(d, reason)?;
        Ok(StepCtx {
            txt_ids: text_ids(b, txt.dim(1)?, self.device, self.dtype)?,
            img_ids: image_ids(b, self.lat.th, self.lat.tw, self.device, self.dtype)?,
            txt,
            y,
            guidance: None,
            sigma: Tensor::from_vec(
                d.iter().map(|d| d.sigma as f32).collect::<Vec<_>>(),
                b,
                self.device,
            )?
            .to_dtype(self.dtype)?,
        })
    }

    /// The loss of one batch, with `(L_reason, L_render)` when both exist.
    pub(super) fn loss(
        &self,
        dit: &mut MmDit,
        kind: Kind,
        d: &[Draw],
        rng: &mut TrainRng,
    ) -> Result<(Tensor, Option<f64>, Option<f64>)> {
        let mut ctx = self.step_ctx(d, kind == Kind::Reason)?;
        ctx.guidance = guidance(dit.config(), d.len(), self.device, self.dtype)?;
        let keep = cond_keep(d, self.device, self.dtype)?;
        let scene = gather(&self.lat.scene, d)?.broadcast_mul(&keep)?;
        let layout = gather(&self.lat.layout, d)?;
        let image = gather(&self.lat.image, d)?;
        let ids = ctx.img_ids.clone();
        let scene_cond = Condition::Tokens {
            tokens: &scene,
            ids: &ids,
        };
        match kind {
            Kind::Reason => {
                dit.loras_mut().set_active(Some(SKELETAL))?;
                let noise = self.noise(rng, &layout)?;
                let focus = self.reason_focus(d)?;
                Ok((
                    fm_loss(dit, &ctx, &layout, &noise, &ids, scene_cond, focus.as_ref())?,
                    None,
                    None,
                ))
            }
            Kind::Render | Kind::SceneRender => {
                dit.loras_mut().set_active(Some(APPEARANCE))?;
                let cond_lat = if kind == Kind::Render {
                    layout.broadcast_mul(&keep)?
                } else {
                    scene.clone()
                };
                let noise = self.noise(rng, &image)?;
                let cond = Condition::Tokens {
                    tokens: &cond_lat,
                    ids: &ids,
                };
                let focus = self.render_focus(d)?;
                Ok((
                    fm_loss(dit, &ctx, &image, &noise, &ids, cond, focus.as_ref())?,
                    None,
                    None,
                ))
            }
            Kind::Implicit => {
                dit.loras_mut().set_active(Some(APPEARANCE))?;
                let x = Tensor::cat(&[&image, &layout], 1)?;
                let noise = self.noise(rng, &x)?;
                let jids = joint_ids(d.len(), self.lat.th, self.lat.tw, self.device, self.dtype)?;
                // the image tokens first, then the layout's (as `x`)
                let o = &self.cfg.optim;
                let focus = focus_weights(
                    &[
                        (&self.lat.person_share, o.render_focus),
                        (&self.lat.stroke_share, o.reason_focus),
                    ],
                    d,
                )?;
                Ok((
                    fm_loss(dit, &ctx, &x, &noise, &jids, scene_cond, focus.as_ref())?,
                    None,
                    None,
                ))
            }
            Kind::Joint => {
                dit.loras_mut().set_active(Some(SKELETAL))?;
                // Stage 1 sees its prompts; the render loss below the plain ones in `ctx`.
                let (txt, y) = self.text(d, true)?;
                let rctx = StepCtx {
                    txt,
                    y,
                    ..ctx.clone()
                };
                let rctx = &rctx;
                let noise_m = self.noise(rng, &layout)?;
                let l_reason = fm_loss(
                    dit,
                    rctx,
                    &layout,
                    &noise_m,
                    &ids,
                    scene_cond,
                    self.reason_focus(d)?.as_ref(),
                )?;
                // M̂ = M0 − v̂(M0, σ = 1): one differentiable step from a fixed noise per example.
                let (c, h, w) = (layout.dim(2)? / 4, self.lat.th * 2, self.lat.tw * 2);
                let m0: Vec<Tensor> = d
                    .iter()
                    .map(|d| {
                        let n = sampling::seeded_noise(
                            &[1, c, h, w],
                            fixed_m0_seed(self.cfg.seed, d.index),
                            self.device,
                            self.dtype,
                        )
                        .map_err(|e| TrainError::Data(e.to_string()))?;
                        Ok(pack_latents(&n)?)
                    })
                    .collect::<Result<_>>()?;
                let m0 = Tensor::cat(&m0, 0)?;
                let ones = Tensor::ones(d.len(), self.dtype, self.device)?;
                let one_ctx = DitInputs {
                    img: &m0,
                    img_ids: &ids,
                    txt: &rctx.txt,
                    txt_ids: &rctx.txt_ids,
                    timesteps: &ones,
                    y: &rctx.y,
                    guidance: rctx.guidance.as_ref(),
                };
                let v0 = dit.forward(&one_ctx, scene_cond, Mode::Train)?;
                let m_hat = (&m0 - v0)?.broadcast_mul(&keep)?;
                dit.loras_mut().set_active(Some(APPEARANCE))?;
                let noise_x = self.noise(rng, &image)?;
                let l_render = fm_loss(
                    dit,
                    &ctx,
                    &image,
                    &noise_x,
                    &ids,
                    Condition::Tokens {
                        tokens: &m_hat,
                        ids: &ids,
                    },
                    self.render_focus(d)?.as_ref(),
                )?;
                let total = ((&l_reason * self.cfg.optim.lambda_reason)?
                    + (&l_render * self.cfg.optim.lambda_render)?)?;
                let (a, b) = (scalar(&l_reason)?, scalar(&l_render)?);
                Ok((total, Some(a), Some(b)))
            }
        }
    }
}

/// Phase 2's render loss alone (`L_render` through `M̂`) on the first `batch` examples of a
/// model directory, with both LoRA sets trainable: returns the loss, and the skeletal and
/// appearance `Var`s. Used to check that the skeletal LoRA learns from the render loss.
pub fn phase2_render_loss(
    model: &Path,
    data: &Path,
    batch: usize,
    seed: u64,
) -> Result<(Tensor, Vec<Var>, Vec<Var>)> {
    let mc = ModelConfig::load(model)?;
    let device = Device::Cpu;
    let dtype = DType::F32;
    let mut dit = MmDit::load(model.join(modeldir::BASE_FILE), &mc.dit, &device, dtype)?;
    for set in [SKELETAL, APPEARANCE] {
        dit.loras_mut().load(model.join(modeldir::lora_file(set)))?;
    }
    let AeSpec::Tiny { config: ae_cfg } = &mc.ae else {
        return Err(TrainError::Config("the tiny autoencoder is needed".into()));
    };
    let TextSpec::Tiny { config: text_cfg } = &mc.text else {
        return Err(TrainError::Config("the tiny text encoder is needed".into()));
    };
    let ae = TinyAe::load(&model.join(modeldir::AE_FILE), ae_cfg, &device)?;
    let text = TinyText::load(&model.join(modeldir::TEXT_FILE), text_cfg, &device)?;
    let hidden = indicatif::ProgressBar::hidden();
    let examples = load_examples(data, batch, mc.resolution, 16, &hidden)?;
    let lat = cache_latents(&ae, &examples, &device, dtype, &hidden)?;
    let tc = TextCache::new(&text, &examples, dtype, &mc)?;
    let skel = dit.loras_mut().make_trainable(SKELETAL)?;
    let app = dit.loras_mut().make_trainable(APPEARANCE)?;
    let cfg = TrainConfig::parse(
        &format!(
            "preset = \"tiny\"\nbase_model = \".\"\nseed = {seed}\nbatch = {batch}\ncheckpoint_every = 1\n\
             [optim]\nlr = 1e-4\ngrad_clip = 1.0\nprompt_dropout = 0.0\ncond_dropout = 0.0\nlambda_reason = 0.0\nlambda_render = 1.0\n\
             [data]\n[lora]\nrank = 4\nalpha = 4.0\n[phase1]\nsteps = 0\n[phase2]\nsteps = 0\n[phase3]\nsteps = 0\n"
        ),
        Path::new("<phase2 gradient check>"),
    )
    .map_err(|e| TrainError::Config(e.to_string()))?;
    let lc = LossCtx {
        lat: &lat,
        tc: &tc,
        examples: &examples,
        cfg: &cfg,
        device: &device,
        dtype,
        share: None,
    };
    let d = eval_draws(&cfg, examples.len());
    let mut rng = TrainRng(seed);
    let (total, _, _) = lc.loss(&mut dit, Kind::Joint, &d, &mut rng)?;
    Ok((total, skel, app))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(index: usize) -> Draw {
        Draw {
            index,
            drop_prompt: false,
            drop_cond: false,
            sigma: 0.5,
        }
    }

    #[test]
    fn focus_weights_follow_the_draws_and_the_parts_order_and_average_one() {
        let dev = Device::Cpu;
        // two examples of two tokens: the person fills example 1's first token, the strokes
        // half of example 0's second
        let person = Tensor::new(&[[[0f32], [0.0]], [[1.0], [0.0]]], &dev).unwrap();
        let strokes = Tensor::new(&[[[0f32], [0.5]], [[0.0], [0.0]]], &dev).unwrap();
        assert!(
            focus_weights(&[(&person, 0.0), (&strokes, 0.0)], &[draw(0)])
                .unwrap()
                .is_none()
        );
        let w = focus_weights(&[(&person, 3.0), (&strokes, 2.0)], &[draw(1), draw(0)])
            .unwrap()
            .unwrap();
        // rows in draw order, the person's tokens before the strokes': raw 1 + 3·1, 1, 1, 1 | 1, 1, 1, 1 + 2·0.5
        let raw = [4f32, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0];
        let mean = raw.iter().sum::<f32>() / raw.len() as f32;
        let got = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(w.dims(), &[2, 4, 1]);
        for (g, r) in got.iter().zip(raw) {
            assert!((g - r / mean).abs() < 1e-6, "{got:?}");
        }
    }
}
