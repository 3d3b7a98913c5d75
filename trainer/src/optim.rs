//! The run's random number generator; the optimiser is the engine's
//! ([`skeleguide_engine::model::adamw`]).

use skeleguide_engine::model::lora::SplitMix64;

pub use skeleguide_engine::model::adamw::{AdamW, AdamWParams};

/// The run's generator (SplitMix64): one `u64` of state, saved in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainRng(pub u64);

impl TrainRng {
    /// The engine's SplitMix64 step on this state.
    fn with<T>(&mut self, f: impl FnOnce(&mut SplitMix64) -> T) -> T {
        let mut g = SplitMix64(self.0);
        let v = f(&mut g);
        self.0 = g.0;
        v
    }

    pub fn next_u64(&mut self) -> u64 {
        self.with(SplitMix64::next_u64)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        self.with(SplitMix64::next_f64)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.f64() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` standard normal f32 values.
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }
}
