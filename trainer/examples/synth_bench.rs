//! Times the synthetic generator: in-memory generation per example (one thread) and the full
//! write path (PNG encoding, atomic writes) at a few sizes.
//! `cargo run --release -p skeleguide-trainer --example synth_bench -- [N]`

use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
use skeleguide_trainer::data::synth::{write_dataset, SynthOptions};
use skeleguide_trainer::data::{example_seed, generate_example, Split};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    for size in [128u32, 512] {
        let t = Instant::now();
        for i in 0..n {
            if let Err(e) = generate_example(
                size,
                DEFAULT_MIN_PERSON_HEIGHT,
                example_seed(1, Split::Train, i as u64),
            ) {
                eprintln!("{e}");
            }
        }
        let gen = t.elapsed().as_secs_f64();
        let dir = std::env::temp_dir().join(format!("synth-bench-{size}-{}", std::process::id()));
        for threads in [1usize, 2] {
            let opts = SynthOptions {
                count: n,
                seed: 1,
                split: Split::Train,
                size,
                min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
                threads,
            };
            let t = Instant::now();
            if let Err(e) = write_dataset(&dir, &opts, &|| {}) {
                eprintln!("{e}");
            }
            let w = t.elapsed().as_secs_f64();
            println!(
                "{size}x{size}: generate {:.2} ms/example ({:.0}/s, 1 thread); write to disk with {threads} thread(s): {:.1} examples/s",
                1000.0 * gen / n as f64,
                n as f64 / gen,
                n as f64 / w
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
