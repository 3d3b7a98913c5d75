//! Data-parallel training's one collective: the mean of every rank's gradients.
//!
//! [`AllReduce`] is the whole interface the optimiser needs
//! ([`super::adamw::AdamW::step_reduced`]). [`ThreadGroup`] is the in-process CPU backend: one
//! rank per thread, for tests and for several ranks on one machine. [`TcpRank`] joins ranks in
//! separate processes (or machines) over TCP: `skeleguide-train launch` and `train --world-size N
//! --rank R` use it. `NcclRank` (the `nccl` feature) reduces GPU tensors with NCCL, the ranks
//! having met over TCP. A rank that fails calls [`AllReduce::abort`] (a [`ThreadRank`] owned by
//! a thread that panics does so itself when dropped), and every other rank's pending and later
//! reductions return the group's first error instead of waiting for it; a rank that never
//! arrives makes the others time out.

#[cfg(feature = "nccl")]
mod nccl;
mod tcp;

#[cfg(feature = "nccl")]
pub use nccl::NcclRank;
pub use tcp::TcpRank;

use candle_core::{DType, Device, Tensor};

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why a reduction failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReduceError {
    /// Another rank (or this one) gave up.
    #[error("rank {rank} stopped the group: {why}")]
    Aborted {
        /// The rank that aborted.
        rank: usize,
        /// Its reason.
        why: String,
    },
    /// The ranks passed buffers of different sizes.
    #[error("rank {rank}: buffer {index} has {len} values, the round started with {expected}")]
    Mismatch {
        /// The rank whose buffer differs.
        rank: usize,
        /// Which buffer.
        index: usize,
        /// Its length.
        len: usize,
        /// The length the round started with.
        expected: usize,
    },
    /// A connection between ranks failed (a process ended, the network dropped).
    #[error("rank {rank}: {msg}")]
    Connection {
        /// The rank that saw the failure.
        rank: usize,
        /// What failed.
        msg: String,
    },
    /// The ranks passed different numbers of buffers.
    #[error("rank {rank}: {count} buffers, the round started with {expected}")]
    Count {
        /// The rank whose count differs.
        rank: usize,
        /// Its count.
        count: usize,
        /// The count the round started with.
        expected: usize,
    },
    /// The other ranks did not arrive in time.
    #[error("rank {rank}: no reduction from the other ranks within {secs} s")]
    Timeout {
        /// The waiting rank.
        rank: usize,
        /// The limit.
        secs: u64,
    },
}

/// Whether this build has the NCCL backend (the `nccl` feature).
pub fn nccl_compiled() -> bool {
    cfg!(feature = "nccl")
}

/// Joins a group of processes over TCP ([`TcpRank::join`]'s arguments). With `nccl`, GPU
/// tensors are then reduced by NCCL (`NcclRank`), which needs a build with the `nccl` feature.
pub fn join(
    addr: &str,
    world: usize,
    rank: usize,
    timeout: Duration,
    fingerprint: u64,
    nccl: bool,
) -> Result<Arc<dyn AllReduce>, ReduceError> {
    #[cfg(not(feature = "nccl"))]
    if nccl {
        return Err(ReduceError::Connection {
            rank,
            msg: "this build has no NCCL backend (build with --features skeleguide-engine/nccl)"
                .into(),
        });
    }
    let tcp = TcpRank::join(addr, world, rank, timeout, fingerprint)?;
    #[cfg(feature = "nccl")]
    if nccl {
        return Ok(Arc::new(NcclRank::over(tcp)?));
    }
    Ok(Arc::new(tcp))
}

/// Mean of buffers over the ranks of a data-parallel group.
pub trait AllReduce: Send + Sync {
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// This rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Replaces every buffer by its element-wise mean over the ranks. Every rank passes the same
    /// number of buffers with the same lengths, in the same order.
    fn all_reduce_mean(&self, bufs: &mut [Vec<f32>]) -> Result<(), ReduceError>;
    /// The element-wise mean over the ranks of each tensor (same order, shapes and dtypes on
    /// every rank), on the tensors' device and in their dtype. By default through host f32
    /// buffers and [`AllReduce::all_reduce_mean`]; the NCCL backend reduces on the GPU.
    fn all_reduce_mean_tensors(&self, ts: &[Tensor]) -> Result<Vec<Tensor>, ReduceError> {
        mean_through_host(self, ts)
    }
    /// Stops the group: every rank's pending and later reductions fail with `why`.
    fn abort(&self, why: &str);
}

/// [`AllReduce::all_reduce_mean_tensors`] through host f32 buffers and
/// [`AllReduce::all_reduce_mean`], for any device.
pub(crate) fn mean_through_host<R: AllReduce + ?Sized>(
    group: &R,
    ts: &[Tensor],
) -> Result<Vec<Tensor>, ReduceError> {
    let wrap = |e: candle_core::Error| ReduceError::Connection {
        rank: group.rank(),
        msg: format!("staging a gradient through host memory: {e}"),
    };
    let mut bufs = ts
        .iter()
        .map(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(wrap)?;
    group.all_reduce_mean(&mut bufs)?;
    ts.iter()
        .zip(bufs)
        .map(|(t, b)| {
            Tensor::from_vec(b, t.dims(), &Device::Cpu)?
                .to_dtype(t.dtype())?
                .to_device(t.device())
        })
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(wrap)
}

/// The buffers as f64 sums: every backend adds in f64 so the mean does not depend on the order
/// ranks arrive in beyond rounding of the last bit.
fn widen(bufs: &[Vec<f32>]) -> Vec<Vec<f64>> {
    bufs.iter()
        .map(|b| b.iter().map(|&x| x as f64).collect())
        .collect()
}

/// Whether rank `rank`'s buffers, of lengths `lens`, pair with the round's `sum`.
fn check_lengths(
    sum: &[Vec<f64>],
    lens: impl ExactSizeIterator<Item = usize>,
    rank: usize,
) -> Result<(), ReduceError> {
    if lens.len() != sum.len() {
        return Err(ReduceError::Count {
            rank,
            count: lens.len(),
            expected: sum.len(),
        });
    }
    for (index, (s, len)) in sum.iter().zip(lens).enumerate() {
        if s.len() != len {
            return Err(ReduceError::Mismatch {
                rank,
                index,
                len,
                expected: s.len(),
            });
        }
    }
    Ok(())
}

/// Adds rank `rank`'s buffers into the round's sum.
fn accumulate(sum: &mut [Vec<f64>], bufs: &[Vec<f32>], rank: usize) -> Result<(), ReduceError> {
    check_lengths(sum, bufs.iter().map(Vec::len), rank)?;
    for (s, b) in sum.iter_mut().zip(bufs) {
        for (a, &x) in s.iter_mut().zip(b) {
            *a += x as f64;
        }
    }
    Ok(())
}

/// The mean over `n` ranks of the summed buffers.
fn mean_of(sum: &[Vec<f64>], n: usize) -> Vec<Vec<f32>> {
    let inv = 1.0 / n as f64;
    sum.iter()
        .map(|s| s.iter().map(|&x| (x * inv) as f32).collect())
        .collect()
}

/// The state the threads of a group share.
struct Shared {
    n: usize,
    timeout: Duration,
    state: Mutex<Round>,
    wake: Condvar,
}

#[derive(Default)]
struct Round {
    /// Completed rounds.
    generation: u64,
    arrived: usize,
    sum: Vec<Vec<f64>>,
    result: Arc<Vec<Vec<f32>>>,
    aborted: Option<ReduceError>,
}

/// The in-process CPU backend: [`ThreadGroup::ranks`] gives one [`ThreadRank`] per thread.
pub struct ThreadGroup;

impl ThreadGroup {
    /// `n` ranks (at least one) that wait at most `timeout` for each other.
    pub fn ranks(n: usize, timeout: Duration) -> Vec<ThreadRank> {
        let shared = Arc::new(Shared {
            n: n.max(1),
            timeout,
            state: Mutex::new(Round::default()),
            wake: Condvar::new(),
        });
        (0..n.max(1))
            .map(|rank| ThreadRank {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }
}

/// One rank of a [`ThreadGroup`].
pub struct ThreadRank {
    rank: usize,
    shared: Arc<Shared>,
}

impl ThreadRank {
    fn lock(&self) -> std::sync::MutexGuard<'_, Round> {
        // A rank that panicked while holding the lock left a consistent round (no partial
        // writes happen under it), so the state stays usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, round: &mut Round, e: ReduceError) -> ReduceError {
        if round.aborted.is_none() {
            round.aborted = Some(e.clone());
        }
        self.shared.wake.notify_all();
        round.aborted.clone().unwrap_or(e)
    }
}

impl AllReduce for ThreadRank {
    fn world_size(&self) -> usize {
        self.shared.n
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn all_reduce_mean(&self, bufs: &mut [Vec<f32>]) -> Result<(), ReduceError> {
        let n = self.shared.n;
        let mut round = self.lock();
        if let Some(e) = &round.aborted {
            return Err(e.clone());
        }
        if round.arrived == 0 {
            round.sum = widen(bufs);
        } else if let Err(e) = accumulate(&mut round.sum, bufs, self.rank) {
            return Err(self.fail(&mut round, e));
        }
        round.arrived += 1;
        let gen = round.generation;
        if round.arrived == n {
            round.result = Arc::new(mean_of(&round.sum, n));
            round.sum = Vec::new();
            round.arrived = 0;
            round.generation += 1;
            self.shared.wake.notify_all();
        } else {
            let deadline = Instant::now() + self.shared.timeout;
            while round.generation == gen && round.aborted.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let e = ReduceError::Timeout {
                        rank: self.rank,
                        secs: self.shared.timeout.as_secs(),
                    };
                    return Err(self.fail(&mut round, e));
                }
                round = self
                    .shared
                    .wake
                    .wait_timeout(round, left)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            if round.generation == gen {
                return Err(round.aborted.clone().unwrap_or(ReduceError::Aborted {
                    rank: self.rank,
                    why: "stopped".into(),
                }));
            }
        }
        let result = Arc::clone(&round.result);
        drop(round);
        for (b, r) in bufs.iter_mut().zip(result.iter()) {
            b.copy_from_slice(r);
        }
        Ok(())
    }

    fn abort(&self, why: &str) {
        let mut round = self.lock();
        let e = ReduceError::Aborted {
            rank: self.rank,
            why: why.to_string(),
        };
        self.fail(&mut round, e);
    }
}

impl Drop for ThreadRank {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.abort("its thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_get_the_mean_of_every_buffer() {
        let ranks = ThreadGroup::ranks(3, Duration::from_secs(30));
        let out: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .map(|r| {
                    s.spawn(move || {
                        let x = r.rank() as f32;
                        let mut bufs = vec![vec![x, 2.0 * x], vec![10.0 + x]];
                        for _ in 0..4 {
                            r.all_reduce_mean(&mut bufs).unwrap();
                        }
                        bufs
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for b in out {
            assert_eq!(b, vec![vec![1.0, 2.0], vec![11.0]]);
        }
    }

    #[test]
    fn a_failing_rank_stops_the_others_instead_of_hanging() {
        let ranks = ThreadGroup::ranks(3, Duration::from_secs(600));
        let t0 = Instant::now();
        let errs: Vec<Option<ReduceError>> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .map(|r| {
                    s.spawn(move || {
                        let mut bufs = vec![vec![1.0f32; 4]];
                        for step in 0..5 {
                            if r.rank() == 2 && step == 2 {
                                r.abort("out of data");
                                return None;
                            }
                            if let Err(e) = r.all_reduce_mean(&mut bufs) {
                                return Some(e);
                            }
                        }
                        None
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(t0.elapsed() < Duration::from_secs(60));
        for e in &errs[..2] {
            let e = e.as_ref().expect("the other ranks see the failure");
            assert!(
                e.to_string().contains("rank 2") && e.to_string().contains("out of data"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_panicking_rank_stops_the_others() {
        let mut ranks = ThreadGroup::ranks(2, Duration::from_secs(600));
        let r1 = ranks.pop().unwrap();
        let r0 = ranks.pop().unwrap();
        let h = std::thread::spawn(move || {
            let _rank = r1;
            panic!("a rank failed");
        });
        assert!(h.join().is_err());
        let e = r0.all_reduce_mean(&mut [vec![0.0]]).unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
    }

    #[test]
    fn mismatched_buffers_and_a_missing_rank_are_errors() {
        let ranks = ThreadGroup::ranks(2, Duration::from_millis(200));
        let e = ranks[0].all_reduce_mean(&mut [vec![0.0; 3]]).unwrap_err();
        assert!(matches!(e, ReduceError::Timeout { rank: 0, .. }), "{e}");
        let ranks = ThreadGroup::ranks(2, Duration::from_secs(30));
        let errs: Vec<ReduceError> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .map(|r| s.spawn(move || r.all_reduce_mean(&mut [vec![0.0; 2 + r.rank()]])))
                .collect();
            hs.into_iter()
                .filter_map(|h| h.join().unwrap().err())
                .collect()
        });
        assert_eq!(errs.len(), 2);
        assert!(
            errs.iter()
                .all(|e| matches!(e, ReduceError::Mismatch { .. })),
            "{errs:?}"
        );
    }
}
