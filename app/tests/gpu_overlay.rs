//! The GPU layout (shaders/layout.wgsl, drawn offscreen through wgpu) against the engine's CPU
//! rasteriser: pixel for pixel, the same image, over several pose sets.
//! Runs on a CPU adapter (Mesa lavapipe, installed by scripts/setup-system.sh) when there is
//! one; prints `SKIPPED: no wgpu adapter` and passes when no adapter exists at all, unless
//! `SKELEGUIDE_REQUIRE_TEST_DEPS` is set (as `.ci/run` does): then a missing adapter fails.

use image::RgbImage;
use skeleguide::gpu_layout::Headless;
use skeleguide::gui::overlay_gpu::Display;
use skeleguide_engine::pose::{draw_layout, edit::default_person, Keypoint, Pose, PoseSet};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// People with random joints (some missing), spread over and a little beyond the canvas.
fn random_people(w: u32, h: u32, n: usize, seed: u64) -> PoseSet {
    let mut rng = Rng(seed);
    let mut set = PoseSet::new(w, h);
    for _ in 0..n {
        let mut joints = [None; 18];
        for j in joints.iter_mut() {
            if rng.next() < 0.85 {
                *j = Some(Keypoint::new(
                    rng.range(-0.1 * w as f64, 1.1 * w as f64),
                    rng.range(-0.1 * h as f64, 1.1 * h as f64),
                ));
            }
        }
        set.people.push(Pose::from_joints(joints));
    }
    set
}

/// Default people (the app's "add person" layout) at fractional positions.
fn default_people(w: u32, h: u32, centers: &[(f64, f64)], height: f64) -> PoseSet {
    let mut set = PoseSet::new(w, h);
    for &c in centers {
        set.people.push(default_person(c, height));
    }
    set
}

struct Diff {
    mad: f64,
    /// the largest difference of one channel of one pixel
    max: u8,
    differing: usize,
    /// differing pixels only the GPU drew, only the CPU drew
    gpu_only: usize,
    cpu_only: usize,
    covered: usize,
}

fn compare(gpu: &RgbImage, cpu: &RgbImage) -> Diff {
    assert_eq!(gpu.dimensions(), cpu.dimensions());
    let mut sum = 0u64;
    let mut max = 0u8;
    let mut differing = 0;
    let mut covered = 0;
    let (mut gpu_only, mut cpu_only) = (0, 0);
    for (g, c) in gpu.pixels().zip(cpu.pixels()) {
        let d: u64 = (0..3).map(|k| g.0[k].abs_diff(c.0[k]) as u64).sum();
        max = (0..3).map(|k| g.0[k].abs_diff(c.0[k])).fold(max, u8::max);
        sum += d;
        differing += (d > 0) as usize;
        gpu_only += (c.0 == [0, 0, 0] && g.0 != [0, 0, 0]) as usize;
        cpu_only += (g.0 == [0, 0, 0] && c.0 != [0, 0, 0]) as usize;
        covered += (c.0 != [0, 0, 0]) as usize;
    }
    Diff {
        // per channel: over every byte of the image
        mad: sum as f64 / gpu.as_raw().len() as f64,
        max,
        differing,
        gpu_only,
        cpu_only,
        covered,
    }
}

/// Set where every test dependency must be present (`.ci/run` sets it; the same variable as
/// the end-to-end tests' `skeleguide_tests::REQUIRE_TEST_DEPS`).
const REQUIRE_TEST_DEPS: &str = "SKELEGUIDE_REQUIRE_TEST_DEPS";

/// Skips the rest of a test for a missing dependency: one `SKIPPED: ` line, or a panic where
/// [`REQUIRE_TEST_DEPS`] is set.
fn skip_missing(reason: &str) {
    let required = std::env::var_os(REQUIRE_TEST_DEPS).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{reason}; {REQUIRE_TEST_DEPS} is set, so this fails instead of skipping"
    );
    println!("SKIPPED: {reason}");
}

/// The offscreen renderer, or `None` (after [`skip_missing`]) on a machine without a usable
/// wgpu adapter.
fn headless() -> Option<Headless> {
    match Headless::new() {
        Ok(g) => Some(g),
        Err(e) => {
            skip_missing(&format!(
                "no wgpu adapter ({e}); install Mesa's lavapipe (scripts/setup-system.sh)"
            ));
            None
        }
    }
}

#[test]
fn gpu_layout_matches_cpu_rasteriser() {
    let Some(mut gpu) = headless() else {
        return;
    };
    println!(
        "adapter: {} ({:?}, {:?}, driver {} {})",
        gpu.adapter.name,
        gpu.adapter.backend,
        gpu.adapter.device_type,
        gpu.adapter.driver,
        gpu.adapter.driver_info
    );
    let mut cases: Vec<(&str, PoseSet)> = vec![
        (
            "default person 512x512",
            default_people(512, 512, &[(256.3, 260.7)], 400.0),
        ),
        (
            "three default people 1024x768",
            default_people(
                1024,
                768,
                &[(200.5, 380.2), (512.0, 400.0), (830.9, 350.1)],
                500.0,
            ),
        ),
        (
            "default people partly off-canvas 640x360",
            default_people(640, 360, &[(20.0, 180.0), (600.4, 300.0)], 420.0),
        ),
        ("random 3 people 512x512", random_people(512, 512, 3, 1)),
        ("random 5 people 768x1024", random_people(768, 1024, 5, 2)),
        ("random 4 people 333x200", random_people(333, 200, 4, 3)),
        ("random 2 people 96x64", random_people(96, 64, 2, 4)),
        ("random 6 people 1536x864", random_people(1536, 864, 6, 5)),
        ("empty 300x200", PoseSet::new(300, 200)),
    ];
    // a zero-length limb (both joints at the same place) and a joint far outside
    let mut odd = default_people(400, 300, &[(200.0, 150.0)], 250.0);
    let p = &mut odd.people[0];
    p.joints[3] = p.joints[2];
    p.joints[4] = Some(Keypoint::new(5000.0, -3000.0));
    cases.push(("zero-length and far limbs 400x300", odd));
    // more random sets on small canvases of many shapes (stick widths 1 to 3)
    let small: Vec<(String, PoseSet)> = (0..12u64)
        .map(|k| {
            let (w, h) = (64 + 29 * k as u32, 48 + 23 * ((k * 7) % 12) as u32);
            (
                format!("random {} people {w}x{h}", 1 + k % 4),
                random_people(w, h, 1 + (k % 4) as usize, 100 + k),
            )
        })
        .collect();
    cases.extend(small.iter().map(|(n, s)| (n.as_str(), s.clone())));

    let mut worst = 0u8;
    for (name, set) in &cases {
        let cpu = draw_layout(None, set);
        let out = match gpu.render(set) {
            Ok(img) => img,
            Err(e) => panic!("{name}: {e}"),
        };
        let d = compare(&out, &cpu);
        println!(
            "{name}: MAD {:.4}/255 per channel, max {}, {} of {} pixels differ ({} only GPU, {} only CPU), {} covered on the CPU",
            d.mad,
            d.max,
            d.differing,
            cpu.width() * cpu.height(),
            d.gpu_only,
            d.cpu_only,
            d.covered
        );
        // SKELEGUIDE_GPU_DUMP=DIR writes each case's GPU, CPU and difference images into DIR
        if let Some(dir) = std::env::var_os("SKELEGUIDE_GPU_DUMP").map(std::path::PathBuf::from) {
            let slug: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let _ = out.save(dir.join(format!("gpu_{slug}.png")));
            let _ = cpu.save(dir.join(format!("cpu_{slug}.png")));
            // differing pixels: green where only the GPU drew, magenta where only the CPU did,
            // white where both drew different colours
            let diff = RgbImage::from_fn(cpu.width(), cpu.height(), |x, y| {
                let (g, c) = (out.get_pixel(x, y).0, cpu.get_pixel(x, y).0);
                match (g == c, g == [0, 0, 0], c == [0, 0, 0]) {
                    (true, _, _) => image::Rgb([c[0] / 4, c[1] / 4, c[2] / 4]),
                    (false, false, true) => image::Rgb([0, 255, 0]),
                    (false, true, false) => image::Rgb([255, 0, 255]),
                    _ => image::Rgb([255, 255, 255]),
                }
            });
            let _ = diff.save(dir.join(format!("diff_{slug}.png")));
        }
        worst = worst.max(d.max);
        // the same drawn pixels, each in the same colour: the shader follows the CPU's integer
        // pixel rules, so nothing short of equality is right
        assert_eq!(
            (d.gpu_only, d.cpu_only),
            (0, 0),
            "{name}: the GPU and the CPU drew different pixels"
        );
        assert_eq!(
            d.max, 0,
            "{name}: {} pixels differ, by up to {}/255",
            d.differing, d.max
        );
        assert_eq!(
            d.covered > 0,
            !set.people.is_empty(),
            "{name}: nothing drawn"
        );
    }
    println!("worst difference of a channel {worst}/255");
}

/// The canvas' display pass (shaders/overlay.wgsl) shows the layout texture nearest-sampled at
/// the image→screen transform, with the overlay opacity, over what is below.
#[test]
fn overlay_pass_shows_the_layout_nearest() {
    let Some(mut gpu) = headless() else {
        return;
    };
    let set = default_people(160, 120, &[(60.3, 70.2), (110.0, 60.0)], 90.0);
    let layout_tex = gpu.draw_texture(&set).expect("layout texture");
    let layout = gpu.read_rgba(&layout_tex).expect("layout readback");
    let (lw, lh) = (set.width as i64, set.height as i64);
    let device = gpu.device();
    let queue = gpu.queue();
    let display = Display::new(device, wgpu::TextureFormat::Rgba8Unorm);
    let bind = display.bind(
        device,
        &layout_tex.create_view(&wgpu::TextureViewDescriptor::default()),
    );
    let (tw, th) = (420u32, 330u32);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("screen"),
        size: wgpu::Extent3d {
            width: tw,
            height: th,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let target_view = target.create_view(&wgpu::TextureViewDescriptor::default());
    // the clear colour, 0.2
    let grey = 51u8;
    // origins with quarter-pixel fractions, so that no screen pixel centre falls exactly on an
    // image pixel edge
    let views = [
        ([13.25, 7.25], [2.0, 2.0], 1.0f32),
        ([-40.25, 5.75], [3.0, 3.0], 1.0),
        ([10.25, 30.75], [1.0, 1.0], 0.5),
    ];
    for (origin, scale, opacity) in views {
        display.set_view(queue, origin, scale, opacity);
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("screen"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &target_view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: 0.2,
                            g: 0.2,
                            b: 0.2,
                            a: 1.0,
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            display.draw(&mut pass, &bind);
        }
        queue.submit([encoder.finish()]);
        let out = gpu.read_rgba(&target).expect("screen readback");
        let (mut bad, mut shown) = (0usize, 0usize);
        for y in 0..th as i64 {
            for x in 0..tw as i64 {
                let ix = ((x as f32 + 0.5 - origin[0]) / scale[0]).floor() as i64;
                let iy = ((y as f32 + 0.5 - origin[1]) / scale[1]).floor() as i64;
                let mut want = [grey; 3];
                if (0..lw).contains(&ix) && (0..lh).contains(&iy) {
                    let p = &layout[((iy * lw + ix) * 4) as usize..][..4];
                    if p[3] == 255 {
                        shown += 1;
                        for k in 0..3 {
                            want[k] = (p[k] as f32 * opacity + grey as f32 * (1.0 - opacity))
                                .round() as u8;
                        }
                    }
                }
                let got = &out[((y * tw as i64 + x) * 4) as usize..][..3];
                if (0..3).any(|k| got[k].abs_diff(want[k]) > 1) {
                    bad += 1;
                }
            }
        }
        println!("view {origin:?} x{scale:?} opacity {opacity}: {bad} wrong of {shown} layout pixels shown");
        assert!(shown > 1000, "the view shows too little of the layout");
        assert_eq!(bad, 0, "view {origin:?} x{scale:?} opacity {opacity}");
    }
}
