#!/usr/bin/env bash
# Puts a run that came back from a device slot (scripts/device/train-base.sh) into a run folder:
#
#   scripts/device/unpack-run.sh FROM RUN [MODEL]
#
# FROM holds the slot's run.tar.xz.part-* files; RUN is the run folder (its checkpoint, log and
# model directory are replaced); MODEL is the model directory whose autoencoder the run adopted
# (default assets/models/tiny), copied back in since the slot leaves it behind. Then
# `skeleguide-train train --config CONFIG --out RUN --resume` goes on, here or in the next slot.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 FROM RUN [MODEL]" >&2; exit 2; }
from=$1 run=$2 model=${3:-assets/models/tiny}
parts=("$from"/run.tar.xz.part-*)
[ -f "${parts[0]}" ] || { echo "$from: no run.tar.xz.part-* files" >&2; exit 2; }
[ -f "$model/ae.safetensors" ] || { echo "$model/ae.safetensors: missing" >&2; exit 2; }
mkdir -p "$run"
tmp=$(mktemp -d "$run/.unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Everything is checked before the run folder is touched: a truncated part fails here.
cat "${parts[@]}" | xz -d | tar -C "$tmp" -xf -
mkdir -p "$tmp/model"
if [ -f "$tmp/model/config.json" ] || [ -f "$tmp/ae-config.json" ]; then
    cp "$model/ae.safetensors" "$tmp/model/ae.safetensors"
fi
for f in "$tmp"/* "$tmp"/.[!.]*; do
    [ -e "$f" ] || continue
    rm -rf "${run:?}/$(basename "$f")"
    mv "$f" "$run/"
done
echo "unpacked ${#parts[@]} part(s) into $run"
