//! One flow-matching stage of the pipeline, set up once and integrated in pieces: the text
//! features, ids, guidance and schedule of a stage ([`StageRun`]), the guided velocity (with
//! stage 1's scene contrast), Euler steps over any stretch of the schedule, and the clean
//! latent predicted at a step.

use super::{Pipeline, PipelineError, Result, RunOptions};
use crate::model::{
    image_ids, joint_ids, pack_latents, text_ids, unpack_latents, Condition, DitInputs, Mode,
};
use crate::modeldir::SceneContrast;
use crate::sampling::{self, SampleError, Stage};
use candle_core::Tensor;
use std::sync::atomic::AtomicBool;

/// What a stage samples from: a condition latent of the working size under a LoRA set, or
/// nothing (the base DiT alone, as phase 0 pretrains it).
#[derive(Clone, Copy)]
pub(super) enum StageInput<'a> {
    Latent { lora: &'a str, cond: &'a Tensor },
    BaseAlone { channels: usize, h: usize, w: usize },
}

/// A stage ready to sample: everything the DiT needs besides the noisy tokens. The condition
/// K/V it uses is the pipeline's cache, filled when the run was set up.
pub(super) struct StageRun {
    stage: Stage,
    txt: Tensor,
    y: Tensor,
    txt_ids: Tensor,
    img_ids: Tensor,
    guidance: Option<Tensor>,
    /// The classifier-free guidance scale; guided (prompt and empty prompt) unless 1.
    scale: f64,
    /// Samples integrated side by side (stage 1's candidates), one batch for all of them.
    samples: usize,
    /// The DiT's batch: `samples`, twice that under guidance (all prompts, then all empty ones).
    batch: usize,
    conditioned: bool,
    /// The `steps + 1` noise levels, 1 down to 0.
    sigmas: Vec<f64>,
    channels: usize,
    th: usize,
    tw: usize,
    /// The implicit baseline: the image's and the layout's token grids in one sequence.
    joint: bool,
    /// Stage 1's scene contrast, with the packed scene latent it pushes away from.
    contrast: Option<(Tensor, SceneContrast)>,
}

impl StageRun {
    /// Sampling steps of the whole schedule.
    pub(super) fn steps(&self) -> usize {
        self.sigmas.len() - 1
    }
}

impl Pipeline {
    /// One flow-matching stage conditioned on `cond` (a latent of the working size), from the
    /// seed's noise to the end.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sample_stage(
        &mut self,
        stage: Stage,
        lora: &str,
        cond: &Tensor,
        prompt: &str,
        opts: &RunOptions,
        progress: super::Progress,
        cancel: &AtomicBool,
    ) -> Result<Tensor> {
        let input = StageInput::Latent { lora, cond };
        let mut v = self.sample_latents(stage, input, prompt, opts, progress, cancel, false)?;
        Ok(v.remove(0))
    }

    /// Samples one latent, or with `joint` (the implicit baseline) the image latent and the
    /// layout latent together: one sequence of both token grids, the layout's with the first
    /// position-id axis set to 1 (`joint_ids`), as the trainer trains it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sample_latents(
        &mut self,
        stage: Stage,
        input: StageInput,
        prompt: &str,
        opts: &RunOptions,
        progress: super::Progress,
        cancel: &AtomicBool,
        joint: bool,
    ) -> Result<Vec<Tensor>> {
        let run = self.stage_run(stage, input, prompt, opts, joint, 1)?;
        let noise = self.stage_noise(&run, opts.seed)?;
        let x = self.integrate(&run, noise, 0, run.steps(), progress, cancel)?;
        self.unpack_state(&run, &x)
    }

    /// Sets a stage up for `samples` samples integrated together: the LoRA set and the
    /// condition cache, the prompt's (and under guidance the empty prompt's) features, the ids
    /// and the schedule.
    pub(super) fn stage_run(
        &mut self,
        stage: Stage,
        input: StageInput,
        prompt: &str,
        opts: &RunOptions,
        joint: bool,
        samples: usize,
    ) -> Result<StageRun> {
        let (channels, h, w) = match input {
            StageInput::Latent { cond, .. } => {
                let (_, c, h, w) = cond.dims4()?;
                (c, h, w)
            }
            StageInput::BaseAlone { channels, h, w } => (channels, h, w),
        };
        let (th, tw) = (h / 2, w / 2);
        let scales = opts.guidance.unwrap_or(self.cfg.text_guidance);
        scales.check().map_err(PipelineError::Input)?;
        let scale = match stage {
            Stage::Reason => scales.reason,
            Stage::Render => scales.render,
        };
        let (txt, y) = self.text_features(prompt)?;
        let (txt, y) = (repeat_batch(&txt, samples)?, repeat_batch(&y, samples)?);
        // The prompt's batch, then the empty prompt's (in the stage's form, as training drops it).
        let (txt, y, batch) = if scale != 1.0 {
            let empty = match stage {
                Stage::Reason => self.cfg.reason_prompt(""),
                Stage::Render => String::new(),
            };
            let (txt_u, y_u) = self.text_features(&empty)?;
            let (txt_u, y_u) = (repeat_batch(&txt_u, samples)?, repeat_batch(&y_u, samples)?);
            (
                Tensor::cat(&[&txt, &txt_u], 0)?,
                Tensor::cat(&[&y, &y_u], 0)?,
                2 * samples,
            )
        } else {
            (txt, y, samples)
        };
        let cond_ids = image_ids(batch, th, tw, &self.device, self.dtype)?;
        let img_ids = if joint {
            joint_ids(batch, th, tw, &self.device, self.dtype)?
        } else {
            cond_ids.clone()
        };
        let txt_ids = text_ids(batch, txt.dim(1)?, &self.device, self.dtype)?;
        let (conditioned, contrast) = match input {
            StageInput::Latent { lora, cond } => {
                self.dit.loras_mut().set_active(Some(lora))?;
                let packed = pack_latents(cond)?;
                let tokens = repeat_batch(&packed, batch)?;
                self.dit
                    .ensure_cond_cache(&mut self.cond_cache, &tokens, &cond_ids, &y)?;
                // Stage 1 pushes its layout away from the scene it is conditioned on.
                let contrast = match stage {
                    Stage::Reason => {
                        let c = self.contrast(opts.contrast);
                        c.check().map_err(PipelineError::Input)?;
                        (!c.is_off()).then_some((packed, c))
                    }
                    Stage::Render => None,
                };
                (true, contrast)
            }
            StageInput::BaseAlone { .. } => {
                self.dit.loras_mut().set_active(None)?;
                (false, None)
            }
        };
        let sigmas = sampling::schedule(opts.steps, self.cfg.time_shift.then_some(th * tw));
        let guidance = self
            .cfg
            .dit
            .guidance_embed
            .then(|| {
                Tensor::new(vec![self.cfg.guidance as f32; batch], &self.device)
                    .and_then(|t| t.to_dtype(self.dtype))
            })
            .transpose()?;
        Ok(StageRun {
            contrast,
            stage,
            txt,
            y,
            txt_ids,
            img_ids,
            guidance,
            scale,
            samples,
            batch,
            conditioned,
            sigmas,
            channels,
            th,
            tw,
            joint,
        })
    }

    /// The packed starting noise of `seed` (each stage salts it, so the two stages differ).
    pub(super) fn stage_noise(&self, run: &StageRun, seed: u64) -> Result<Tensor> {
        let salt = match run.stage {
            Stage::Reason => 0x5245_4153,
            Stage::Render => 0x5245_4e44,
        };
        let shape = [1, run.channels, run.th * 2, run.tw * 2];
        let mut noise = pack_latents(&sampling::seeded_noise(
            &shape,
            seed ^ salt,
            &self.device,
            self.dtype,
        )?)?;
        if run.joint {
            let lay = sampling::seeded_noise(&shape, seed ^ 0x5245_4153, &self.device, self.dtype)?;
            noise = Tensor::cat(&[noise, pack_latents(&lay)?], 1)?;
        }
        Ok(noise)
    }

    /// The guided velocity at `x` (packed tokens) and noise level `sigma`.
    fn velocity(
        &self,
        run: &StageRun,
        x: &Tensor,
        sigma: f64,
    ) -> std::result::Result<Tensor, SampleError> {
        let model = |e: candle_core::Error| SampleError::Model(e.to_string());
        // Under guidance the samples twice: once for the prompt's rows, once for the empty ones.
        let img = repeat_batch(x, run.batch / run.samples).map_err(model)?;
        let t = Tensor::new(vec![sigma as f32; run.batch], &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(model)?;
        let condition = if run.conditioned {
            let missing = || SampleError::Model("condition cache missing".into());
            Condition::Cached(self.cond_cache.as_ref().ok_or_else(missing)?)
        } else {
            Condition::None
        };
        let inp = DitInputs {
            img: &img,
            img_ids: &run.img_ids,
            txt: &run.txt,
            txt_ids: &run.txt_ids,
            timesteps: &t,
            y: &run.y,
            guidance: run.guidance.as_ref(),
        };
        let v = self
            .dit
            .forward(&inp, condition, Mode::Fast)
            .map_err(|e| SampleError::Model(e.to_string()))?;
        let v = if run.batch == run.samples {
            v
        } else {
            let guide = || -> candle_core::Result<Tensor> {
                let n = run.samples;
                let (v_c, v_u) = (v.narrow(0, 0, n)?, v.narrow(0, n, n)?);
                (&v_c - &v_u)?.affine(run.scale, 0.0)? + &v_u
            };
            guide().map_err(model)?
        };
        match &run.contrast {
            // v − w·(x̂0 − S)/σ moves the predicted clean layout x̂0 = x − σv to x̂0 + w·(x̂0 − S)
            Some((scene, c)) if sigma > c.until => {
                let push = || -> candle_core::Result<Tensor> {
                    let x0 = (x - (&v * sigma)?)?;
                    let d = x0.broadcast_sub(scene)?.affine(c.scale / sigma, 0.0)?;
                    &v - d
                };
                push().map_err(model)
            }
            _ => Ok(v),
        }
    }

    /// Euler steps `from..to` of the schedule from `x` (the state at step `from`); progress is
    /// reported as (step reached, steps of the whole schedule).
    pub(super) fn integrate(
        &self,
        run: &StageRun,
        x: Tensor,
        from: usize,
        to: usize,
        progress: super::Progress,
        cancel: &AtomicBool,
    ) -> Result<Tensor> {
        if from == to {
            return Ok(x);
        }
        let n = run.steps();
        Ok(sampling::euler(
            x,
            &run.sigmas[from..=to],
            |x, sigma| self.velocity(run, x, sigma),
            |i, _| progress(run.stage, from + i, n),
            cancel,
        )?)
    }

    /// The clean latent the model predicts from `x`, the state at `step`: `x − σ·v̂`. At the
    /// last step (σ = 0) that is `x` itself.
    pub(super) fn predicted_clean(
        &self,
        run: &StageRun,
        x: &Tensor,
        step: usize,
    ) -> Result<Tensor> {
        let sigma = run.sigmas[step];
        if sigma == 0.0 {
            return Ok(x.clone());
        }
        let v = self.velocity(run, x, sigma)?;
        Ok((x - (v * sigma)?)?)
    }

    /// Packed tokens back to latents: one (holding every sample along its batch), or the
    /// image's and the layout's for a joint run.
    pub(super) fn unpack_state(&self, run: &StageRun, x: &Tensor) -> Result<Vec<Tensor>> {
        let n = run.th * run.tw;
        let mut out = vec![unpack_latents(&x.narrow(1, 0, n)?, run.th, run.tw)?];
        if run.joint {
            out.push(unpack_latents(&x.narrow(1, n, n)?, run.th, run.tw)?);
        }
        Ok(out)
    }
}

/// `x` stacked `n` times along the batch.
fn repeat_batch(x: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    match n {
        1 => Ok(x.clone()),
        _ => Tensor::cat(&vec![x; n], 0),
    }
}
