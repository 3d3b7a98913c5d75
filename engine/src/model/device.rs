//! Device and dtype selection.
//!
//! CPU + f32 is the default. With the opt-in `cuda` cargo feature the default device is the
//! first CUDA GPU and the default dtype bf16.

use super::error::{ModelError, Result};
use candle_core::{DType, Device};

/// A human-readable name of a device ("cpu", "cuda:0", ...).
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Whether this build has the CUDA backend compiled in.
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// The default device: CUDA GPU 0 when built with the `cuda` feature, the CPU otherwise.
pub fn default_device() -> Result<Device> {
    if cuda_compiled() {
        cuda_device(0)
    } else {
        Ok(Device::Cpu)
    }
}

/// Open CUDA device `ordinal`; a clear error when CUDA is not compiled in or cannot start.
pub fn cuda_device(ordinal: usize) -> Result<Device> {
    if !cuda_compiled() {
        return Err(ModelError::DeviceUnavailable(
            "this build has no CUDA support (rebuild with `--features cuda`)".into(),
        ));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| ModelError::DeviceUnavailable(format!("cannot open cuda:{ordinal}: {e}")))
}

/// Parse a device name: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    let n = name.trim().to_ascii_lowercase();
    if n == "cpu" {
        return Ok(Device::Cpu);
    }
    if n == "cuda" || n == "gpu" {
        return cuda_device(0);
    }
    if let Some(idx) = n.strip_prefix("cuda:") {
        let ordinal = idx
            .parse::<usize>()
            .map_err(|_| ModelError::DeviceUnavailable(format!("bad device name `{name}`")))?;
        return cuda_device(ordinal);
    }
    Err(ModelError::DeviceUnavailable(format!(
        "unknown device `{name}` (use cpu, cuda or cuda:N)"
    )))
}

/// The default dtype for a device: bf16 on CUDA, f32 elsewhere.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// Checks that the model can run in `dtype` on `device`.
///
/// On the CPU only f32 and f64 are accepted: candle has no bf16/f16 CPU matmul kernels (it
/// widens to f32) and its bf16 CPU conv errors.
pub fn check_dtype(device: &Device, dtype: DType) -> Result<()> {
    let ok = match device.location() {
        candle_core::DeviceLocation::Cpu => matches!(dtype, DType::F32 | DType::F64),
        _ => matches!(dtype, DType::F32 | DType::BF16 | DType::F16),
    };
    if ok {
        Ok(())
    } else {
        Err(ModelError::UnsupportedDtype {
            dtype,
            device: device_name(device),
            reason: "use f32 on the CPU; bf16/f16/f32 on CUDA".into(),
        })
    }
}

/// Sets candle's CPU thread environment, unless the user already set it. Call it at the very
/// start of `main`, before any other thread exists (it writes environment variables).
///
/// * `RAYON_NUM_THREADS` = the available parallelism. Without it candle re-reads
///   `/proc/cpuinfo` on every matmul to count the physical cores (about 6% of a small forward).
/// * `CANDLE_NUM_THREADS` = 1: candle's spinning elementwise pool falls into a 2-2.5x slower
///   mode when the machine is busy (candle_cpu_perf.md); our fused kernels use rayon instead.
///
/// Returns the (rayon) thread count in effect.
pub fn configure_cpu_threads() -> usize {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    candle_core::utils::get_num_threads()
}

/// `mi_option_purge_delay` in mimalloc.h (the same index in its v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps memory freed to mimalloc (the binaries' global allocator) mapped instead of returning
/// it to the OS after 10 ms. candle's CPU backend allocates and frees the same large
/// temporaries every training step; returning them makes every step fault their pages in again
/// (the kernel zeroing pages was the largest single cost after the matmuls). Peak memory is
/// unchanged; resident memory stays at the peak.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an option value; any value is valid for this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
