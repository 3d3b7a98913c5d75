//! Pixel checks of the layout rasteriser (ControlNet 1.1 OpenPose convention).

use image::{Rgb, RgbImage};
use skeleguide_engine::pose::skeleton::{limb_color, COLORS, LIMBS};
use skeleguide_engine::pose::{
    draw_layout, draw_layout_parts, edit::default_person, person_mask, stick_width, Keypoint,
    LayoutParts, Pose, PoseSet,
};

fn one_limb(w: u32, h: u32, a: (f64, f64), b: (f64, f64)) -> PoseSet {
    // neck (1) -> right shoulder (2): limb 0
    let mut joints = [None; 18];
    joints[1] = Some(Keypoint::new(a.0, a.1));
    joints[2] = Some(Keypoint::new(b.0, b.1));
    PoseSet {
        width: w,
        height: h,
        people: vec![Pose::from_joints(joints)],
    }
}

#[test]
fn stick_width_scales_with_size() {
    assert_eq!(stick_width(512, 512), 4);
    assert_eq!(stick_width(768, 512), 6);
    assert_eq!(stick_width(1024, 300), 8);
    assert_eq!(stick_width(128, 128), 1);
    assert_eq!(stick_width(16, 16), 1);
    assert_eq!(stick_width(320, 240), 2); // 2.5 rounds half to even
    assert_eq!(stick_width(704, 704), 6); // 5.5 rounds half to even
}

#[test]
fn joint_centres_have_palette_colours_and_limbs_sixty_percent() {
    let set = PoseSet {
        width: 512,
        height: 512,
        people: vec![default_person((256.0, 256.0), 400.0)],
    };
    let img = draw_layout(None, &set);
    let p = &set.people[0];
    for (j, k) in p.joints.iter().enumerate() {
        let k = k.unwrap();
        let px = img.get_pixel(k.x as u32, k.y as u32);
        // joints drawn later (higher index) may cover earlier ones where they overlap (eyes/ears)
        let covered = (j + 1..18).any(|m| {
            let o = p.joints[m].unwrap();
            (o.x as i64 - k.x as i64).pow(2) + (o.y as i64 - k.y as i64).pow(2) <= 16
        });
        if !covered {
            assert_eq!(px.0, COLORS[j], "joint {j}");
        }
    }
    // long limbs: midpoint has colour x 0.6
    for (i, &(a, b)) in LIMBS.iter().enumerate().take(12) {
        let (a, b) = (p.joints[a].unwrap(), p.joints[b].unwrap());
        let (mx, my) = ((a.x + b.x) / 2.0, (a.y + b.y) / 2.0);
        if ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt() < 30.0 {
            continue;
        }
        let px = img.get_pixel(mx as u32, my as u32);
        assert_eq!(px.0, limb_color(i), "limb {i}");
    }
}

#[test]
fn limb_is_eight_to_nine_pixels_thick_at_512() {
    // horizontal limb: count the column at its middle
    let img = draw_layout(None, &one_limb(512, 512, (100.0, 200.0), (300.0, 200.0)));
    let thick = (0..512)
        .filter(|&y| img.get_pixel(200, y).0 == limb_color(0))
        .count();
    assert!((8..=9).contains(&thick), "horizontal thickness {thick}");
    // diagonal limb: thickness measured perpendicular to it, via the area of its middle part
    let img = draw_layout(None, &one_limb(512, 512, (100.0, 100.0), (400.0, 400.0)));
    let thick = (0..512)
        .filter(|&x| {
            let y = 500 - x as i64;
            (0..512).contains(&y) && img.get_pixel(x, y as u32).0 == limb_color(0)
        })
        .count();
    // counted along the anti-diagonal, pixels are sqrt(2) apart
    let t = thick as f64 * std::f64::consts::SQRT_2;
    assert!((7.0..=10.5).contains(&t), "diagonal thickness {t}");
}

#[test]
fn draws_over_the_scene_and_only_there() {
    let scene = RgbImage::from_pixel(256, 128, Rgb([10, 20, 30]));
    let set = one_limb(256, 128, (20.0, 64.0), (200.0, 64.0));
    let img = draw_layout(Some(&scene), &set);
    assert_eq!(img.get_pixel(5, 5).0, [10, 20, 30]);
    assert_eq!(img.get_pixel(110, 64).0, limb_color(0));
    // deterministic to the byte
    assert_eq!(img, draw_layout(Some(&scene), &set));
    // a scene of another size: poses are scaled to it
    let big = RgbImage::from_pixel(512, 256, Rgb([0, 0, 0]));
    let img = draw_layout(Some(&big), &set);
    assert_eq!(img.get_pixel(220, 128).0, limb_color(0));
}

#[test]
fn off_canvas_and_huge_coordinates_do_not_panic() {
    let set = one_limb(64, 64, (-5000.0, -3000.0), (9e5, 7e5));
    let img = draw_layout(None, &set);
    assert_eq!(img.dimensions(), (64, 64));
    let set = one_limb(1, 1, (0.0, 0.0), (0.0, 0.0));
    let _ = draw_layout(None, &set);
    let _ = person_mask(&set, 3);
}

#[test]
fn person_mask_covers_the_layout_and_dilates() {
    let set = PoseSet {
        width: 256,
        height: 256,
        people: vec![default_person((128.0, 128.0), 200.0)],
    };
    let img = draw_layout(None, &set);
    let m0 = person_mask(&set, 0);
    let m8 = person_mask(&set, 8);
    let mut drawn = 0;
    for (x, y, px) in img.enumerate_pixels() {
        let on = px.0 != [0, 0, 0];
        assert_eq!(on, m0.get_pixel(x, y).0[0] == 255, "({x},{y})");
        drawn += on as usize;
        if on {
            assert_eq!(m8.get_pixel(x, y).0[0], 255);
        }
    }
    let dilated = m8.pixels().filter(|p| p.0[0] == 255).count();
    assert!(dilated > 2 * drawn, "{dilated} vs {drawn}");
    // exactly Euclidean: a pixel 8 px right of the nose circle's edge is in, 10 px is out
    let nose = set.people[0].joints[0].unwrap();
    let r = stick_width(256, 256) as u32; // 2
    let (nx, ny) = (nose.x as u32, nose.y as u32);
    assert_eq!(m8.get_pixel(nx + r + 8, ny).0[0], 255);
    assert!(
        m8.get_pixel(nx + r + 30, ny).0[0] == 0
            || set.people[0]
                .joints
                .iter()
                .flatten()
                .any(|k| (k.x - (nx + r + 30) as f64).abs() < 12.0)
    );
}

#[test]
fn identical_to_opencv_controlnet_rendering() {
    // References drawn by OpenCV with ControlNet 1.1's rules (tests/data/make_opencv_reference.py).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in ["opencv_ref_320x240", "opencv_ref_768x512"] {
        let doc = skeleguide_engine::pose::read_pose_file(
            &dir.join(format!("{name}.json")),
            &Default::default(),
        )
        .unwrap();
        let ours = draw_layout(None, &doc.frames[0]);
        let reference = image::open(dir.join(format!("{name}.png")))
            .unwrap()
            .into_rgb8();
        let differing = ours
            .pixels()
            .zip(reference.pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} pixels differ from OpenCV"
        );
    }
}

#[test]
fn hands_and_face_identical_to_opencv_annotator() {
    // References drawn by OpenCV with the full annotator's hand and face rules
    // (tests/data/make_opencv_parts_reference.py): thick hand lines, clipped ones included.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in [
        "opencv_parts_512x512",
        "opencv_parts_320x240",
        "opencv_parts_768x640",
    ] {
        let doc = skeleguide_engine::pose::read_pose_file(
            &dir.join(format!("{name}.json")),
            &Default::default(),
        )
        .unwrap();
        let set = &doc.frames[0];
        assert!(set.people.iter().all(|p| p.hand_left.is_some()), "{name}");
        let ours = draw_layout_parts(None, set, LayoutParts::FULL);
        let reference = image::open(dir.join(format!("{name}.png")))
            .unwrap()
            .into_rgb8();
        assert_eq!(ours.dimensions(), reference.dimensions(), "{name}");
        let max_diff = ours
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        let differing = ours
            .pixels()
            .zip(reference.pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            (differing, max_diff),
            (0, 0),
            "{name}: {differing} pixels differ from OpenCV (max channel difference {max_diff})"
        );
        // the body-only layout leaves hands and face out
        let body = draw_layout(None, set);
        assert_eq!(body, draw_layout_parts(None, set, LayoutParts::BODY));
        assert_ne!(body, ours, "{name}");
    }
}

#[test]
fn hand_bones_use_the_annotator_hues_and_points_are_blue() {
    // one horizontal bone (wrist -> thumb base) at 512 px: 2 px thick, blue points of radius 4
    let mut hand: Vec<Option<Keypoint>> = vec![None; 21];
    hand[0] = Some(Keypoint::new(100.0, 100.0));
    hand[1] = Some(Keypoint::new(160.0, 100.0));
    let mut set = PoseSet::new(512, 512);
    set.people.push(Pose {
        hand_right: Some(hand),
        face: Some(vec![Some(Keypoint::new(300.0, 300.0)), None]),
        ..Default::default()
    });
    let img = draw_layout_parts(None, &set, LayoutParts::FULL);
    let red = [255, 0, 0]; // bone 0: hue 0
    let column: Vec<u32> = (0..512)
        .filter(|&y| img.get_pixel(130, y).0 == red)
        .collect();
    assert_eq!(
        column,
        vec![99, 100, 101],
        "a thickness-2 line covers 3 rows"
    );
    assert_eq!(img.get_pixel(100, 100).0, [0, 0, 255]);
    assert_eq!(img.get_pixel(104, 100).0, [0, 0, 255]);
    assert_eq!(img.get_pixel(300, 300).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(303, 300).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(304, 300).0, [0, 0, 0]);
    // hands only, face only
    let hands = draw_layout_parts(
        None,
        &set,
        LayoutParts {
            hands: true,
            face: false,
        },
    );
    assert_eq!(hands.get_pixel(300, 300).0, [0, 0, 0]);
    assert_eq!(hands.get_pixel(130, 100).0, red);
}

#[test]
fn hands_off_canvas_or_huge_do_not_panic() {
    let mut set = one_limb(64, 48, (10.0, 10.0), (30.0, 30.0));
    let wild = [
        (-5000.0, -3000.0),
        (9e5, 7e5),
        (1e300, 2.0),
        (f64::NAN, 5.0),
        (63.0, 47.0),
        (0.5, 20.0),
        (70.0, -2.0),
        (-1e300, 1e300),
    ];
    let hand: Vec<Option<Keypoint>> = (0..21)
        .map(|i| {
            let (x, y) = wild[i % wild.len()];
            Some(Keypoint::new(x, y))
        })
        .collect();
    set.people[0].hand_left = Some(hand.clone());
    set.people[0].face = Some(hand);
    let img = draw_layout_parts(None, &set, LayoutParts::FULL);
    assert_eq!(img.dimensions(), (64, 48));
    let _ = draw_layout_parts(None, &PoseSet::new(1, 1), LayoutParts::FULL);
}
