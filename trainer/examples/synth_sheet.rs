//! Writes a contact sheet of synthetic examples (image | layout | background | mask per row
//! pair) for eyeballing the generator:
//! `cargo run --release -p skeleguide-trainer --example synth_sheet -- OUT.png [N] [SEED] [SIZE]`

use image::{GenericImage, Rgb, RgbImage};
use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
use skeleguide_trainer::data::{example_seed, generate_example, Split};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).cloned().unwrap_or_else(|| "sheet.png".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(12);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let size: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(128);
    let cols = 2usize;
    let rows = n.div_ceil(cols);
    let cell = size + 4;
    let mut sheet = RgbImage::from_pixel(
        cell * 4 * cols as u32,
        cell * rows as u32,
        Rgb([255, 255, 255]),
    );
    for i in 0..n {
        let ex = match generate_example(
            size,
            DEFAULT_MIN_PERSON_HEIGHT,
            example_seed(seed, Split::Train, i as u64),
        ) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{i}: {e}");
                continue;
            }
        };
        println!("{i}: {}", ex.prompt);
        let mask = image::DynamicImage::ImageLuma8(ex.mask.clone()).into_rgb8();
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        for (k, img) in [&ex.image, &ex.layout, &ex.background, &mask]
            .into_iter()
            .enumerate()
        {
            let x = (c * 4 + k as u32) * cell;
            let _ = sheet.copy_from(img, x, r * cell);
        }
    }
    if let Err(e) = sheet.save(&out) {
        eprintln!("{out}: {e}");
        std::process::exit(1);
    }
}
