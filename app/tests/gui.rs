//! Headless GUI tests (egui_kittest, no renderer): dragging, undo/redo, person edits, save and
//! reload, bad files.

mod common;

use common::*;
use egui::{Key, Modifiers, Vec2};
use egui_kittest::kittest::Queryable;
use skeleguide::gui::{GuiOptions, SkeleGuideApp};
use skeleguide_engine::pose::{edit::default_person, Edit, PoseSet};

#[test]
fn dragging_a_joint_moves_it_by_the_drag() {
    let mut h = harness(app_with_people(1));
    let before = h.state().doc.poses().people[0].joints[4].unwrap();
    let zoom = h.state().canvas.zoom as f64;
    let p = joint_screen(&h, 0, 4);
    drag(&mut h, p, Vec2::new(30.0, 10.0));
    let after = h.state().doc.poses().people[0].joints[4].unwrap();
    assert!(
        (after.x - before.x - 30.0 / zoom).abs() < 1e-3,
        "dx {} vs {}",
        after.x - before.x,
        30.0 / zoom
    );
    assert!((after.y - before.y - 10.0 / zoom).abs() < 1e-3);
    // other joints did not move, and the whole drag is one undo step
    assert_eq!(
        h.state().doc.poses().people[0].joints[3],
        default_person(person_center(0), PERSON_HEIGHT).joints[3]
    );
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses().people[0].joints[4], Some(before));
}

#[test]
fn undo_and_redo_across_mixed_edits() {
    let mut h = harness(app_with_people(2));
    let s0 = h.state().doc.poses().clone();
    // select person 0 by clicking a joint, mirror with M, delete person 1 via the model, add one
    let p = joint_screen(&h, 0, 0);
    h.hover_at(p);
    h.run();
    h.drag_at(p);
    h.drop_at(p);
    h.run();
    assert_eq!(h.state().doc.selected, Some(0));
    h.key_press(Key::M);
    h.run();
    let s1 = h.state().doc.poses().clone();
    assert_ne!(s1, s0);
    h.state_mut().apply(Edit::Delete { person: 1 });
    h.run(); // refresh the widget tree before clicking by label
    h.get_by_label("Add person").click();
    h.run();
    let s3 = h.state().doc.poses().clone();
    assert_eq!(s3.people.len(), 2);
    for _ in 0..3 {
        h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
        h.run();
    }
    assert_eq!(h.state().doc.poses(), &s0);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Y);
    h.run();
    assert_eq!(h.state().doc.poses(), &s1);
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), &s3);
}

#[test]
fn mirror_delete_and_add() {
    let mut h = harness(app_with_people(2));
    h.state_mut().doc.selected = Some(1);
    h.run();
    let before = h.state().doc.poses().people[1].clone();
    h.get_by_label("Mirror").click();
    h.run();
    let mirrored = h.state().doc.poses().people[1].clone();
    assert_eq!(
        mirrored.joints[4].map(|k| k.y),
        before.joints[7].map(|k| k.y)
    );
    assert_ne!(mirrored, before);
    h.key_press(Key::Delete);
    h.run();
    assert_eq!(h.state().doc.poses().people.len(), 1);
    assert_eq!(h.state().doc.selected, None);
    h.get_by_label("Add person").click();
    h.run();
    assert_eq!(h.state().doc.poses().people.len(), 2);
    assert_eq!(h.state().doc.selected, Some(1));
    // right-click a joint hides it
    let p = joint_screen(&h, 1, 0);
    h.hover_at(p);
    h.run();
    h.event(egui::Event::PointerButton {
        pos: p,
        button: egui::PointerButton::Secondary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.event(egui::Event::PointerButton {
        pos: p,
        button: egui::PointerButton::Secondary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.run();
    assert!(h.state().doc.poses().people[1].joints[0].is_none());
}

#[test]
fn pose_presets_add_a_fitted_person_and_undo() {
    // an empty pose library: the user's own presets must not change the menu
    let library = tempfile::tempdir().unwrap();
    let mut app = app_with_people(0);
    app.set_pose_library(Some(library.path().to_path_buf()));
    let mut h = harness(app);
    let (w, hh) = h.state().doc.canvas();
    h.get_by_label("Add preset").click();
    h.run();
    h.get_by_label("Sitting").click();
    h.run();
    let people = &h.state().doc.poses().people;
    assert_eq!(people.len(), 1);
    let sitting = people[0].clone();
    assert!(sitting.present_count() >= 14);
    // fitted into the scene, centred
    let xs: Vec<f64> = sitting.joints.iter().flatten().map(|k| k.x).collect();
    let ys: Vec<f64> = sitting.joints.iter().flatten().map(|k| k.y).collect();
    let cx = (xs.iter().cloned().fold(f64::MAX, f64::min)
        + xs.iter().cloned().fold(f64::MIN, f64::max))
        / 2.0;
    let cy = (ys.iter().cloned().fold(f64::MAX, f64::min)
        + ys.iter().cloned().fold(f64::MIN, f64::max))
        / 2.0;
    assert!((cx - w as f64 / 2.0).abs() < 1.0 && (cy - hh as f64 / 2.0).abs() < 1.0);
    assert!(ys.iter().all(|&y| y > 0.0 && y < hh as f64));
    // a second preset differs, and undo removes it again
    h.get_by_label("Add preset").click();
    h.run();
    h.get_by_label("Lying").click();
    h.run();
    assert_eq!(h.state().doc.poses().people.len(), 2);
    assert_ne!(h.state().doc.poses().people[1], sitting);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses().people.len(), 1);
}

#[test]
fn save_and_reload_gives_the_same_pose() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pose.json");
    let mut h = harness(app_with_people(2));
    let p = joint_screen(&h, 1, 9);
    drag(&mut h, p, Vec2::new(-12.0, 7.0));
    h.state_mut().save_pose(&path);
    assert!(!h.state().status.error, "{}", h.state().status.text);
    let saved = h.state().doc.poses().clone();
    let mut other = SkeleGuideApp::new(&GuiOptions {
        pose: Some(path.clone()),
        ..Default::default()
    });
    assert_eq!(other.doc.poses(), &saved);
    other.open_path(&path);
    assert_eq!(other.doc.poses(), &saved);
}

#[test]
fn corrupt_files_show_an_error_and_keep_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let bad_png = dir.path().join("scene.png");
    std::fs::write(&bad_png, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let bad_json = dir.path().join("pose.json");
    std::fs::write(&bad_json, b"{\"people\": [").unwrap();
    let mut h = harness(app_with_people(1));
    let before = h.state().doc.poses().clone();
    h.state_mut().open_path(&bad_png);
    h.run();
    assert!(
        h.state().status.error && h.state().status.text.contains("scene.png"),
        "{}",
        h.state().status.text
    );
    h.state_mut().open_path(&bad_json);
    h.run();
    assert!(h.state().status.error && h.state().status.text.contains("pose.json"));
    assert_eq!(h.state().doc.poses(), &before);
    // still usable
    h.get_by_label("Add person").click();
    h.run();
    assert_eq!(h.state().doc.poses().people.len(), 2);
}

#[test]
fn render_on_a_random_tiny_model_shows_a_result_with_ordered_progress() {
    use skeleguide::worker::Event;
    let (mut app, _dir) = app_with_scene_and_model();
    app.gen.steps = 3;
    let mut h = harness(app);
    h.get_by_label("Render").click();
    h.run();
    run_until_idle(&mut h, 120);
    let app = h.state();
    assert!(!app.status.error, "{}", app.status.text);
    assert_eq!(app.results.len(), 1);
    assert_eq!(app.results[0].image.dimensions(), (160, 120));
    let steps: Vec<usize> = app
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
    assert!(matches!(app.events.first(), Some(Event::Started { .. })));
    assert!(matches!(app.events.last(), Some(Event::Image { .. })));

    // export: PNG with its parameters, and the pose JSON beside it
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("variant.png");
    h.state_mut().export_result(&out);
    assert!(!h.state().status.error, "{}", h.state().status.text);
    let text = skeleguide_engine::imageio::read_png_text(&out).unwrap();
    assert!(text.iter().any(|(k, v)| k == "seed" && v == "0"));
    assert!(text
        .iter()
        .any(|(k, v)| k == "pose" && v.contains("pose_keypoints_2d")));
    let sidecar = skeleguide_engine::pose::read_pose_file(
        &dir.path().join("variant.json"),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(&sidecar.frames[0], h.state().doc.poses());
}

#[test]
fn reason_pose_shows_the_inverted_skeleton_and_undo_restores_the_edit() {
    use skeleguide::worker::Event;
    let (mut app, _dir) = app_with_scene_and_model();
    app.gen.steps = 3;
    let before = app.doc.poses().clone();
    let mut h = harness(app);
    h.get_by_label("Reason pose").click();
    h.run();
    run_until_idle(&mut h, 120);
    let app = h.state();
    assert!(!app.status.error, "{}", app.status.text);
    // stage 1 ran step by step, then the layout came back with the inverted poses
    let steps: Vec<usize> = app
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
    let inverted = app
        .events
        .iter()
        .find_map(|e| match e {
            Event::Layout { poses, .. } => Some(poses.clone()),
            _ => None,
        })
        .expect("a layout event")
        .expect("the layout was inverted");
    assert!(app.results.is_empty(), "reason alone renders nothing");
    // the proposed skeleton is what the editor now shows, at the scene's size
    assert_eq!((inverted.width, inverted.height), (160, 120));
    assert_eq!(app.doc.poses(), &inverted);
    assert!(app.status.text.starts_with("Reasoned a pose with"));
    // and it is one undoable step
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), &before);
}

#[test]
fn bundled_sample_scenes_open() {
    let mut app = SkeleGuideApp::new(&GuiOptions::default());
    assert!(app.doc.scene.is_some(), "the first sample opens at start");
    for i in 0..skeleguide::gui::samples::SAMPLES.len() {
        app.open_sample(i);
        assert!(!app.status.error, "{}", app.status.text);
        assert_eq!(app.doc.canvas(), (384, 384));
    }
}

#[test]
fn cancel_mid_render_and_the_next_job_still_works() {
    use skeleguide::worker::Event;
    let (mut app, _dir) = app_with_scene_and_model();
    app.gen.steps = 50;
    let mut h = harness(app);
    h.get_by_role_and_label(egui::accesskit::Role::Button, "Generate")
        .click();
    h.run();
    // wait for the first progress event, then cancel
    let start = std::time::Instant::now();
    while !h
        .state()
        .events
        .iter()
        .any(|e| matches!(e, Event::Progress { .. }))
        && start.elapsed().as_secs() < 120
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
        h.run();
    }
    h.get_by_label("Cancel").click();
    h.run();
    run_until_idle(&mut h, 60);
    assert!(
        h.state()
            .events
            .iter()
            .any(|e| matches!(e, Event::Cancelled { .. })),
        "{:?}",
        h.state().status.text
    );
    assert!(h.state().results.is_empty());
    h.state_mut().gen.steps = 2;
    h.get_by_label("Render").click();
    h.run();
    run_until_idle(&mut h, 120);
    assert_eq!(h.state().results.len(), 1, "{}", h.state().status.text);
}

#[test]
fn batch_dialog_exports_every_variant() {
    let (mut app, dir) = app_with_scene_and_model();
    app.gen.steps = 1;
    let out = dir.path().join("batch");
    let mut h = harness(app);
    // the button sits below the fold of the 800 px test window; open the dialog directly
    h.state_mut().gen.batch_open = true;
    h.run();
    {
        let g = &mut h.state_mut().gen;
        g.batch_prompts = "a man standing\na woman waving".into();
        g.batch_seeds = (1, 2);
        g.batch_use_pose = true;
        g.batch_out = out.display().to_string();
    }
    h.run();
    h.run();
    h.get_by_label("Start batch").click();
    h.run();
    run_until_idle(&mut h, 120);
    assert!(!h.state().status.error, "{}", h.state().status.text);
    assert!(
        h.state().status.text.contains("4 written"),
        "{}",
        h.state().status.text
    );
    assert_eq!(
        std::fs::read_to_string(out.join("manifest.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    assert!(out.join("p001-s2.png").is_file() && out.join("p001-s2.json").is_file());
}

/// A panorama or strip past the GPU's largest texture side opens: every texture the app
/// uploads fits that side, and the document keeps the scene's full resolution for export.
#[test]
fn a_scene_past_the_texture_limit_opens_downscaled_for_display() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(1u32, 100_000u32), (9000, 1200)] {
        let path = dir.path().join(format!("scene-{w}x{h}.png"));
        image::RgbImage::from_pixel(w, h, image::Rgb([40, 90, 160]))
            .save(&path)
            .unwrap();
        let mut app = SkeleGuideApp::new(&GuiOptions::default());
        app.open_path(&path);
        assert!(!app.status.error, "{}", app.status.text);
        app.doc.history.replace("a person", {
            let mut set = PoseSet::new(w, h);
            set.people.push(default_person(
                (w as f64 / 2.0, h as f64 / 2.0),
                h as f64 / 3.0,
            ));
            set
        });
        let mut h_ = harness(app);
        h_.run();
        let max_side = h_.ctx.input(|i| i.max_texture_side);
        let tex = h_.ctx.tex_manager();
        for (_, meta) in tex.read().allocated() {
            assert!(
                meta.size[0] <= max_side && meta.size[1] <= max_side,
                "{} is {:?}, over {max_side}",
                meta.name,
                meta.size
            );
        }
        assert_eq!(
            h_.state().doc.canvas(),
            (w, h),
            "the full resolution is kept"
        );
    }
}

#[test]
fn custom_guidance_and_candidates_start_from_the_models_defaults() {
    let mut app = SkeleGuideApp::new(&GuiOptions::default());
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny");
    app.gen.model_dir = dir.display().to_string();
    let cfg = skeleguide_engine::modeldir::ModelConfig::load(&dir).unwrap();
    assert_ne!(
        cfg.reason_candidates, 1,
        "the shipped model samples several candidates, so a start at 1 would show"
    );
    let mut h = harness(app);
    assert_eq!(h.state().gen.candidates, None);
    h.get_by_label("Custom pose candidates").click();
    h.run();
    assert_eq!(h.state().gen.candidates, Some(cfg.reason_candidates));
    h.get_by_label("Custom guidance").click();
    h.run();
    assert_eq!(h.state().gen.guidance, Some(cfg.text_guidance));
    // off again: the model decides
    h.get_by_label("Custom pose candidates").click();
    h.run();
    assert_eq!(h.state().gen.candidates, None);
}
