#!/usr/bin/env bash
# Hostile-input campaign against the release binaries: every case must end with exit code 2 (or
# 0 where the input is legal), one line on stderr, no panic, no file left behind, within 20 s.
# Prints one row per case and a summary (cases, crashes, leftovers, worst peak memory).
#
#   cargo build --release --workspace && scripts/hostile.sh [target/release]
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release}
SG="$BIN/skeleguide"
ST="$BIN/skeleguide-train"
MODEL=assets/models/tiny
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cases=0 crashes=0 leftovers=0 hangs=0 worst_kb=0 worst_case=""

# run NAME EXPECTED_EXIT CMD...: runs in a fresh folder OUT, measures peak RSS, checks the rules
run() {
    local name=$1 want=$2
    shift 2
    local out="$WORK/out-$cases"
    mkdir -p "$out"
    local err="$WORK/err" mem="$WORK/mem"
    OUT="$out" timeout 20 /usr/bin/time -f %M -o "$mem" "$@" >/dev/null 2>"$err"
    local rc=$?
    local kb
    kb=$(tail -1 "$mem" 2>/dev/null | tr -dc 0-9)
    kb=${kb:-0}
    local lines problems=""
    lines=$(grep -cv '^$' "$err" || true)
    cases=$((cases + 1))
    if [ "$rc" = 124 ]; then
        hangs=$((hangs + 1))
        problems="hang"
    elif [ "$rc" -ge 128 ] || grep -q "panicked\|memory allocation" "$err"; then
        crashes=$((crashes + 1))
        problems="crash (exit $rc)"
    elif [ "$rc" != "$want" ]; then
        problems="exit $rc, wanted $want"
    elif [ "$want" = 2 ] && [ "$lines" != 1 ]; then
        problems="$lines lines"
    fi
    if [ "$want" = 2 ] && [ -n "$(ls -A "$out")" ]; then
        leftovers=$((leftovers + 1))
        problems="$problems left: $(ls -A "$out" | tr '\n' ' ')"
    fi
    if [ "$kb" -gt "$worst_kb" ]; then
        worst_kb=$kb
        worst_case=$name
    fi
    printf '%-52s exit %-3s %7d KiB  %s\n' "$name" "$rc" "$kb" "${problems:-ok}"
}

# inputs
printf '{"people":[{"pose_keypoints_2d":[%s]}],"canvas_width":30000,"canvas_height":30000}' \
    "$(python3 -c 'print(",".join(["10,10,1"] + ["0,0,0"] * 17))')" >"$WORK/huge-canvas.json"
printf '{"people":[{"pose_keypoints_2d":[%s]}],"canvas_width":64,"canvas_height":48}' \
    "$(python3 -c 'print(",".join(["30,10,1", "30,20,1"] + ["0,0,0"] * 16))')" >"$WORK/pose.json"
printf '{"people": [' >"$WORK/truncated.json"
printf '{"people":[{"pose_keypoints_2d":[NaN,1,1]}]}' >"$WORK/nan.json"
printf '\xef\xbb\xbfa man standing\n' >"$WORK/bom.txt"
printf 'a man\x1b[31m standing\n' >"$WORK/esc.txt"
mkfifo "$WORK/fifo.json" "$WORK/fifo.txt" "$WORK/fifo.toml"
python3 - "$WORK" <<'PY'
import struct, sys, zlib
work = sys.argv[1]
def png(w, h, rows):
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
# a header claiming 100000x100000 over one row of data
open(f"{work}/bomb.png", "wb").write(png(100000, 100000, b"\x00" * 300001))
open(f"{work}/scene.png", "wb").write(png(64, 48, b"".join(b"\x00" + bytes([40, 90, 160]) * 64 for _ in range(48))))
PY
bad_model() { # bad_model NAME PYTHON-EDIT: a copy of the shipped model with config.json edited
    local d="$WORK/model-$1"
    mkdir -p "$d"
    for f in "$MODEL"/*; do ln -sf "$(realpath "$f")" "$d/"; done
    rm "$d/config.json"
    python3 -c "
import json; c = json.load(open('$MODEL/config.json')); $2
json.dump(c, open('$d/config.json', 'w'))"
    echo "$d"
}
printf 'preset = "tiny"\nbatch = 100000000\n[phase0]\n' >"$WORK/batch.toml"
sed 's/synth_size = 128/synth_size = 7/' trainer/configs/tiny-smoke.toml >"$WORK/size.toml"
mkdir -p "$WORK/escape"
printf '{"background":"../../../../etc/passwd","image":"/etc/passwd","poses":"p.json","prompt":"x"}\n' \
    >"$WORK/escape/manifest.jsonl"

echo "case                                                  exit  peak RSS   result"
run "pose info: missing file" 2 "$SG" pose info "$WORK/none.json"
run "pose info: truncated JSON" 2 "$SG" pose info "$WORK/truncated.json"
run "pose info: NaN in JSON" 2 "$SG" pose info "$WORK/nan.json"
run "pose info: /dev/zero" 2 "$SG" pose info /dev/zero
run "pose info: /dev/urandom" 2 "$SG" pose info /dev/urandom
run "pose info: FIFO without a writer" 2 "$SG" pose info "$WORK/fifo.json"
run "pose draw: 30000x30000 canvas" 2 sh -c "$SG pose draw --pose $WORK/huge-canvas.json -o \$OUT/l.png"
run "pose draw: --mask-margin 4294967295" 0 sh -c "$SG pose draw --pose $WORK/pose.json -o $WORK/l.png --mask-out $WORK/m.png --mask-margin 4294967295"
run "pose draw: --mask-margin 65536" 0 sh -c "$SG pose draw --pose $WORK/pose.json -o $WORK/l.png --mask-out $WORK/m.png --mask-margin 65536"
run "pose draw: scene /dev/zero" 2 sh -c "$SG pose draw --pose $WORK/pose.json --scene /dev/zero -o \$OUT/l.png"
run "pose draw: 100000x100000 PNG header" 2 sh -c "$SG pose draw --pose $WORK/pose.json --scene $WORK/bomb.png -o \$OUT/l.png"
run "pose draw: -o into a missing folder" 2 sh -c "$SG pose draw --pose $WORK/pose.json -o \$OUT/no/l.png"
run "generate: config resolution 1000000" 2 sh -c "$SG generate --model $(bad_model res "c['resolution']=1000000") --scene $WORK/scene.png --prompt x -o \$OUT/o.png"
run "generate: config depth 1000000" 2 sh -c "$SG generate --model $(bad_model depth "c['dit']['depth']=1000000") --scene $WORK/scene.png --prompt x -o \$OUT/o.png"
run "generate: LoRA rank 100000" 2 sh -c "$SG generate --model $(bad_model rank "c['lora']['skeletal']['rank']=100000") --scene $WORK/scene.png --prompt x -o \$OUT/o.png"
run "generate: unknown config key" 2 sh -c "$SG generate --model $(bad_model key "c['resolutoin']=128") --scene $WORK/scene.png --prompt x -o \$OUT/o.png"
run "generate: guidance NaN" 2 sh -c "$SG generate --scene $WORK/scene.png --prompt x --guidance NaN -o \$OUT/o.png"
run "generate: prompt with ESC" 2 sh -c "$SG generate --scene $WORK/scene.png --prompt \"\$(printf 'a\\033[31m man')\" -o \$OUT/o.png"
run "generate: --layout-out into /proc" 2 sh -c "$SG generate --scene $WORK/scene.png --prompt x --steps 1 -o \$OUT/o.png --layout-out /proc/l.png"
run "generate: scene is a FIFO" 2 sh -c "$SG generate --scene $WORK/fifo.json --prompt x -o \$OUT/o.png"
run "batch: prompts from /dev/zero" 2 sh -c "$SG batch --scene $WORK/scene.png --prompts /dev/zero --seeds 0 --out \$OUT/b"
run "batch: prompts FIFO" 2 sh -c "$SG batch --scene $WORK/scene.png --prompts $WORK/fifo.txt --seeds 0 --out \$OUT/b"
run "batch: prompt with ESC" 2 sh -c "$SG batch --scene $WORK/scene.png --prompts $WORK/esc.txt --seeds 0 --out \$OUT/b"
run "batch: seeds 5..3" 2 sh -c "$SG batch --scene $WORK/scene.png --prompts $WORK/bom.txt --seeds 5..3 --out \$OUT/b"
run "usage: unknown flag" 2 "$SG" generate --bogus
run "train: batch 100000000" 2 sh -c "$ST train --config $WORK/batch.toml --out \$OUT/run"
run "train: synth_size 7" 2 sh -c "$ST train --config $WORK/size.toml --out \$OUT/run"
run "train: config /dev/zero" 2 sh -c "$ST train --config /dev/zero --out \$OUT/run"
run "train: config FIFO" 2 sh -c "$ST train --config $WORK/fifo.toml --out \$OUT/run"
run "train: --resume without checkpoint" 2 sh -c "$ST train --config trainer/configs/tiny-smoke.toml --out \$OUT/run --resume"
run "eval: manifest paths outside the data set" 2 sh -c "$ST eval --model $MODEL --data $WORK/escape --count 1"
run "synth: seed 77, 400 scenes" 0 sh -c "$ST synth --out $WORK/synth77 --count 400 --seed 77 --split train --size 64"

echo
echo "cases: $cases, crashes: $crashes, hangs: $hangs, leftovers: $leftovers, worst peak RSS: $((worst_kb / 1024)) MiB ($worst_case)"
[ "$crashes" = 0 ] && [ "$hangs" = 0 ] && [ "$leftovers" = 0 ]
