//! The training data of a run: examples at the model's working size, their cached latents and
//! prompt features, and the per-step random draws (which examples, dropout, σ, noise).

use super::{Result, TrainError};
use crate::config::TrainConfig;
use crate::data::manifest::Manifest;
use crate::optim::TrainRng;
use candle_core::{DType, Device, Tensor};
use image::{imageops, RgbImage};
use indicatif::ProgressBar;
use skeleguide_engine::model::{pack_latents, Autoencoder, TextEncoder};
use skeleguide_engine::modeldir::ModelConfig;
use skeleguide_engine::sampling;
use std::collections::HashMap;
use std::path::Path;

/// One example at the model's working size.
pub(super) struct Example {
    pub(super) prompt: String,
    pub(super) scene: RgbImage,
    pub(super) layout: RgbImage,
    pub(super) image: RgbImage,
}

/// The working size for a `w`×`h` image (as `Pipeline::working_size`).
fn working_size(w: u32, h: u32, resolution: u32, unit: u32) -> (u32, u32) {
    let s = resolution as f64 / w.max(h) as f64;
    let side = |v: u32| (((v as f64 * s) / unit as f64).round() as u32).max(1) * unit;
    (side(w), side(h))
}

fn fit(img: &RgbImage, (w, h): (u32, u32)) -> RgbImage {
    if img.dimensions() == (w, h) {
        img.clone()
    } else {
        imageops::resize(img, w, h, imageops::FilterType::Triangle)
    }
}

pub(super) fn load_examples(
    dir: &Path,
    limit: usize,
    resolution: u32,
    unit: u32,
    pb: &ProgressBar,
) -> Result<Vec<Example>> {
    let m = Manifest::open(dir).map_err(|e| TrainError::Data(e.to_string()))?;
    if m.records.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: the manifest has no records",
            m.path.display()
        )));
    }
    let n = if limit == 0 {
        m.records.len()
    } else {
        limit.min(m.records.len())
    };
    let mut out: Vec<Example> = Vec::with_capacity(n);
    let mut size = None;
    pb.set_length(n as u64);
    for r in m.records.iter().take(n) {
        pb.inc(1);
        let s = r.load().map_err(|e| TrainError::Data(e.to_string()))?;
        let ws = working_size(s.image.width(), s.image.height(), resolution, unit);
        match size {
            None => size = Some(ws),
            Some(prev) if prev != ws => {
                return Err(TrainError::Data(format!(
                    "{}:{}: image: works at {}x{} but earlier records work at {}x{}; a training set needs one aspect ratio",
                    m.path.display(),
                    r.line,
                    ws.0,
                    ws.1,
                    prev.0,
                    prev.1
                )))
            }
            _ => {}
        }
        let layout = skeleguide_engine::pose::draw_layout(Some(&s.background), &s.poses);
        out.push(Example {
            prompt: s.prompt,
            scene: fit(&s.background, ws),
            layout: fit(&layout, ws),
            image: fit(&s.image, ws),
        });
    }
    pb.finish_and_clear();
    Ok(out)
}

pub(super) fn images_tensor(imgs: &[&RgbImage], device: &Device) -> Result<Tensor> {
    Ok(crate::ae::to_tensor(imgs)?.to_device(device)?)
}

/// Latents of images, encoded in chunks, packed into tokens: `(N, tokens, 4C)`.
fn encode_all(
    ae: &dyn Autoencoder,
    imgs: &[&RgbImage],
    device: &Device,
    dtype: DType,
    pb: &ProgressBar,
) -> Result<Tensor> {
    // Small chunks keep the CPU's working set in cache; on a GPU each chunk is a round of
    // kernel launches, so larger chunks cut the launch overhead.
    let chunk = if device.is_cpu() { 16 } else { 256 };
    let mut parts = Vec::new();
    for chunk in imgs.chunks(chunk) {
        let lat = ae.encode(&images_tensor(chunk, device)?.to_dtype(dtype)?)?;
        parts.push(pack_latents(&lat.to_dtype(dtype)?)?);
        pb.inc(chunk.len() as u64);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// The cached latents of a phase (frozen autoencoder).
pub(super) struct Latents {
    pub(super) scene: Tensor,
    pub(super) layout: Tensor,
    pub(super) image: Tensor,
    /// Per token, the share of its pixels where the image differs from the scene (the
    /// person): `(N, tokens, 1)`.
    pub(super) person_share: Tensor,
    /// Per token, the share of its pixels where the layout differs from the scene (the
    /// skeleton strokes): `(N, tokens, 1)`.
    pub(super) stroke_share: Tensor,
    /// Token grid of the latents.
    pub(super) th: usize,
    pub(super) tw: usize,
}

pub(super) fn cache_latents(
    ae: &dyn Autoencoder,
    ex: &[Example],
    device: &Device,
    dtype: DType,
    pb: &ProgressBar,
) -> Result<Latents> {
    let scene = encode_all(
        ae,
        &ex.iter().map(|e| &e.scene).collect::<Vec<_>>(),
        device,
        dtype,
        pb,
    )?;
    let layout = encode_all(
        ae,
        &ex.iter().map(|e| &e.layout).collect::<Vec<_>>(),
        device,
        dtype,
        pb,
    )?;
    let image = encode_all(
        ae,
        &ex.iter().map(|e| &e.image).collect::<Vec<_>>(),
        device,
        dtype,
        pb,
    )?;
    let f = ae.downsample() * 2;
    let (w, h) = ex[0].image.dimensions();
    let (th, tw) = (h as usize / f, w as usize / f);
    let shares = |pick: fn(&Example) -> &RgbImage| -> Result<Tensor> {
        let mut v = Vec::with_capacity(ex.len() * th * tw);
        for e in ex {
            v.extend(differing_share(pick(e), &e.scene, f as u32));
        }
        Ok(Tensor::from_vec(v, (ex.len(), th * tw, 1), device)?.to_dtype(dtype)?)
    };
    Ok(Latents {
        person_share: shares(|e| &e.image)?,
        stroke_share: shares(|e| &e.layout)?,
        scene,
        layout,
        image,
        th,
        tw,
    })
}

/// A channel difference above this (of 255) marks a pixel as drawn over the scene; resizing
/// leaves the untouched pixels of two images of one scene within a level or two.
const DRAWN_OVER: u8 = 12;

/// For each `cell`×`cell` block of `img` in row-major order (the token grid), the share of its
/// pixels that differ from `scene` by more than [`DRAWN_OVER`] in some channel.
pub(super) fn differing_share(img: &RgbImage, scene: &RgbImage, cell: u32) -> Vec<f32> {
    let drawn = crate::ae::drawn_pixels_over(img, scene, DRAWN_OVER);
    let (gw, gh) = (img.width() / cell, img.height() / cell);
    let mut out = vec![0f32; (gw * gh) as usize];
    for (x, y, p) in drawn.enumerate_pixels() {
        let (cx, cy) = (x / cell, y / cell);
        if cx < gw && cy < gh && p.0[0] > 0 {
            out[(cy * gw + cx) as usize] += 1.0;
        }
    }
    let area = (cell * cell) as f32;
    out.iter_mut().for_each(|v| *v /= area);
    out
}

/// Text features per prompt (frozen encoder), plus the empty prompt, each also in its
/// stage-1 form (the model's `reason_prefix` before it); both maps are keyed by the plain prompt.
pub(super) struct TextCache {
    plain: HashMap<String, (Tensor, Tensor)>,
    reason: HashMap<String, (Tensor, Tensor)>,
}

impl TextCache {
    pub(super) fn new(
        text: &dyn TextEncoder,
        ex: &[Example],
        dtype: DType,
        mc: &ModelConfig,
    ) -> Result<Self> {
        let encode = |p: &str| -> Result<(Tensor, Tensor)> {
            let f = text.encode(&[p])?;
            Ok((f.tokens.to_dtype(dtype)?, f.pooled.to_dtype(dtype)?))
        };
        let (mut plain, mut reason) = (HashMap::new(), HashMap::new());
        for p in ex
            .iter()
            .map(|e| e.prompt.as_str())
            .chain(std::iter::once(""))
        {
            if plain.contains_key(p) {
                continue;
            }
            let f = encode(p)?;
            let r = if mc.reason_prefix.is_empty() {
                f.clone()
            } else {
                encode(&mc.reason_prompt(p))?
            };
            plain.insert(p.to_string(), f);
            reason.insert(p.to_string(), r);
        }
        Ok(Self { plain, reason })
    }

    /// The features of `prompts`, in their stage-1 form with `reason`.
    pub(super) fn batch(&self, prompts: &[&str], reason: bool) -> Result<(Tensor, Tensor)> {
        let feats = if reason { &self.reason } else { &self.plain };
        let mut t = Vec::with_capacity(prompts.len());
        let mut y = Vec::with_capacity(prompts.len());
        for p in prompts {
            let (a, b) = feats
                .get(*p)
                .ok_or_else(|| TrainError::Data(format!("prompt {p:?} is not cached")))?;
            t.push(a.clone());
            y.push(b.clone());
        }
        Ok((Tensor::cat(&t, 0)?, Tensor::cat(&y, 0)?))
    }
}

// ------------------------------------------------------------------ per-step randomness

/// The random choices of one example in one step, drawn in a fixed order.
pub(super) struct Draw {
    pub(super) index: usize,
    pub(super) drop_prompt: bool,
    pub(super) drop_cond: bool,
    pub(super) sigma: f64,
}

fn sample_sigma(rng: &mut TrainRng, cfg: &TrainConfig, shift_tokens: Option<usize>) -> f64 {
    let u = rng.normal();
    let s = 1.0 / (1.0 + (-(cfg.optim.sigma_logit_mean + cfg.optim.sigma_logit_std * u)).exp());
    match shift_tokens {
        Some(l) => sampling::time_shift(sampling::shift_mu(l), s),
        None => s,
    }
}

pub(super) fn draws(
    rng: &mut TrainRng,
    cfg: &TrainConfig,
    n_examples: usize,
    shift_tokens: Option<usize>,
) -> Vec<Draw> {
    (0..cfg.batch)
        .map(|_| {
            let index = rng.below(n_examples);
            let drop_prompt = rng.f64() < cfg.optim.prompt_dropout;
            let drop_cond = rng.f64() < cfg.optim.cond_dropout;
            let sigma = sample_sigma(rng, cfg, shift_tokens);
            Draw {
                index,
                drop_prompt,
                drop_cond,
                sigma,
            }
        })
        .collect()
}

/// The fixed evaluation batch: the first examples, σ spread over (0, 1), no dropout.
pub(super) fn eval_draws(cfg: &TrainConfig, n_examples: usize) -> Vec<Draw> {
    let b = cfg.batch.min(n_examples).max(1);
    (0..b)
        .map(|i| Draw {
            index: i,
            drop_prompt: false,
            drop_cond: false,
            sigma: (i as f64 + 0.5) / b as f64,
        })
        .collect()
}

/// Noise for `t`, whose rows are `rows` of a global batch of `batch` rows (a data-parallel
/// rank's share): the whole batch's noise is drawn and this share's kept, so every rank's
/// stream stays the same.
pub(super) fn noise_rows(
    rng: &mut TrainRng,
    t: &Tensor,
    rows: std::ops::Range<usize>,
    batch: usize,
) -> Result<Tensor> {
    let per_row = t.elem_count() / rows.len().max(1);
    let mut v = rng.normals(per_row * batch);
    if rows.len() != batch {
        v = v[rows.start * per_row..rows.end * per_row].to_vec();
    }
    Ok(Tensor::from_vec(v, t.dims(), &Device::Cpu)?
        .to_dtype(t.dtype())?
        .to_device(t.device())?)
}

pub(super) fn noise_like(rng: &mut TrainRng, t: &Tensor) -> Result<Tensor> {
    let rows = t.dim(0)?;
    noise_rows(rng, t, 0..rows, rows)
}

pub(super) fn gather(t: &Tensor, d: &[Draw]) -> Result<Tensor> {
    let idx: Vec<u32> = d.iter().map(|d| d.index as u32).collect();
    let idx = Tensor::new(idx.as_slice(), t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

fn col(v: Vec<f32>, device: &Device, dtype: DType) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, (n, 1, 1), device)?.to_dtype(dtype)?)
}

/// `(B, 1, 1)` keep mask of the condition.
pub(super) fn cond_keep(d: &[Draw], device: &Device, dtype: DType) -> Result<Tensor> {
    col(
        d.iter()
            .map(|d| if d.drop_cond { 0.0 } else { 1.0 })
            .collect(),
        device,
        dtype,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_share_counts_the_drawn_pixels_of_each_cell() {
        let scene = RgbImage::from_pixel(32, 16, image::Rgb([100, 120, 140]));
        let mut img = scene.clone();
        // 64 pixels of the second cell drawn over; one pixel of the first moved by resizing noise
        for y in 0..8 {
            for x in 16..24 {
                img.put_pixel(x, y, image::Rgb([250, 0, 0]));
            }
        }
        img.put_pixel(3, 3, image::Rgb([105, 118, 141]));
        assert_eq!(differing_share(&img, &scene, 16), vec![0.0, 0.25]);
    }
}
