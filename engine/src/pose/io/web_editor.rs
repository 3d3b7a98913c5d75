//! The `{width, height, keypoints}` files of the older web editors: fkunn1326/openpose-editor
//! (the A1111 tab) and space-nuko/ComfyUI-OpenPose-Editor (its ComfyUI port).
//!
//! `width` and `height` are the canvas in pixels; `keypoints` holds 18 body points per person in
//! OpenPose-18 order, in pixels, without confidences, in one of three layouts:
//!
//! - flat, as fkunn1326 writes it: `[[x, y], …]`, 18 pairs per person, people one after another;
//! - flat numbers: `[x, y, x, y, …]`, 36 numbers per person;
//! - nested per person, as space-nuko writes it: `[[[x, y], …18], …]` (a person may also be 36
//!   numbers).
//!
//! **Missing points.** Neither editor can hide a joint: each writes every circle it draws, so a
//! point is read as present unless it is `null`, an empty `[]`, has a `null` coordinate, or is
//! `[-1, -1]` (the "not found" marker other tools write). Other negative coordinates stay present,
//! off the canvas: both editors let a joint be dragged past the left or top edge and save where it
//! is (space-nuko saves a circle's top-left corner, a few pixels above and left of the joint, so a
//! joint at the edge is already negative). An optional third number is read as a confidence
//! (`<= 0` is missing); otherwise a point's confidence is 1.0.
//! Coordinates are pixels unless the caller forces normalised ones.

use super::{kind_of, CanvasSource, Ctx, PoseDocument, PoseFormat, RawPerson};
use crate::pose::skeleton::NUM_JOINTS;
use crate::pose::types::Keypoint;
use crate::pose::PoseError;
use serde_json::{Map, Value};

/// Numbers per person in the flat-numbers layout (x and y for each joint).
const NUMBERS_PER_PERSON: usize = 2 * NUM_JOINTS;

impl Ctx<'_> {
    /// A `{width, height, keypoints}` document: one frame.
    pub(super) fn web_editor(&self, obj: &Map<String, Value>) -> Result<PoseDocument, PoseError> {
        let canvas = self
            .canvas_of(obj, "")?
            .ok_or_else(|| self.err("width", "is missing"))?;
        let kp = match obj.get("keypoints") {
            Some(Value::Array(a)) => a.as_slice(),
            Some(Value::Null) | None => &[],
            Some(v) => {
                return Err(self.err(
                    "keypoints",
                    format!("is a {}, expected a list of points", kind_of(v)),
                ))
            }
        };
        let people = self.editor_people(kp)?;
        if people.len() > super::MAX_PEOPLE {
            return Err(self.err(
                "keypoints",
                format!(
                    "{} people; at most {} are accepted",
                    people.len(),
                    super::MAX_PEOPLE
                ),
            ));
        }
        // These editors always save pixels; normalised only when the caller says so.
        let normalized = self.opts.normalized.unwrap_or(false);
        Ok(PoseDocument {
            format: PoseFormat::WebEditor,
            frames: vec![super::build_set(people, canvas, normalized)],
            frame_names: vec![None],
            normalized,
            canvas_source: CanvasSource::File,
            warnings: Vec::new(),
        })
    }

    /// The people of `keypoints`, by the layout its first entry shows.
    fn editor_people(&self, kp: &[Value]) -> Result<Vec<RawPerson>, PoseError> {
        let Some(first) = kp.iter().find(|v| !v.is_null()) else {
            if kp.is_empty() {
                return Ok(Vec::new());
            }
            // only nulls: a flat list of missing points
            return self.chunked(kp, NUM_JOINTS, "points (18 per person)");
        };
        match first {
            Value::Number(_) => self.chunked(kp, NUMBERS_PER_PERSON, "numbers (36 per person)"),
            Value::Array(a) if is_person(a) => kp
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let field = format!("keypoints[{i}]");
                    match v {
                        Value::Array(a) => self.editor_person(a, &field),
                        other => Err(self.err(
                            &field,
                            format!(
                                "is a {}, expected a person's list of points",
                                kind_of(other)
                            ),
                        )),
                    }
                })
                .collect(),
            Value::Array(_) => self.chunked(kp, NUM_JOINTS, "points (18 per person)"),
            other => Err(self.err(
                "keypoints",
                format!(
                    "starts with a {}, expected [x, y] points or numbers",
                    kind_of(other)
                ),
            )),
        }
    }

    /// People from a flat list: `per` entries each.
    fn chunked(&self, kp: &[Value], per: usize, what: &str) -> Result<Vec<RawPerson>, PoseError> {
        if kp.len() % per != 0 {
            return Err(self.err(
                "keypoints",
                format!("{} entries is not a whole number of {what}", kp.len()),
            ));
        }
        kp.chunks_exact(per)
            .enumerate()
            .map(|(i, chunk)| self.editor_body(chunk, |k| format!("keypoints[{}]", i * per + k)))
            .collect()
    }

    /// One person of the nested layout: 18 points, or 36 numbers.
    fn editor_person(&self, a: &[Value], field: &str) -> Result<RawPerson, PoseError> {
        if a.len() == NUM_JOINTS || a.len() == NUMBERS_PER_PERSON {
            self.editor_body(a, |k| format!("{field}[{k}]"))
        } else {
            Err(self.err(
                field,
                format!(
                    "{} entries; a person has 18 [x, y] points or 36 numbers",
                    a.len()
                ),
            ))
        }
    }

    /// 18 joints from 18 point entries or 36 numbers; `field(k)` names entry `k`.
    fn editor_body(
        &self,
        a: &[Value],
        field: impl Fn(usize) -> String,
    ) -> Result<RawPerson, PoseError> {
        let mut body = Vec::with_capacity(NUM_JOINTS);
        if a.len() == NUMBERS_PER_PERSON {
            for (j, xy) in a.chunks_exact(2).enumerate() {
                let (fx, fy) = (|| field(2 * j), || field(2 * j + 1));
                body.push(self.editor_xy(&xy[0], &xy[1], 1.0, fx, fy)?);
            }
        } else {
            for (k, v) in a.iter().enumerate() {
                body.push(self.editor_point(v, || field(k))?);
            }
        }
        Ok(RawPerson {
            body,
            hand_left: None,
            hand_right: None,
            face: None,
        })
    }

    /// `[x, y]` (or `[x, y, c]`), `null` or `[]`.
    fn editor_point(
        &self,
        v: &Value,
        field: impl Fn() -> String,
    ) -> Result<Option<Keypoint>, PoseError> {
        let field = &field;
        let at = |k: usize| move || format!("{}[{k}]", field());
        match v {
            Value::Null => Ok(None),
            Value::Array(p) if p.is_empty() => Ok(None),
            Value::Array(p) if p.len() == 2 => self.editor_xy(&p[0], &p[1], 1.0, at(0), at(1)),
            Value::Array(p) if p.len() == 3 => {
                if p.iter().any(Value::is_null) {
                    return Ok(None);
                }
                let c = self.num(&p[2], at(2))?;
                self.editor_xy(&p[0], &p[1], c, at(0), at(1))
            }
            Value::Array(p) => Err(self.err(
                &field(),
                format!("has {} entries, expected an [x, y] point or null", p.len()),
            )),
            other => Err(self.err(
                &field(),
                format!("is a {}, expected an [x, y] point or null", kind_of(other)),
            )),
        }
    }

    /// A point from its two coordinates; a `null` coordinate makes it missing.
    fn editor_xy(
        &self,
        x: &Value,
        y: &Value,
        c: f64,
        fx: impl FnOnce() -> String,
        fy: impl FnOnce() -> String,
    ) -> Result<Option<Keypoint>, PoseError> {
        if x.is_null() || y.is_null() {
            return Ok(None);
        }
        let x = self.num(x, fx)?;
        let y = self.num(y, fy)?;
        self.point(x, y, c)
    }
}

/// Whether an entry of `keypoints` is a whole person rather than one point: it holds lists, or
/// more numbers than a point has.
fn is_person(a: &[Value]) -> bool {
    a.len() > 3 || a.iter().any(Value::is_array)
}
