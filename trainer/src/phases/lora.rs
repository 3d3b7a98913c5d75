//! Phases 1-3 (and the ablation baselines' phases): LoRA sets on the frozen base.

use super::data::{draws, eval_draws, TextCache};
use super::loss::{scalar, Kind, LossCtx};
use super::{
    adam_params, bar, io_err, lora_lr, lora_steps, model_dir, phase_seed, Ctx, PhaseSummary,
    Result, StepDone, TrainError,
};
use crate::checkpoint;
use crate::log;
use crate::optim::{AdamW, TrainRng};
use crate::phase::Phase;
use skeleguide_engine::model::{
    Autoencoder, FluxAe, FluxText, MmDit, TextEncoder, TinyAe, TinyText,
};
use skeleguide_engine::modeldir::{
    self, AeSpec, Method, ModelConfig, TextSpec, APPEARANCE, SKELETAL,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The frozen parts of phases 1-3: the model's config, base DiT, autoencoder and text encoder.
type Frozen = (
    ModelConfig,
    MmDit,
    Box<dyn Autoencoder>,
    Box<dyn TextEncoder>,
);

impl Ctx<'_> {
    /// The frozen parts for phases 1-3: from `base_model`, or the run's own model directory.
    fn load_frozen(&self) -> Result<Frozen> {
        let mdir = model_dir(&self.out);
        let src = match &self.cfg.base_model {
            Some(b) => {
                link_base(b, &mdir)?;
                b.clone()
            }
            None => mdir.clone(),
        };
        let mut mc = ModelConfig::load(&src)?;
        if src != mdir && !mdir.join(modeldir::CONFIG_FILE).is_file() {
            // first phase from a base model: the LoRA files start from the base's
            for set in [SKELETAL, APPEARANCE] {
                let from = src.join(modeldir::lora_file(set));
                let to = mdir.join(modeldir::lora_file(set));
                if from.is_file() && !to.is_file() {
                    std::fs::copy(&from, &to).map_err(|e| io_err(&to, e))?;
                }
            }
        }
        self.apply_run_settings(&mut mc);
        let mut dit = MmDit::load(
            src.join(modeldir::BASE_FILE),
            &mc.dit,
            &self.device,
            self.dtype,
        )?;
        dit.set_activation_checkpointing(self.cfg.optim.activation_checkpointing)?;
        let ae: Box<dyn Autoencoder> = match &mc.ae {
            AeSpec::Tiny { config } => Box::new(TinyAe::load(
                &src.join(modeldir::AE_FILE),
                config,
                &self.device,
            )?),
            AeSpec::Flux => Box::new(FluxAe::load(
                &src.join(modeldir::AE_FILE),
                &self.device,
                self.dtype,
            )?),
        };
        let text: Box<dyn TextEncoder> = match &mc.text {
            TextSpec::Tiny { config } => Box::new(TinyText::load(
                &src.join(modeldir::TEXT_FILE),
                config,
                &self.device,
            )?),
            TextSpec::Flux => Box::new(FluxText::load(&src, &self.device, self.dtype)?),
        };
        Ok((mc, dit, ae, text))
    }

    /// The prompts' features under the frozen text encoder of phases 1-3, encoded on first use.
    fn text_features(
        &mut self,
        text: &dyn TextEncoder,
        mc: &ModelConfig,
    ) -> Result<Arc<TextCache>> {
        if let Some(t) = &self.text_cache {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(TextCache::new(text, &self.examples, self.dtype, mc)?);
        self.text_cache = Some(Arc::clone(&t));
        Ok(t)
    }

    pub(super) fn lora_phase(
        &mut self,
        phase: Phase,
        resume: Option<&checkpoint::Checkpoint>,
    ) -> Result<PhaseSummary> {
        let LoraPlan {
            fresh,
            trained,
            kind,
        } = lora_plan(phase, self.cfg.method)
            .ok_or_else(|| TrainError::Config(format!("phase {phase}: not a LoRA phase")))?;
        let steps = lora_steps(self.cfg, phase);
        // Rank 0 links the base and copies its LoRA files first; the others then read them.
        let (mc, mut dit, ae, text) = self.after_rank0(|ctx| ctx.load_frozen())?;
        let mdir = model_dir(&self.out);
        // LoRA sets: trained ones from earlier phases are loaded; the ones this phase starts
        // are fresh.
        for set in [SKELETAL, APPEARANCE] {
            let p = mdir.join(modeldir::lora_file(set));
            if p.is_file() {
                dit.loras_mut().load(&p)?;
            }
        }
        for set in fresh {
            self.add_fresh(dit.loras_mut(), set)?;
        }
        for set in [SKELETAL, APPEARANCE] {
            if !dit.loras().contains(set) {
                self.add_fresh(dit.loras_mut(), set)?;
            }
        }
        let mut vars = Vec::new();
        for set in trained {
            for (i, v) in dit.loras_mut().make_trainable(set)?.into_iter().enumerate() {
                vars.push((format!("lora.{set}.{i}"), v));
            }
        }
        let mut opt = AdamW::new(vars, adam_params(self.cfg, lora_lr(self.cfg, phase)))?;
        let mut rng = TrainRng(phase_seed(self.cfg.seed, phase.as_str()));
        let mut start = 0;
        if let Some(c) = resume {
            c.restore(&mut opt, &self.out)?;
            rng = c.rng.clone();
            start = c.pos.step;
        }
        let lat = self.latents(ae.as_ref())?;
        let tc = self.text_features(text.as_ref(), &mc)?;
        let shift = mc.time_shift.then_some(lat.th * lat.tw);
        let n = self.examples.len();
        let examples = Arc::clone(&self.examples);
        let device = self.device.clone();
        let cfg = self.cfg;
        let lossctx = LossCtx {
            lat: &lat,
            tc: &tc,
            examples: &examples,
            cfg,
            device: &device,
            dtype: self.dtype,
            share: self.group.as_ref().map(|g| (g.rows(cfg.batch), cfg.batch)),
        };
        // The fixed evaluation batch: each rank its rows when they split evenly (the mean of
        // the ranks' means), else the whole batch on every rank.
        let eval_all = eval_draws(cfg, n);
        let group = self.group.clone();
        let eval_split = group
            .as_ref()
            .filter(|g| eval_all.len() % g.world_size() == 0);
        let eval_ctx = LossCtx {
            share: eval_split.map(|g| (g.rows(eval_all.len()), eval_all.len())),
            ..lossctx.clone()
        };
        let eval_seed = phase_seed(cfg.seed ^ 0xE7A1, phase.as_str());
        let eval = |dit: &mut MmDit| -> Result<f64> {
            let mut r = TrainRng(eval_seed);
            let mine = match eval_split {
                Some(g) => &eval_all[g.rows(eval_all.len())],
                None => &eval_all[..],
            };
            let (l, _, _) = eval_ctx.loss(dit, kind, mine, &mut r)?;
            let l = scalar(&l.detach())?;
            match eval_split {
                Some(g) => Ok(mean_losses(g, (l, None, None))?.0),
                None => Ok(l),
            }
        };
        let eval_before = eval(&mut dit)?;
        let pb = bar(self.progress, phase, steps, start);
        let t_phase = Instant::now();
        for step in start..steps {
            let t0 = Instant::now();
            let d = draws(&mut rng, cfg, n, shift);
            let mine = match &self.group {
                Some(g) => &d[g.rows(cfg.batch)],
                None => &d[..],
            };
            let (loss, lr_, lrd) = lossctx.loss(&mut dit, kind, mine, &mut rng)?;
            let grads = loss.backward()?;
            let (gn, (l, lr_, lrd)) = match &self.group {
                Some(g) => {
                    let gn = opt.step_reduced(&grads, cfg.optim.grad_clip, g.0.as_ref())?;
                    (gn, mean_losses(g, (scalar(&loss)?, lr_, lrd))?)
                }
                None => (
                    opt.step(&grads, cfg.optim.grad_clip)?,
                    (scalar(&loss)?, lr_, lrd),
                ),
            };
            let secs = t0.elapsed().as_secs_f64();
            let s1 = step + 1;
            let done = StepDone {
                step: s1,
                steps,
                losses: (l, lr_, lrd),
                grad_norm: gn,
                secs,
                batch: self.cfg.batch,
            };
            self.end_step(phase, done, &pb, &rng, &opt)?;
            if self.writes()
                && self.cfg.sample_every > 0
                && s1 % self.cfg.sample_every == 0
                && s1 < steps
            {
                self.write_loras_and_config(&dit, &mc)?;
                self.sample_grid(phase, s1)?;
            }
            self.stop_if_paused(steps)?;
        }
        pb.finish_and_clear();
        let eval_after = eval(&mut dit)?;
        for set in trained {
            dit.loras_mut().freeze(set)?;
        }
        if self.writes() {
            self.write_loras_and_config(&dit, &mc)?;
            self.finish_model_dir(
                &model_dir(&self.out),
                &mc,
                &format!("phase {phase} ({steps} steps)"),
            )?;
            self.checkpoint(phase, steps, &rng, &opt)?;
            if self.cfg.sample_every > 0 {
                self.sample_grid(phase, steps)?;
            }
        }
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

    fn write_loras_and_config(&self, dit: &MmDit, mc: &ModelConfig) -> Result<()> {
        let mdir = model_dir(&self.out);
        for set in [SKELETAL, APPEARANCE] {
            dit.loras().save(set, mdir.join(modeldir::lora_file(set)))?;
        }
        mc.save(&mdir)?;
        Ok(())
    }

    /// scene | layout | render | ground truth for the first examples, through the real
    /// pipeline on the current model directory.
    fn sample_grid(&self, phase: Phase, step: usize) -> Result<()> {
        use skeleguide_engine::pipeline::{Pipeline, RunOptions};
        let mdir = model_dir(&self.out);
        let mut pl =
            Pipeline::load(&mdir, &self.device).map_err(|e| TrainError::Pipeline(e.to_string()))?;
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let opts = RunOptions {
            steps: self.cfg.sample_steps,
            seed: self.cfg.seed,
            keep_background: false,
            guidance: None,
            candidates: None,
            contrast: None,
        };
        let mut rows = Vec::new();
        for e in self.examples.iter().take(self.cfg.sample_count) {
            let (layout, img) = pl
                .generate(&e.scene, &e.prompt, &opts, &mut |_, _, _| {}, &cancel)
                .map_err(|e| TrainError::Pipeline(e.to_string()))?;
            rows.push(vec![e.scene.clone(), layout.image, img, e.image.clone()]);
        }
        let dir = self.out.join("samples");
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let p = dir.join(format!("phase{phase}-step{step:06}.png"));
        log::write_png(&log::grid(&rows), &p).map_err(|e| io_err(&p, e))
    }
}

/// Symlinks the base model's frozen files into the output model directory.
fn link_base(base: &Path, mdir: &Path) -> Result<()> {
    let base = base.canonicalize().map_err(|e| io_err(base, e))?;
    for name in [
        modeldir::BASE_FILE,
        modeldir::AE_FILE,
        modeldir::TEXT_FILE,
        // reads layouts decoded by this autoencoder, which phases 1-3 keep
        modeldir::INVERTER_FILE,
        "t5",
        "clip",
    ] {
        let from = base.join(name);
        let to = mdir.join(name);
        if from.exists() && std::fs::symlink_metadata(&to).is_err() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(&from, &to).map_err(|e| io_err(&to, e))?;
            #[cfg(not(unix))]
            std::fs::copy(&from, &to).map_err(|e| io_err(&to, e))?;
        }
    }
    Ok(())
}

/// What a LoRA phase does under a method.
struct LoraPlan {
    /// The LoRA sets it starts from fresh weights (any set no earlier phase wrote starts fresh
    /// too).
    fresh: &'static [&'static str],
    /// The LoRA sets it trains.
    trained: &'static [&'static str],
    /// Its loss.
    kind: Kind,
}

/// The plan of LoRA phase `phase` under `method` (`None` for the parts of phase 0).
fn lora_plan(phase: Phase, method: Method) -> Option<LoraPlan> {
    const BOTH: &[&str] = &[SKELETAL, APPEARANCE];
    let (fresh, trained, kind): (&'static [&'static str], &'static [&'static str], Kind) =
        match (phase, method) {
            (Phase::Ae | Phase::Dit, _) => return None,
            (Phase::Skeletal, _) => (BOTH, &[SKELETAL], Kind::Reason),
            (Phase::Joint, _) => (&[APPEARANCE], BOTH, Kind::Joint),
            (Phase::Appearance, Method::Skeleguide) => (&[], &[APPEARANCE], Kind::Render),
            (Phase::Appearance, Method::Stage1Only) => (&[APPEARANCE], &[APPEARANCE], Kind::Render),
            (Phase::Appearance, Method::SingleStage) => (BOTH, &[APPEARANCE], Kind::SceneRender),
            (Phase::Appearance, Method::Implicit) => (BOTH, &[APPEARANCE], Kind::Implicit),
        };
    Some(LoraPlan {
        fresh,
        trained,
        kind,
    })
}

/// The step's losses as the mean over the ranks (each computed its share of the batch).
fn mean_losses(
    g: &crate::parallel::Group,
    (l, reason, render): (f64, Option<f64>, Option<f64>),
) -> Result<(f64, Option<f64>, Option<f64>)> {
    let mut buf = [vec![
        l as f32,
        reason.unwrap_or(0.0) as f32,
        render.unwrap_or(0.0) as f32,
    ]];
    g.0.all_reduce_mean(&mut buf)?;
    let [m] = buf;
    Ok((
        m[0] as f64,
        reason.map(|_| m[1] as f64),
        render.map(|_| m[2] as f64),
    ))
}
