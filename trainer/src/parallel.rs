//! Data-parallel LoRA training: one process per rank, each computing the gradients of its
//! share of every global batch, averaged over the ranks before one identical optimiser step.
//!
//! Every rank draws the same global batch (and its noise) from the run's one random stream and
//! keeps its own rows, so the steps equal a single process's at the same global batch (to
//! float rounding) and a checkpoint resumes at any world size. Only rank 0 writes: the data
//! set, logs, checkpoints, samples and the model directory; the others wait for it at
//! [`Group::barrier`]s.

use skeleguide_engine::model::allreduce::{self, AllReduce, ReduceError};
use std::sync::Arc;
use std::time::Duration;

/// The environment `launch` hands to each process (also what a cluster scheduler sets).
pub const ENV_WORLD_SIZE: &str = "SKELEGUIDE_WORLD_SIZE";
/// This process's rank, `0..world size`.
pub const ENV_RANK: &str = "SKELEGUIDE_RANK";
/// `host:port` where rank 0 listens.
pub const ENV_RENDEZVOUS: &str = "SKELEGUIDE_RENDEZVOUS";
/// The GPU of this process on its machine (`launch` sets it to the rank).
pub const ENV_LOCAL_RANK: &str = "SKELEGUIDE_LOCAL_RANK";

/// How long a rank waits for the others by default: joining, and every reduction (a slow
/// rank's whole step, or rank 0 writing a sample grid, happens inside one wait).
pub const WAIT: Duration = Duration::from_secs(1800);

/// The GPU ordinal of this process on its machine: `SKELEGUIDE_LOCAL_RANK`, else 0.
pub fn local_rank() -> usize {
    std::env::var(ENV_LOCAL_RANK)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// This process's place in a data-parallel group.
#[derive(Clone)]
pub struct Group(pub Arc<dyn AllReduce>);

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rank {} of {}", self.0.rank(), self.0.world_size())
    }
}

impl Group {
    /// Joins the group over TCP (rank 0 listens at `rendezvous`); `wait` bounds every wait
    /// for the other ranks; `fingerprint` identifies the run's settings, the same on every rank.
    /// With `nccl` the gradients are averaged on the GPUs by NCCL (a build with its feature).
    pub fn join(
        rendezvous: &str,
        world: usize,
        rank: usize,
        wait: Duration,
        fingerprint: u64,
        nccl: bool,
    ) -> Result<Self, ReduceError> {
        Ok(Self(allreduce::join(
            rendezvous,
            world,
            rank,
            wait,
            fingerprint,
            nccl,
        )?))
    }

    pub fn rank(&self) -> usize {
        self.0.rank()
    }

    pub fn world_size(&self) -> usize {
        self.0.world_size()
    }

    /// Returns once every rank has arrived (rank 0's files are then written).
    pub fn barrier(&self) -> Result<(), ReduceError> {
        self.0.all_reduce_mean(&mut [vec![0.0]])
    }

    /// The rows `lo..hi` of a global batch of `batch` that this rank computes.
    pub fn rows(&self, batch: usize) -> std::ops::Range<usize> {
        let per = batch / self.world_size();
        self.rank() * per..(self.rank() + 1) * per
    }
}
