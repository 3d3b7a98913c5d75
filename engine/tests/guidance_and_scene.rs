//! Classifier-free guidance and keeping the user's scene, on the shipped tiny model.
//!
//! Guidance: scale 0 is the empty prompt's velocity alone, so it must give exactly what the
//! empty prompt gives unguided; another scale must change the sample. Keeping the scene: every
//! output pixel away from the person region is the scene's own, at the scene's full resolution,
//! and a layout's changes away from the people read from it are not pasted.

use image::{GrayImage, RgbImage};
use skeleguide_engine::composite;
use skeleguide_engine::modeldir::{SceneContrast, TextGuidance};
use skeleguide_engine::pipeline::{Layout, Pipeline, RunOptions};
use skeleguide_engine::pose::{person_mask, Keypoint, Pose, PoseSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny")
}

fn pipeline() -> Pipeline {
    Pipeline::load(&tiny_model(), &candle_core::Device::Cpu).unwrap()
}

/// A textured scene larger than the working size, so a re-encoded copy cannot pass as the scene.
fn scene() -> RgbImage {
    RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 3 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    })
}

fn opts(guidance: Option<TextGuidance>, keep_background: bool) -> RunOptions {
    RunOptions {
        steps: 3,
        seed: 5,
        keep_background,
        guidance,
        // One plain layout: these tests compare samplers, not the choice among candidates.
        candidates: Some(1),
        contrast: Some(SceneContrast::default()),
    }
}

fn generate(p: &mut Pipeline, prompt: &str, o: &RunOptions) -> (RgbImage, RgbImage) {
    let (layout, image) = p
        .generate(
            &scene(),
            prompt,
            o,
            &mut |_, _, _| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    (layout.image, image)
}

#[test]
fn guidance_zero_samples_the_empty_prompt_exactly() {
    let mut p = pipeline();
    let prompt = "two people standing in the park";
    let zero = generate(&mut p, prompt, &opts(Some(TextGuidance::both(0.0)), false));
    let empty = generate(&mut p, "", &opts(Some(TextGuidance::both(1.0)), false));
    assert!(zero.0 == empty.0, "stage 1 at scale 0 is the empty prompt");
    assert!(zero.1 == empty.1, "stage 2 at scale 0 is the empty prompt");
}

#[test]
fn guidance_one_is_the_unguided_sampler_and_other_scales_change_the_sample() {
    let mut p = pipeline();
    let shipped = p.config().text_guidance;
    let prompt = "a woman in a red shirt standing on the street";
    let default = generate(&mut p, prompt, &opts(None, false));
    let configured = generate(&mut p, prompt, &opts(Some(shipped), false));
    assert!(
        default == configured,
        "no guidance given: the model's config.json decides"
    );
    let one = generate(&mut p, prompt, &opts(Some(TextGuidance::both(1.0)), false));
    let reason_only = TextGuidance {
        reason: 3.0,
        render: 1.0,
    };
    let guided = generate(&mut p, prompt, &opts(Some(reason_only), false));
    assert!(guided.0 != one.0, "stage-1 guidance changes the layout");
}

#[test]
fn guidance_out_of_range_is_refused_by_name() {
    let mut p = pipeline();
    let o = opts(Some(TextGuidance::both(f64::NAN)), false);
    let err = p
        .generate(
            &scene(),
            "a man",
            &o,
            &mut |_, _, _| {},
            &AtomicBool::new(false),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("text_guidance.reason"), "{err}");
}

fn standing_person(w: u32, h: u32) -> PoseSet {
    let mut set = PoseSet::new(w, h);
    let (cx, top, tall) = (w as f64 * 0.4, h as f64 * 0.2, h as f64 * 0.6);
    // OpenPose-18: nose, neck, right arm, left arm, right leg, left leg, eyes, ears
    let rel = [
        (0.0, 0.0),
        (0.0, 0.12),
        (-0.1, 0.12),
        (-0.13, 0.3),
        (-0.14, 0.45),
        (0.1, 0.12),
        (0.13, 0.3),
        (0.14, 0.45),
        (-0.06, 0.5),
        (-0.06, 0.75),
        (-0.06, 1.0),
        (0.06, 0.5),
        (0.06, 0.75),
        (0.06, 1.0),
        (-0.02, -0.02),
        (0.02, -0.02),
        (-0.04, 0.0),
        (0.04, 0.0),
    ];
    let mut joints = [None; 18];
    for (j, (dx, dy)) in rel.iter().enumerate() {
        joints[j] = Some(Keypoint::new(cx + dx * tall, top + dy * tall));
    }
    set.people.push(Pose::from_joints(joints));
    set
}

/// Pixels farther than `r` from every skeleton pixel.
fn far_from(mask: &GrayImage, r: f32) -> Vec<bool> {
    composite::distance_to(mask)
        .into_iter()
        .map(|d| d > r)
        .collect()
}

#[test]
fn keeping_the_scene_keeps_every_pixel_away_from_the_person_at_full_resolution() {
    let mut p = pipeline();
    let scene = scene();
    let (w, h) = scene.dimensions();
    let poses = standing_person(w, h);
    let layout = p.relayout(&scene, &poses).unwrap();
    let cancel = AtomicBool::new(false);
    let prompt = "a man in a blue shirt standing";
    let kept = p
        .render(
            &scene,
            &layout,
            prompt,
            &opts(None, true),
            &mut |_, _, _| {},
            &cancel,
        )
        .unwrap();
    let whole = p
        .render(
            &scene,
            &layout,
            prompt,
            &opts(None, false),
            &mut |_, _, _| {},
            &cancel,
        )
        .unwrap();
    assert_eq!(kept.dimensions(), scene.dimensions());
    // the region's reach at the scene's size, plus the bilinear scaling's one working pixel
    let (ww, _) = p.working_size(w, h);
    let scale = w as f32 / ww as f32;
    let reach = ww as f32 * (composite::GROW_FRACTION + composite::FEATHER_FRACTION) + 1.5;
    let far = far_from(&person_mask(&poses, 0), reach * scale);
    let mut far_count = 0;
    for ((k, s), f) in kept.pixels().zip(scene.pixels()).zip(&far) {
        if *f {
            assert_eq!(k, s, "a pixel away from the person is the scene's");
            far_count += 1;
        }
    }
    assert!(far_count > (w * h / 2) as usize, "{far_count}");
    // on the skeleton the person is the model's
    let on = person_mask(&poses, 0);
    let (mut same, mut total) = (0, 0);
    for ((k, g), m) in kept.pixels().zip(whole.pixels()).zip(on.pixels()) {
        if m.0[0] > 0 {
            total += 1;
            same += (k == g) as usize;
        }
    }
    assert!(
        same * 10 >= total * 9,
        "{same} of {total} skeleton pixels are generated"
    );
    // without keeping, the scene is a re-encoded copy: almost no pixel survives
    let exact = whole
        .pixels()
        .zip(scene.pixels())
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        exact * 20 < (w * h) as usize,
        "{exact} pixels kept without keep-background"
    );
}

#[test]
fn a_reasoned_layout_keeps_the_scene_where_its_alpha_is_zero() {
    let mut p = pipeline();
    let scene = scene();
    let o = opts(None, true);
    let (layout, kept) = p
        .generate(
            &scene,
            "a person standing",
            &o,
            &mut |_, _, _| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    let alpha = p.person_alpha(&scene, &layout).unwrap();
    assert_eq!(alpha.dimensions(), scene.dimensions());
    let mut zero = 0;
    for ((k, s), a) in kept.pixels().zip(scene.pixels()).zip(alpha.pixels()) {
        if a.0[0] == 0 {
            assert_eq!(k, s);
            zero += 1;
        }
    }
    eprintln!("{zero} of {} pixels are the scene's", scene.len() / 3);
}

/// A layout of `img` (a layout image at the scene's size) as stage 1 hands one over: its latent,
/// decoded, no poses.
fn sampled_layout(p: &Pipeline, img: &RgbImage) -> Layout {
    let latent = p.encode_uncached(img).unwrap();
    let decoded = p.decode_latent(&latent).unwrap();
    Layout {
        latent,
        image: image::imageops::resize(
            &decoded,
            img.width(),
            img.height(),
            image::imageops::FilterType::Triangle,
        ),
        poses: None,
    }
}

#[test]
fn only_changes_near_the_people_read_from_a_layout_are_pasted() {
    let mut p = pipeline();
    let scene = RgbImage::from_fn(256, 192, |x, y| {
        image::Rgb([(60 + x / 3) as u8, (90 + y / 2) as u8, 120])
    });
    let (w, h) = scene.dimensions();
    let poses = standing_person(w, h);
    let drawn = p.relayout(&scene, &poses).unwrap().image;
    // a stroke far right of the person, which no one is read from
    let blob = |img: &mut RgbImage| {
        for y in h / 3..h / 2 {
            for x in w * 4 / 5..w * 9 / 10 {
                img.put_pixel(x, y, image::Rgb([250, 20, 200]));
            }
        }
    };
    let (bx, by) = (w * 17 / 20, h * 5 / 12);
    let mut with_person = drawn.clone();
    blob(&mut with_person);
    let layout = sampled_layout(&p, &with_person);
    let read = p.invert(&layout).unwrap();
    assert_eq!(read.people.len(), 1, "the person is read back");
    let alpha = p.person_alpha(&scene, &layout).unwrap();
    assert_eq!(alpha.get_pixel(bx, by).0[0], 0, "the stroke is not pasted");
    let neck = poses.people[0].joints[1].unwrap();
    assert!(
        alpha.get_pixel(neck.x as u32, neck.y as u32 + 10).0[0] > 0,
        "the person is"
    );
    // read nobody, every change counts: the stroke is pasted
    let mut stroke_alone = scene.clone();
    blob(&mut stroke_alone);
    let layout = sampled_layout(&p, &stroke_alone);
    assert!(p.invert(&layout).unwrap().people.is_empty());
    let alpha = p.person_alpha(&scene, &layout).unwrap();
    assert!(alpha.get_pixel(bx, by).0[0] > 0, "the stroke is pasted");
}
