//! Runs one kind of DiT forward in a loop, for `perf`: `profile_dit [fast|train|cached] [batch] [iters]`.
use candle_core::{DType, Device, Tensor};
use skeleguide_engine::model::{
    image_ids, random_weights, text_ids, Condition, DitConfig, DitInputs, MmDit, Mode,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    skeleguide_engine::model::device::configure_cpu_threads();
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(|s| s.as_str()).unwrap_or("fast");
    let b: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50);
    let dev = Device::Cpu;
    let cfg = DitConfig::tiny();
    let m = MmDit::from_tensors(
        &cfg,
        random_weights(&cfg, 1, &dev, DType::F32)?,
        &dev,
        DType::F32,
    )?;
    let img = Tensor::randn(0f32, 1., (b, 64, 64), &dev)?;
    let cond = Tensor::randn(0f32, 1., (b, 64, 64), &dev)?;
    let ids = image_ids(b, 8, 8, &dev, DType::F32)?;
    let txt = Tensor::randn(0f32, 1., (b, 32, cfg.context_in_dim), &dev)?;
    let tids = text_ids(b, 32, &dev, DType::F32)?;
    let y = Tensor::randn(0f32, 1., (b, cfg.vec_in_dim), &dev)?;
    let t = Tensor::full(0.5f32, b, &dev)?;
    let inp = DitInputs {
        img: &img,
        img_ids: &ids,
        txt: &txt,
        txt_ids: &tids,
        timesteps: &t,
        y: &y,
        guidance: None,
    };
    let cache = m.build_cond_cache(&cond, &ids, &y, Mode::Fast)?;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        match kind {
            "train" => m.forward(&inp, Condition::None, Mode::Train)?,
            "cached" => m.forward(&inp, Condition::Cached(&cache), Mode::Fast)?,
            _ => m.forward(&inp, Condition::None, Mode::Fast)?,
        };
    }
    println!(
        "{kind} b={b}: {:.2} ms/iter",
        start.elapsed().as_secs_f64() * 1e3 / iters as f64
    );
    Ok(())
}
