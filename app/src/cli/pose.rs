//! `skeleguide pose convert | draw | info`.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use skeleguide_engine::imageio;
use skeleguide_engine::pose::{
    self, ExportOptions, ImportOptions, PoseDocument, PoseSet, JOINT_NAMES,
};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum PoseCommand {
    /// Convert any supported pose file (CMU OpenPose, ControlNet, ComfyUI POSE_KEYPOINT, COCO,
    /// the web editors' {width, height, keypoints}, DWPose 133-point predictions) to the
    /// ControlNet form that the editors read.
    Convert {
        /// Input pose file.
        input: PathBuf,
        /// Output JSON file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Write coordinates normalised to [0, 1] instead of pixels.
        #[arg(long)]
        normalized: bool,
        /// Canvas size WxH for files that carry none (CMU OpenPose).
        #[arg(long, value_parser = parse_canvas)]
        canvas: Option<(u32, u32)>,
        /// Write real confidences instead of 1.0 (ControlNet tools drop points with c < 1).
        #[arg(long)]
        keep_confidence: bool,
    },
    /// Draw the layout (ControlNet OpenPose rendering) of a pose file over a scene or on black.
    Draw {
        /// Pose file.
        #[arg(long)]
        pose: PathBuf,
        /// Scene image (PNG or JPEG); without it the layout is drawn on black at the pose's canvas size.
        #[arg(long)]
        scene: Option<PathBuf>,
        /// Output PNG.
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the person mask (limbs and joints, dilated) as a PNG.
        #[arg(long)]
        mask_out: Option<PathBuf>,
        /// Dilation of the person mask, in pixels.
        #[arg(long, default_value_t = 8)]
        mask_margin: u32,
        /// Canvas size WxH for files that carry none (CMU OpenPose); defaults to the scene's size.
        #[arg(long, value_parser = parse_canvas)]
        canvas: Option<(u32, u32)>,
        /// Which frame of a multi-frame file (ComfyUI list, COCO) to draw.
        #[arg(long, default_value_t = 0)]
        frame: usize,
        /// Also draw the hands the file has (ControlNet's full OpenPose annotator: coloured
        /// bones, blue points).
        #[arg(long)]
        hands: bool,
        /// Also draw the faces the file has (white points).
        #[arg(long)]
        face: bool,
    },
    /// Describe a pose file: variant, canvas, people, present joints, points outside the canvas.
    Info {
        /// Pose file.
        input: PathBuf,
        /// Canvas size WxH for files that carry none (CMU OpenPose).
        #[arg(long, value_parser = parse_canvas)]
        canvas: Option<(u32, u32)>,
    },
}

/// Parses `WxH` (e.g. `768x512`).
pub fn parse_canvas(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WxH (e.g. 768x512)"))?;
    let side = |v: &str| -> Result<u32, String> {
        let n: u32 = v
            .trim()
            .parse()
            .map_err(|_| format!("`{v}` in `{s}` is not a whole number of pixels"))?;
        if n == 0 || n as u64 > pose::io::MAX_CANVAS_SIDE {
            return Err(format!(
                "`{v}` in `{s}` must be between 1 and {}",
                pose::io::MAX_CANVAS_SIDE
            ));
        }
        Ok(n)
    };
    Ok((side(w)?, side(h)?))
}

pub fn run(cmd: PoseCommand) -> Result<()> {
    match cmd {
        PoseCommand::Convert {
            input,
            output,
            normalized,
            canvas,
            keep_confidence,
        } => {
            let doc = read(&input, canvas)?;
            ensure_writable(&output)?;
            let opts = ExportOptions {
                normalized,
                keep_confidence,
            };
            pose::write_pose_file(&output, &doc.frames, opts)?;
            report_warnings(&doc);
            if normalized && doc.frames.iter().any(beyond_unit_when_normalized) {
                // those tools read a list with any |value| above 1 as pixels
                eprintln!(
                    "warning: a normalised coordinate is above 1 or below -1 (a point off the \
                     canvas); sd-webui-openpose-editor and ComfyUI read such a file as pixels: \
                     convert without --normalized for them"
                );
            }
            let people: usize = doc.frames.iter().map(|f| f.people.len()).sum();
            eprintln!(
                "{} ({}) -> {}: {} frame(s), {} people",
                input.display(),
                doc.format.describe(),
                output.display(),
                doc.frames.len(),
                people
            );
            Ok(())
        }
        PoseCommand::Draw {
            pose: pose_path,
            scene,
            output,
            mask_out,
            mask_margin,
            canvas,
            frame,
            hands,
            face,
        } => {
            let scene_img = scene.as_deref().map(imageio::read_rgb).transpose()?;
            let canvas = canvas.or(scene_img.as_ref().map(|s| (s.width(), s.height())));
            let doc = read(&pose_path, canvas)?;
            let set = select_frame(&doc, frame, &pose_path)?;
            ensure_writable(&output)?;
            if let Some(m) = &mask_out {
                ensure_writable(m)?;
            }
            let parts = pose::LayoutParts { hands, face };
            let layout = pose::draw_layout_parts(scene_img.as_ref(), set, parts);
            imageio::write_png_rgb(&output, &layout)?;
            if let Some(m) = &mask_out {
                let sized = match &scene_img {
                    Some(s) if (s.width(), s.height()) != (set.width, set.height) => {
                        set.resized(s.width(), s.height())
                    }
                    _ => set.clone(),
                };
                if let Err(e) = imageio::write_png_gray(m, &pose::person_mask(&sized, mask_margin))
                {
                    let _ = std::fs::remove_file(&output);
                    return Err(e.into());
                }
            }
            report_warnings(&doc);
            Ok(())
        }
        PoseCommand::Info { input, canvas } => {
            let doc = read(&input, canvas)?;
            print!("{}", describe(&input, &doc));
            report_warnings(&doc);
            Ok(())
        }
    }
}

fn read(path: &Path, canvas: Option<(u32, u32)>) -> Result<PoseDocument> {
    let opts = ImportOptions {
        canvas,
        normalized: None,
    };
    Ok(pose::read_pose_file(path, &opts)?)
}

fn select_frame<'a>(doc: &'a PoseDocument, frame: usize, path: &Path) -> Result<&'a PoseSet> {
    match doc.frames.get(frame) {
        Some(f) => Ok(f),
        None => bail!(
            "{}: --frame {frame}: the file has {} frame(s)",
            path.display(),
            doc.frames.len()
        ),
    }
}

/// Fails early, before any output is written, when `path` cannot be created.
pub(crate) fn ensure_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() {
        bail!("{}: cannot write: is a directory", path.display());
    }
    let meta = std::fs::metadata(dir).with_context(|| {
        format!(
            "{}: cannot write: directory {} does not exist",
            path.display(),
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "{}: cannot write: {} is not a directory",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Whether a point of `set`, normalised, has a coordinate of magnitude above 1.
fn beyond_unit_when_normalized(set: &PoseSet) -> bool {
    let (w, h) = (set.width as f64, set.height as f64);
    set.people
        .iter()
        .flat_map(|p| p.all_points())
        .any(|k| (k.x / w).abs() > 1.0 || (k.y / h).abs() > 1.0)
}

fn report_warnings(doc: &PoseDocument) {
    for w in &doc.warnings {
        eprintln!("warning: {w}");
    }
}

fn describe(path: &Path, doc: &PoseDocument) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "file:     {}", path.display());
    let _ = writeln!(s, "variant:  {}", doc.format.describe());
    let coords = if doc.normalized {
        "normalised (scaled to pixels)"
    } else {
        "pixels"
    };
    let _ = writeln!(s, "coords:   {coords}");
    let _ = writeln!(s, "frames:   {}", doc.frames.len());
    for (i, f) in doc.frames.iter().enumerate() {
        let name = doc
            .frame_names
            .get(i)
            .cloned()
            .flatten()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let src = match doc.canvas_source {
            pose::io::CanvasSource::File => "from the file",
            pose::io::CanvasSource::Given => "given",
            pose::io::CanvasSource::PointExtent => {
                "the points' extent; pass --canvas WxH for the real size"
            }
        };
        let _ = writeln!(
            s,
            "frame {i}{name}: canvas {}x{} ({src}), {} people",
            f.width,
            f.height,
            f.people.len()
        );
        for (p, person) in f.people.iter().enumerate() {
            let missing: Vec<&str> = (0..JOINT_NAMES.len())
                .filter(|&j| person.joints[j].is_none())
                .map(|j| JOINT_NAMES[j])
                .collect();
            let mut extras = Vec::new();
            if person.hand_left.is_some() {
                extras.push("left hand");
            }
            if person.hand_right.is_some() {
                extras.push("right hand");
            }
            if person.face.is_some() {
                extras.push("face");
            }
            let _ = write!(
                s,
                "  person {p}: {}/18 joints present",
                person.present_count()
            );
            if !missing.is_empty() {
                let _ = write!(s, "; missing: {}", missing.join(", "));
            }
            if !extras.is_empty() {
                let _ = write!(s, "; with {}", extras.join(", "));
            }
            s.push('\n');
        }
        let outside = f.points_outside();
        if outside.is_empty() {
            let _ = writeln!(s, "  points outside the canvas: none");
        } else {
            let total: usize = outside.iter().map(|o| o.count).sum();
            let _ = writeln!(s, "  points outside the canvas: {total}");
            // one line per person: the count of body joints first, then which points
            for p in 0..f.people.len() {
                let mine = || outside.iter().filter(|o| o.person == p);
                let joints = mine().filter(|o| o.body_joint).count();
                let what: Vec<&str> = mine().map(|o| o.what.as_str()).collect();
                if !what.is_empty() {
                    let _ = writeln!(
                        s,
                        "    person {p}: {joints} of 18 joints outside the canvas: {}",
                        what.join(", ")
                    );
                }
            }
        }
    }
    s
}
