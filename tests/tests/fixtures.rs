//! Import the real pose files in ../shared/fixtures/poses, written by CMU OpenPose and by
//! sd-webui-openpose-editor, and check what they hold.

use skeleguide_engine::pose::{self, ExportOptions, ImportOptions, PoseFormat};
use skeleguide_tests::shared_poses;

fn present(set: &pose::PoseSet) -> Vec<usize> {
    set.people[0].present_indices()
}

#[test]
fn controlnet_editor_file() {
    let Some(dir) = shared_poses() else { return };
    let doc = pose::read_pose_file(
        &dir.join("controlnet_editor_768x512_hands.json"),
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(doc.format, PoseFormat::ControlNet);
    assert!(!doc.normalized);
    let f = &doc.frames[0];
    assert_eq!((f.width, f.height, f.people.len()), (768, 512, 1));
    // Hips, knees and ankles (8..=13) are written 0,0,0 by the editor.
    assert_eq!(present(f), vec![0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17]);
    let p = &f.people[0];
    let j = |i: usize| p.joints[i].unwrap();
    assert_eq!((j(0).x, j(0).y), (367.0, 172.0));
    assert_eq!((j(3).x, j(3).y), (104.85654973694608, 376.2731965157172));
    assert_eq!((j(17).x, j(17).y), (423.0, 176.0));
    let hl = p.hand_left.as_ref().unwrap();
    let hr = p.hand_right.as_ref().unwrap();
    assert_eq!((hl.len(), hr.len()), (21, 21));
    assert_eq!(hl[0].unwrap().x, 592.9895663894382);
    assert_eq!(
        (hr[0].unwrap().x, hr[0].unwrap().y),
        (152.01000953674315, 237.0)
    );
    assert!(p.face.is_none());
    assert!(f.points_outside().is_empty());
}

#[test]
fn cmu_openpose_body25_file() {
    let Some(dir) = shared_poses() else { return };
    let path = dir.join("openpose_cmu_body25_face_hands.json");
    let doc = pose::read_pose_file(
        &path,
        &ImportOptions {
            canvas: Some((1280, 720)),
            normalized: None,
        },
    )
    .unwrap();
    assert_eq!(doc.format, PoseFormat::CmuOpenPose);
    let f = &doc.frames[0];
    assert_eq!((f.width, f.height, f.people.len()), (1280, 720, 1));
    // BODY_25 -> OpenPose-18: MidHip and the feet dropped, 9..=18 shifted down by one.
    assert_eq!(present(f), vec![0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17]);
    let p = &f.people[0];
    let nose = p.joints[0].unwrap();
    assert_eq!(
        (nose.x, nose.y, nose.confidence),
        (627.385, 245.392, 0.816087)
    );
    let l_wrist = p.joints[7].unwrap();
    assert_eq!(
        (l_wrist.x, l_wrist.y, l_wrist.confidence),
        (758.606, 521.618, 0.718648)
    );
    // BODY_25 index 15 (REye) becomes 14.
    let r_eye = p.joints[14].unwrap();
    assert_eq!((r_eye.x, r_eye.y), (605.839, 198.342));
    assert_eq!(p.face.as_ref().unwrap().len(), 70);
    assert_eq!(p.face.as_ref().unwrap()[0].unwrap().x, 576.736);
    let hl = p.hand_left.as_ref().unwrap();
    assert_eq!(
        (
            hl[0].unwrap().x,
            hl[0].unwrap().y,
            hl[0].unwrap().confidence
        ),
        (740.324, 521.169, 0.56071)
    );

    // Without a canvas, the points' extent is used.
    let doc = pose::read_pose_file(&path, &ImportOptions::default()).unwrap();
    let f = &doc.frames[0];
    assert!(
        f.width >= 900 && f.height >= 592,
        "{}x{}",
        f.width,
        f.height
    );
}

#[test]
fn fixtures_round_trip_losslessly() {
    let Some(dir) = shared_poses() else { return };
    for name in [
        "controlnet_editor_768x512_hands.json",
        "openpose_cmu_body25_face_hands.json",
    ] {
        let opts = ImportOptions {
            canvas: Some((1280, 720)),
            normalized: None,
        };
        let a = pose::read_pose_file(&dir.join(name), &opts).unwrap();
        let keep = ExportOptions {
            normalized: false,
            keep_confidence: true,
        };
        let text = pose::to_json(&a.frames, keep);
        let b = pose::parse_pose_json(&text, "roundtrip", &ImportOptions::default()).unwrap();
        assert_eq!(a.frames, b.frames, "{name}");
        assert_eq!(b.format, PoseFormat::ControlNet);
    }
}
