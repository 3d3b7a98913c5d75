#!/usr/bin/env bash
# Fuzzes every reader of user input with cargo-fuzz (libFuzzer + AddressSanitizer, nightly).
#
#   scripts/fuzz.sh            # each target for 10 minutes
#   scripts/fuzz.sh 10         # each target for 10 seconds (what CI runs)
#   scripts/fuzz.sh 60 image   # one target
#
# A run fails on a crash, an abort, an allocation over 1 GB (-malloc_limit_mb), a resident set
# over 1 GB (-rss_limit_mb) or one input taking over 1 s (-timeout). libFuzzer then writes the
# input to fuzz/artifacts/TARGET/; copy it into fuzz/regressions/TARGET/ with the fix, and
# `cargo test --release --workspace --test fuzz_regressions` keeps it fixed.
#
# The corpus starts from fuzz/seeds/ and the project's own files of each kind; what the fuzzer
# adds stays in fuzz/corpus/ (ignored by git) for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(pose_json manifest model_config train_toml safetensors_header image synth_seed)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Seeds: the committed ones, then the project's own files of the target's kind.
extra_seeds() {
    case "$1" in
        pose_json) ls assets/poses/*.json ;;
        model_config) ls assets/models/*/config.json ;;
        train_toml) ls trainer/configs/*.toml ;;
        image) ls assets/scenes/street.png ;;
    esac
}

cd fuzz
cargo +nightly fuzz build -O
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    for f in $(cd .. && extra_seeds "$t"); do
        cp -n "../$f" "corpus/$t/$(echo "$f" | tr / _)"
    done
    echo "fuzz.sh: $t for ${seconds} s"
    # the binaries built above, run directly: a source edit during a long run rebuilds nothing
    mkdir -p "artifacts/$t"
    if ! "target/$host/release/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=1024 -malloc_limit_mb=1024 \
        -max_len=262144 -print_final_stats=1 "corpus/$t" >"corpus/$t.log" 2>&1; then
        tail -n 40 "corpus/$t.log" >&2
        echo "fuzz.sh: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "corpus/$t.log" | tr '\n' ' '
    echo
done
echo "fuzz.sh: ${#targets[@]} targets, ${seconds} s each, no failure"
