//! Real data: a manifest data set from COCO keypoint annotations.
//!
//! Each COCO image with at least one annotated person becomes one record:
//! - `image`: the photo, linked (or copied, across file systems) from `--images` into
//!   `OUT/images/`, so the data set reads only files inside its own folder;
//! - `background`: the same scene without the people, which must be supplied (`--backgrounds`,
//!   same file name as the image, or the same stem with a `.png`/`.jpg`/`.jpeg` extension),
//!   linked or copied into `OUT/backgrounds/`.
//!   Person removal (inpainting) is out of scope here: without a background the import refuses;
//! - `poses`: the people (COCO-17 → OpenPose-18 by the engine's importer), written as ControlNet
//!   JSON into `OUT/poses/`;
//! - `mask`: the engine's `person_mask` of the poses dilated by a sixteenth of the longest side,
//!   written into `OUT/mask/`;
//! - `prompt`: a caption from a COCO captions file (`--captions`, the first caption listed for
//!   the image), else a prompt from the person count ("a person", "two people", ...).
//!
//! Every image and background is checked (presence, readable header, equal sizes, the size the
//! annotations give) before anything is written; problems are listed with their files.

use super::synth::prepare_dir;
use super::DataError;
use serde_json::{json, Value};
use skeleguide_engine::pose::{
    person_mask, read_pose_file, write_pose_file, ExportOptions, ImportOptions, PoseFormat, PoseSet,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The mask margin is the longest image side divided by this.
pub const MASK_MARGIN_DIV: u32 = 16;
/// At most this many problems are listed in one error.
const MAX_LISTED: usize = 20;

#[derive(Clone, Debug)]
pub struct CocoImport {
    /// COCO keypoint annotation file (`person_keypoints_*.json`).
    pub annotations: PathBuf,
    /// Directory of the images named by the annotations' `file_name`.
    pub images: PathBuf,
    /// Directory of the person-free backgrounds (same file names).
    pub backgrounds: Option<PathBuf>,
    /// COCO captions file (`captions_*.json`).
    pub captions: Option<PathBuf>,
    /// Output data set directory.
    pub out: PathBuf,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportSummary {
    /// Records written.
    pub written: usize,
    /// Images skipped because no person in them has a labelled joint.
    pub skipped_no_people: usize,
    /// Records whose prompt came from the captions file.
    pub captioned: usize,
}

/// "a person", "two people", ...
pub fn count_prompt(n: usize) -> String {
    const WORDS: [&str; 9] = [
        "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    match n {
        0 => "an empty scene".into(),
        1 => "a person".into(),
        n if n <= 10 => format!("{} people", WORDS[n - 2]),
        n => format!("{n} people"),
    }
}

/// Reads a COCO captions file: file name → first caption listed for the image.
pub fn read_captions(path: &Path) -> Result<HashMap<String, String>, DataError> {
    let file = path.display().to_string();
    let bad = |field: &str, msg: &str| DataError::Invalid(format!("{file}: {field}: {msg}"));
    let limit = skeleguide_engine::limits::MAX_POSE_FILE_BYTES;
    let text = skeleguide_engine::fsutil::read_text_limited(path, limit)
        .map_err(|e| DataError::Invalid(format!("{file}: cannot read: {e}")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| DataError::Invalid(format!("{file}: malformed JSON: {e}")))?;
    let images = v
        .get("images")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("images", "is missing or not a list"))?;
    let anns = v
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("annotations", "is missing or not a list"))?;
    let mut names = HashMap::new();
    for (i, im) in images.iter().enumerate() {
        let id = im
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(&format!("images[{i}].id"), "is missing or not an integer"))?;
        let name = im.get("file_name").and_then(Value::as_str).ok_or_else(|| {
            bad(
                &format!("images[{i}].file_name"),
                "is missing or not a string",
            )
        })?;
        names.insert(id, name.to_string());
    }
    let mut out = HashMap::new();
    for (i, a) in anns.iter().enumerate() {
        let id = a.get("image_id").and_then(Value::as_i64).ok_or_else(|| {
            bad(
                &format!("annotations[{i}].image_id"),
                "is missing or not an integer",
            )
        })?;
        let caption = a.get("caption").and_then(Value::as_str).ok_or_else(|| {
            bad(
                &format!("annotations[{i}].caption"),
                "is missing or not a string",
            )
        })?;
        let name = names.get(&id).ok_or_else(|| {
            bad(
                &format!("annotations[{i}].image_id"),
                &format!("{id} is not in `images`"),
            )
        })?;
        let caption = caption.trim();
        if !caption.is_empty() {
            out.entry(name.clone())
                .or_insert_with(|| caption.to_string());
        }
    }
    Ok(out)
}

/// The background for image `name`: the same name, else the same stem as PNG or JPEG.
fn find_background(dir: &Path, name: &str) -> Option<PathBuf> {
    let exact = dir.join(name);
    if exact.is_file() {
        return Some(exact);
    }
    ["png", "jpg", "jpeg", "PNG", "JPG", "JPEG"]
        .iter()
        .map(|ext| exact.with_extension(ext))
        .find(|p| p.is_file())
}

fn dims(p: &Path) -> Result<(u32, u32), String> {
    image::image_dimensions(p)
        .map_err(|e| format!("{}: cannot read the image header: {e}", p.display()))
}

/// `src` at `dst`: a hard link where the file system allows, else a copy.
fn link_or_copy(src: &Path, dst: &Path) -> Result<(), DataError> {
    if dst.exists() {
        std::fs::remove_file(dst).map_err(|e| DataError::Output {
            path: dst.display().to_string(),
            msg: e.to_string(),
        })?;
    }
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst)
        .map(|_| ())
        .map_err(|e| DataError::Output {
            path: dst.display().to_string(),
            msg: format!("cannot copy {}: {e}", src.display()),
        })
}

/// `OUT`-relative name of record `id`'s copy of `src` in `folder`, keeping its extension.
fn local_name(folder: &str, id: &str, src: &Path) -> String {
    match src.extension() {
        Some(ext) => format!("{folder}/{id}.{}", ext.to_string_lossy()),
        None => format!("{folder}/{id}"),
    }
}

/// A file-system-safe record id from an image file name.
fn record_id(name: &str) -> String {
    let stem = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Planned {
    id: String,
    image: PathBuf,
    background: PathBuf,
    poses: PoseSet,
    prompt: String,
    captioned: bool,
}

/// Builds the data set. `progress` is called once per record written.
pub fn import_coco(opts: &CocoImport, progress: &dyn Fn()) -> Result<ImportSummary, DataError> {
    let ann_file = opts.annotations.display().to_string();
    let Some(bg_dir) = &opts.backgrounds else {
        return Err(DataError::Invalid(format!(
            "--backgrounds is required: SkeleGuide trains on (scene without people, photo) pairs and \
             does not remove people itself; give a directory of person-free backgrounds (e.g. \
             inpainted) with the same file names as the images in {}",
            opts.images.display()
        )));
    };
    if !bg_dir.is_dir() {
        return Err(DataError::Invalid(format!(
            "--backgrounds {}: is not a directory",
            bg_dir.display()
        )));
    }
    if !opts.images.is_dir() {
        return Err(DataError::Invalid(format!(
            "--images {}: is not a directory",
            opts.images.display()
        )));
    }
    let doc = read_pose_file(&opts.annotations, &ImportOptions::default())?;
    if doc.format != PoseFormat::CocoKeypoints {
        return Err(DataError::Invalid(format!(
            "{ann_file}: is {}, not a COCO keypoint annotation file",
            doc.format.describe()
        )));
    }
    let captions = match &opts.captions {
        Some(c) => Some(read_captions(c)?),
        None => None,
    };
    let mut problems = Vec::new();
    let mut plan = Vec::new();
    let mut skipped = 0;
    let mut ids = HashMap::new();
    for (i, (frame, name)) in doc.frames.iter().zip(&doc.frame_names).enumerate() {
        let mut poses = frame.clone();
        poses.people.retain(|p| p.present_count() > 0);
        if poses.people.is_empty() {
            skipped += 1;
            continue;
        }
        let Some(name) = name else {
            problems.push(format!("{ann_file}: images[{i}].file_name: missing"));
            continue;
        };
        let image = match super::path_inside(&opts.images, name) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{ann_file}: images[{i}].file_name: {e}"));
                continue;
            }
        };
        if !image.is_file() {
            problems.push(format!("{}: the image does not exist", image.display()));
            continue;
        }
        let (iw, ih) = match dims(&image) {
            Ok(d) => d,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if (iw, ih) != (poses.width, poses.height) {
            problems.push(format!(
                "{}: the image is {iw}x{ih} but {ann_file} (images[{i}] width/height) says {}x{}",
                image.display(),
                poses.width,
                poses.height
            ));
            continue;
        }
        let Some(background) = find_background(bg_dir, name) else {
            problems.push(format!(
                "{}: missing background for {} (same name, or the same stem as .png/.jpg)",
                bg_dir.join(name).display(),
                image.display()
            ));
            continue;
        };
        match dims(&background) {
            Err(e) => problems.push(e),
            Ok((bw, bh)) if (bw, bh) != (iw, ih) => problems.push(format!(
                "{}: the background is {bw}x{bh} but the image {} is {iw}x{ih}",
                background.display(),
                image.display()
            )),
            Ok(_) => {
                let caption = captions.as_ref().and_then(|c| c.get(name.as_str()));
                let mut id = record_id(name);
                let n = ids.entry(id.clone()).or_insert(0usize);
                *n += 1;
                if *n > 1 {
                    id = format!("{id}-{n}");
                }
                plan.push(Planned {
                    id,
                    image,
                    background,
                    prompt: caption
                        .cloned()
                        .unwrap_or_else(|| count_prompt(poses.people.len())),
                    captioned: caption.is_some(),
                    poses,
                });
            }
        }
    }
    if !problems.is_empty() {
        let total = problems.len();
        problems.truncate(MAX_LISTED);
        let mut msg = problems.join("\n");
        if total > MAX_LISTED {
            msg.push_str(&format!("\n... and {} more problems", total - MAX_LISTED));
        }
        return Err(DataError::Invalid(msg));
    }
    if plan.is_empty() {
        return Err(DataError::Invalid(format!(
            "{ann_file}: no image has an annotated person with a labelled joint"
        )));
    }
    prepare_dir(&opts.out)?;
    prepare_dir(&opts.out.join("poses"))?;
    prepare_dir(&opts.out.join("mask"))?;
    prepare_dir(&opts.out.join("images"))?;
    prepare_dir(&opts.out.join("backgrounds"))?;
    let mut manifest = String::new();
    let mut captioned = 0;
    for p in &plan {
        let pose_rel = format!("poses/{}.json", p.id);
        let mask_rel = format!("mask/{}.png", p.id);
        write_pose_file(
            &opts.out.join(&pose_rel),
            std::slice::from_ref(&p.poses),
            ExportOptions::default(),
        )?;
        let margin = (p.poses.width.max(p.poses.height) / MASK_MARGIN_DIV).max(1);
        let mask = person_mask(&p.poses, margin);
        skeleguide_engine::imageio::write_png_gray(&opts.out.join(&mask_rel), &mask)?;
        let image_rel = local_name("images", &p.id, &p.image);
        let background_rel = local_name("backgrounds", &p.id, &p.background);
        link_or_copy(&p.image, &opts.out.join(&image_rel))?;
        link_or_copy(&p.background, &opts.out.join(&background_rel))?;
        let line = json!({
            "id": p.id,
            "background": background_rel,
            "image": image_rel,
            "poses": pose_rel,
            "mask": mask_rel,
            "prompt": p.prompt,
            "source": "coco",
            "count": p.poses.people.len(),
        });
        manifest.push_str(&line.to_string());
        manifest.push('\n');
        captioned += p.captioned as usize;
        progress();
    }
    skeleguide_engine::fsutil::write_atomic(
        &opts.out.join(super::manifest::MANIFEST_FILE),
        manifest.as_bytes(),
    )?;
    Ok(ImportSummary {
        written: plan.len(),
        skipped_no_people: skipped,
        captioned,
    })
}
