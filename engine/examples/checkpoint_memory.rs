//! Peak memory and time of one LoRA training step (condition stream, both LoRA sets' layout,
//! base frozen, batch 1) with and without activation checkpointing, on the CPU in f32, on a
//! FLUX-shaped DiT narrowed to fit the machine: `checkpoint_memory [on|off] [side] [depth]`.
//! Run each setting in its own process: the peak resident memory is the process's.
use candle_core::{DType, Device, Tensor};
use skeleguide_engine::model::{
    image_ids, random_weights, text_ids, Condition, DitConfig, DitInputs, LoraSpec, MmDit, Mode,
};
use std::time::Instant;

fn rss_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    skeleguide_engine::model::device::configure_cpu_threads();
    let args: Vec<String> = std::env::args().collect();
    let on = args.get(1).map(|s| s.as_str()) == Some("on");
    let side: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(512);
    let depth: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let dev = Device::Cpu;
    let mut cfg = DitConfig::flux_dev();
    cfg.hidden_size = 256;
    cfg.num_heads = 4;
    cfg.depth = depth;
    cfg.depth_single_blocks = 2 * depth;
    cfg.axes_dim = vec![16, 24, 24];
    cfg.context_in_dim = 256;
    cfg.vec_in_dim = 256;
    let mut m = MmDit::from_tensors(
        &cfg,
        random_weights(&cfg, 1, &dev, DType::F32)?,
        &dev,
        DType::F32,
    )?;
    let spec = LoraSpec {
        rank: 32,
        alpha: 32.0,
        ..LoraSpec::default()
    };
    m.loras_mut().add("skeletal", &spec)?;
    let vars = m.loras_mut().make_trainable("skeletal")?;
    m.loras_mut().set_active(Some("skeletal"))?;
    m.set_activation_checkpointing(on)?;
    let g = side / 16;
    let (n, nt) = (g * g, 128);
    let img = Tensor::randn(0f32, 1., (1, n, cfg.in_channels), &dev)?;
    let cond = Tensor::randn(0f32, 1., (1, n, cfg.in_channels), &dev)?;
    let ids = image_ids(1, g, g, &dev, DType::F32)?;
    let txt = Tensor::randn(0f32, 1., (1, nt, cfg.context_in_dim), &dev)?;
    let tids = text_ids(1, nt, &dev, DType::F32)?;
    let y = Tensor::randn(0f32, 1., (1, cfg.vec_in_dim), &dev)?;
    let t = Tensor::full(0.5f32, 1, &dev)?;
    let guidance = Tensor::full(3.5f32, 1, &dev)?;
    let inp = DitInputs {
        img: &img,
        img_ids: &ids,
        txt: &txt,
        txt_ids: &tids,
        timesteps: &t,
        y: &y,
        guidance: Some(&guidance),
    };
    let before = rss_mib("VmRSS:");
    let start = Instant::now();
    let pred = m.forward(
        &inp,
        Condition::Tokens {
            tokens: &cond,
            ids: &ids,
        },
        Mode::Train,
    )?;
    let loss = pred.sqr()?.mean_all()?;
    let grads = loss.backward()?;
    let secs = start.elapsed().as_secs_f64();
    let reached = vars
        .iter()
        .filter(|v| grads.get(v.as_tensor()).is_some())
        .count();
    println!(
        "checkpointing {}: {side}² ({n} image + {nt} text + {n} condition tokens), {} + {} blocks: \
         step {:.0} ms, peak RSS {:.0} MiB ({:.0} MiB before the step), {reached}/{} LoRA tensors with a gradient",
        if on { "on " } else { "off" },
        cfg.depth,
        cfg.depth_single_blocks,
        secs * 1e3,
        rss_mib("VmHWM:"),
        before,
        vars.len()
    );
    Ok(())
}
