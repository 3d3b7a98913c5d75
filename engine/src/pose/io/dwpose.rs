//! DWPose whole-body predictions: COCO-WholeBody, 133 points per person, as MMPose saves them
//! (DWPose's whole-body models run in MMPose; its ComfyUI nodes save the ControlNet form instead,
//! which is read as ComfyUI `POSE_KEYPOINT`).
//!
//! Layouts, in pixels, with no canvas size (`--canvas WxH`, else the points' extent):
//!
//! - an image (`MMPoseInferencer` with `pred_out_dir`): a list of detections,
//!   `[{"keypoints": [[x, y], …133], "keypoint_scores": [s, …133], "bbox": …, "bbox_score": s}, …]`;
//! - a video: `[{"frame_id": i, "instances": [detection, …]}, …]`, one frame each;
//! - MMPose's demo scripts with `--save-predictions`: `{"meta_info": {…}, "instance_info": L}`,
//!   where `L` is either list above.
//!
//! Point order: 0–16 body (COCO-17), 17–22 feet, 23–90 face (68 landmarks), 91–111 left hand,
//! 112–132 right hand ("left" is the subject's).
//!
//! **Mapping.** A point is present when its score is above 0.3, the threshold DWPose's own
//! OpenPose output applies; without `keypoint_scores` (or a third number per point) every point is
//! present with confidence 1.0. The body maps COCO-17 to OpenPose-18 as for COCO files; the neck
//! is the midpoint of the shoulders when both are present, with the lower of their scores. The
//! feet are dropped (OpenPose-18 has none) with one warning per file. The 68 face points fill the
//! first 68 of the 70-point OpenPose face and its 2 pupils stay missing; the hands are kept (21
//! points each). A part with no present point is left out, and so is a detection with none.

use super::{join, kind_of, Ctx, PoseDocument, PoseFormat, RawPerson, MAX_PEOPLE};
use crate::pose::skeleton::FACE_POINTS;
use crate::pose::types::{Keypoint, PointList};
use crate::pose::PoseError;
use serde_json::{Map, Value};
use std::ops::Range;

/// Points per person in COCO-WholeBody.
pub const WHOLEBODY_POINTS: usize = 133;
/// Scores at or below this are missing points (DWPose's threshold for its OpenPose output).
pub const SCORE_THRESHOLD: f64 = 0.3;

const FEET: Range<usize> = 17..23;
const FACE: Range<usize> = 23..91;
const LEFT_HAND: Range<usize> = 91..112;
const RIGHT_HAND: Range<usize> = 112..133;

/// Whether a JSON list holds MMPose predictions (detections or video frames) rather than
/// ComfyUI `POSE_KEYPOINT` frames.
pub(super) fn is_prediction_list(items: &[Value]) -> bool {
    items.first().and_then(Value::as_object).is_some_and(|o| {
        !o.contains_key("people") && (o.contains_key("instances") || o.contains_key("keypoints"))
    })
}

/// What was left out while reading, for the document's warnings.
#[derive(Default)]
struct Dropped {
    /// People with at least one present foot point.
    feet: usize,
    /// Detections without a single present point.
    empty: usize,
}

impl Ctx<'_> {
    /// `{"meta_info": …, "instance_info": …}` of MMPose's demo scripts.
    pub(super) fn dwpose_demo(&self, obj: &Map<String, Value>) -> Result<PoseDocument, PoseError> {
        match obj.get("instance_info") {
            Some(Value::Array(items)) => self.dwpose_list(items, "instance_info"),
            Some(v) => Err(self.err(
                "instance_info",
                format!("is a {}, expected a list of predictions", kind_of(v)),
            )),
            None => Err(self.err("instance_info", "is missing")),
        }
    }

    /// A list of detections (one image) or of `{frame_id, instances}` frames (a video).
    pub(super) fn dwpose_list(&self, items: &[Value], at: &str) -> Result<PoseDocument, PoseError> {
        let video = items
            .first()
            .and_then(Value::as_object)
            .is_some_and(|o| o.contains_key("instances"));
        let mut dropped = Dropped::default();
        let mut frames = Vec::new();
        if video {
            for (i, item) in items.iter().enumerate() {
                let f = format!("{at}[{i}]");
                let obj = item.as_object().ok_or_else(|| {
                    self.err(
                        &f,
                        format!(
                            "is a {}, expected a {{frame_id, instances}} frame",
                            kind_of(item)
                        ),
                    )
                })?;
                let fi = join(&f, "instances");
                let instances = match obj.get("instances") {
                    Some(Value::Array(a)) => a.as_slice(),
                    None | Some(Value::Null) => &[],
                    Some(v) => {
                        return Err(self.err(&fi, format!("is a {}, expected a list", kind_of(v))))
                    }
                };
                frames.push(self.dwpose_people(instances, &fi, &mut dropped)?);
            }
        } else {
            frames.push(self.dwpose_people(items, at, &mut dropped)?);
        }
        let n = frames.len();
        let (frames, normalized, canvas_source) = self.finish_without_canvas(frames)?;
        let mut warnings = Vec::new();
        if dropped.feet > 0 {
            warnings.push(format!(
                "the 6 foot points (COCO-WholeBody 17-22) of {} person(s) dropped: the OpenPose-18 \
                 body has no feet",
                dropped.feet
            ));
        }
        if dropped.empty > 0 {
            warnings.push(format!(
                "{} detection(s) with no point scored above {SCORE_THRESHOLD} left out",
                dropped.empty
            ));
        }
        Ok(PoseDocument {
            format: PoseFormat::DwPoseWholeBody,
            frames,
            frame_names: vec![None; n],
            normalized,
            canvas_source,
            warnings,
        })
    }

    fn dwpose_people(
        &self,
        instances: &[Value],
        at: &str,
        dropped: &mut Dropped,
    ) -> Result<Vec<RawPerson>, PoseError> {
        if instances.len() > MAX_PEOPLE {
            return Err(self.err(
                at,
                format!(
                    "{} detections; at most {MAX_PEOPLE} are accepted",
                    instances.len()
                ),
            ));
        }
        let mut people = Vec::with_capacity(instances.len());
        for (i, v) in instances.iter().enumerate() {
            let f = format!("{at}[{i}]");
            let obj = v.as_object().ok_or_else(|| {
                self.err(
                    &f,
                    format!("is a {}, expected a detection with `keypoints`", kind_of(v)),
                )
            })?;
            let pts = self.wholebody_points(obj, &f)?;
            if pts[FEET].iter().any(Option::is_some) {
                dropped.feet += 1;
            }
            let person = wholebody_person(&pts);
            if person.points().next().is_none() {
                dropped.empty += 1;
                continue;
            }
            people.push(person);
        }
        Ok(people)
    }

    /// The 133 points of one detection, each present or missing by its score.
    fn wholebody_points(
        &self,
        obj: &Map<String, Value>,
        f: &str,
    ) -> Result<Vec<Option<Keypoint>>, PoseError> {
        let kf = join(f, "keypoints");
        let kp = match obj.get("keypoints") {
            Some(Value::Array(a)) => a,
            Some(v) => {
                return Err(self.err(
                    &kf,
                    format!("is a {}, expected a list of [x, y] points", kind_of(v)),
                ))
            }
            None => return Err(self.err(&kf, "is missing")),
        };
        if kp.len() != WHOLEBODY_POINTS {
            return Err(self.err(
                &kf,
                format!(
                    "{} points; DWPose (COCO-WholeBody) predictions have {WHOLEBODY_POINTS}",
                    kp.len()
                ),
            ));
        }
        let sf = join(f, "keypoint_scores");
        let scores = match obj.get("keypoint_scores") {
            None | Some(Value::Null) => None,
            Some(Value::Array(s)) if s.len() == WHOLEBODY_POINTS => Some(s),
            Some(Value::Array(s)) => {
                return Err(self.err(
                    &sf,
                    format!("{} scores for {WHOLEBODY_POINTS} points", s.len()),
                ))
            }
            Some(v) => {
                return Err(self.err(
                    &sf,
                    format!("is a {}, expected a list of numbers", kind_of(v)),
                ))
            }
        };
        let mut pts = Vec::with_capacity(WHOLEBODY_POINTS);
        for (k, p) in kp.iter().enumerate() {
            let at = || format!("{kf}[{k}]");
            let xy = match p.as_array() {
                Some(a) if a.len() == 2 || a.len() == 3 => a,
                _ => return Err(self.err(&at(), "expected an [x, y] point")),
            };
            let x = self.num(&xy[0], at)?;
            let y = self.num(&xy[1], at)?;
            let score = match (scores, xy.get(2)) {
                (Some(s), _) => self.num(&s[k], || format!("{sf}[{k}]"))?,
                (None, Some(s)) => self.num(s, at)?,
                (None, None) => 1.0,
            };
            pts.push((score > SCORE_THRESHOLD).then_some(Keypoint {
                x,
                y,
                confidence: score,
            }));
        }
        Ok(pts)
    }
}

/// Our person from the 133 points: body-18 with the derived neck, face and hands; feet left out.
fn wholebody_person(pts: &[Option<Keypoint>]) -> RawPerson {
    let body = super::body18_from_coco17(pts).to_vec();
    let part = |r: Range<usize>| -> Option<PointList> {
        let list = &pts[r];
        list.iter().any(Option::is_some).then(|| list.to_vec())
    };
    // the OpenPose face's two pupils (68, 69) have no COCO-WholeBody counterpart
    let face = part(FACE).map(|mut f| {
        f.resize(FACE_POINTS, None);
        f
    });
    RawPerson {
        body,
        hand_left: part(LEFT_HAND),
        hand_right: part(RIGHT_HAND),
        face,
    }
}
