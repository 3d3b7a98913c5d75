//! Import of every OpenPose JSON variant, detection, refusal, and lossless round trips.

use skeleguide_engine::pose::{
    self, ExportOptions, ImportOptions, Keypoint, Pose, PoseFormat, PoseSet,
};

fn parse(text: &str) -> pose::PoseDocument {
    pose::parse_pose_json(text, "test.json", &ImportOptions::default()).unwrap()
}

fn parse_err(text: &str) -> String {
    pose::parse_pose_json(text, "test.json", &ImportOptions::default())
        .unwrap_err()
        .to_string()
}

/// A flat triple list for 18 joints where joint j is at (10 j + 1.5, 20 j + 0.25) unless missing.
fn body18(missing: &[usize], scale: f64) -> Vec<f64> {
    (0..18)
        .flat_map(|j| {
            if missing.contains(&j) {
                [0.0, 0.0, 0.0]
            } else {
                [
                    (10.0 * j as f64 + 1.5) * scale,
                    (20.0 * j as f64 + 0.25) * scale,
                    0.9,
                ]
            }
        })
        .collect()
}

fn json_list(v: &[f64]) -> String {
    serde_json::to_string(v).unwrap()
}

/// Export (keeping confidences) and import again; the frames must be identical.
fn assert_round_trip(frames: &[PoseSet]) {
    let keep = ExportOptions {
        normalized: false,
        keep_confidence: true,
    };
    let back = parse(&pose::to_json(frames, keep));
    assert_eq!(back.frames, frames);
    // Normalised export: the same up to the division's rounding.
    let norm = ExportOptions {
        normalized: true,
        keep_confidence: true,
    };
    let back = parse(&pose::to_json(frames, norm));
    assert!(back.normalized || frames.iter().all(|f| f.people.is_empty()));
    for (a, b) in back.frames.iter().zip(frames) {
        assert_eq!(
            (a.width, a.height, a.people.len()),
            (b.width, b.height, b.people.len())
        );
        for (pa, pb) in a.people.iter().zip(&b.people) {
            for (ka, kb) in pa.joints.iter().zip(&pb.joints) {
                match (ka, kb) {
                    (Some(ka), Some(kb)) => {
                        assert!((ka.x - kb.x).abs() < 1e-9 && (ka.y - kb.y).abs() < 1e-9)
                    }
                    (None, None) => {}
                    _ => panic!("presence changed"),
                }
            }
        }
    }
}

#[test]
fn controlnet_pixels() {
    let text = format!(
        r#"{{"people":[{{"pose_keypoints_2d":{},"hand_left_keypoints_2d":null}}],"canvas_width":640,"canvas_height":480}}"#,
        json_list(&body18(&[3, 9], 1.0))
    );
    let doc = parse(&text);
    assert_eq!(doc.format, PoseFormat::ControlNet);
    assert!(!doc.normalized);
    let f = &doc.frames[0];
    assert_eq!((f.width, f.height), (640, 480));
    assert_eq!(f.people[0].present_count(), 16);
    assert_eq!(
        f.people[0].joints[17],
        Some(Keypoint {
            x: 171.5,
            y: 340.25,
            confidence: 0.9
        })
    );
    assert_round_trip(&doc.frames);
}

#[test]
fn controlnet_normalised_decided_once_per_file() {
    let mut v = body18(&[], 1.0 / 400.0);
    v[0] = 0.0; // a present point at x = 0 stays present (c > 0)
    let text = format!(
        r#"{{"people":[{{"pose_keypoints_2d":{}}}],"canvas_width":800,"canvas_height":400}}"#,
        json_list(&v)
    );
    let doc = parse(&text);
    assert!(doc.normalized);
    let k = doc.frames[0].people[0].joints[1].unwrap();
    assert!((k.x - 11.5 / 400.0 * 800.0).abs() < 1e-9 && (k.y - 20.25).abs() < 1e-9);
    assert_eq!(doc.frames[0].people[0].joints[0].unwrap().x, 0.0);
    assert_round_trip(&doc.frames);
}

#[test]
fn cmu_old_and_new_keys_body25_and_coco18() {
    let b25: Vec<f64> = (0..25)
        .flat_map(|i| {
            [
                i as f64 * 10.0 + 5.0,
                100.0 + i as f64,
                if i == 8 { 0.0 } else { 0.5 },
            ]
        })
        .collect();
    for key in ["pose_keypoints", "pose_keypoints_2d"] {
        let text = format!(
            r#"{{"version":1.0,"people":[{{"{key}":{}}}]}}"#,
            json_list(&b25)
        );
        let doc = parse(&text);
        assert_eq!(doc.format, PoseFormat::CmuOpenPose);
        let p = &doc.frames[0].people[0];
        // BODY_25 9 (RHip) -> 8; 18 (LEar) -> 17.
        assert_eq!(p.joints[8].unwrap().x, 95.0);
        assert_eq!(p.joints[17].unwrap().x, 185.0);
        assert_eq!(p.present_count(), 18);
        // canvas from the points' extent
        assert_eq!((doc.frames[0].width, doc.frames[0].height), (186, 119)); // feet dropped first
        assert_round_trip(&doc.frames);
    }
    let text = format!(
        r#"{{"version":1.3,"people":[{{"person_id":[-1],"pose_keypoints_2d":{}}}]}}"#,
        json_list(&body18(&[0], 1.0))
    );
    let opts = ImportOptions {
        canvas: Some((1920, 1080)),
        normalized: None,
    };
    let doc = pose::parse_pose_json(&text, "t.json", &opts).unwrap();
    assert_eq!((doc.frames[0].width, doc.frames[0].height), (1920, 1080));
    assert!(doc.frames[0].people[0].joints[0].is_none());
    assert_round_trip(&doc.frames);
}

#[test]
fn comfyui_pose_keypoint_frames() {
    let frame = |w: u32, miss: &[usize]| {
        format!(
            r#"{{"people":[{{"pose_keypoints_2d":{},"face_keypoints_2d":null,"hand_left_keypoints_2d":null,"hand_right_keypoints_2d":null}}],"canvas_height":{w},"canvas_width":{w}}}"#,
            json_list(&body18(miss, 1.0 / w as f64))
        )
    };
    let text = format!("[{},{}]", frame(512, &[]), frame(256, &[4, 7]));
    let doc = parse(&text);
    assert_eq!(doc.format, PoseFormat::ComfyUiPoseKeypoint);
    assert_eq!(doc.frames.len(), 2);
    assert!(doc.normalized);
    assert_eq!(doc.frames[1].people[0].present_count(), 16);
    assert_round_trip(&doc.frames);
}

#[test]
fn nested_triples_accepted() {
    let nested: Vec<[f64; 3]> = (0..18).map(|j| [j as f64 * 3.0 + 2.0, 50.0, 1.0]).collect();
    let text = format!(
        r#"{{"people":[{{"pose_keypoints_2d":{}}}],"canvas_width":100,"canvas_height":100}}"#,
        serde_json::to_string(&nested).unwrap()
    );
    let doc = parse(&text);
    assert_eq!(doc.frames[0].people[0].joints[5].unwrap().x, 17.0);
}

fn coco_file(cat: &str) -> String {
    // person 1: all 17 labelled; person 2: left shoulder unlabelled (no neck), crowd with none.
    let full: Vec<f64> = (0..17)
        .flat_map(|i| [100.0 + i as f64, 200.0 + 2.0 * i as f64, 2.0])
        .collect();
    let mut partial = full.clone();
    partial[5 * 3..5 * 3 + 3].copy_from_slice(&[0.0, 0.0, 0.0]);
    let none = vec![0.0; 51];
    format!(
        r#"{{"images":[{{"id":7,"width":640,"height":427,"file_name":"a.jpg"}},{{"id":9,"width":300,"height":200,"file_name":"b.jpg"}}],
        "annotations":[{{"image_id":7,"category_id":1,"keypoints":{},"num_keypoints":17}},
                       {{"image_id":7,"category_id":1,"keypoints":{},"num_keypoints":16}},
                       {{"image_id":9,"category_id":1,"keypoints":{},"num_keypoints":0,"iscrowd":1}}],
        "categories":[{{"id":1,"name":"{cat}","keypoints":["nose"]}}]}}"#,
        json_list(&full),
        json_list(&partial),
        json_list(&none)
    )
}

#[test]
fn coco_annotations_one_set_per_image() {
    let doc = parse(&coco_file("person"));
    assert_eq!(doc.format, PoseFormat::CocoKeypoints);
    assert_eq!(doc.frames.len(), 2);
    assert_eq!(
        doc.frame_names,
        vec![Some("a.jpg".to_string()), Some("b.jpg".to_string())]
    );
    let f = &doc.frames[0];
    assert_eq!((f.width, f.height, f.people.len()), (640, 427, 2));
    assert!(
        doc.frames[1].people.is_empty(),
        "crowd annotation without keypoints"
    );
    let p = &f.people[0];
    // neck = mean of COCO shoulders 5 (105, 210) and 6 (106, 212)
    assert_eq!(p.joints[1].map(|k| (k.x, k.y)), Some((105.5, 211.0)));
    // OP right shoulder <- COCO 6; OP left ear <- COCO 3
    assert_eq!(p.joints[2].unwrap().x, 106.0);
    assert_eq!(p.joints[17].unwrap().x, 103.0);
    assert_eq!(p.present_count(), 18);
    let q = &f.people[1];
    assert!(q.joints[1].is_none() && q.joints[5].is_none());
    assert_eq!(q.present_count(), 16);
    assert_round_trip(&doc.frames);
}

#[test]
fn animals_and_unknown_files_are_refused() {
    let e = parse_err(&coco_file("antelope"));
    assert!(e.contains("antelope") && e.contains("AP-10K"), "{e}");
    let e = parse_err(r#"{"people":[],"animals":[[1,2,1]],"canvas_width":5,"canvas_height":5}"#);
    assert!(e.contains("animal") && e.contains("AP-10K"), "{e}");
    let e = parse_err(r#"{"header":"Openpose Editor by Yu Zhu","object":{}}"#);
    assert!(e.contains("header") && e.contains("object"), "{e}");
    let e = parse_err(r#"{"width":512,"height":512,"keypoints":[[1,2]]}"#);
    assert!(
        e.contains("keypoints") && e.contains("18 per person"),
        "{e}"
    );
    let e = parse_err("42");
    assert!(e.contains("number"), "{e}");
}

#[test]
fn export_is_controlnet_form() {
    let mut joints = [None; 18];
    joints[0] = Some(Keypoint {
        x: 12.5,
        y: 30.0,
        confidence: 0.42,
    });
    let set = PoseSet {
        width: 64,
        height: 32,
        people: vec![Pose::from_joints(joints)],
    };
    let text = pose::to_json(&[set], ExportOptions::default());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["canvas_width"], 64);
    assert_eq!(v["canvas_height"], 32);
    let k = v["people"][0]["pose_keypoints_2d"].as_array().unwrap();
    assert_eq!(k.len(), 54);
    assert_eq!(
        (k[0].as_f64(), k[1].as_f64(), k[2].as_f64()),
        (Some(12.5), Some(30.0), Some(1.0))
    );
    assert_eq!(
        (k[3].as_f64(), k[4].as_f64(), k[5].as_f64()),
        (Some(0.0), Some(0.0), Some(0.0))
    );
    assert!(v["people"][0]["hand_left_keypoints_2d"].is_null());
}
