#!/usr/bin/env bash
# Puts a run that came back from a device slot (scripts/device/train-base.sh) into a run folder:
#
#   scripts/device/unpack-run.sh FROM RUN
#
# FROM holds the slot's run.tar.xz.part-* files (and its gpu.txt); RUN is the run folder: its
# checkpoint, log and model directory are replaced, its data set kept, and the base of an earlier
# checkpoint (model-at-checkpoint/) removed. Then
# `skeleguide-train train --config CONFIG --out RUN --resume` goes on, here or in the next slot.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 FROM RUN" >&2; exit 2; }
from=$1 run=$2
parts=("$from"/run.tar.xz.part-*)
[ -f "${parts[0]}" ] || { echo "$from: no run.tar.xz.part-* files" >&2; exit 2; }
[ -f "$from/gpu.txt" ] && grep -h '^train: exit' "$from/gpu.txt" || true
mkdir -p "$run"
tmp=$(mktemp -d "$run/.unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Everything is read before the run folder is touched: a missing or truncated part fails here.
if ! cat "${parts[@]}" | xz -d | tar -C "$tmp" -xf -; then
    echo "$from: the parts do not make a whole run (missing or truncated)" >&2
    exit 2
fi
rm -rf "${run:?}/model-at-checkpoint"
for f in "$tmp"/*; do
    [ -e "$f" ] || continue
    rm -rf "${run:?}/$(basename "$f")"
    mv "$f" "$run/"
done
echo "unpacked ${#parts[@]} part(s) into $run"
