//! Building blocks shared by our models: the one linear layer [`Lin`] (the MM-DiT, the tiny text
//! encoder, the tiny autoencoder and the PoseInverter) and the channels-last convolution blocks
//! of the tiny autoencoder and the PoseInverter.
//!
//! Activations are `(B, H, W, C)`, so a 1×1 convolution is one matmul over all pixels. 3×3
//! kernels are stored as plain `(out, 9*in)` matrices (tap-major) and run through candle's
//! `conv2d` on channels-first input, which measured faster on our CPU than an im2col built from
//! copy ops.

use super::kernels;
use candle_core::{Result, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// A linear layer over the last axis (also a 1×1 convolution in channels-last, or a 3×3 kernel
/// stored as a matrix): every model in the engine uses this one type.
///
/// The weight is kept as stored, `(out, in)`, or, in a frozen MM-DiT, transposed once to a
/// contiguous `(in, out)` so that inference multiplies without a strided operand. A trainable
/// weight always stays as stored: it is the `Var` the optimiser updates.
#[derive(Debug, Clone)]
pub(crate) struct Lin {
    weight: Tensor,
    transposed: bool,
    pub(crate) b: Option<Tensor>,
    /// The bias as host f32 for the fused CPU kernels (CPU + f32 MM-DiT only).
    pub(crate) bh: Option<Arc<Vec<f32>>>,
}

impl Lin {
    /// A layer with its weight `(out, in)` as stored.
    pub(crate) fn new(w: Tensor, b: Option<Tensor>) -> Self {
        Self {
            weight: w,
            transposed: false,
            b,
            bh: None,
        }
    }

    /// `{name}.weight` and `{name}.bias` from `params`; the error is the missing tensor's name.
    pub(crate) fn get(
        params: &HashMap<String, Tensor>,
        name: &str,
    ) -> std::result::Result<Self, String> {
        let g = |n: String| params.get(&n).cloned().ok_or(n);
        Ok(Self::new(
            g(format!("{name}.weight"))?,
            Some(g(format!("{name}.bias"))?),
        ))
    }

    /// For inference: the weight transposed once into a contiguous `(in, out)` copy.
    pub(crate) fn frozen(self) -> Result<Self> {
        if self.transposed {
            return Ok(self);
        }
        Ok(Self {
            weight: self.weight.t()?.contiguous()?,
            transposed: true,
            ..self
        })
    }

    /// Keeps the bias on the host too, for the fused CPU kernels.
    pub(crate) fn with_host_bias(mut self) -> Result<Self> {
        if let Some(b) = &self.b {
            self.bh = Some(Arc::new(b.to_vec1::<f32>()?));
        }
        Ok(self)
    }

    /// The weight as `(out, in)` (a view when it is held transposed).
    pub(crate) fn w(&self) -> Result<Tensor> {
        if self.transposed {
            self.weight.t()
        } else {
            Ok(self.weight.clone())
        }
    }

    /// The weight as `(in, out)`, the right-hand operand of `x @ W^T`.
    fn w_in_out(&self) -> Result<Tensor> {
        if self.transposed {
            Ok(self.weight.clone())
        } else {
            self.weight.t()
        }
    }

    /// `(.., in) -> (.., out)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.mm(x)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// `x @ W^T` without the bias (the fused kernels add it).
    pub(crate) fn mm(&self, x: &Tensor) -> Result<Tensor> {
        let wt = self.w_in_out()?;
        let (inn, out) = wt.dims2()?;
        let mut dims = x.dims().to_vec();
        let rows = x.elem_count() / inn.max(1);
        let y = x.reshape((rows, inn))?.matmul(&wt)?;
        if let Some(last) = dims.last_mut() {
            *last = out;
        }
        y.reshape(dims)
    }

    /// `x @ W^T + b` as one broadcast matmul over x's leading axes (no flattening to rows): the
    /// tiny text encoder keeps this form so that its outputs and gradients stay bit-identical.
    pub(crate) fn forward_broadcast(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.broadcast_matmul(&self.w_in_out()?)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// [`Self::forward`], or with `fused` (the CPU f32 training path) one differentiable node.
    pub(crate) fn forward_ctx(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        if !fused {
            return self.forward(x);
        }
        let op = kernels::LinearTrain {
            out_in: !self.transposed,
        };
        let x = x.contiguous()?;
        match &self.b {
            Some(b) => x.apply_op3(&self.weight, b, op),
            None => x.apply_op2(&self.weight, op),
        }
    }

    /// The host bias of outputs `off..off + len` (a packed layer's part).
    pub(crate) fn bias_part(&self, off: usize, len: usize) -> Option<Arc<Vec<f32>>> {
        self.bh
            .as_ref()
            .map(|b| Arc::new(b[off..off + len].to_vec()))
    }

    fn add_bias_nchw(&self, y: Tensor) -> Result<Tensor> {
        match &self.b {
            Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
            None => Ok(y),
        }
    }

    /// A 3×3 convolution (zero padding 1) on channels-first `(B, C, H, W)` with the weight
    /// stored as `(out, 9*C)`, tap-major. Returns `(B, out, H, W)`.
    pub(crate) fn conv3x3_nchw(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.w()?;
        let (out, k) = w.dims2()?;
        let w = w
            .reshape((out, 3, 3, k / 9))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        self.add_bias_nchw(x.conv2d(&w, 1, 1, 1, 1)?)
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
        let lin = Lin::new(
            Tensor::randn(0f32, 0.3, (out, 9 * c), &dev).unwrap(),
            Some(Tensor::randn(0f32, 0.3, out, &dev).unwrap()),
        );
        let x = Tensor::randn(0f32, 1.0, (2, 6, 9, c), &dev).unwrap();
        let last = lin.conv3x3_nhwc_infer(&x).unwrap();
        let first = lin.conv3x3_nhwc(&x).unwrap();
        assert_eq!(last.dims(), &[2, 6, 9, out]);
        let diff = max_abs_diff(&last, &first);
        assert!(diff < 1e-5, "max difference {diff}");
    }
}
