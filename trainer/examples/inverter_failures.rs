//! Where the PoseInverter's shared decoding step loses joints: on held-out clean layouts
//! (`eval-inverter`'s set), decodes (a) the exact class map of the skeletons drawn on black
//! (the decoder's ceiling: every class right) and (b) the colour baseline on the image as
//! evaluated (with its background), and sorts every ground-truth joint that PCK misses into
//! one cause: its person was not matched, the matched person lacks the joint, or the joint is
//! out of tolerance. Count errors are split into too many and too few people.
//!
//! `cargo run --release -p skeleguide-trainer --example inverter_failures -- [COUNT] [SEED] [PHOTOS_DIR]`
//!
//! - `VERBOSE=1` lists each failing layout and joint; with `DUMP=DIR` as well, each failing
//!   layout is saved beside its decoded redraw (`DIR/fNNN.png`).
//! - `FIXTURE=file.json` instead reads each frame of a pose file, drawn on black, with the
//!   shipped network, joint by joint (`DUMP=DIR`: the redraw and the network's class map).

use anyhow::Context;
use skeleguide_engine::inverter::{
    class_targets, decode_classes, ClassMap, ColorDecoder, WorkGeometry, BACKGROUND, NO_CLASS,
};
use skeleguide_engine::metrics::pose::{bbox_diag, match_people};
use skeleguide_engine::pose::{draw_layout, stick_width, PoseSet, NUM_JOINTS};
use skeleguide_trainer::inverter::{eval_samples, visible_truth, Backgrounds, Degrade};

#[derive(Default, Debug)]
struct Causes {
    joints: usize,
    correct: usize,
    unmatched: usize,
    missing: usize,
    far: usize,
    too_many: usize,
    too_few: usize,
    images: usize,
    missing_by_joint: [usize; NUM_JOINTS],
    far_by_joint: [usize; NUM_JOINTS],
    /// far joints by distance / tolerance: <1.5, <3, >=3; and those within tolerance of the
    /// same joint of another person (a grouping swap)
    far_ratio: [usize; 3],
    swapped: usize,
    /// missing joints with at least one pixel of their class within their circle
    missing_shown: usize,
    /// of those, held at their place by: a matched person, an unmatched one, nobody
    shown_holder: [usize; 3],
    /// images where joints are missing or far, by the number of people
    bad_by_people: [usize; 5],
    by_people: [usize; 5],
}

impl Causes {
    fn add(
        &mut self,
        pred: &PoseSet,
        gt: &PoseSet,
        shows: &dyn Fn(usize, f64, f64) -> bool,
    ) -> bool {
        self.images += 1;
        let n = (pred.people.len(), gt.people.len());
        self.too_many += (n.0 > n.1) as usize;
        self.too_few += (n.0 < n.1) as usize;
        let m = match_people(pred, gt);
        let mut bad = n.0 != n.1;
        for (g, mi) in gt.people.iter().zip(&m) {
            let Some(thr) = bbox_diag(g).filter(|&d| d > 0.0).map(|d| 0.05 * d) else {
                continue;
            };
            for j in 0..NUM_JOINTS {
                let Some(k) = g.joints[j] else { continue };
                if k.x < 0.0 || k.y < 0.0 || k.x >= gt.width as f64 || k.y >= gt.height as f64 {
                    continue;
                }
                self.joints += 1;
                match mi {
                    None => {
                        self.unmatched += 1;
                        bad = true;
                    }
                    Some(i) => match pred.people[*i].joints[j] {
                        None => {
                            let shown = shows(j, k.x, k.y);
                            self.missing_shown += shown as usize;
                            if shown {
                                // who holds a joint j there: a matched person, an unmatched one, nobody
                                let holder = pred.people.iter().position(|p| {
                                    p.joints[j].is_some_and(|q| {
                                        ((q.x - k.x).powi(2) + (q.y - k.y).powi(2)).sqrt() <= thr
                                    })
                                });
                                let slot = match holder {
                                    None => 2,
                                    Some(h) if m.contains(&Some(h)) => 0,
                                    Some(_) => 1,
                                };
                                self.shown_holder[slot] += 1;
                            }
                            self.missing += 1;
                            if std::env::var_os("VERBOSE").is_some() {
                                println!(
                                    "   missing j{j} at ({:.1},{:.1}) shows {}",
                                    k.x,
                                    k.y,
                                    shows(j, k.x, k.y)
                                );
                            }
                            self.missing_by_joint[j] += 1;
                            bad = true;
                        }
                        Some(q) => {
                            if ((q.x - k.x).powi(2) + (q.y - k.y).powi(2)).sqrt() <= thr {
                                self.correct += 1;
                            } else {
                                self.far += 1;
                                if std::env::var_os("VERBOSE").is_some() {
                                    println!(
                                        "   far j{j} gt ({:.1},{:.1}) got ({:.1},{:.1})",
                                        k.x, k.y, q.x, q.y
                                    );
                                }
                                self.far_by_joint[j] += 1;
                                bad = true;
                                let d = ((q.x - k.x).powi(2) + (q.y - k.y).powi(2)).sqrt();
                                let r = d / thr;
                                self.far_ratio[if r < 1.5 {
                                    0
                                } else if r < 3.0 {
                                    1
                                } else {
                                    2
                                }] += 1;
                                let swap = gt.people.iter().any(|o| {
                                    o.joints[j].is_some_and(|o| {
                                        ((q.x - o.x).powi(2) + (q.y - o.y).powi(2)).sqrt() <= thr
                                    })
                                });
                                self.swapped += swap as usize;
                            }
                        }
                    },
                }
            }
        }
        let np = gt.people.len().min(4);
        self.by_people[np] += 1;
        self.bad_by_people[np] += bad as usize;
        bad
    }

    fn print(&self, what: &str) {
        let j = self.joints.max(1) as f64;
        println!(
            "{what}: {} joints, pck {:.4} | unmatched {:.4} missing {:.4} far {:.4} | count acc {:.3} (too many {}, too few {})",
            self.joints,
            self.correct as f64 / j,
            self.unmatched as f64 / j,
            self.missing as f64 / j,
            self.far as f64 / j,
            1.0 - (self.too_many + self.too_few) as f64 / self.images.max(1) as f64,
            self.too_many,
            self.too_few
        );
        println!("  missing by joint {:?}", self.missing_by_joint);
        println!("  far by joint     {:?}", self.far_by_joint);
        println!(
            "  missing joints that show: {}; held there by a matched person {}, an unmatched one {}, nobody {}",
            self.missing_shown, self.shown_holder[0], self.shown_holder[1], self.shown_holder[2]
        );
        println!(
            "  far by distance/tolerance <1.5 {} <3 {} more {}; at another person's joint {}",
            self.far_ratio[0], self.far_ratio[1], self.far_ratio[2], self.swapped
        );
        println!(
            "  images with an error by people 0..4: {:?} of {:?}",
            self.bad_by_people, self.by_people
        );
    }
}

/// Images of one size side by side, 4 px apart.
fn side_by_side(images: &[&image::RgbImage]) -> image::RgbImage {
    let (w, h) = images[0].dimensions();
    let n = images.len() as u32;
    let mut out = image::RgbImage::new(n * w + 4 * (n - 1), h);
    for (i, img) in images.iter().enumerate() {
        image::imageops::replace(&mut out, *img, i as i64 * (w + 4) as i64, 0);
    }
    out
}

/// A person's joints as `index:(x,y)`, rounded.
fn joint_list(p: &skeleguide_engine::pose::Pose) -> String {
    let js: Vec<String> = (0..NUM_JOINTS)
        .filter_map(|j| p.joints[j].map(|k| format!("{j}:({:.0},{:.0})", k.x, k.y)))
        .collect();
    js.join(" ")
}

/// A class map drawn in the palette (limbs at half brightness), three times enlarged.
fn class_map_image(map: &skeleguide_engine::inverter::ClassMap) -> image::RgbImage {
    let g = map.geometry;
    let mut cm = image::RgbImage::new(g.width as u32, g.height as u32);
    for (i, &c) in map.classes.iter().enumerate() {
        let c = c as usize;
        let rgb = if c < NUM_JOINTS {
            skeleguide_engine::pose::COLORS[c]
        } else if c < NUM_JOINTS + 17 {
            let [r, g, b] = skeleguide_engine::pose::COLORS[c - NUM_JOINTS];
            [r / 2, g / 2, b / 2]
        } else {
            [0, 0, 0]
        };
        cm.put_pixel((i % g.width) as u32, (i / g.width) as u32, image::Rgb(rgb));
    }
    image::imageops::resize(
        &cm,
        cm.width() * 3,
        cm.height() * 3,
        image::imageops::FilterType::Nearest,
    )
}

/// `FIXTURE=file.json`: each frame drawn on black and read by the shipped network, joint by
/// joint.
fn fixture(path: &str) -> anyhow::Result<()> {
    use skeleguide_engine::pose::{read_pose_file, ImportOptions};
    let opts = ImportOptions {
        canvas: Some((1280, 720)),
        normalized: None,
    };
    let doc = read_pose_file(std::path::Path::new(path), &opts)?;
    let net = skeleguide_engine::inverter::PoseInverter::embedded(&candle_core::Device::Cpu)?;
    for f in doc.frames {
        let img = draw_layout(None, &f);
        let gt = visible_truth(&f);
        let map = net.classes(&img)?;
        let pred = net.decode(&map, img.width(), img.height());
        println!(
            "{}x{}: gt {} people, net {}",
            f.width,
            f.height,
            gt.people.len(),
            pred.people.len()
        );
        for p in &pred.people {
            println!("  person {}", joint_list(p));
        }
        let m = match_people(&pred, &gt);
        for (g, mi) in gt.people.iter().zip(&m) {
            for j in 0..NUM_JOINTS {
                let Some(k) = g.joints[j] else { continue };
                let q = mi.and_then(|i| pred.people[i].joints[j]);
                println!(
                    "  j{j:2} gt ({:7.1},{:7.1}) net {:?}",
                    k.x,
                    k.y,
                    q.map(|q| (q.x.round(), q.y.round()))
                );
            }
        }
        if let Some(dir) = std::env::var_os("DUMP") {
            side_by_side(&[&img, &draw_layout(None, &pred)])
                .save(std::path::Path::new(&dir).join("fixture.png"))?;
            let cm = class_map_image(&map);
            cm.save(std::path::Path::new(&dir).join("classes.png"))?;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if let Ok(f) = std::env::var("FIXTURE") {
        return fixture(&f);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args
        .first()
        .map_or(Ok(500), |s| s.parse())
        .context("COUNT")?;
    let seed: u64 = args.get(1).map_or(Ok(7), |s| s.parse()).context("SEED")?;
    let mut bg = Backgrounds::with_scenes(32, seed ^ 0xE5CE7E);
    if let Some(dir) = args.get(2) {
        bg.load_photos(std::path::Path::new(dir))?;
    }
    let samples = eval_samples(count, seed, &bg, Degrade::Clean);
    if let Some(dir) = std::env::var_os("AEDUMP") {
        // the first layouts after the shipped autoencoder's round trip, read by the network
        let dir = std::path::Path::new(&dir);
        let ae = skeleguide_engine::pipeline::AeRoundTrip::load(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../assets/models/tiny"
            )),
            &candle_core::Device::Cpu,
        )?;
        let net = skeleguide_engine::inverter::PoseInverter::embedded(&candle_core::Device::Cpu)?;
        for (i, s) in samples.iter().enumerate() {
            let round = ae.round_trip(&s.image)?;
            let map = net.classes(&round)?;
            let read = net.decode(&map, round.width(), round.height());
            side_by_side(&[&s.image, &round, &draw_layout(None, &read)])
                .save(dir.join(format!("ae{i:03}.png")))?;
            class_map_image(&map).save(dir.join(format!("ae{i:03}c.png")))?;
        }
        return Ok(());
    }
    let (mut oracle, mut colour) = (Causes::default(), Causes::default());
    // the network's own ceiling: exact classes at its working size, the network's own reading
    // (no colour evidence: its class maps stay at the working size), and the network as shipped
    let fused = skeleguide_engine::inverter::PoseInverter::embedded(&candle_core::Device::Cpu)?;
    let mut net = skeleguide_engine::inverter::PoseInverter::embedded(&candle_core::Device::Cpu)?;
    net.exact_colour_bonus = 0.0;
    let (mut at_work, mut network) = (Causes::default(), Causes::default());
    let mut shipped = Causes::default();
    // by true kind (joint, limb, background): right, else read as a joint, a limb, background
    let mut confusion = [[0usize; 4]; 3];
    let exact = ColorDecoder {
        tolerance: 0,
        ..Default::default()
    };
    let base = ColorDecoder::default();
    for (i, s) in samples.iter().enumerate() {
        let gt = visible_truth(&s.poses);
        let black = draw_layout(None, &s.poses);
        let (w, h) = (black.width(), black.height());
        let cls = exact.classify(&black);
        let sw = stick_width(w, h) as f64;
        let pred = PoseSet {
            width: w,
            height: h,
            people: decode_classes(&cls, w as usize, h as usize, sw, exact.min_joints),
        };
        let shows = |j: usize, x: f64, y: f64| {
            let r = sw as i64;
            let (cx, cy) = (x as i64, y as i64);
            (-r..=r).any(|dy| {
                (-r..=r).any(|dx| {
                    let (px, py) = (cx + dx, cy + dy);
                    dx * dx + dy * dy <= r * r
                        && px >= 0
                        && py >= 0
                        && px < w as i64
                        && py < h as i64
                        && cls[py as usize * w as usize + px as usize] as usize == j
                })
            })
        };
        if oracle.add(&pred, &gt, &shows) && std::env::var_os("VERBOSE").is_some() {
            if let Some(dir) = std::env::var_os("DUMP") {
                let pair = side_by_side(&[&black, &draw_layout(None, &pred)]);
                let z = (900 / pair.width()).max(1);
                let pair = image::imageops::resize(
                    &pair,
                    pair.width() * z,
                    pair.height() * z,
                    image::imageops::FilterType::Nearest,
                );
                pair.save(std::path::Path::new(&dir).join(format!("f{i:03}.png")))?;
            }
            println!(
                "#{i} {w}x{h} sw {sw}: gt {} people, decoded {}",
                gt.people.len(),
                pred.people.len()
            );
        }
        colour.add(&base.invert(&s.image)?, &gt, &shows);
        // the exact classes at the network's working size, decoded as the network's are
        let g = WorkGeometry::new(w, h, net.config().work_size);
        let exact_map = ClassMap {
            geometry: g,
            classes: class_targets(&s.poses, &g)
                .chunks(g.padded_width)
                .take(g.height)
                .flat_map(|row| {
                    row[..g.width].iter().map(|&c| {
                        if c as usize == BACKGROUND {
                            NO_CLASS
                        } else {
                            c
                        }
                    })
                })
                .collect(),
            drawn: false,
        };
        at_work.add(&net.decode(&exact_map, w, h), &gt, &shows);
        shipped.add(&fused.invert(&s.image)?, &gt, &shows);
        // the network's class map, read once: its poses and its per-pixel confusion
        let map = net.classes(&s.image)?;
        let read = net.decode(&map, w, h);
        for (&p, &t) in map.classes.iter().zip(&exact_map.classes) {
            let kind = |c: u8| match c as usize {
                c if c < NUM_JOINTS => 0,
                c if c < BACKGROUND => 1,
                _ => 2,
            };
            let (kt, kp) = (kind(t), kind(p));
            confusion[kt][if p == t { 0 } else { 1 + kp }] += 1;
        }
        if network.add(&read, &gt, &shows) {
            if let Some(dir) = std::env::var_os("NETDUMP") {
                let dir = std::path::Path::new(&dir);
                side_by_side(&[&s.image, &draw_layout(None, &read)])
                    .save(dir.join(format!("n{i:03}.png")))?;
                class_map_image(&map).save(dir.join(format!("n{i:03}c.png")))?;
                println!(
                    "net #{i} {w}x{h}: gt {} people, read {}",
                    gt.people.len(),
                    read.people.len()
                );
                for p in &read.people {
                    println!("  read {}", joint_list(p));
                }
                for p in &gt.people {
                    println!("  gt   {}", joint_list(p));
                }
            }
        }
    }
    oracle.print("exact classes (skeletons on black)");
    colour.print("colour baseline (image as evaluated)");
    at_work.print("exact classes at the network's working size");
    network.print("network alone (image as evaluated)");
    shipped.print("network with the exact colours' evidence (as shipped)");
    for (name, row) in ["joint", "limb", "background"].iter().zip(&confusion) {
        let n = row.iter().sum::<usize>().max(1) as f64;
        println!(
            "  {name:10} pixels {:8}: right {:.4}, wrong as joint {:.4}, as limb {:.4}, as background {:.4}",
            n,
            row[0] as f64 / n,
            row[1] as f64 / n,
            row[2] as f64 / n,
            row[3] as f64 / n
        );
    }
    Ok(())
}
