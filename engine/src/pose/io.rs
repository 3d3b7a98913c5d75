//! Reading and writing the OpenPose JSON family (see DESIGN.md "Keypoints, files, drawing").
//!
//! Import auto-detects the variant:
//! - CMU OpenPose 1.x `--write_json` (`pose_keypoints` or `pose_keypoints_2d`, BODY_25 or
//!   COCO-18, no canvas size);
//! - the ControlNet form (`people` + `canvas_width`/`canvas_height`), pixel or normalised
//!   coordinates, decided once per file;
//! - ComfyUI `POSE_KEYPOINT`: a list of ControlNet-form frames;
//! - COCO keypoint annotation files (`images` + `annotations`), one frame per image;
//! - the `{width, height, keypoints}` files of the older web editors ([`web_editor`]);
//! - DWPose / MMPose COCO-WholeBody predictions, 133 points per person ([`dwpose`]).
//!
//! Export writes the ControlNet form that the other editors read: pixels (or normalised),
//! `canvas_width/height`, `x,y,1.0` for a present point and `0,0,0` for a missing one.

use super::skeleton::*;
use super::types::{Keypoint, PointList, Pose, PoseSet};
use super::PoseError;
use crate::error::display_path;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::Path;

pub use crate::limits::{MAX_CANVAS_SIDE, MAX_COORD, MAX_PEOPLE};
use crate::limits::{MAX_PIXELS, MAX_POSE_FILE_BYTES};

pub mod dwpose;
pub mod web_editor;

/// The variant a file was detected as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoseFormat {
    /// CMU OpenPose 1.x `--write_json` output (no canvas size in the file).
    CmuOpenPose,
    /// ControlNet / openpose-editor JSON, with `canvas_width` and `canvas_height`.
    ControlNet,
    /// ComfyUI `POSE_KEYPOINT`: a list of frames.
    ComfyUiPoseKeypoint,
    /// COCO keypoint annotations (`images` and `annotations`).
    CocoKeypoints,
    /// `{width, height, keypoints}` of fkunn1326/openpose-editor and space-nuko's ComfyUI port.
    WebEditor,
    /// DWPose / MMPose COCO-WholeBody predictions (133 points per person, no canvas size).
    DwPoseWholeBody,
}

impl PoseFormat {
    /// A human-readable name of the format, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            PoseFormat::CmuOpenPose => "CMU OpenPose 1.x (--write_json)",
            PoseFormat::ControlNet => "ControlNet / openpose-editor JSON",
            PoseFormat::ComfyUiPoseKeypoint => "ComfyUI POSE_KEYPOINT (list of frames)",
            PoseFormat::CocoKeypoints => "COCO keypoint annotations",
            PoseFormat::WebEditor => {
                "web openpose-editor {width, height, keypoints} JSON (fkunn1326, space-nuko)"
            }
            PoseFormat::DwPoseWholeBody => {
                "DWPose / MMPose COCO-WholeBody predictions (133 points)"
            }
        }
    }
}

/// Options for import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Canvas for files that carry none (CMU OpenPose): from `--canvas WxH` or the scene.
    pub canvas: Option<(u32, u32)>,
    /// Force the pixel/normalised decision instead of detecting it.
    pub normalized: Option<bool>,
}

/// An imported file: one or more frames (images) of people.
#[derive(Clone, Debug)]
pub struct PoseDocument {
    /// The format the file was detected as.
    pub format: PoseFormat,
    /// The people of each frame, in file order.
    pub frames: Vec<PoseSet>,
    /// Per frame: the image name where the format has one (COCO `file_name`).
    pub frame_names: Vec<Option<String>>,
    /// Whether coordinates were read as normalised and scaled to pixels.
    pub normalized: bool,
    /// How the canvas was obtained for formats without one.
    pub canvas_source: CanvasSource,
    /// Things the user should know that did not stop the import.
    pub warnings: Vec<String>,
}

/// Where a document's canvas size came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanvasSource {
    /// The file states the canvas size.
    File,
    /// The caller gave it ([`ImportOptions::canvas`]).
    Given,
    /// Derived from the points: just large enough to hold the largest x and y.
    PointExtent,
}

/// Options for export.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportOptions {
    /// Write coordinates divided by the canvas size.
    pub normalized: bool,
    /// Write real confidences instead of 1.0. Off by default: ControlNet-side tools drop every
    /// point with c < 1.
    pub keep_confidence: bool,
}

/// Reads and parses a pose file.
pub fn read_pose_file(path: &Path, opts: &ImportOptions) -> Result<PoseDocument, PoseError> {
    let file = display_path(path);
    let meta = std::fs::metadata(path).map_err(|source| PoseError::Read {
        file: file.clone(),
        source,
    })?;
    if meta.is_dir() {
        return Err(PoseError::Unsupported {
            file,
            msg: "is a directory, not a pose file".into(),
        });
    }
    if meta.len() > MAX_POSE_FILE_BYTES {
        return Err(PoseError::Unsupported {
            file,
            msg: format!("{} bytes is too large for a pose file", meta.len()),
        });
    }
    let bytes = crate::fsutil::read_limited(path, MAX_POSE_FILE_BYTES).map_err(|source| {
        PoseError::Read {
            file: file.clone(),
            source,
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| PoseError::Json {
        file: file.clone(),
        msg: format!("not UTF-8 text ({e})"),
    })?;
    parse_pose_json(text, &file, opts)
}

/// Parses pose JSON text; `file` names the source in messages.
pub fn parse_pose_json(
    text: &str,
    file: &str,
    opts: &ImportOptions,
) -> Result<PoseDocument, PoseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(PoseError::Json {
            file: file.into(),
            msg: "the file is empty".into(),
        });
    }
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let hint = if contains_non_json_number(text) {
            " (NaN and Infinity are not valid JSON numbers)"
        } else {
            ""
        };
        PoseError::Json {
            file: file.into(),
            msg: format!("{e}{hint}"),
        }
    })?;
    let cx = Ctx { file, opts };
    let doc = cx.document(&root)?;
    // a drawn canvas is allocated: the same pixel limit as an image
    for (i, f) in doc.frames.iter().enumerate() {
        let pixels = f.width as u64 * f.height as u64;
        if pixels > MAX_PIXELS {
            let at = if doc.frames.len() > 1 {
                format!("frame {i}: ")
            } else {
                String::new()
            };
            return Err(PoseError::Unsupported {
                file: file.into(),
                msg: format!(
                    "{at}canvas {}x{} is {pixels} pixels, over the limit of {MAX_PIXELS}",
                    f.width, f.height
                ),
            });
        }
    }
    Ok(doc)
}

impl Ctx<'_> {
    /// The document of a parsed JSON root, by the variant its keys show.
    fn document(&self, root: &Value) -> Result<PoseDocument, PoseError> {
        let cx = self;
        match root {
            Value::Array(items) if dwpose::is_prediction_list(items) => cx.dwpose_list(items, ""),
            Value::Array(items) => cx.comfy_frames(items),
            Value::Object(obj) => {
                if obj.contains_key("annotations")
                    || (obj.contains_key("images") && obj.contains_key("categories"))
                {
                    cx.coco(obj)
                } else if obj.contains_key("people") || obj.contains_key("animals") {
                    cx.openpose_object(obj)
                } else if obj.contains_key("instance_info") {
                    cx.dwpose_demo(obj)
                } else if obj.contains_key("keypoints")
                    && (obj.contains_key("width") || obj.contains_key("height"))
                {
                    cx.web_editor(obj)
                } else {
                    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).take(8).collect();
                    keys.sort_unstable();
                    Err(cx.unsupported(&format!(
                        "found a JSON object with keys [{}]; expected OpenPose JSON (`people`), \
                     a ComfyUI POSE_KEYPOINT list or COCO keypoint annotations",
                        keys.join(", ")
                    )))
                }
            }
            other => Err(cx.unsupported(&format!(
                "found a JSON {}; expected an OpenPose JSON object or a list of frames",
                kind_of(other)
            ))),
        }
    }
}

fn contains_non_json_number(text: &str) -> bool {
    text.contains("NaN") || text.contains("Infinity")
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

struct Ctx<'a> {
    file: &'a str,
    opts: &'a ImportOptions,
}

/// A person as read, before the coordinate decision: raw (x, y, c) triples.
struct RawPerson {
    body: Vec<Option<Keypoint>>,
    hand_left: Option<PointList>,
    hand_right: Option<PointList>,
    face: Option<PointList>,
}

impl RawPerson {
    fn points(&self) -> impl Iterator<Item = &Keypoint> {
        let extras = [&self.hand_left, &self.hand_right, &self.face];
        self.body.iter().flatten().chain(
            extras
                .into_iter()
                .flatten()
                .flat_map(|l| l.iter().flatten()),
        )
    }
}

impl<'a> Ctx<'a> {
    fn unsupported(&self, msg: &str) -> PoseError {
        PoseError::Unsupported {
            file: self.file.into(),
            msg: msg.into(),
        }
    }

    fn err(&self, field: &str, msg: impl Into<String>) -> PoseError {
        PoseError::field(self.file, field, msg)
    }

    fn comfy_frames(&self, items: &[Value]) -> Result<PoseDocument, PoseError> {
        if items.is_empty() {
            return Err(
                self.unsupported("found an empty list; expected ComfyUI POSE_KEYPOINT frames")
            );
        }
        let mut frames = Vec::with_capacity(items.len());
        let mut warnings = Vec::new();
        let mut normalized = false;
        for (i, item) in items.iter().enumerate() {
            let field = format!("[{i}]");
            let obj = item.as_object().ok_or_else(|| {
                self.err(
                    &field,
                    format!(
                        "is a {}, expected a POSE_KEYPOINT frame object",
                        kind_of(item)
                    ),
                )
            })?;
            if !obj.contains_key("people") {
                return Err(self.err(&field, "has no `people`; not a POSE_KEYPOINT frame"));
            }
            let canvas = self
                .canvas_of(obj, &field)?
                .ok_or_else(|| self.err(&field, "has no `canvas_width`/`canvas_height`"))?;
            self.refuse_animals_only(obj, &field)?;
            let people = self.people(obj, &field)?;
            let (set, norm) = self.finish_frame(people, canvas, &field)?;
            normalized |= norm;
            frames.push(set);
            if obj.get("animals").is_some_and(non_empty) {
                warnings.push(format!("{field}: animal poses ignored (people only)"));
            }
        }
        let n = frames.len();
        Ok(PoseDocument {
            format: PoseFormat::ComfyUiPoseKeypoint,
            frames,
            frame_names: vec![None; n],
            normalized,
            canvas_source: CanvasSource::File,
            warnings,
        })
    }

    fn refuse_animals_only(&self, obj: &Map<String, Value>, field: &str) -> Result<(), PoseError> {
        let people_empty = obj.get("people").is_none_or(|p| !non_empty(p));
        if people_empty && obj.get("animals").is_some_and(non_empty) {
            let n = obj["animals"].as_array().map_or(0, |a| a.len());
            let at = if field.is_empty() {
                String::new()
            } else {
                format!("{field}: ")
            };
            return Err(self.unsupported(&format!(
                "{at}found {n} animal pose(s) (`animals`, AP-10K) and no people; SkeleGuide edits human poses only"
            )));
        }
        Ok(())
    }

    fn openpose_object(&self, obj: &Map<String, Value>) -> Result<PoseDocument, PoseError> {
        self.refuse_animals_only(obj, "")?;
        let mut warnings = Vec::new();
        if obj.get("animals").is_some_and(non_empty) {
            warnings
                .push("animal poses (`animals`) ignored: SkeleGuide edits human poses only".into());
        }
        let canvas = self.canvas_of(obj, "")?;
        let people = self.people(obj, "")?;
        let (set, normalized, format, canvas_source) = match canvas {
            Some(c) => {
                let (set, norm) = self.finish_frame(people, c, "")?;
                (set, norm, PoseFormat::ControlNet, CanvasSource::File)
            }
            None => {
                let (mut sets, norm, src) = self.finish_without_canvas(vec![people])?;
                (sets.remove(0), norm, PoseFormat::CmuOpenPose, src)
            }
        };
        Ok(PoseDocument {
            format,
            frames: vec![set],
            frame_names: vec![None],
            normalized,
            canvas_source,
            warnings,
        })
    }

    /// `canvas_width/height` (or `width/height`), validated; `None` when absent.
    fn canvas_of(
        &self,
        obj: &Map<String, Value>,
        at: &str,
    ) -> Result<Option<(u32, u32)>, PoseError> {
        let (wk, hk) = if obj.contains_key("canvas_width") || obj.contains_key("canvas_height") {
            ("canvas_width", "canvas_height")
        } else if obj.contains_key("width") || obj.contains_key("height") {
            ("width", "height")
        } else {
            return Ok(None);
        };
        let w = self.canvas_side(obj.get(wk), &join(at, wk))?;
        let h = self.canvas_side(obj.get(hk), &join(at, hk))?;
        Ok(Some((w, h)))
    }

    fn canvas_side(&self, v: Option<&Value>, field: &str) -> Result<u32, PoseError> {
        let v = v.ok_or_else(|| self.err(field, "is missing"))?;
        let x = v
            .as_f64()
            .ok_or_else(|| self.err(field, format!("is a {}, expected a number", kind_of(v))))?;
        if x <= 0.0 {
            return Err(self.err(field, format!("{x} is not a positive canvas size")));
        }
        if x.fract() != 0.0 || x > MAX_CANVAS_SIDE as f64 {
            return Err(self.err(
                field,
                format!("{x} is not a whole number of pixels between 1 and {MAX_CANVAS_SIDE}"),
            ));
        }
        Ok(x as u32)
    }

    fn people(&self, obj: &Map<String, Value>, at: &str) -> Result<Vec<RawPerson>, PoseError> {
        let field = join(at, "people");
        let arr = match obj.get("people") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(v) => {
                return Err(self.err(&field, format!("is a {}, expected a list", kind_of(v))))
            }
        };
        if arr.len() > MAX_PEOPLE {
            return Err(self.err(
                &field,
                format!("{} people; at most {MAX_PEOPLE} are accepted", arr.len()),
            ));
        }
        arr.iter()
            .enumerate()
            .map(|(i, p)| self.person(p, &format!("{field}[{i}]")))
            .collect()
    }

    fn person(&self, v: &Value, field: &str) -> Result<RawPerson, PoseError> {
        let obj = v.as_object().ok_or_else(|| {
            self.err(
                field,
                format!("is a {}, expected a person object", kind_of(v)),
            )
        })?;
        let body_key = ["pose_keypoints_2d", "pose_keypoints"]
            .into_iter()
            .find(|k| obj.contains_key(*k));
        let body = match body_key {
            Some(k) => {
                let f = join(field, k);
                let pts = self.points(&obj[k], &f)?.unwrap_or_default();
                match pts.len() {
                    0 => vec![None; NUM_JOINTS],
                    18 => pts,
                    25 => BODY25_TO_OP18.iter().map(|&i| pts[i]).collect(),
                    n => {
                        return Err(self.err(
                            &f,
                            format!(
                                "{} numbers ({n} points); expected 54 (COCO-18) or 75 (BODY_25)",
                                n * 3
                            ),
                        ))
                    }
                }
            }
            None => vec![None; NUM_JOINTS],
        };
        let part = |names: [&str; 2], sizes: &[usize]| -> Result<Option<PointList>, PoseError> {
            let Some(k) = names.into_iter().find(|k| obj.contains_key(*k)) else {
                return Ok(None);
            };
            let f = join(field, k);
            match self.points(&obj[k], &f)? {
                None => Ok(None),
                Some(p) if p.is_empty() => Ok(None),
                Some(p) if sizes.contains(&p.len()) => Ok(Some(p)),
                Some(p) => Err(self.err(
                    &f,
                    format!(
                        "{} points; expected {}",
                        p.len(),
                        sizes
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                )),
            }
        };
        Ok(RawPerson {
            body,
            hand_left: part(
                ["hand_left_keypoints_2d", "hand_left_keypoints"],
                &[HAND_POINTS],
            )?,
            hand_right: part(
                ["hand_right_keypoints_2d", "hand_right_keypoints"],
                &[HAND_POINTS],
            )?,
            face: part(["face_keypoints_2d", "face_keypoints"], &[68, FACE_POINTS])?,
        })
    }

    /// A flat `x,y,c,…` list, or a nested `[[x,y,c],…]` list; `None` for `null`.
    fn points(&self, v: &Value, field: &str) -> Result<Option<PointList>, PoseError> {
        let arr = match v {
            Value::Null => return Ok(None),
            Value::Array(a) => a,
            other => {
                return Err(self.err(
                    field,
                    format!("is a {}, expected a list of numbers", kind_of(other)),
                ))
            }
        };
        if arr.first().is_some_and(|x| x.is_array()) {
            return arr
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let f = format!("{field}[{i}]");
                    match t.as_array() {
                        Some(t) if t.len() == 3 || t.len() == 2 => {
                            let c = if t.len() == 3 {
                                self.num(&t[2], || f.clone())?
                            } else {
                                1.0
                            };
                            self.point(
                                self.num(&t[0], || f.clone())?,
                                self.num(&t[1], || f.clone())?,
                                c,
                            )
                        }
                        _ => Err(self.err(&f, "expected an [x, y, c] triple")),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some);
        }
        if arr.len() % 3 != 0 {
            return Err(self.err(
                field,
                format!(
                    "{} numbers is not a multiple of 3 (x, y, confidence per point)",
                    arr.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(arr.len() / 3);
        for (i, t) in arr.chunks_exact(3).enumerate() {
            // field names are built only on error: this loop is the hot path of import
            let at = |k: usize| move || format!("{field}[{}]", 3 * i + k);
            let x = self.num(&t[0], at(0))?;
            let y = self.num(&t[1], at(1))?;
            let c = self.num(&t[2], at(2))?;
            out.push(self.point(x, y, c)?);
        }
        Ok(Some(out))
    }

    fn num(&self, v: &Value, field: impl FnOnce() -> String) -> Result<f64, PoseError> {
        let Some(x) = v.as_f64() else {
            return Err(self.err(&field(), format!("is a {}, expected a number", kind_of(v))));
        };
        if !x.is_finite() || x.abs() > MAX_COORD {
            return Err(self.err(
                &field(),
                format!("{x} is out of range (|value| must be at most {MAX_COORD:e})"),
            ));
        }
        Ok(x)
    }

    fn point(&self, x: f64, y: f64, c: f64) -> Result<Option<Keypoint>, PoseError> {
        // c <= 0 is missing; -1,-1 is the "not found" marker some tools write.
        if c <= 0.0 || (x == -1.0 && y == -1.0) {
            Ok(None)
        } else {
            Ok(Some(Keypoint {
                x,
                y,
                confidence: c,
            }))
        }
    }

    /// Decides pixel vs normalised for a whole file and builds the frame.
    fn finish_frame(
        &self,
        people: Vec<RawPerson>,
        canvas: (u32, u32),
        _at: &str,
    ) -> Result<(PoseSet, bool), PoseError> {
        let normalized = self
            .opts
            .normalized
            .unwrap_or_else(|| looks_normalized(people.iter().flat_map(|p| p.points())));
        Ok((build_set(people, canvas, normalized), normalized))
    }

    /// Frames of a file that states no canvas: the given canvas, else one canvas just large
    /// enough for the points of every frame (the frames of one video share a size).
    fn finish_without_canvas(
        &self,
        frames: Vec<Vec<RawPerson>>,
    ) -> Result<(Vec<PoseSet>, bool, CanvasSource), PoseError> {
        let all_points = || frames.iter().flatten().flat_map(|p| p.points());
        if let Some(c) = self.opts.canvas {
            let normalized = self
                .opts
                .normalized
                .unwrap_or_else(|| looks_normalized(all_points()));
            let sets = frames
                .into_iter()
                .map(|people| build_set(people, c, normalized))
                .collect();
            return Ok((sets, normalized, CanvasSource::Given));
        }
        if self.opts.normalized == Some(true) {
            return Err(
                self.unsupported("normalised coordinates need a canvas size: pass --canvas WxH")
            );
        }
        let (mut mx, mut my) = (0.0f64, 0.0f64);
        for p in all_points() {
            mx = mx.max(p.x);
            my = my.max(p.y);
        }
        let side = |m: f64| (m.floor() as u64 + 1).clamp(1, MAX_CANVAS_SIDE) as u32;
        let canvas = (side(mx), side(my));
        let sets = frames
            .into_iter()
            .map(|people| build_set(people, canvas, false))
            .collect();
        Ok((sets, false, CanvasSource::PointExtent))
    }

    fn coco(&self, obj: &Map<String, Value>) -> Result<PoseDocument, PoseError> {
        // Categories: refuse animal keypoint sets (AP-10K uses the COCO layout).
        let mut person_ids: Vec<i64> = Vec::new();
        let mut others: Vec<String> = Vec::new();
        if let Some(cats) = obj.get("categories").and_then(|c| c.as_array()) {
            for c in cats {
                let name = c.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                let id = c.get("id").and_then(|n| n.as_i64()).unwrap_or(-1);
                if name == "person" {
                    person_ids.push(id);
                } else if c.get("keypoints").is_some() {
                    others.push(name.to_string());
                }
            }
            if person_ids.is_empty() {
                let what = if others.is_empty() {
                    "no `person` category".to_string()
                } else {
                    others.truncate(5);
                    format!(
                        "keypoint categories [{}] (animal keypoints such as AP-10K) and no `person`",
                        others.join(", ")
                    )
                };
                return Err(self.unsupported(&format!(
                    "found COCO annotations with {what}; SkeleGuide edits human poses only"
                )));
            }
        }
        let images = match obj.get("images") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(self.err(
                    "images",
                    "is missing or not a list; COCO keypoint files list their images",
                ))
            }
        };
        let mut index = std::collections::HashMap::new();
        let mut frames = Vec::with_capacity(images.len());
        let mut names = Vec::with_capacity(images.len());
        for (i, im) in images.iter().enumerate() {
            let f = format!("images[{i}]");
            let o = im
                .as_object()
                .ok_or_else(|| self.err(&f, "expected an image object"))?;
            let id = o
                .get("id")
                .and_then(|v| v.as_i64())
                .ok_or_else(|| self.err(&join(&f, "id"), "is missing or not an integer"))?;
            let w = self.canvas_side(o.get("width"), &join(&f, "width"))?;
            let h = self.canvas_side(o.get("height"), &join(&f, "height"))?;
            index.insert(id, i);
            frames.push(PoseSet::new(w, h));
            names.push(
                o.get("file_name")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            );
        }
        let anns = match obj.get("annotations") {
            Some(Value::Array(a)) => a.as_slice(),
            None => &[],
            Some(v) => {
                return Err(self.err(
                    "annotations",
                    format!("is a {}, expected a list", kind_of(v)),
                ))
            }
        };
        for (i, a) in anns.iter().enumerate() {
            let f = format!("annotations[{i}]");
            let o = a
                .as_object()
                .ok_or_else(|| self.err(&f, "expected an annotation object"))?;
            if let (Some(cat), false) = (
                o.get("category_id").and_then(|v| v.as_i64()),
                person_ids.is_empty(),
            ) {
                if !person_ids.contains(&cat) {
                    continue;
                }
            }
            let Some(kp) = o.get("keypoints") else {
                continue;
            };
            let img = o
                .get("image_id")
                .and_then(|v| v.as_i64())
                .ok_or_else(|| self.err(&join(&f, "image_id"), "is missing or not an integer"))?;
            let &fi = index.get(&img).ok_or_else(|| {
                self.err(&join(&f, "image_id"), format!("{img} is not in `images`"))
            })?;
            let kf = join(&f, "keypoints");
            let pts = self.points(kp, &kf)?.unwrap_or_default();
            if pts.len() != 17 {
                return Err(self.err(
                    &kf,
                    format!("{} points; COCO person keypoints have 17", pts.len()),
                ));
            }
            // COCO: v = 0 is "not labelled"; v = 1 (occluded) and v = 2 (visible) are both present.
            let labelled: Vec<Option<Keypoint>> = pts
                .iter()
                .map(|p| {
                    p.map(|k| Keypoint {
                        confidence: 1.0,
                        ..k
                    })
                })
                .collect();
            let joints = body18_from_coco17(&labelled);
            let wb = |k: &str, n: usize| -> Result<Option<PointList>, PoseError> {
                match o.get(k) {
                    None => Ok(None),
                    Some(v) => {
                        let p = self.points(v, &join(&f, k))?.unwrap_or_default();
                        if p.iter().all(|x| x.is_none()) {
                            Ok(None)
                        } else if p.len() != n {
                            Err(self.err(&join(&f, k), format!("{} points; expected {n}", p.len())))
                        } else {
                            Ok(Some(
                                p.into_iter()
                                    .map(|k| {
                                        k.map(|k| Keypoint {
                                            confidence: 1.0,
                                            ..k
                                        })
                                    })
                                    .collect(),
                            ))
                        }
                    }
                }
            };
            // COCO-WholeBody: hands map directly; the 68 face points get the two eyes appended.
            let hand_left = wb("lefthand_kpts", HAND_POINTS)?;
            let hand_right = wb("righthand_kpts", HAND_POINTS)?;
            let face = wb("face_kpts", 68)?.map(|mut f| {
                f.push(joints[joint::R_EYE]);
                f.push(joints[joint::L_EYE]);
                f
            });
            let person = Pose {
                joints,
                hand_left,
                hand_right,
                face,
            };
            if person.all_points().next().is_none() {
                continue; // crowd regions and unlabelled people carry no keypoints
            }
            let frame = &mut frames[fi];
            if frame.people.len() >= MAX_PEOPLE {
                return Err(self.err(&f, format!("image {img} has more than {MAX_PEOPLE} people")));
            }
            frame.people.push(person);
        }
        Ok(PoseDocument {
            format: PoseFormat::CocoKeypoints,
            frames,
            frame_names: names,
            normalized: false,
            canvas_source: CanvasSource::File,
            warnings: Vec::new(),
        })
    }
}

fn non_empty(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty())
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// Normalised when every present coordinate has magnitude at most 1.5: pixel files have their
/// people spread over hundreds of pixels, while normalised files (DWPose feet included) stay
/// near [0, 1].
fn looks_normalized<'a>(points: impl Iterator<Item = &'a Keypoint>) -> bool {
    let mut any = false;
    for p in points {
        any = true;
        if p.x.abs() > 1.5 || p.y.abs() > 1.5 {
            return false;
        }
    }
    any
}

fn build_set(people: Vec<RawPerson>, (w, h): (u32, u32), normalized: bool) -> PoseSet {
    let (sx, sy) = if normalized {
        (w as f64, h as f64)
    } else {
        (1.0, 1.0)
    };
    let scale = |k: Keypoint| Keypoint {
        x: k.x * sx,
        y: k.y * sy,
        confidence: k.confidence,
    };
    let scale_list =
        |l: Option<PointList>| l.map(|l| l.into_iter().map(|k| k.map(scale)).collect());
    let people = people
        .into_iter()
        .map(|p| {
            let mut joints = [None; NUM_JOINTS];
            for (d, s) in joints.iter_mut().zip(p.body) {
                *d = s.map(scale);
            }
            Pose {
                joints,
                hand_left: scale_list(p.hand_left),
                hand_right: scale_list(p.hand_right),
                face: scale_list(p.face),
            }
        })
        .collect();
    PoseSet {
        width: w,
        height: h,
        people,
    }
}

/// Serialises frames in the ControlNet form: one frame as an object, several as a
/// ComfyUI `POSE_KEYPOINT` list.
pub fn to_json(frames: &[PoseSet], opts: ExportOptions) -> String {
    let mut s =
        String::with_capacity(256 + frames.iter().map(|f| f.people.len() * 600).sum::<usize>());
    if frames.len() == 1 {
        write_frame(&mut s, &frames[0], opts);
    } else {
        s.push('[');
        for (i, f) in frames.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('\n');
            write_frame(&mut s, f, opts);
        }
        s.push_str("\n]");
    }
    s.push('\n');
    s
}

fn write_frame(s: &mut String, set: &PoseSet, opts: ExportOptions) {
    let (sx, sy) = if opts.normalized {
        (1.0 / set.width as f64, 1.0 / set.height as f64)
    } else {
        (1.0, 1.0)
    };
    s.push_str("{\"people\": [");
    for (i, p) in set.people.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("\n  {\"pose_keypoints_2d\": ");
        write_points(s, p.joints.iter(), sx, sy, opts);
        for (key, list) in [
            ("face_keypoints_2d", &p.face),
            ("hand_left_keypoints_2d", &p.hand_left),
            ("hand_right_keypoints_2d", &p.hand_right),
        ] {
            let _ = write!(s, ", \"{key}\": ");
            match list {
                Some(l) => write_points(s, l.iter(), sx, sy, opts),
                None => s.push_str("null"),
            }
        }
        s.push('}');
    }
    if !set.people.is_empty() {
        s.push('\n');
    }
    let _ = write!(
        s,
        "], \"canvas_width\": {}, \"canvas_height\": {}}}",
        set.width, set.height
    );
}

fn write_points<'a>(
    s: &mut String,
    pts: impl Iterator<Item = &'a Option<Keypoint>>,
    sx: f64,
    sy: f64,
    opts: ExportOptions,
) {
    s.push('[');
    for (i, p) in pts.enumerate() {
        if i > 0 {
            s.push(',');
        }
        match p {
            Some(k) => {
                let c = if opts.keep_confidence {
                    k.confidence
                } else {
                    1.0
                };
                let _ = write!(s, "{},{},{}", num(k.x * sx), num(k.y * sy), num(c));
            }
            None => s.push_str("0,0,0"),
        }
    }
    s.push(']');
}

/// Shortest representation that reads back to the same f64; `1.0` rather than `1`.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Writes frames to `path` atomically.
pub fn write_pose_file(
    path: &Path,
    frames: &[PoseSet],
    opts: ExportOptions,
) -> Result<(), PoseError> {
    crate::fsutil::write_atomic(path, to_json(frames, opts).as_bytes())
}

/// Body-18 from COCO's 17 body points (in COCO order, at the start of `pts`): the neck, which
/// COCO lacks, is the shoulders' midpoint with the lower of their confidences.
fn body18_from_coco17(pts: &[Option<Keypoint>]) -> [Option<Keypoint>; NUM_JOINTS] {
    let mut body = [None; NUM_JOINTS];
    for (dst, src) in body.iter_mut().zip(COCO17_TO_OP18) {
        if let Some(s) = src {
            *dst = pts[s];
        }
    }
    if let (Some(l), Some(r)) = (pts[COCO17_LEFT_SHOULDER], pts[COCO17_RIGHT_SHOULDER]) {
        body[joint::NECK] = Some(Keypoint {
            x: (l.x + r.x) / 2.0,
            y: (l.y + r.y) / 2.0,
            confidence: l.confidence.min(r.confidence),
        });
    }
    body
}
