//! The pipeline in other devices and dtypes than the CPU's f32, on the shipped tiny model: the
//! same seed and inputs give the same layout and image. The CUDA tests run in a `--features cuda`
//! build on a machine with a GPU; anywhere else they print one `SKIPPED: ` line with the reason
//! and pass (CI has no GPU). The f64 test runs everywhere: like bf16 on CUDA, it makes the
//! pipeline convert the tiny encoders' f32 outputs to the DiT's dtype.
//!
//! Bounds (docs/training.md states them beside the H100 figures): f64 on the CPU and f32 on
//! CUDA are the CPU's f32 arithmetic at another precision or in another order, so their stage-1
//! latents stay within 1e-4 relative and their images at 60 dB or more (at most rare one-level
//! differences); bf16 keeps 8 bits of mantissa: latents within 3e-2 relative, the image at
//! 40 dB or more.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use skeleguide_engine::metrics::image::psnr;
use skeleguide_engine::model::device::{cuda_compiled, cuda_device};
use skeleguide_engine::pipeline::{Pipeline, RunOptions};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// The first CUDA device, or `None` after one `SKIPPED: ` line saying why there is none.
fn gpu() -> Option<Device> {
    if !cuda_compiled() {
        eprintln!("SKIPPED: this build has no CUDA (cargo test --features cuda)");
        return None;
    }
    match cuda_device(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("SKIPPED: no CUDA device 0 ({e})");
            None
        }
    }
}

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny")
}

fn scene() -> RgbImage {
    RgbImage::from_fn(160, 120, |x, y| {
        image::Rgb([
            (x * 3 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

/// Largest absolute difference relative to the largest magnitude.
fn rel_max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn generate(device: &Device, dtype: DType) -> (Tensor, RgbImage) {
    let mut p = Pipeline::load_as(&tiny_model(), device, dtype).unwrap();
    let opts = RunOptions {
        steps: 12,
        seed: 7,
        keep_background: false,
        guidance: None,
        candidates: None,
        contrast: None,
    };
    let (layout, image) = p
        .generate(
            &scene(),
            "a woman in a red shirt waving in the park",
            &opts,
            &mut |_, _, _| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    (layout.latent.to_device(&Device::Cpu).unwrap(), image)
}

/// Generates on both (device, dtype) pairs; returns the stage-1 latents' largest relative
/// difference and the images' PSNR.
fn compare(label: &str, a: (&Device, DType), b: (&Device, DType)) -> (f32, f64) {
    let (lat_a, img_a) = generate(a.0, a.1);
    let (lat_b, img_b) = generate(b.0, b.1);
    assert_eq!(img_a.dimensions(), img_b.dimensions());
    let d = rel_max_diff(&lat_a, &lat_b);
    let q = psnr(&img_a, &img_b).unwrap();
    eprintln!("{label}: stage-1 latent max rel diff {d:.2e}, image PSNR {q:.1} dB");
    (d, q)
}

#[test]
fn generate_in_f64_on_the_cpu_matches_f32() {
    let cpu = Device::Cpu;
    let (d, q) = compare(
        "f64 vs f32 on the CPU",
        (&cpu, DType::F32),
        (&cpu, DType::F64),
    );
    assert!(d < 1e-4 && q >= 60.0, "f64 differs from f32: {d}, {q} dB");
}

#[test]
fn generate_in_f32_on_cuda_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let (d, q) = compare(
        "f32 cuda vs cpu",
        (&Device::Cpu, DType::F32),
        (&gpu, DType::F32),
    );
    assert!(
        d < 1e-4 && q >= 60.0,
        "cuda differs from the cpu: {d}, {q} dB"
    );
}

#[test]
fn generate_in_bf16_on_cuda_stays_close_to_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let (d, q) = compare(
        "bf16 cuda vs f32 cpu",
        (&Device::Cpu, DType::F32),
        (&gpu, DType::BF16),
    );
    assert!(
        d < 3e-2 && q >= 40.0,
        "bf16 drifts too far from f32: {d}, {q} dB"
    );
}
