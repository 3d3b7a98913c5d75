//! The NCCL backend: GPU tensors are averaged on the devices (`ncclAllReduce` with `ncclAvg`, in
//! f32) without a trip through host memory. The ranks first meet over TCP ([`TcpRank`]), which
//! hands NCCL's unique id from rank 0 to the others and carries the host reductions (losses,
//! barriers) and aborts. The communicator is made at the first tensor reduction, on that
//! tensor's CUDA stream (the one the model's kernels run on), so the reduction is ordered after
//! the backward pass that wrote the gradients.

use super::{AllReduce, ReduceError, TcpRank};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::CudaStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// Bytes of NCCL's unique id.
const ID_BYTES: usize = 128;

/// A communicator that may move between threads.
struct SendComm(Comm);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it do not
// overlap; every use goes through the `Mutex` of `NcclRank::comm`.
unsafe impl Send for SendComm {}

/// One rank of a group that reduces GPU tensors with NCCL.
pub struct NcclRank {
    tcp: TcpRank,
    id: Id,
    comm: Arc<Mutex<Option<SendComm>>>,
}

impl NcclRank {
    /// Takes NCCL's unique id from rank 0 over the joined TCP group.
    pub fn over(tcp: TcpRank) -> Result<Self, ReduceError> {
        let rank = tcp.rank();
        let world = tcp.world_size();
        let fail = |msg: String| ReduceError::Connection { rank, msg };
        let mut bytes = vec![0f32; ID_BYTES];
        if rank == 0 {
            let id = Id::new().map_err(|e| fail(format!("NCCL cannot make a unique id: {e:?}")))?;
            for (b, &c) in bytes.iter_mut().zip(id.internal()) {
                *b = c as u8 as f32;
            }
        }
        // A broadcast through the group's mean: the other ranks add zeros, and world × mean
        // rounds back to rank 0's byte values exactly.
        let mut bufs = [bytes];
        tcp.all_reduce_mean(&mut bufs)?;
        let mut internal = [0 as std::ffi::c_char; ID_BYTES];
        for (c, &m) in internal.iter_mut().zip(&bufs[0]) {
            *c = (m * world as f32).round() as u8 as std::ffi::c_char;
        }
        Ok(Self {
            tcp,
            id: Id::uninit(internal),
            comm: Arc::new(Mutex::new(None)),
        })
    }

    fn fail(&self, msg: String) -> ReduceError {
        ReduceError::Connection {
            rank: self.rank(),
            msg,
        }
    }

    /// Makes the communicator on `device`'s stream unless it exists.
    fn ensure_comm(&self, device: &Device) -> Result<(), ReduceError> {
        let Device::Cuda(dev) = device else {
            return Err(self.fail(format!(
                "the NCCL backend reduces CUDA tensors, not tensors on {device:?}"
            )));
        };
        let mut slot = self
            .comm
            .lock()
            .map_err(|_| self.fail("the NCCL communicator's lock is poisoned".into()))?;
        if slot.is_none() {
            // NCCL makes its communicator on the calling thread's current CUDA context.
            dev.cuda_stream()
                .context()
                .bind_to_thread()
                .map_err(|e| self.fail(format!("cannot bind the CUDA context: {e:?}")))?;
            let comm = Comm::from_rank(dev.cuda_stream(), self.rank(), self.world_size(), self.id)
                .map_err(|e| self.fail(format!("NCCL cannot join the group: {e:?}")))?;
            *slot = Some(SendComm(comm));
        }
        Ok(())
    }
}

impl AllReduce for NcclRank {
    fn world_size(&self) -> usize {
        self.tcp.world_size()
    }

    fn rank(&self) -> usize {
        self.tcp.rank()
    }

    fn all_reduce_mean(&self, bufs: &mut [Vec<f32>]) -> Result<(), ReduceError> {
        self.tcp.all_reduce_mean(bufs)
    }

    fn all_reduce_mean_tensors(&self, ts: &[Tensor]) -> Result<Vec<Tensor>, ReduceError> {
        let Some(first) = ts.first() else {
            return Ok(Vec::new());
        };
        if !first.device().is_cuda() {
            return super::mean_through_host(self, ts);
        }
        let wrap = |e: candle_core::Error| self.fail(format!("NCCL all-reduce: {e}"));
        // One reduction for all the tensors: one launch instead of one per tensor. Packed before
        // the barrier, so that running out of memory here stops the group like any failure.
        let packed = ts
            .iter()
            .map(|t| t.to_dtype(DType::F32)?.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()
            .and_then(|flat| Tensor::cat(&flat, 0))
            .map_err(wrap)?;
        // Every rank meets here before any queues NCCL work: a rank that failed earlier stops
        // the others (abort or timeout) instead of leaving them waiting inside NCCL.
        self.tcp.all_reduce_mean(&mut [vec![0.0]])?;
        self.ensure_comm(first.device())?;
        let op = DeviceMean {
            comm: Arc::clone(&self.comm),
        };
        let mean = packed.apply_op1_no_bwd(&op).map_err(wrap)?;
        drop(packed);
        let mut offset = 0;
        ts.iter()
            .map(|t| {
                let n = t.elem_count();
                let part = mean.narrow(0, offset, n)?.reshape(t.dims())?;
                offset += n;
                part.to_dtype(t.dtype())
            })
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(wrap)
    }

    fn abort(&self, why: &str) {
        self.tcp.abort(why);
    }
}

/// The mean over the ranks of one contiguous f32 CUDA tensor, into a new one (the communicator
/// orders it on the tensor's stream, after the kernels that wrote it).
struct DeviceMean {
    comm: Arc<Mutex<Option<SendComm>>>,
}

impl CustomOp1 for DeviceMean {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-mean"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL backend reduces CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the NCCL reduction takes contiguous tensors only")
        };
        let n = end - start;
        let src = storage.as_cuda_slice::<f32>()?.slice(start..end);
        let dev = storage.device().clone();
        let mut dst = dev.alloc_zeros::<f32>(n)?;
        let guard = self.comm.lock().map_err(|_| {
            candle_core::Error::Msg("the NCCL communicator's lock is poisoned".into())
        })?;
        let comm = guard
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("no NCCL communicator".into()))?;
        comm.0
            .all_reduce(&src, &mut dst, &ReduceOp::Avg)
            .map_err(|e| candle_core::Error::Msg(format!("{e:?}")))?;
        Ok((
            CudaStorage::wrap_cuda_slice(dst, dev),
            layout.shape().clone(),
        ))
    }
}
