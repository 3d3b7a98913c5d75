//! Runs the DiT benchmark:
//! `cargo run --release -p skeleguide-engine --example bench_dit [-- --json] [--quick]`.
//! Uses mimalloc as the global allocator, as the binaries should.
use skeleguide_engine::model::bench::{bench_dit, BenchOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    skeleguide_engine::model::device::configure_cpu_threads();
    let json = std::env::args().any(|a| a == "--json");
    let quick = std::env::args().any(|a| a == "--quick");
    let mut opts = if quick {
        BenchOptions::quick()
    } else {
        BenchOptions::default()
    };
    // Optional overrides for profiling, e.g. BENCH_BATCHES=8 BENCH_TRAIN_ITERS=0.
    if let Ok(v) = std::env::var("BENCH_BATCHES") {
        opts.batches = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    }
    if let Some(n) = std::env::var("BENCH_FORWARD_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.forward_iters = n;
    }
    if let Some(n) = std::env::var("BENCH_SAMPLING_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.sampling_iters = n;
    }
    if let Some(n) = std::env::var("BENCH_TRAIN_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.train_iters = n;
    }
    match bench_dit(&opts) {
        Ok(r) if json => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        Ok(r) => print!("{r}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
