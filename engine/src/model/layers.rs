//! Building blocks shared by our small models: the linear layer [`Lin`] (also used by the tiny
//! text encoder) and the channels-last convolution blocks of the tiny autoencoder and the
//! PoseInverter.
//!
//! Activations are `(B, H, W, C)`, so a 1×1 convolution is one matmul over all pixels. 3×3
//! kernels are stored as plain `(out, 9*in)` matrices (tap-major) and run through candle's
//! `conv2d` on channels-first input, which measured faster on our CPU than an im2col built from
//! copy ops.

use candle_core::{Result, Tensor};
use std::collections::HashMap;

/// A linear map over the last axis (a 1×1 convolution in channels-last), or a 3×3 kernel.
#[derive(Debug, Clone)]
pub(crate) struct Lin {
    pub w: Tensor,
    pub b: Tensor,
}

impl Lin {
    /// `{name}.weight` and `{name}.bias` from `params`; the error is the missing tensor's name.
    pub(crate) fn get(
        params: &HashMap<String, Tensor>,
        name: &str,
    ) -> std::result::Result<Self, String> {
        let g = |n: String| params.get(&n).cloned().ok_or(n);
        Ok(Self {
            w: g(format!("{name}.weight"))?,
            b: g(format!("{name}.bias"))?,
        })
    }

    /// `(.., in) -> (.., out)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let inn = dims.last().copied().unwrap_or(0);
        let n = x.elem_count() / inn.max(1);
        let y = x
            .reshape((n, inn))?
            .matmul(&self.w.t()?)?
            .broadcast_add(&self.b)?;
        if let Some(l) = dims.last_mut() {
            *l = self.b.dim(0)?;
        }
        y.reshape(dims)
    }

    /// `x @ W^T + b` as one broadcast matmul over x's leading axes (no flattening to rows): the
    /// tiny text encoder keeps this form so that its outputs and gradients stay bit-identical.
    pub(crate) fn forward_broadcast(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_matmul(&self.w.t()?)?.broadcast_add(&self.b)
    }

    /// A 3×3 convolution (zero padding 1) on channels-first `(B, C, H, W)` with the weight
    /// stored as `(out, 9*C)`, tap-major. Returns `(B, out, H, W)`.
    pub(crate) fn conv3x3_nchw(&self, x: &Tensor) -> Result<Tensor> {
        let (out, k) = self.w.dims2()?;
        let w = self
            .w
            .reshape((out, 3, 3, k / 9))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        x.conv2d(&w, 1, 1, 1, 1)?
            .broadcast_add(&self.b.reshape((1, out, 1, 1))?)
    }

    /// The same 3×3 convolution on channels-last `(B, H, W, C)`, returning `(B, H, W, out)`
    /// (through [`Self::conv3x3_nchw`]; differentiable).
    pub(crate) fn conv3x3_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv3x3_nchw(&x.permute((0, 3, 1, 2))?.contiguous()?)?;
        y.permute((0, 2, 3, 1))?.contiguous()
    }

    /// [`Self::conv3x3_nhwc`] for inference: on the CPU in f32 the nine shifted copies of the zero-padded input are
    /// laid side by side (tap order = the weight's) and multiplied once, with no layout
    /// changes (about twice as fast as the NCHW path on the PoseInverter's small maps). The
    /// result is a fresh tensor with no gradient history; on other devices and dtypes it is
    /// [`Self::conv3x3_nhwc`].
    pub(crate) fn conv3x3_nhwc_infer(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        if !matches!(x.device(), candle_core::Device::Cpu) || x.dtype() != candle_core::DType::F32 {
            return self.conv3x3_nhwc(x);
        }
        let src = x.flatten_all()?.to_vec1::<f32>()?;
        let mut cols = vec![0f32; b * h * w * 9 * c];
        for n in 0..b {
            for y in 0..h {
                for xx in 0..w {
                    let row = &mut cols[((n * h + y) * w + xx) * 9 * c..][..9 * c];
                    for dy in 0..3 {
                        let sy = y + dy;
                        if sy == 0 || sy > h {
                            continue;
                        }
                        for dx in 0..3 {
                            let sx = xx + dx;
                            if sx == 0 || sx > w {
                                continue;
                            }
                            let from = ((n * h + sy - 1) * w + sx - 1) * c;
                            row[(dy * 3 + dx) * c..][..c].copy_from_slice(&src[from..from + c]);
                        }
                    }
                }
            }
        }
        self.forward(&Tensor::from_vec(cols, (b, h, w, 9 * c), x.device())?)
    }
}

/// Space-to-depth ×2 on `(B, H, W, C)` -> `(B, H/2, W/2, 4C)`.
pub(crate) fn unshuffle2(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    x.reshape((b, h / 2, 2, w / 2, 2, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .reshape((b, h / 2, w / 2, 4 * c))
}

/// Depth-to-space ×2 on `(B, h, w, 4C)` -> `(B, 2h, 2w, C)`.
pub(crate) fn shuffle2(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c4) = x.dims4()?;
    let c = c4 / 4;
    x.reshape((b, h, w, 2, 2, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .reshape((b, h * 2, w * 2, c))
}

/// The largest absolute difference between two f32 tensors of one shape: the parity checks'
/// measure (unit and integration tests, the engine's and the trainer's). Panics on a shape or
/// dtype mismatch, which is a bug in the check itself.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("tensors of one shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn conv3x3_channels_last_inference_matches_channels_first() {
        let dev = Device::Cpu;
        let (c, out) = (5, 7);
        let lin = Lin {
            w: Tensor::randn(0f32, 0.3, (out, 9 * c), &dev).unwrap(),
            b: Tensor::randn(0f32, 0.3, out, &dev).unwrap(),
        };
        let x = Tensor::randn(0f32, 1.0, (2, 6, 9, c), &dev).unwrap();
        let last = lin.conv3x3_nhwc_infer(&x).unwrap();
        let first = lin.conv3x3_nhwc(&x).unwrap();
        assert_eq!(last.dims(), &[2, 6, 9, out]);
        let diff = max_abs_diff(&last, &first);
        assert!(diff < 1e-5, "max difference {diff}");
    }
}
