//! Import of the older web editors' `{width, height, keypoints}` files and of DWPose's 133-point
//! COCO-WholeBody predictions, and the export properties the other editors rely on.

use skeleguide_engine::pose::{
    self, ExportOptions, ImportOptions, Keypoint, Pose, PoseDocument, PoseFormat, PoseSet,
};

fn parse_with(text: &str, opts: &ImportOptions) -> PoseDocument {
    pose::parse_pose_json(text, "test.json", opts).unwrap()
}

fn parse(text: &str) -> PoseDocument {
    parse_with(text, &ImportOptions::default())
}

fn parse_err(text: &str) -> String {
    pose::parse_pose_json(text, "test.json", &ImportOptions::default())
        .unwrap_err()
        .to_string()
}

fn at(x: f64, y: f64) -> Option<Keypoint> {
    Some(Keypoint::new(x, y))
}

fn with_conf(x: f64, y: f64, confidence: f64) -> Option<Keypoint> {
    Some(Keypoint { x, y, confidence })
}

/// Export in the default (editor) form and read back: the same people, confidences 1.0.
fn assert_exports_unchanged(doc: &PoseDocument) {
    let back = parse(&pose::to_json(&doc.frames, ExportOptions::default()));
    assert_eq!(back.frames.len(), doc.frames.len());
    for (a, b) in back.frames.iter().zip(&doc.frames) {
        let mut b = b.clone();
        for p in &mut b.people {
            p.map_points(|k| k.confidence = 1.0);
        }
        assert_eq!(*a, b);
    }
}

#[test]
fn web_editor_flat_pairs_as_fkunn1326_writes_them() {
    // two people, 18 [x, y] pairs each, one after the other; integer pixels
    let mut pts: Vec<String> = Vec::new();
    for j in 0..18 {
        pts.push(match j {
            3 => "[-4, 50]".into(), // off the left edge: kept
            5 => "null".into(),
            6 => "[-1, -1]".into(),
            _ => format!("[{}, {}]", 100 + j, 200 + 2 * j),
        });
    }
    for j in 0..18 {
        pts.push(if j == 0 {
            "[]".into()
        } else {
            format!("[{}, {}]", 300 + j, 10 + j)
        });
    }
    let text = format!(
        "{{\n    \"width\": 512,\n    \"height\": 768,\n    \"keypoints\": [{}]\n}}",
        pts.join(",\n        ")
    );
    let doc = parse(&text);
    assert_eq!(doc.format, PoseFormat::WebEditor);
    assert!(!doc.normalized && doc.warnings.is_empty());
    let f = &doc.frames[0];
    assert_eq!((f.width, f.height, f.people.len()), (512, 768, 2));
    let p = &f.people[0];
    assert_eq!(p.joints[0], at(100.0, 200.0));
    assert_eq!(p.joints[3], at(-4.0, 50.0));
    assert_eq!(p.joints[5], None);
    assert_eq!(p.joints[6], None);
    assert_eq!(p.joints[17], at(117.0, 234.0));
    assert_eq!(p.present_count(), 16);
    assert!(p.hand_left.is_none() && p.hand_right.is_none() && p.face.is_none());
    let q = &f.people[1];
    assert_eq!(q.joints[0], None);
    assert_eq!(q.joints[1], at(301.0, 11.0));
    assert_eq!(q.joints[17], at(317.0, 27.0));
    assert_eq!(f.joints_outside(), vec![1, 0]);
    assert_exports_unchanged(&doc);
}

#[test]
fn web_editor_flat_numbers() {
    let mut nums: Vec<String> = (0..18)
        .flat_map(|j| {
            [
                format!("{}", 5.5 + j as f64),
                format!("{}", 7.25 * j as f64),
            ]
        })
        .collect();
    nums[2 * 4] = "null".into(); // joint 4's x
    let text = format!(
        r#"{{"width":64,"height":128,"keypoints":[{}]}}"#,
        nums.join(",")
    );
    let doc = parse(&text);
    let p = &doc.frames[0].people[0];
    assert_eq!(doc.frames[0].people.len(), 1);
    assert_eq!(p.joints[0], at(5.5, 0.0));
    assert_eq!(p.joints[4], None);
    assert_eq!(p.joints[17], at(22.5, 123.25));
    assert_eq!(p.present_count(), 17);
}

#[test]
fn web_editor_nested_per_person_as_space_nuko_writes_them() {
    // person 0 as 18 [x, y] pairs (floats, one null, one with a zero confidence, one with 0.5),
    // person 1 as 36 numbers
    let first: Vec<String> = (0..18)
        .map(|j| match j {
            16 => "null".into(),
            2 => "[1.0, 2.0, 0]".into(),
            7 => "[8.5, 9.5, 0.5]".into(),
            _ => format!("[{}, {}]", j as f64 * 1.5 + 0.25, 3.0 * j as f64 + 0.5),
        })
        .collect();
    let second: Vec<String> = (0..18)
        .flat_map(|j| [format!("{}", 400 + j), format!("{}", 600 - j)])
        .collect();
    let text = format!(
        r#"{{"width":900,"height":700,"keypoints":[[{}],[{}]]}}"#,
        first.join(","),
        second.join(",")
    );
    let doc = parse(&text);
    assert_eq!(doc.format, PoseFormat::WebEditor);
    let f = &doc.frames[0];
    assert_eq!((f.width, f.height, f.people.len()), (900, 700, 2));
    let p = &f.people[0];
    assert_eq!(p.joints[0], at(0.25, 0.5));
    assert_eq!(p.joints[2], None);
    assert_eq!(p.joints[7], with_conf(8.5, 9.5, 0.5));
    assert_eq!(p.joints[16], None);
    assert_eq!(p.joints[17], at(25.75, 51.5));
    assert_eq!(p.present_count(), 16);
    let q = &f.people[1];
    assert_eq!(q.joints[0], at(400.0, 600.0));
    assert_eq!(q.joints[17], at(417.0, 583.0));
    assert_eq!(q.present_count(), 18);
    assert_exports_unchanged(&doc);

    // normalised coordinates only when the caller says so
    let text = r#"{"width":200,"height":100,"keypoints":[[[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25],[0.5,0.25]]]}"#;
    assert_eq!(parse(text).frames[0].people[0].joints[0], at(0.5, 0.25));
    let opts = ImportOptions {
        canvas: None,
        normalized: Some(true),
    };
    let doc = parse_with(text, &opts);
    assert!(doc.normalized);
    assert_eq!(doc.frames[0].people[0].joints[0], at(100.0, 25.0));
}

#[test]
fn web_editor_errors_name_the_field() {
    let e = parse_err(r#"{"width":512,"height":512,"keypoints":[[1,2]]}"#);
    assert!(
        e.contains("test.json: keypoints:") && e.contains("18 per person"),
        "{e}"
    );
    let e = parse_err(r#"{"width":512,"height":512,"keypoints":[1,2,3]}"#);
    assert!(
        e.contains("keypoints:") && e.contains("36 per person"),
        "{e}"
    );
    let pairs18 = vec!["[1,2]"; 18].join(",");
    let pairs17 = vec!["[1,2]"; 17].join(",");
    let e = parse_err(&format!(
        r#"{{"width":512,"height":512,"keypoints":[[{pairs18}],[{pairs17}]]}}"#
    ));
    assert!(
        e.contains("keypoints[1]:") && e.contains("17 entries"),
        "{e}"
    );
    let mut bad = vec!["[1,2]"; 18];
    bad[2] = "\"x\"";
    let e = parse_err(&format!(
        r#"{{"width":512,"height":512,"keypoints":[{}]}}"#,
        bad.join(",")
    ));
    assert!(e.contains("keypoints[2]:") && e.contains("string"), "{e}");
    bad[2] = "[1,true]";
    let e = parse_err(&format!(
        r#"{{"width":512,"height":512,"keypoints":[{}]}}"#,
        bad.join(",")
    ));
    assert!(
        e.contains("keypoints[2][1]:") && e.contains("boolean"),
        "{e}"
    );
    let e = parse_err(r#"{"height":512,"keypoints":[]}"#);
    assert!(e.contains("width: is missing"), "{e}");
    let e = parse_err(r#"{"width":512,"height":512,"keypoints":"no"}"#);
    assert!(e.contains("keypoints:") && e.contains("string"), "{e}");
    // an empty editor canvas is a frame with no people
    let doc = parse(r#"{"width":512,"height":256,"keypoints":[]}"#);
    assert_eq!(doc.frames, vec![PoseSet::new(512, 256)]);
}

/// One DWPose detection: 133 points, point `k` at `xy(k)` with score `score(k)`.
fn detection(xy: impl Fn(usize) -> (f64, f64), score: impl Fn(usize) -> f64) -> String {
    let pts: Vec<[f64; 2]> = (0..133).map(|k| xy(k).into()).collect();
    let scores: Vec<f64> = (0..133).map(score).collect();
    format!(
        r#"{{"keypoints": {}, "keypoint_scores": {}, "bbox": [[1.0, 2.0, 300.0, 400.0]], "bbox_score": 0.97}}"#,
        serde_json::to_string(&pts).unwrap(),
        serde_json::to_string(&scores).unwrap()
    )
}

fn xy(k: usize) -> (f64, f64) {
    (10.0 + 2.5 * k as f64, 20.0 + k as f64)
}

/// Scores of the main test person: 0.9, except COCO 6 (right shoulder) 0.6, COCO 3 (left ear)
/// exactly at the threshold, COCO 16 (right ankle) 0.1, face point 5 at 0.2 and the right hand
/// below the threshold.
fn score(k: usize) -> f64 {
    match k {
        6 => 0.6,
        3 => 0.3,
        16 => 0.1,
        28 => 0.2,
        112..=132 => 0.05,
        _ => 0.9,
    }
}

fn assert_main_person(p: &Pose) {
    let c = |k: usize| with_conf(xy(k).0, xy(k).1, score(k));
    assert_eq!(p.joints[0], c(0)); // nose
    assert_eq!(p.joints[1], with_conf(23.75, 25.5, 0.6)); // neck: mean of COCO 5 and 6
    assert_eq!(p.joints[2], c(6)); // right shoulder <- COCO 6
    assert_eq!(p.joints[5], c(5)); // left shoulder <- COCO 5
    assert_eq!(p.joints[7], c(9)); // left wrist <- COCO 9
    assert_eq!(p.joints[10], None); // right ankle: score 0.1
    assert_eq!(p.joints[13], c(15)); // left ankle <- COCO 15
    assert_eq!(p.joints[14], c(2)); // right eye <- COCO 2
    assert_eq!(p.joints[17], None); // left ear: score 0.3 is not above the threshold
    assert_eq!(p.present_count(), 16);
    let face = p.face.as_ref().unwrap();
    assert_eq!(face.len(), 70);
    assert_eq!(face[0], c(23));
    assert_eq!(face[5], None);
    assert_eq!(face[67], c(90));
    assert_eq!((face[68], face[69]), (None, None)); // pupils
    let left = p.hand_left.as_ref().unwrap();
    assert_eq!(left.len(), 21);
    assert_eq!(left[0], c(91));
    assert_eq!(left[20], c(111));
    assert!(p.hand_right.is_none());
}

#[test]
fn dwpose_image_predictions() {
    // the second detection has no point above the threshold
    let text = format!(
        "[{}, {}]",
        detection(xy, score),
        detection(|k| (k as f64, 1.0), |_| 0.1)
    );
    let doc = parse(&text);
    assert_eq!(doc.format, PoseFormat::DwPoseWholeBody);
    assert_eq!(doc.frames.len(), 1);
    let f = &doc.frames[0];
    assert_eq!(f.people.len(), 1);
    assert_main_person(&f.people[0]);
    // no canvas in the file: the extent of the kept points (left hand 20 at 287.5, 131)
    assert_eq!(doc.canvas_source, pose::io::CanvasSource::PointExtent);
    assert_eq!((f.width, f.height), (288, 132));
    assert_eq!(doc.warnings.len(), 2, "{:?}", doc.warnings);
    assert!(
        doc.warnings[0].contains("foot points") && doc.warnings[0].contains("1 person"),
        "{:?}",
        doc.warnings
    );
    assert!(
        doc.warnings[1].contains("1 detection"),
        "{:?}",
        doc.warnings
    );

    let opts = ImportOptions {
        canvas: Some((640, 480)),
        normalized: None,
    };
    let doc = parse_with(&text, &opts);
    assert_eq!((doc.frames[0].width, doc.frames[0].height), (640, 480));
    assert_eq!(doc.canvas_source, pose::io::CanvasSource::Given);
    assert!(!doc.normalized);
    assert_main_person(&doc.frames[0].people[0]);

    // our writer keeps the face's 70 points (pupils as 0,0,0) and the hands: a lossless round trip
    let keep = ExportOptions {
        normalized: false,
        keep_confidence: true,
    };
    let text = pose::to_json(&doc.frames, keep);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let face = v["people"][0]["face_keypoints_2d"].as_array().unwrap();
    assert_eq!(face.len(), 210);
    assert!(face[204..].iter().all(|n| n.as_f64() == Some(0.0)));
    assert_eq!(
        v["people"][0]["hand_left_keypoints_2d"]
            .as_array()
            .unwrap()
            .len(),
        63
    );
    assert!(v["people"][0]["hand_right_keypoints_2d"].is_null());
    assert_eq!(parse(&text).frames, doc.frames);
    assert_exports_unchanged(&doc);
}

#[test]
fn dwpose_video_frames_and_demo_output() {
    let det = detection(xy, score);
    let video =
        format!(r#"[{{"frame_id": 0, "instances": [{det}]}}, {{"frame_id": 1, "instances": []}}]"#);
    let doc = parse(&video);
    assert_eq!(doc.format, PoseFormat::DwPoseWholeBody);
    assert_eq!(doc.frames.len(), 2);
    assert_main_person(&doc.frames[0].people[0]);
    assert!(doc.frames[1].people.is_empty());
    // the frames of one video share the canvas
    assert_eq!(
        (doc.frames[1].width, doc.frames[1].height),
        (doc.frames[0].width, doc.frames[0].height)
    );
    assert_eq!(doc.warnings.len(), 1);

    let demo = format!(
        r#"{{"meta_info": {{"dataset_name": "coco_wholebody"}}, "instance_info": [{det}]}}"#
    );
    let doc = parse(&demo);
    assert_eq!(doc.frames.len(), 1);
    assert_main_person(&doc.frames[0].people[0]);
    let demo_video = format!(
        r#"{{"meta_info": {{}}, "instance_info": [{{"frame_id": 3, "instances": [{det}]}}]}}"#
    );
    assert_main_person(&parse(&demo_video).frames[0].people[0]);
}

#[test]
fn dwpose_without_scores() {
    // no `keypoint_scores`: every point present with confidence 1.0
    let pts: Vec<[f64; 2]> = (0..133).map(|k| xy(k).into()).collect();
    let text = format!(
        r#"[{{"keypoints": {}}}]"#,
        serde_json::to_string(&pts).unwrap()
    );
    let doc = parse(&text);
    let p = &doc.frames[0].people[0];
    assert_eq!(p.present_count(), 18);
    assert_eq!(p.joints[1], at(23.75, 25.5));
    assert_eq!(p.joints[16], at(20.0, 24.0)); // right ear <- COCO 4
    assert_eq!(p.hand_right.as_ref().unwrap()[20], at(340.0, 152.0));
    assert!(doc.warnings[0].contains("foot points"));
    // [x, y, score] triples carry their own scores
    let pts: Vec<[f64; 3]> = (0..133)
        .map(|k| [xy(k).0, xy(k).1, if k == 0 { 0.25 } else { 0.75 }])
        .collect();
    let text = format!(
        r#"[{{"keypoints": {}}}]"#,
        serde_json::to_string(&pts).unwrap()
    );
    let p = &parse(&text).frames[0].people[0];
    assert_eq!(p.joints[0], None);
    assert_eq!(p.joints[2], with_conf(25.0, 26.0, 0.75));
}

#[test]
fn dwpose_errors_name_the_field() {
    let short: Vec<[f64; 2]> = vec![[1.0, 2.0]; 132];
    let e = parse_err(&format!(
        r#"[{{"keypoints": {}}}]"#,
        serde_json::to_string(&short).unwrap()
    ));
    assert!(
        e.contains("[0].keypoints:") && e.contains("132 points") && e.contains("133"),
        "{e}"
    );
    let pts: Vec<[f64; 2]> = vec![[1.0, 2.0]; 133];
    let e = parse_err(&format!(
        r#"[{{"keypoints": {}, "keypoint_scores": [1, 2]}}]"#,
        serde_json::to_string(&pts).unwrap()
    ));
    assert!(
        e.contains("[0].keypoint_scores:") && e.contains("2 scores"),
        "{e}"
    );
    let mut bad = serde_json::to_value(&pts).unwrap();
    bad[40] = serde_json::json!("x");
    let e = parse_err(&format!(
        r#"{{"instance_info": [{{"frame_id": 0, "instances": [{{"keypoints": {bad}}}]}}]}}"#
    ));
    assert!(
        e.contains("instance_info[0].instances[0].keypoints[40]:"),
        "{e}"
    );
    let e = parse_err(r#"{"meta_info": {}, "instance_info": 5}"#);
    assert!(e.contains("instance_info:") && e.contains("number"), "{e}");
}

#[test]
fn export_keeps_off_canvas_joints_and_writes_what_the_editors_read() {
    let mut joints = [None; 18];
    joints[0] = with_conf(-5.5, 10.0, 0.42);
    joints[1] = at(700.0, 20.0);
    joints[2] = with_conf(30.0, 499.25, 0.9);
    let set = PoseSet {
        width: 640,
        height: 480,
        people: vec![Pose::from_joints(joints)],
    };
    assert_eq!(set.joints_outside(), vec![3]);
    let numbers = |opts: ExportOptions| -> (serde_json::Value, Vec<f64>) {
        let v: serde_json::Value =
            serde_json::from_str(&pose::to_json(std::slice::from_ref(&set), opts)).unwrap();
        let k = v["people"][0]["pose_keypoints_2d"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_f64().unwrap())
            .collect();
        (v, k)
    };
    let (v, k) = numbers(ExportOptions::default());
    assert_eq!(
        (v["canvas_width"].as_u64(), v["canvas_height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(k.len(), 54);
    assert_eq!(
        k[..9],
        [-5.5, 10.0, 1.0, 700.0, 20.0, 1.0, 30.0, 499.25, 1.0]
    );
    assert!(k[9..].iter().all(|&n| n == 0.0));
    let keep = ExportOptions {
        normalized: false,
        keep_confidence: true,
    };
    let (_, k) = numbers(keep);
    assert_eq!(
        k[..9],
        [-5.5, 10.0, 0.42, 700.0, 20.0, 1.0, 30.0, 499.25, 0.9]
    );
    // read back: nothing dropped or clamped
    let back = parse(&pose::to_json(std::slice::from_ref(&set), keep));
    assert_eq!(back.frames[0], set);
}
