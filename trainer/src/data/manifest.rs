//! Manifest data sets: `manifest.jsonl`, one JSON object per line, with at least
//! `{background, image, poses, prompt}` and optionally `mask` (and `layout`, `id`, `facts`, ...).
//! Paths are relative to the manifest's directory and must stay inside it: an absolute path, a `..`
//! that climbs out, or a link that leads outside is refused with the record's line.
//! The synthetic generator and real-data importers write this format; the trainer reads it.
//!
//! [`Manifest::open`] validates every record before anything is trained: each line must be a
//! JSON object whose required fields are non-empty strings naming existing files. Every problem
//! is reported with the manifest file, the line and the field.

use image::{GrayImage, RgbImage};
use serde_json::{Map, Value};
use skeleguide_engine::pose::{read_pose_file, ImportOptions, PoseSet};
use std::path::{Path, PathBuf};

/// The manifest's file name inside a data set directory.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// At most this many problems are listed in one error.
const MAX_LISTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: cannot read: {msg}")]
    Read { file: String, msg: String },
    /// One or more invalid records; each entry is "file:line: field: problem".
    #[error("{}", format_problems(.problems, *.total))]
    Invalid { problems: Vec<String>, total: usize },
    #[error("{file}: {msg}")]
    Load { file: String, msg: String },
}

fn format_problems(p: &[String], total: usize) -> String {
    let mut s = p.join("\n");
    if total > p.len() {
        s.push_str(&format!("\n... and {} more problems", total - p.len()));
    }
    s
}

/// One validated record. Paths are resolved against the manifest's directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// 1-based line in the manifest.
    pub line: usize,
    /// The record's `id`, or `line-N` when it has none.
    pub id: String,
    pub background: PathBuf,
    pub image: PathBuf,
    pub poses: PathBuf,
    pub prompt: String,
    pub mask: Option<PathBuf>,
    pub layout: Option<PathBuf>,
    /// Every field of the line as written (e.g. the synthetic `facts`).
    pub fields: Map<String, Value>,
}

/// A record's files, loaded.
#[derive(Clone, Debug)]
pub struct Sample {
    pub background: RgbImage,
    pub image: RgbImage,
    pub poses: PoseSet,
    pub prompt: String,
    pub mask: Option<GrayImage>,
}

/// A validated manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// The directory relative paths are resolved from.
    pub root: PathBuf,
    pub records: Vec<Record>,
}

impl Manifest {
    /// Opens `path`: a data set directory holding `manifest.jsonl`, or a `.jsonl` file itself.
    /// Every record is validated here; an error lists the problems (file, line, field).
    pub fn open(path: &Path) -> Result<Manifest, ManifestError> {
        let file = if path.is_dir() {
            path.join(MANIFEST_FILE)
        } else {
            path.to_path_buf()
        };
        let name = file.display().to_string();
        let limit = skeleguide_engine::limits::MAX_POSE_FILE_BYTES;
        let text = skeleguide_engine::fsutil::read_limited(&file, limit).map_err(|e| {
            ManifestError::Read {
                file: name.clone(),
                msg: e.to_string(),
            }
        })?;
        let text = String::from_utf8(text).map_err(|e| ManifestError::Read {
            file: name.clone(),
            msg: format!("not UTF-8 text ({e})"),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and validates the text of the manifest at `file` (whose folder the records'
    /// paths resolve in; nothing is opened).
    pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
        let name = file.display().to_string();
        let root = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut problems = Vec::new();
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            let line = if line_no == 1 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.is_empty() {
                continue;
            }
            match parse_record(line, line_no, &name, &root) {
                Ok(r) => records.push(r),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if records.is_empty() && problems.is_empty() {
            problems.push(format!("{name}: the manifest holds no records"));
        }
        if !problems.is_empty() {
            let total = problems.len();
            problems.truncate(MAX_LISTED);
            return Err(ManifestError::Invalid { problems, total });
        }
        Ok(Manifest {
            path: file.to_path_buf(),
            root,
            records,
        })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

fn parse_record(
    line: &str,
    line_no: usize,
    file: &str,
    root: &Path,
) -> Result<Record, Vec<String>> {
    let at = |field: &str, msg: &str| format!("{file}:{line_no}: {field}: {msg}");
    let value: Value = serde_json::from_str(line)
        .map_err(|e| vec![format!("{file}:{line_no}: malformed JSON: {e}")])?;
    let Value::Object(fields) = value else {
        return Err(vec![format!(
            "{file}:{line_no}: a record must be a JSON object"
        )]);
    };
    let mut problems = Vec::new();
    let mut path_field = |name: &str, required: bool| -> Option<PathBuf> {
        match fields.get(name) {
            None | Some(Value::Null) => {
                if required {
                    problems.push(at(name, "missing (required)"));
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                problems.push(at(name, "empty path"));
                None
            }
            Some(Value::String(s)) => {
                let full = match super::path_inside(root, s) {
                    Ok(f) => f,
                    Err(e) => {
                        problems.push(at(name, &e));
                        return None;
                    }
                };
                if !full.exists() {
                    problems.push(at(name, &format!("file {} does not exist", full.display())));
                    None
                } else if !full.is_file() {
                    problems.push(at(name, &format!("{} is not a file", full.display())));
                    None
                } else {
                    Some(full)
                }
            }
            Some(other) => {
                problems.push(at(
                    name,
                    &format!("expected a path string, found {}", kind(other)),
                ));
                None
            }
        }
    };
    let background = path_field("background", true);
    let image = path_field("image", true);
    let poses = path_field("poses", true);
    let mask = path_field("mask", false);
    let layout = path_field("layout", false);
    let prompt = match fields.get("prompt") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => {
            problems.push(at("prompt", "missing (required)"));
            None
        }
        Some(other) => {
            problems.push(at(
                "prompt",
                &format!("expected a string, found {}", kind(other)),
            ));
            None
        }
    };
    let id = match fields.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("line-{line_no}"),
    };
    match (background, image, poses, prompt) {
        (Some(background), Some(image), Some(poses), Some(prompt)) if problems.is_empty() => {
            Ok(Record {
                line: line_no,
                id,
                background,
                image,
                poses,
                prompt,
                mask,
                layout,
                fields,
            })
        }
        _ => Err(problems),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Record {
    /// Reads the record's images and poses, checking that their sizes agree.
    pub fn load(&self) -> Result<Sample, ManifestError> {
        let load_err = |p: &Path, msg: String| ManifestError::Load {
            file: p.display().to_string(),
            msg,
        };
        let rgb = |p: &Path| {
            skeleguide_engine::imageio::read_rgb(p).map_err(|e| ManifestError::Load {
                file: p.display().to_string(),
                msg: strip_file(&e.to_string(), p),
            })
        };
        let background = rgb(&self.background)?;
        let image = rgb(&self.image)?;
        if background.dimensions() != image.dimensions() {
            return Err(load_err(
                &self.image,
                format!(
                    "image is {}x{} but the background is {}x{}",
                    image.width(),
                    image.height(),
                    background.width(),
                    background.height()
                ),
            ));
        }
        let opts = ImportOptions {
            canvas: Some(image.dimensions()),
            ..Default::default()
        };
        let doc = read_pose_file(&self.poses, &opts).map_err(|e| ManifestError::Load {
            file: self.poses.display().to_string(),
            msg: strip_file(&e.to_string(), &self.poses),
        })?;
        let mut poses = doc
            .frames
            .into_iter()
            .next()
            .ok_or_else(|| load_err(&self.poses, "holds no pose frame".into()))?;
        if (poses.width, poses.height) != image.dimensions() {
            poses = poses.resized(image.width(), image.height());
        }
        let mask = match &self.mask {
            Some(m) => {
                let img = rgb(m)?;
                if img.dimensions() != image.dimensions() {
                    return Err(load_err(
                        m,
                        format!(
                            "mask is {}x{} but the image is {}x{}",
                            img.width(),
                            img.height(),
                            image.width(),
                            image.height()
                        ),
                    ));
                }
                Some(image::DynamicImage::ImageRgb8(img).into_luma8())
            }
            None => None,
        };
        Ok(Sample {
            background,
            image,
            poses,
            prompt: self.prompt.clone(),
            mask,
        })
    }
}

/// Engine errors already start with the file name; avoid saying it twice.
fn strip_file(msg: &str, p: &Path) -> String {
    let prefix = format!("{}: ", p.display());
    msg.strip_prefix(&prefix).unwrap_or(msg).to_string()
}
