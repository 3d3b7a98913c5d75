//! Runs the DiT benchmark:
//! `cargo run --release -p skeleguide-engine --example bench_dit [-- --json] [--quick]`.
//! Uses mimalloc as the global allocator, as the binaries should.
use skeleguide_engine::model::bench::{bench_dit, BenchOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let quick = std::env::args().any(|a| a == "--quick");
    let opts = if quick {
        BenchOptions::quick()
    } else {
        BenchOptions::default()
    };
    match bench_dit(&opts) {
        Ok(r) if json => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        Ok(r) => print!("{r}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
