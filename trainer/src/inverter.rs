//! PoseInverter training data, training loop and evaluation (`skeleguide-train inverter` and
//! `eval-inverter`).
//!
//! **Data.** Each sample is a canvas of random size (longest side 128-768 px, several aspect
//! ratios) with 1-4 people from the synthetic generator's pose model
//! ([`crate::data::body::random_pose`]), perturbed (joint jitter, rotation, scale, mirror),
//! with some joint chains missing and some people partly out of frame. The layout is drawn by
//! the engine's one rasteriser over a background: black (the usual ControlNet image), a
//! synthetic scene ([`crate::data::scene`]), a procedural texture (with palette-coloured
//! distractors), or a real photograph when a photo directory is given. Degradations: blur,
//! noise, JPEG, down-and-up rescaling, and (with [`TrainOptions::ae_model`]) the model's
//! autoencoder round trip exactly as the pipeline does it ([`AeRoundTrip`]), since the layouts
//! the pipeline inverts are decoded latents.
//!
//! **Targets** are the per-pixel classes of the same poses redrawn at the working size
//! ([`inverter::class_targets`]).

use crate::data::body::random_pose;
use crate::data::raster::Canvas;
use crate::data::rng::Rng;
use crate::data::scene::{PlaceKind, Scene};
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use image::{imageops, RgbImage};
use rayon::prelude::*;
use skeleguide_engine::inverter::{
    self, ColorDecoder, InverterConfig, InverterError, PoseInverter, WorkGeometry,
};
use skeleguide_engine::metrics::pose::{count_exact, pck, PckCount};
use skeleguide_engine::pipeline::{AeRoundTrip, PipelineError};
use skeleguide_engine::pose::{draw_layout, draw_on, Keypoint, Pose, PoseSet, NUM_JOINTS};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum InverterTrainError {
    #[error("{0}")]
    Data(String),
    #[error(transparent)]
    Inverter(#[from] InverterError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("autoencoder round trip: {0}")]
    Ae(#[from] PipelineError),
}

pub type Result<T> = std::result::Result<T, InverterTrainError>;

// ------------------------------------------------------------------ backgrounds

/// Background sources: pre-rendered synthetic scenes and (optional) real photographs.
#[derive(Clone, Default)]
pub struct Backgrounds {
    pub scenes: Vec<RgbImage>,
    pub photos: Vec<RgbImage>,
    /// Draw every layout on black (the plain ControlNet image).
    pub black_only: bool,
}

impl Backgrounds {
    /// `n` synthetic scenes (512 px backdrops with furniture), deterministic for `seed`.
    pub fn with_scenes(n: usize, seed: u64) -> Self {
        let scenes = (0..n)
            .map(|i| {
                let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
                let place = PlaceKind::ALL[rng.below(PlaceKind::ALL.len())];
                let scene = Scene::generate(
                    place,
                    384,
                    crate::data::synth::DEFAULT_MIN_PERSON_HEIGHT,
                    &mut rng,
                );
                let mut c = Canvas::new(384, 384, [0, 0, 0], 1.0);
                scene.draw_backdrop(&mut c);
                for f in &scene.furniture {
                    scene.draw_furniture(f, &mut c);
                }
                c.downsample(1)
            })
            .collect();
        Backgrounds {
            scenes,
            photos: Vec::new(),
            black_only: false,
        }
    }

    /// Loads every PNG/JPEG of `dir` as a photo background.
    pub fn load_photos(&mut self, dir: &Path) -> Result<usize> {
        let rd = std::fs::read_dir(dir)
            .map_err(|e| InverterTrainError::Data(format!("{}: {e}", dir.display())))?;
        let mut paths: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let e = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                e == "png" || e == "jpg" || e == "jpeg"
            })
            .collect();
        paths.sort();
        for p in &paths {
            let img = skeleguide_engine::imageio::read_rgb(p)
                .map_err(|e| InverterTrainError::Data(e.to_string()))?;
            self.photos.push(img);
        }
        if self.photos.is_empty() {
            return Err(InverterTrainError::Data(format!(
                "{}: no PNG or JPEG photos found",
                dir.display()
            )));
        }
        Ok(paths.len())
    }
}

fn random_crop_resized(src: &RgbImage, w: u32, h: u32, rng: &mut Rng) -> RgbImage {
    let (sw, sh) = src.dimensions();
    // a crop of the target aspect covering 40-100 % of the source
    let f = rng.range(0.4, 1.0);
    let aspect = w as f64 / h as f64;
    let (mut cw, mut ch) = (sw as f64 * f, sw as f64 * f / aspect);
    if ch > sh as f64 * f {
        ch = sh as f64 * f;
        cw = ch * aspect;
    }
    let (cw, ch) = ((cw as u32).clamp(1, sw), (ch as u32).clamp(1, sh));
    let x = rng.below((sw - cw + 1) as usize) as u32;
    let y = rng.below((sh - ch + 1) as usize) as u32;
    let crop = imageops::crop_imm(src, x, y, cw, ch).to_image();
    let mut out = imageops::resize(&crop, w, h, imageops::FilterType::Triangle);
    if rng.chance(0.5) {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

fn random_color(rng: &mut Rng) -> [u8; 3] {
    [
        rng.below(256) as u8,
        rng.below(256) as u8,
        rng.below(256) as u8,
    ]
}

/// A procedural texture: a gradient, random rectangles and discs (some in palette colours,
/// as distractors), optional stripes.
fn texture(w: u32, h: u32, rng: &mut Rng) -> RgbImage {
    let (a, b) = (random_color(rng), random_color(rng));
    let vertical = rng.chance(0.5);
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        let t = if vertical {
            y as f64 / h as f64
        } else {
            x as f64 / w as f64
        };
        image::Rgb(std::array::from_fn(|i| {
            (a[i] as f64 * (1.0 - t) + b[i] as f64 * t) as u8
        }))
    });
    let shapes = 2 + rng.below(10);
    for _ in 0..shapes {
        let c = if rng.chance(0.3) {
            let p = skeleguide_engine::pose::COLORS[rng.below(NUM_JOINTS)];
            let k = rng.range(0.5, 1.0);
            p.map(|v| (v as f64 * k) as u8)
        } else {
            random_color(rng)
        };
        let (cx, cy) = (rng.range(0.0, w as f64), rng.range(0.0, h as f64));
        let (rx, ry) = (
            rng.range(0.02, 0.3) * w as f64,
            rng.range(0.02, 0.3) * h as f64,
        );
        let disc = rng.chance(0.5);
        let (x0, x1) = ((cx - rx).max(0.0) as u32, ((cx + rx) as u32).min(w));
        let (y0, y1) = ((cy - ry).max(0.0) as u32, ((cy + ry) as u32).min(h));
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
                if !disc || dx * dx + dy * dy <= 1.0 {
                    img.put_pixel(x, y, image::Rgb(c));
                }
            }
        }
    }
    if rng.chance(0.3) {
        let period = 4 + rng.below(30) as u32;
        let c = random_color(rng);
        for (x, y, p) in img.enumerate_pixels_mut() {
            if (x + y) % period < period / 3 {
                *p = image::Rgb(c);
            }
        }
    }
    img
}

fn background(w: u32, h: u32, bg: &Backgrounds, rng: &mut Rng) -> Option<RgbImage> {
    if bg.black_only {
        return None;
    }
    let photo_w = if bg.photos.is_empty() { 0.0 } else { 0.2 };
    let scene_w = if bg.scenes.is_empty() { 0.0 } else { 0.25 };
    match rng.weighted(&[0.3, scene_w, 0.25, photo_w]) {
        0 => None,
        1 => Some(random_crop_resized(
            &bg.scenes[rng.below(bg.scenes.len())],
            w,
            h,
            rng,
        )),
        2 => Some(texture(w, h, rng)),
        _ => Some(random_crop_resized(
            &bg.photos[rng.below(bg.photos.len())],
            w,
            h,
            rng,
        )),
    }
}

// ------------------------------------------------------------------ poses

/// Chains of joints that may go missing together (the neck always stays).
const MISSING_CHAINS: [&[usize]; 13] = [
    &[4],
    &[3, 4],
    &[7],
    &[6, 7],
    &[10],
    &[9, 10],
    &[13],
    &[12, 13],
    &[16],
    &[17],
    &[14, 16],
    &[15, 17],
    &[0, 14, 15, 16, 17],
];

fn inside(w: u32, h: u32, k: &Keypoint) -> bool {
    k.x >= 0.0 && k.y >= 0.0 && k.x < w as f64 && k.y < h as f64
}

fn in_frame_count(p: &Pose, w: u32, h: u32) -> usize {
    p.joints
        .iter()
        .flatten()
        .filter(|k| inside(w, h, k))
        .count()
}

fn iou(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> f64 {
    let ix = (a.2.min(b.2) - a.0.max(b.0)).max(0.0);
    let iy = (a.3.min(b.3) - a.1.max(b.1)).max(0.0);
    let inter = ix * iy;
    let area = |r: (f64, f64, f64, f64)| (r.2 - r.0) * (r.3 - r.1);
    inter / (area(a) + area(b) - inter).max(1e-9)
}

/// 1-4 plausible people on a `w`×`h` canvas (see the module docs).
pub fn random_people(w: u32, h: u32, rng: &mut Rng) -> PoseSet {
    let n = 1 + rng.weighted(&[0.35, 0.3, 0.2, 0.15]);
    let mut set = PoseSet::new(w, h);
    let mut tries = 0;
    while set.people.len() < n && tries < 40 {
        tries += 1;
        let (_, mut p) = random_pose(w, h, rng);
        let Some((x0, y0, x1, y1)) = p.body_bbox() else {
            continue;
        };
        let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let size = (x1 - x0).max(y1 - y0).max(1.0);
        if rng.chance(0.7) {
            let rot = rng.range(-0.3, 0.3);
            let sc = rng.range(0.8, 1.1);
            let mirror = rng.chance(0.3);
            let jit = 0.02 * size;
            let (sr, cr) = rot.sin_cos();
            p.map_points(|k| {
                let mut dx = k.x - cx;
                if mirror {
                    dx = -dx;
                }
                let dy = k.y - cy;
                k.x = cx + sc * (cr * dx - sr * dy) + rng.range(-jit, jit);
                k.y = cy + sc * (sr * dx + cr * dy) + rng.range(-jit, jit);
            });
        }
        if rng.chance(0.35) {
            for _ in 0..1 + rng.below(3) {
                for &j in MISSING_CHAINS[rng.below(MISSING_CHAINS.len())] {
                    p.joints[j] = None;
                }
            }
        }
        if rng.chance(0.2) {
            // push the person partly out of frame, keeping the neck and 5 joints inside
            let f = rng.range(0.1, 0.45) * size;
            let (dx, dy) = match rng.below(4) {
                0 => (-(x0 - 0.0) - f, 0.0),
                1 => (w as f64 - x1 + f, 0.0),
                2 => (0.0, h as f64 - y1 + f),
                _ => (0.0, -y0 - f),
            };
            let mut q = p.clone();
            q.map_points(|k| {
                k.x += dx;
                k.y += dy;
            });
            let neck_in = q.joints[1].is_some_and(|k| inside(w, h, &k));
            if neck_in && in_frame_count(&q, w, h) >= 5 {
                p = q;
            }
        }
        if in_frame_count(&p, w, h) < 3 {
            continue;
        }
        let Some(bb) = p.body_bbox() else { continue };
        if set
            .people
            .iter()
            .filter_map(|o| o.body_bbox())
            .any(|ob| iou(bb, ob) > 0.4)
        {
            continue;
        }
        set.people.push(p);
    }
    set
}

// ------------------------------------------------------------------ samples

/// Degradations applied to a layout image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Degrade {
    /// None.
    Clean,
    /// A random chain (training): blur, noise, JPEG, rescaling, each by chance.
    Random,
    /// A fixed strong chain (evaluation): down-and-up ×0.7, blur σ 0.7, noise σ 4, JPEG 60.
    Strong,
}

fn jpeg(img: &RgbImage, q: u8) -> RgbImage {
    let mut buf = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q);
    if img.write_with_encoder(enc).is_err() {
        return img.clone();
    }
    image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
        .map(|d| d.into_rgb8())
        .unwrap_or_else(|_| img.clone())
}

fn noise(img: &mut RgbImage, sigma: f64, rng: &mut Rng) {
    for v in img.iter_mut() {
        // sum of uniforms ~ normal
        let n = (rng.f64() + rng.f64() + rng.f64() - 1.5) * 2.0 * sigma;
        *v = (*v as f64 + n).round().clamp(0.0, 255.0) as u8;
    }
}

fn rescale(img: &RgbImage, f: f64) -> RgbImage {
    let (w, h) = img.dimensions();
    let (sw, sh) = (
        ((w as f64 * f) as u32).max(8),
        ((h as f64 * f) as u32).max(8),
    );
    let small = imageops::resize(img, sw, sh, imageops::FilterType::Triangle);
    imageops::resize(&small, w, h, imageops::FilterType::Triangle)
}

fn degrade(img: RgbImage, how: Degrade, rng: &mut Rng) -> RgbImage {
    match how {
        Degrade::Clean => img,
        Degrade::Strong => {
            let mut x = rescale(&img, 0.7);
            x = imageops::blur(&x, 0.7);
            noise(&mut x, 4.0, rng);
            jpeg(&x, 60)
        }
        Degrade::Random => {
            let mut x = img;
            if rng.chance(0.25) {
                x = rescale(&x, rng.range(0.45, 0.9));
            }
            if rng.chance(0.3) {
                x = imageops::blur(&x, rng.range(0.4, 1.2) as f32);
            }
            if rng.chance(0.3) {
                let s = rng.range(1.0, 10.0);
                noise(&mut x, s, rng);
            }
            if rng.chance(0.4) {
                x = jpeg(&x, 25 + rng.below(71) as u8);
            }
            x
        }
    }
}

/// One training or evaluation example.
#[derive(Clone)]
pub struct Sample {
    /// The (degraded) layout image the inverter sees.
    pub image: RgbImage,
    /// The same layout drawn on black, undegraded (targets).
    pub clean: RgbImage,
    /// Ground truth, in image pixels.
    pub poses: PoseSet,
}

/// A canvas size: longest side in `[lo, hi]`, a common aspect ratio.
fn canvas_size(rng: &mut Rng, lo: f64, hi: f64) -> (u32, u32) {
    let long = rng.range(lo.ln(), hi.ln()).exp();
    let aspect = *rng
        .pick(&[
            1.0,
            1.0,
            4.0 / 3.0,
            3.0 / 4.0,
            16.0 / 9.0,
            9.0 / 16.0,
            1.5,
            2.0 / 3.0,
        ])
        .unwrap_or(&1.0);
    if aspect >= 1.0 {
        (long as u32, (long / aspect) as u32)
    } else {
        ((long * aspect) as u32, long as u32)
    }
}

/// A random example (see the module docs).
pub fn sample(rng: &mut Rng, bg: &Backgrounds, how: Degrade) -> Sample {
    let (w, h) = canvas_size(rng, 128.0, 768.0);
    sample_at(w, h, rng, bg, how)
}

/// A random example at a given canvas size.
pub fn sample_at(w: u32, h: u32, rng: &mut Rng, bg: &Backgrounds, how: Degrade) -> Sample {
    let poses = random_people(w, h, rng);
    let clean = draw_layout(None, &poses);
    let image = match background(w, h, bg, rng) {
        None => clean.clone(),
        Some(mut b) => {
            draw_on(&mut b, &poses);
            b
        }
    };
    let image = degrade(image, how, rng);
    Sample {
        image,
        clean,
        poses,
    }
}

/// Input features `(B, crop, crop, 38)` and one-hot targets `(B, crop, crop, 36)`: a random crop
/// (offsets multiple of 4) of each sample at its working resolution, padded with black and
/// background when smaller.
pub fn batch(
    samples: &[Sample],
    cfg: &InverterConfig,
    crop: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let ch = inverter::INPUT_CHANNELS;
    let mut xs = Vec::with_capacity(samples.len() * crop * crop * ch);
    let mut labels = vec![inverter::BACKGROUND as u8; samples.len() * crop * crop];
    for (i, s) in samples.iter().enumerate() {
        let g = WorkGeometry::new(s.image.width(), s.image.height(), cfg.work_size);
        let work = inverter::to_working(&s.image, &g);
        let t = inverter::class_targets(&s.poses, &g);
        let ox = if g.padded_width > crop {
            rng.below((g.padded_width - crop) / 4 + 1) * 4
        } else {
            0
        };
        let oy = if g.padded_height > crop {
            rng.below((g.padded_height - crop) / 4 + 1) * 4
        } else {
            0
        };
        xs.extend(inverter::window_features(&work, ox, oy, crop, crop));
        let lb = &mut labels[i * crop * crop..][..crop * crop];
        for y in 0..crop.min(g.padded_height.saturating_sub(oy)) {
            let row = crop.min(g.padded_width.saturating_sub(ox));
            lb[y * crop..][..row].copy_from_slice(&t[(oy + y) * g.padded_width + ox..][..row]);
        }
    }
    let n = samples.len();
    Ok((
        Tensor::from_vec(xs, (n, crop, crop, ch), device)?,
        inverter::one_hot(&labels, n, crop, crop, device)?,
    ))
}

// ------------------------------------------------------------------ training

/// Options of [`train`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub steps: usize,
    pub batch: usize,
    pub crop: usize,
    pub lr: f64,
    pub seed: u64,
    pub config: InverterConfig,
    /// Wall-clock budget: training ends when the steps or the budget run out, and the
    /// learning-rate schedule follows whichever is further along (robust to a busy machine).
    pub time_budget: Option<std::time::Duration>,
    /// A model directory whose autoencoder round trip degrades a share of the samples.
    pub ae_model: Option<std::path::PathBuf>,
    /// The share of samples sent through the round trip (with `ae_model`).
    pub ae_share: f64,
    /// Weights to start from (fine-tuning, e.g. for a new autoencoder): their architecture
    /// replaces `config`. `None`: seeded fresh weights.
    pub init: Option<std::path::PathBuf>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: 3000,
            batch: 12,
            crop: 128,
            lr: 2e-3,
            seed: 0,
            config: InverterConfig::default(),
            time_budget: None,
            ae_model: None,
            ae_share: 0.4,
            init: None,
        }
    }
}

/// Trains a PoseInverter from scratch, or from `opts.init`. `progress(step, loss)` is called after every step and
/// stops training when it returns false. Batches are made on a second thread, ahead of use.
pub fn train(
    opts: &TrainOptions,
    bg: &Backgrounds,
    mut progress: impl FnMut(usize, f32) -> bool,
) -> Result<PoseInverter> {
    if opts.steps == 0 || opts.batch == 0 || opts.crop < 8 || opts.crop % 4 != 0 {
        return Err(InverterTrainError::Data(format!(
            "steps ({}) and batch ({}) must be at least 1, crop ({}) a multiple of 4 >= 8",
            opts.steps, opts.batch, opts.crop
        )));
    }
    // The network trains on the default device (CUDA when the engine is built with it); the
    // samples, and the autoencoder round trips among them, are made on the CPU's threads.
    let device = skeleguide_engine::pipeline::default_device()?;
    let mut opts = opts.clone();
    let varmap: VarMap = match &opts.init {
        Some(path) => {
            let start = PoseInverter::load(path, &device)?;
            opts.config = *start.config();
            start.to_varmap()?
        }
        None => PoseInverter::seeded_varmap(&opts.config, opts.seed, &device)?,
    };
    let opts = &opts;
    let model = PoseInverter::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
        &opts.config,
    )?;
    let mut adam = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let ae = match &opts.ae_model {
        Some(dir) => Some(AeRoundTrip::load(dir, &Device::Cpu)?),
        None => None,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Tensor, Tensor)>>(2);
    let (o, bgc) = (opts.clone(), bg.clone());
    let producer = std::thread::spawn(move || {
        let mut rng = Rng::new(o.seed ^ 0xDA7A);
        for _ in 0..o.steps {
            // One generator per sample, forked in order: the batch is the same on any number
            // of threads.
            let mut forks: Vec<Rng> = (0..o.batch).map(|i| rng.fork(i as u64)).collect();
            let b = forks
                .par_iter_mut()
                .map(|r| {
                    let mut s = sample(r, &bgc, Degrade::Random);
                    if let Some(ae) = ae.as_ref().filter(|_| r.chance(o.ae_share)) {
                        s.image = ae.round_trip(&s.image)?;
                    }
                    Ok(s)
                })
                .collect::<Result<Vec<Sample>>>()
                .and_then(|samples| batch(&samples, &o.config, o.crop, &mut rng, &Device::Cpu));
            if tx.send(b).is_err() {
                break;
            }
        }
    });
    let warm = (opts.steps / 20).clamp(1, 100);
    let start = Instant::now();
    for step in 0..opts.steps {
        let (x, t) = rx
            .recv()
            .map_err(|_| InverterTrainError::Data("the data thread stopped".into()))??;
        let (x, t) = (x.to_device(&device)?, t.to_device(&device)?);
        let mut p = step as f64 / opts.steps as f64;
        if let Some(b) = opts.time_budget {
            p = p.max(start.elapsed().as_secs_f64() / b.as_secs_f64().max(1e-9));
        }
        if p >= 1.0 {
            break;
        }
        let lr = if step < warm {
            opts.lr * (step + 1) as f64 / warm as f64
        } else {
            opts.lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
        };
        adam.set_learning_rate(lr);
        let logits = model.forward(&x)?;
        let loss = inverter::loss(&logits, &t)?;
        adam.backward_step(&loss)?;
        let l = loss.to_scalar::<f32>()?;
        if !l.is_finite() {
            return Err(InverterTrainError::Data(format!(
                "the loss became {l} at step {step}; lower --lr"
            )));
        }
        if !progress(step + 1, l) {
            break;
        }
    }
    drop(rx);
    let _ = producer.join();
    Ok(PoseInverter::from_varmap(&varmap, &opts.config, &device)?)
}

/// Mean loss of a model on fixed held-out batches (for tests and logs).
pub fn held_out_loss(model: &PoseInverter, batches: &[(Tensor, Tensor)]) -> Result<f32> {
    let mut s = 0.0;
    for (x, t) in batches {
        let l = inverter::loss(&model.forward(x)?, t)?;
        s += l.to_scalar::<f32>()?;
    }
    Ok(s / batches.len().max(1) as f32)
}

// ------------------------------------------------------------------ evaluation

/// PCK (5 % of the bbox diagonal) and count accuracy of one decoder on one set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Score {
    pub pck: PckCount,
    pub count_ok: usize,
    pub images: usize,
}

impl Score {
    pub fn add(&mut self, pred: &PoseSet, gt: &PoseSet) {
        self.pck.add(pck(pred, gt, 0.05));
        self.count_ok += count_exact(pred, gt) as usize;
        self.images += 1;
    }
    pub fn count_acc(&self) -> f64 {
        self.count_ok as f64 / self.images.max(1) as f64
    }
}

/// Ground truth as the image shows it: people with no joint inside the canvas are dropped.
pub fn visible_truth(set: &PoseSet) -> PoseSet {
    let mut out = set.clone();
    out.people
        .retain(|p| in_frame_count(p, set.width, set.height) > 0);
    out
}

/// The held-out evaluation set: `count` examples from `seed` (a stream disjoint from training
/// seeds), longest side 128-768.
pub fn eval_samples(count: usize, seed: u64, bg: &Backgrounds, how: Degrade) -> Vec<Sample> {
    let mut rng = Rng::new(seed ^ 0xE7A1_5E7E_0000_0001);
    (0..count).map(|_| sample(&mut rng, bg, how)).collect()
}

/// Median milliseconds of `f` over `n` runs.
pub fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Scores the network and the colour baseline on `samples`.
pub fn score(model: &PoseInverter, samples: &[Sample]) -> Result<(Score, Score)> {
    let base = ColorDecoder::default();
    let (mut net, mut col) = (Score::default(), Score::default());
    for s in samples {
        let gt = visible_truth(&s.poses);
        net.add(&model.invert(&s.image)?, &gt);
        col.add(&base.invert(&s.image)?, &gt);
    }
    Ok((net, col))
}
