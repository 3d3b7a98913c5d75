//! Pose benchmarks: drawing 5 people on a 512×512 scene (target < 2 ms) and importing a
//! 100-person file (target < 1 ms).

use criterion::{criterion_group, criterion_main, Criterion};
use image::{Rgb, RgbImage};
use skeleguide_engine::pose::{self, edit::default_person, ExportOptions, ImportOptions, PoseSet};
use std::hint::black_box;

fn people(n: usize, size: u32) -> PoseSet {
    let mut set = PoseSet::new(size, size);
    for i in 0..n {
        let x = (i as f64 + 0.5) * size as f64 / n as f64;
        let mut p = default_person((x, size as f64 * 0.5), size as f64 * 0.7);
        // vary the limbs so every ellipse differs
        p.map_points(|k| {
            k.x += (k.y * 0.37 + i as f64).sin() * 9.0;
        });
        set.people.push(p);
    }
    set
}

fn bench(c: &mut Criterion) {
    let scene = RgbImage::from_fn(512, 512, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let five = people(5, 512);
    c.bench_function("draw_5_people_512", |b| {
        b.iter(|| pose::draw_layout(Some(black_box(&scene)), black_box(&five)))
    });
    c.bench_function("person_mask_5_people_512_margin8", |b| {
        b.iter(|| pose::person_mask(black_box(&five), 8))
    });

    let hundred = people(100, 4096);
    let text = pose::to_json(&[hundred], ExportOptions::default());
    c.bench_function("import_100_people", |b| {
        b.iter(|| {
            pose::parse_pose_json(black_box(&text), "bench.json", &ImportOptions::default())
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
