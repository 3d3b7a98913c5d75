#!/usr/bin/env bash
# Times our tiny DiT against the PyTorch peer (diffusers' FluxTransformer2DModel built from the same
# config), alternating the two so that machine load affects both alike, and prints a Markdown table
# of medians over the rounds: the base-DiT training step at batch 8 and the forward at batch 1 and 8
# (64 image + 32 text tokens, f32, 2 threads).
#
#   scripts/bench-peer.sh [ROUNDS]
#
# PEER_SCRIPT: the peer (default ../shared/peer/flux_torch.py); PEER_PYTHON: a Python with torch,
# diffusers and safetensors (default ~/.cache/peer-venv/bin/python; the peer's docstring has the
# set-up). Needs `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
peer=${PEER_SCRIPT:-../shared/peer/flux_torch.py}
py=${PEER_PYTHON:-$HOME/.cache/peer-venv/bin/python}
bin=target/release/skeleguide
for f in "$peer" "$py" "$bin"; do
    [[ -e $f ]] || { echo "bench-peer: $f is missing (see the header of this script)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["dit"], open(sys.argv[2], "w"))' \
    assets/models/tiny/config.json "$work/dit.json"
peer_ms() { "$py" "$peer" "$@" --config "$work/dit.json" --threads 2 | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p'; }
for r in $(seq "$rounds"); do
    echo "round $r of $rounds" >&2
    echo "peer_train $(peer_ms train --batch 8 --iters 10)" >>"$work/t"
    "$bin" bench train --phase 0-dit --batch 8 --iters 10 --json >"$work/ours_train.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rows"][0]; print("ours_train", r["step_ms"]); print("ours_fwd_part", r["forward_ms"]); print("ours_bwd_part", r["backward_ms"]); print("ours_opt_part", r["optimizer_ms"])' \
        "$work/ours_train.json" >>"$work/t"
    echo "peer_fwd1 $(peer_ms fwd --batch 1 --iters 20)" >>"$work/t"
    echo "peer_fwd8 $(peer_ms fwd --batch 8 --iters 20)" >>"$work/t"
    "$bin" bench dit --json >"$work/ours_dit.json"
    python3 -c 'import json,sys; [print("ours_fwd%d" % r["batch"], r["dit_forward_ms"]) for r in json.load(open(sys.argv[1]))["rows"]]' \
        "$work/ours_dit.json" >>"$work/t"
done
python3 - "$work/t" "$rounds" <<'EOF'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    k, x = line.split()
    v.setdefault(k, []).append(float(x))
m = {k: statistics.median(x) for k, x in v.items()}
print(f"Medians of {sys.argv[2]} alternating rounds, ms:\n")
print("| work | ours | PyTorch peer | ours / peer |")
print("|---|---|---|---|")
rows = [("base-DiT training step (every parameter, AdamW), batch 8", "train"),
        ("forward, batch 1", "fwd1"), ("forward, batch 8", "fwd8")]
for name, k in rows:
    print(f"| {name} | {m['ours_' + k]:.1f} | {m['peer_' + k]:.1f} | {m['ours_' + k] / m['peer_' + k]:.2f} |")
print(f"\nOur training step: forward {m['ours_fwd_part']:.1f}, backward {m['ours_bwd_part']:.1f}, "
      f"optimiser {m['ours_opt_part']:.1f} ms.")
EOF
