//! The synthetic generator: determinism, and the scene constraints on a few hundred examples.

use skeleguide_engine::metrics::pose::{pckh, pckh_aligned, PckCount};
use skeleguide_engine::pose::skeleton::joint::*;
use skeleguide_engine::pose::{draw_layout, read_pose_file, ImportOptions};
use skeleguide_trainer::data::body::{Action, HIP_ABOVE_SEAT, LIMB_RATIOS, SPINE_ABOVE_SURFACE};
use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
use skeleguide_trainer::data::synth::{redraw_people, write_dataset, SynthOptions};
use skeleguide_trainer::data::{example_seed, generate_example, Example, Split};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

fn opts(count: usize, seed: u64, split: Split, threads: usize) -> SynthOptions {
    SynthOptions {
        count,
        seed,
        split,
        size: 128,
        min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
        threads,
    }
}

/// Every file under `dir`, relative path -> bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_different_seed_different_data() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    write_dataset(a.path(), &opts(6, 42, Split::Train, 1), &|| {}).unwrap();
    // a different thread count must not change a byte
    write_dataset(b.path(), &opts(6, 42, Split::Train, 3), &|| {}).unwrap();
    write_dataset(c.path(), &opts(6, 43, Split::Train, 2), &|| {}).unwrap();
    let (sa, sb, sc) = (snapshot(a.path()), snapshot(b.path()), snapshot(c.path()));
    assert_eq!(sa.len(), 1 + 6 * 5, "{:?}", sa.keys());
    assert!(
        sa.keys().all(|k| !k.contains(".tmp")),
        "temporary files left behind"
    );
    assert!(sa == sb, "same seed, different bytes");
    assert_ne!(sa["manifest.jsonl"], sc["manifest.jsonl"]);
    assert_ne!(
        sa["image/train-000000.png"], sc["image/train-000000.png"],
        "a different seed should give different images"
    );
}

#[test]
fn train_and_test_seeds_are_disjoint() {
    for seed in [0u64, 1, 12345, u64::MAX] {
        let train: HashSet<u64> = (0..5000)
            .map(|i| example_seed(seed, Split::Train, i))
            .collect();
        let test: HashSet<u64> = (0..5000)
            .map(|i| example_seed(seed, Split::Test, i))
            .collect();
        assert_eq!(train.len(), 5000);
        assert_eq!(test.len(), 5000);
        assert!(train.is_disjoint(&test));
    }
    let a = generate_example(
        128,
        DEFAULT_MIN_PERSON_HEIGHT,
        example_seed(9, Split::Train, 0),
    )
    .unwrap();
    let b = generate_example(
        128,
        DEFAULT_MIN_PERSON_HEIGHT,
        example_seed(9, Split::Test, 0),
    )
    .unwrap();
    assert_ne!(a.image, b.image);
}

/// Depth at which an ankle seen at image row `y` is `ankle_height` above the floor.
fn ankle_depth(ex: &Example, y: f64, height_m: f64) -> f64 {
    let c = &ex.facts.camera;
    c.focal * (c.height_m - LIMB_RATIOS.ankle_height * height_m) / (y - c.horizon_y)
}

fn check_example(ex: &Example, size: u32, tag: &str) {
    let f = &ex.facts;
    let n = ex.poses.people.len();
    assert!((1..=3).contains(&n), "{tag}: {n} people");
    assert_eq!(f.count, n, "{tag}: facts count vs poses");
    assert_eq!(f.people.len(), n, "{tag}");
    assert_eq!((ex.poses.width, ex.poses.height), (size, size));
    for img in [&ex.background, &ex.image, &ex.layout] {
        assert_eq!(img.dimensions(), (size, size));
    }
    assert_eq!(ex.mask.dimensions(), (size, size));
    // the layout is the engine's rasteriser over the background
    assert!(
        ex.layout == draw_layout(Some(&ex.background), &ex.poses),
        "{tag}: layout differs from draw_layout(background, poses)"
    );
    // joints inside the canvas
    assert!(
        ex.poses.points_outside().is_empty(),
        "{tag}: {:?}",
        ex.poses.points_outside()
    );
    // no two people's boxes overlap
    let boxes: Vec<_> = ex
        .poses
        .people
        .iter()
        .map(|p| p.body_bbox().unwrap())
        .collect();
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (boxes[i], boxes[j]);
            let apart = a.2 < b.0 || b.2 < a.0 || a.3 < b.1 || b.3 < a.1;
            assert!(apart, "{tag}: people {i} and {j} overlap: {a:?} {b:?}");
        }
    }
    let cam = &f.camera;
    let project = |p: [f64; 3]| {
        (
            cam.cx + cam.focal * p[0] / p[2],
            cam.horizon_y + cam.focal * (cam.height_m - p[1]) / p[2],
        )
    };
    for (i, (person, pf)) in ex.poses.people.iter().zip(&f.people).enumerate() {
        let tag = format!("{tag} person {i} ({})", pf.action);
        let action = Action::from_name(&pf.action).expect("known action");
        let [ax, ay, az] = pf.anchor;
        // scale by depth, on the floor's perspective
        assert!(
            (pf.height_px - cam.focal * pf.height_m / az).abs() < 0.02,
            "{tag}: height"
        );
        assert!((pf.floor_y - (cam.horizon_y + cam.focal * cam.height_m / az)).abs() < 0.02);
        let hip = |p: &skeleguide_engine::pose::Pose| {
            let (a, b) = (p.joints[R_HIP].unwrap(), p.joints[L_HIP].unwrap());
            ((a.x + b.x) / 2.0, (a.y + b.y) / 2.0)
        };
        let ankles = [
            person.joints[R_ANKLE].unwrap(),
            person.joints[L_ANKLE].unwrap(),
        ];
        let low = if ankles[0].y > ankles[1].y {
            ankles[0]
        } else {
            ankles[1]
        };
        let h = pf.height_m;
        match action {
            Action::Sit => {
                let k = pf.on.expect("a sitter sits on furniture");
                let fur = &f.furniture[k];
                assert_eq!(pf.support, fur.kind);
                assert!(
                    (ay - fur.surface_height).abs() < 1e-6,
                    "{tag}: anchor on the seat"
                );
                assert!(
                    (ax - fur.x).abs() <= fur.width / 2.0 && (az - fur.z).abs() <= fur.depth / 2.0,
                    "{tag}: anchor inside the seat"
                );
                // hips on the seat surface
                let expected = project([ax, ay + HIP_ABOVE_SEAT * h, az]);
                let (hx, hy) = hip(person);
                assert!(
                    (hx - expected.0).abs() < 0.2 && (hy - expected.1).abs() < 0.2,
                    "{tag}: hips at ({hx}, {hy}), the seat wants {expected:?}"
                );
                let b = fur.surface_bbox;
                assert!(
                    hx >= b[0] - 0.5 && hx <= b[2] + 0.5,
                    "{tag}: hips over the seat"
                );
                // feet on the floor in front of the seat
                let za = ankle_depth(ex, low.y, h);
                assert!(
                    za < az + 0.05 && za > az - 0.6 * h,
                    "{tag}: feet depth {za} vs seat {az}"
                );
            }
            Action::Lie => {
                match pf.on {
                    Some(k) => {
                        let fur = &f.furniture[k];
                        assert!(
                            fur.kind == "bed" || fur.kind == "sofa",
                            "{tag}: {}",
                            fur.kind
                        );
                        assert!((ay - fur.surface_height).abs() < 1e-6);
                    }
                    None => {
                        assert_eq!(pf.support, "grass", "{tag}");
                        assert_eq!(f.place, "park");
                        assert_eq!(ay, 0.0);
                    }
                }
                let expected = project([ax, ay + SPINE_ABOVE_SURFACE * h, az]);
                let (_, hy) = hip(person);
                assert!(
                    (hy - expected.1).abs() < 0.05 * pf.height_px,
                    "{tag}: body above its surface"
                );
                let (x0, y0, x1, y1) = person.body_bbox().unwrap();
                assert!(x1 - x0 > y1 - y0, "{tag}: a lying body is wider than tall");
            }
            _ => {
                assert_eq!(ay, 0.0);
                assert!(pf.support == "floor", "{tag}");
                // the planted foot stands on the floor at the person's depth
                let za = ankle_depth(ex, low.y, h);
                assert!(
                    (za - az).abs() < 0.2 * h,
                    "{tag}: planted ankle at depth {za}, person at {az}"
                );
                if action != Action::Walk {
                    for a in ankles {
                        let za = ankle_depth(ex, a.y, h);
                        assert!(
                            (za - az).abs() < 0.12 * h,
                            "{tag}: ankle at depth {za}, person at {az}"
                        );
                    }
                }
            }
        }
        // the prompt names each person's shirt
        assert!(
            ex.prompt.contains(&pf.shirt),
            "{tag}: {:?} lacks {}",
            ex.prompt,
            pf.shirt
        );
        // the mask shows this person
        let (x0, y0, x1, y1) = person.body_bbox().unwrap();
        let mut any = false;
        for y in y0 as u32..=(y1 as u32).min(size - 1) {
            for x in x0 as u32..=(x1 as u32).min(size - 1) {
                any |= ex.mask.get_pixel(x, y).0[0] == 255;
            }
        }
        assert!(any, "{tag}: no mask pixels in the person's box");
    }
    // the prompt names the place, and the count when there are several people
    let noun = f.place.replace('_', " ");
    assert!(
        ex.prompt.contains(&noun),
        "{tag}: {:?} lacks {noun}",
        ex.prompt
    );
    if n > 1 {
        let word = ["", "one", "two", "three"][n];
        assert!(
            ex.prompt.contains(word),
            "{tag}: {:?} lacks {word}",
            ex.prompt
        );
    }
    // the image is the background wherever the mask is empty
    for (x, y, p) in ex.image.enumerate_pixels() {
        if p != ex.background.get_pixel(x, y) {
            assert_eq!(
                ex.mask.get_pixel(x, y).0[0],
                255,
                "{tag}: pixel ({x}, {y}) changed outside the mask"
            );
        }
    }
}

#[test]
fn constraints_hold_on_hundreds_of_examples() {
    let mut actions = HashSet::new();
    let mut places = HashSet::new();
    let mut counts = HashSet::new();
    let mut prompts = HashSet::new();
    for i in 0..300u64 {
        let seed = example_seed(2024, Split::Train, i);
        let ex = generate_example(128, DEFAULT_MIN_PERSON_HEIGHT, seed).unwrap();
        check_example(&ex, 128, &format!("example {i} (seed {seed})"));
        for p in &ex.facts.people {
            actions.insert(p.action.clone());
        }
        places.insert(ex.facts.place.clone());
        counts.insert(ex.facts.count);
        prompts.insert(ex.prompt.clone());
    }
    assert_eq!(actions.len(), 7, "{actions:?}");
    assert_eq!(places.len(), 5, "{places:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(prompts.len() > 290, "prompts should vary");
}

/// Every seed derivation inside the generator must survive any seed: the data set that once
/// crashed (seed 77, train split, 400 examples: a tree's blob seeds overflowed), then seeds at
/// the ends of the range. `scripts/fuzz.sh` runs many more.
#[test]
fn no_seed_crashes_the_generator() {
    for i in 0..400u64 {
        let seed = example_seed(77, Split::Train, i);
        if let Err(e) = generate_example(64, DEFAULT_MIN_PERSON_HEIGHT, seed) {
            // a scene that fits nobody is an error, never a crash
            assert!(e.to_string().contains("no person fits"), "seed {seed}: {e}");
        }
    }
    for k in 0..200u64 {
        for seed in [k, u64::MAX - k, k.wrapping_mul(0x9E37_79B9_7F4A_7C15)] {
            if let Err(e) = generate_example(64, DEFAULT_MIN_PERSON_HEIGHT, seed) {
                assert!(e.to_string().contains("no person fits"), "seed {seed}: {e}");
            }
        }
    }
}

#[test]
fn other_sizes_keep_the_constraints() {
    for (i, size) in [64u32, 200, 512].into_iter().enumerate() {
        for k in 0..4u64 {
            let ex = generate_example(
                size,
                DEFAULT_MIN_PERSON_HEIGHT,
                example_seed(7, Split::Test, k + 10 * i as u64),
            )
            .unwrap();
            check_example(&ex, size, &format!("size {size} example {k}"));
        }
    }
    assert!(generate_example(63, DEFAULT_MIN_PERSON_HEIGHT, 1).is_err());
    assert!(generate_example(1025, DEFAULT_MIN_PERSON_HEIGHT, 1).is_err());
}

#[test]
fn written_files_match_the_example() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &opts(2, 5, Split::Test, 1), &|| {}).unwrap();
    let ex = generate_example(
        128,
        DEFAULT_MIN_PERSON_HEIGHT,
        example_seed(5, Split::Test, 1),
    )
    .unwrap();
    let img =
        skeleguide_engine::imageio::read_rgb(&dir.path().join("image/test-000001.png")).unwrap();
    assert!(img == ex.image);
    let doc = read_pose_file(
        &dir.path().join("poses/test-000001.json"),
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(doc.frames[0].people.len(), ex.poses.people.len());
    for (a, b) in doc.frames[0].people.iter().zip(&ex.poses.people) {
        assert_eq!(a.joints, b.joints);
    }
    let manifest = std::fs::read_to_string(dir.path().join("manifest.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(manifest.lines().nth(1).unwrap()).unwrap();
    assert_eq!(line["prompt"], ex.prompt.as_str());
    assert_eq!(line["facts"]["count"], ex.poses.people.len());
}

#[test]
fn cli_refuses_a_bad_out_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["synth", "--out"])
        .arg(&file)
        .args(["--count", "2", "--seed", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("not-a-dir") && err.contains("not a directory"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["synth", "--out"])
        .arg(dir.path().join("d"))
        .args(["--count", "2", "--size", "2000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size"));
    // and a good run writes the manifest
    let good = dir.path().join("good");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["synth", "--out"])
        .arg(&good)
        .args(["--count", "3", "--seed", "1", "--split", "test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(good.join("manifest.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[test]
fn redrawing_keeps_the_scene_and_what_the_prompt_says_but_moves_the_people() {
    let (mut accepted, mut moved) = (0, 0);
    let (mut layout, mut pose) = (PckCount::default(), PckCount::default());
    for i in 0..16 {
        let seed = example_seed(4, Split::Test, i);
        let ex = generate_example(128, DEFAULT_MIN_PERSON_HEIGHT, seed).unwrap();
        let r = redraw_people(128, DEFAULT_MIN_PERSON_HEIGHT, seed, 2000).unwrap();
        // the example's own people, drawn without rendering, are the example's
        assert_eq!(r.original, ex.poses, "seed {seed}");
        // the facts, written by the renderer, say the same as the redraw's description
        let f = &ex.facts;
        let mut want: Vec<String> = f
            .people
            .iter()
            .map(|p| {
                let on = match p.action.as_str() {
                    "sit" | "lie" => p.support.as_str(),
                    _ => "-",
                };
                let by = p.near.map_or("-", |k| f.furniture[k].kind.as_str());
                format!("{} on {on} by {by} {}", p.action, p.gender)
            })
            .collect();
        want.sort();
        let mut got = r.described.clone();
        got.sort();
        assert_eq!(got, want, "seed {seed}");
        // deterministic
        let again = redraw_people(128, DEFAULT_MIN_PERSON_HEIGHT, seed, 2000).unwrap();
        assert_eq!(again.redrawn, r.redrawn);
        if let Some(p) = &r.redrawn {
            accepted += 1;
            assert_eq!(p.people.len(), ex.poses.people.len(), "seed {seed}");
            assert_eq!((p.width, p.height), (128, 128));
            moved += (p != &ex.poses) as usize;
            layout.add(pckh(p, &ex.poses, 0.5));
            pose.add(pckh_aligned(p, &ex.poses, 0.5));
        } else {
            assert_eq!(r.draws, 2000);
        }
    }
    eprintln!(
        "redrawn {accepted} of 16: layout PCKh {:.3}, pose PCKh {:.3}",
        layout.value(),
        pose.value()
    );
    assert!(accepted >= 12, "only {accepted} of 16 redrawn");
    assert_eq!(moved, accepted, "a redraw repeated the example's people");
    // the prompt leaves the exact spot open: the redraw rarely lands on the ground truth, and
    // puts the pose on it more often once moved there
    assert!(layout.value() < 0.5, "layout {}", layout.value());
    assert!(
        pose.value() > layout.value(),
        "pose {} vs layout {}",
        pose.value(),
        layout.value()
    );
}

/// The median of the people's image heights (top to bottom joint, every pose) in 150 examples,
/// as a fraction of the image.
fn median_person_height(min_person_height: f64) -> f64 {
    let mut h = Vec::new();
    for i in 0..150u64 {
        let ex =
            generate_example(128, min_person_height, example_seed(31, Split::Test, i)).unwrap();
        check_example(
            &ex,
            128,
            &format!("min height {min_person_height}, example {i}"),
        );
        for p in &ex.poses.people {
            let ys: Vec<f64> = p.joints.iter().flatten().map(|j| j.y).collect();
            let span = ys.iter().cloned().fold(f64::MIN, f64::max)
                - ys.iter().cloned().fold(f64::MAX, f64::min);
            h.push(span / 128.0);
        }
    }
    h.sort_by(f64::total_cmp);
    h[h.len() / 2]
}

/// `--min-person-height` draws taller people under the same constraints, is written into the
/// manifest (which the evaluation's redraw reads back), and is refused outside its range.
#[test]
fn a_larger_least_person_height_draws_taller_people() {
    let small = median_person_height(DEFAULT_MIN_PERSON_HEIGHT);
    let large = median_person_height(0.3);
    assert!(
        large > small * 1.2,
        "median person height {small} -> {large}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(3, 8, Split::Test, 1);
    o.min_person_height = 0.3;
    write_dataset(dir.path(), &o, &|| {}).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("manifest.jsonl")).unwrap();
    for (i, line) in manifest.lines().enumerate() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(rec["min_person_height"], 0.3, "{line}");
        let seed = rec["seed"].as_u64().unwrap();
        let ex = generate_example(128, 0.3, seed).unwrap();
        assert_eq!(
            redraw_people(128, 0.3, seed, 10).unwrap().original,
            ex.poses,
            "record {i}"
        );
    }
    for bad in [0.0, 0.04, 0.61, f64::NAN] {
        o.min_person_height = bad;
        let e = write_dataset(dir.path(), &o, &|| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("--min-person-height"), "{e}");
        assert!(generate_example(128, bad, 1).is_err());
    }
}
