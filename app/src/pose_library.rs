//! The user's pose library: a folder of named presets, each `NAME.json` (our pose JSON) with a
//! `NAME.png` thumbnail beside it. This is the folder logic only; the editor's menu and save
//! controls are in `gui::pose_library`.

use skeleguide_engine::pose::edit::{place_about, union_bbox};
use skeleguide_engine::pose::{
    draw_layout, read_pose_file, to_json, ExportOptions, ImportOptions, PoseSet,
};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming the library folder (overrides the platform's data folder).
pub const LIBRARY_ENV: &str = "SKELEGUIDE_POSE_LIBRARY";

/// Side of the square thumbnails, in pixels.
pub const THUMB_SIDE: u32 = 128;

/// Longest preset name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The library folder: `$SKELEGUIDE_POSE_LIBRARY`, else `skeleguide/poses` in the platform's
/// data folder. `None` when neither can be found (no home folder).
pub fn default_dir() -> Option<PathBuf> {
    dir_from(|k| std::env::var_os(k))
}

/// [`default_dir`] with the environment given as a lookup, so that it can be tested.
pub fn dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(d) = var(LIBRARY_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    // relative values are ignored, as the XDG base directory spec asks
    let abs = |k: &str| var(k).map(PathBuf::from).filter(|p| p.is_absolute());
    let data = if cfg!(windows) {
        abs("APPDATA")
    } else if cfg!(target_os = "macos") {
        abs("HOME").map(|h| h.join("Library/Application Support"))
    } else {
        abs("XDG_DATA_HOME").or_else(|| abs("HOME").map(|h| h.join(".local/share")))
    };
    data.map(|d| d.join("skeleguide").join("poses"))
}

/// A preset name usable as a file name on every platform: path separators, control characters
/// and the characters Windows forbids become `_`; leading and trailing dots, spaces and `_` are
/// dropped (no hidden files, no `..`); at most [`MAX_NAME_CHARS`] characters. `None` when
/// nothing is left.
pub fn sanitize_name(raw: &str) -> Option<String> {
    let replaced: String = raw
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let edge = |c: char| c == '.' || c == '_' || c.is_whitespace();
    let cut: String = replaced
        .trim_matches(edge)
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let mut name = cut.trim_end_matches(edge).to_string();
    if name.is_empty() {
        return None;
    }
    // Windows opens a device, not a file, for these names whatever the extension
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if device {
        name.push('_');
    }
    Some(name)
}

/// Whether `name` matches the search `query`: a case-insensitive substring; an empty query
/// matches everything.
pub fn matches(name: &str, query: &str) -> bool {
    name.to_lowercase().contains(&query.trim().to_lowercase())
}

/// `set`'s people fitted into a black `side`×`side` square (centred, a small margin kept) and
/// drawn by the layout rasteriser.
pub fn thumbnail(set: &PoseSet, side: u32) -> image::RgbImage {
    let mut fitted = PoseSet::new(side, side);
    if let Some(bbox) = union_bbox(set.people.iter().filter_map(|p| p.bbox())) {
        let margin = side as f64 * 0.08;
        let span = (bbox.2 - bbox.0).max(bbox.3 - bbox.1);
        let s = if span > 1e-9 {
            (side as f64 - 2.0 * margin) / span
        } else {
            1.0
        };
        let mid = side as f64 / 2.0;
        fitted.people = place_about(&set.people, bbox, s, (mid, mid));
    }
    draw_layout(None, &fitted)
}

/// The two files of preset `name` in `dir`: the pose JSON and the thumbnail.
pub fn files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.json")),
        dir.join(format!("{name}.png")),
    )
}

/// Saves `set` as preset `raw_name` (sanitised) in `dir`, created when missing: the JSON and its
/// thumbnail appear together or not at all. An existing preset of that name is replaced only
/// with `overwrite`. Returns the name used.
pub fn save(dir: &Path, raw_name: &str, set: &PoseSet, overwrite: bool) -> Result<String, String> {
    if raw_name.trim().is_empty() {
        return Err("Type a name for the preset first.".into());
    }
    let name = sanitize_name(raw_name)
        .ok_or_else(|| format!("“{}” is not usable as a preset name", raw_name.trim()))?;
    if set.people.is_empty() {
        return Err("There is nobody to save.".into());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot create the folder: {e}", dir.display()))?;
    let (json, png) = files(dir, &name);
    if !overwrite && (json.exists() || png.exists()) {
        return Err(format!(
            "“{name}” is already in the pose library; tick Overwrite to replace it"
        ));
    }
    let text = to_json(std::slice::from_ref(set), ExportOptions::default());
    let thumb = thumbnail(set, THUMB_SIDE);
    let png_bytes = skeleguide_engine::imageio::encode_png(
        thumb.as_raw(),
        thumb.width(),
        thumb.height(),
        image::ExtendedColorType::Rgb8,
    )?;
    skeleguide_engine::fsutil::write_all_or_none(&[
        (json.as_path(), text.as_bytes()),
        (png.as_path(), &png_bytes),
    ])
    .map_err(|e| e.to_string())?;
    Ok(name)
}

/// Removes preset `name` (its JSON and its thumbnail) from `dir`.
pub fn delete(dir: &Path, name: &str) -> Result<(), String> {
    let (json, png) = files(dir, name);
    std::fs::remove_file(&json).map_err(|e| format!("{}: cannot delete: {e}", json.display()))?;
    match std::fs::remove_file(&png) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: cannot delete: {e}", png.display()))
        }
        _ => Ok(()),
    }
}

/// One preset found in the folder.
#[derive(Clone, Debug)]
pub struct UserPreset {
    /// The file name without `.json`.
    pub name: String,
    /// The first frame of the file, on the canvas it was saved with.
    pub poses: PoseSet,
    /// `NAME.png`, or the pose drawn afresh when that is missing or unreadable.
    pub thumbnail: image::RgbImage,
}

/// What [`scan`] found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// The usable presets, sorted by name (case-insensitive).
    pub presets: Vec<UserPreset>,
    /// The `.json` files that could not be used: (file name, why, naming the file).
    pub skipped: Vec<(String, String)>,
}

impl Scan {
    /// One status line naming every skipped file of the library in `dir`; `None` when nothing
    /// was skipped.
    pub fn skipped_message(&self, dir: &Path) -> Option<String> {
        let n = self.skipped.len();
        let files = if n == 1 {
            "a file".to_string()
        } else {
            format!("{n} files")
        };
        (n > 0).then(|| {
            let why: Vec<&str> = self.skipped.iter().map(|(_, w)| w.as_str()).collect();
            format!(
                "Skipped {files} in the pose library {}: {}",
                dir.display(),
                why.join("; ")
            )
        })
    }
}

/// Reads every `*.json` preset in `dir` (hidden files aside). A missing folder is an empty
/// library; a file that is not a usable pose is listed in [`Scan::skipped`], never an error.
pub fn scan(dir: &Path) -> Result<Scan, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(e) => return Err(format!("{}: cannot list the folder: {e}", dir.display())),
    };
    let mut scan = Scan::default();
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if !is_json || file.starts_with('.') {
            continue;
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let poses = match read_pose_file(&path, &ImportOptions::default()) {
            Ok(doc) => doc.frames.into_iter().next(),
            Err(e) => {
                // the message names the folder once; each file by its name
                let why = e.to_string().replace(&path.display().to_string(), &file);
                scan.skipped.push((file, why));
                continue;
            }
        };
        let Some(poses) = poses.filter(|p| !p.people.is_empty()) else {
            let why = format!("{file}: holds no people");
            scan.skipped.push((file, why));
            continue;
        };
        let thumbnail =
            read_thumbnail(&files(dir, &name).1).unwrap_or_else(|| thumbnail(&poses, THUMB_SIDE));
        scan.presets.push(UserPreset {
            name,
            poses,
            thumbnail,
        });
    }
    scan.presets
        .sort_by(|a, b| (a.name.to_lowercase(), &a.name).cmp(&(b.name.to_lowercase(), &b.name)));
    scan.skipped.sort();
    Ok(scan)
}

/// A thumbnail file, shrunk to [`THUMB_SIDE`] when it is larger; `None` when it is unusable.
fn read_thumbnail(path: &Path) -> Option<image::RgbImage> {
    if !path.is_file() {
        return None;
    }
    let img = skeleguide_engine::imageio::read_rgb(path).ok()?;
    if img.width().max(img.height()) <= THUMB_SIDE {
        return Some(img);
    }
    let s = THUMB_SIDE as f64 / img.width().max(img.height()) as f64;
    let side = |v: u32| ((v as f64 * s).round() as u32).max(1);
    Some(image::imageops::thumbnail(
        &img,
        side(img.width()),
        side(img.height()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skeleguide_engine::pose::edit::default_person;

    #[test]
    fn names_lose_separators_leading_dots_and_excess_length() {
        assert_eq!(sanitize_name("../escape").as_deref(), Some("escape"));
        assert_eq!(sanitize_name("a/b\\c").as_deref(), Some("a_b_c"));
        assert_eq!(sanitize_name("  .hidden ").as_deref(), Some("hidden"));
        assert_eq!(sanitize_name("what? *now*").as_deref(), Some("what_ _now"));
        assert_eq!(
            sanitize_name("Sitting (left)").as_deref(),
            Some("Sitting (left)")
        );
        assert_eq!(sanitize_name("con").as_deref(), Some("con_"));
        assert_eq!(sanitize_name("lpt1.x").as_deref(), Some("lpt1.x_"));
        assert_eq!(sanitize_name("console").as_deref(), Some("console"));
        for empty in ["", "  ", "..", "../..", "/"] {
            assert_eq!(sanitize_name(empty), None, "{empty:?}");
        }
        let long = sanitize_name(&"é".repeat(200)).unwrap();
        assert_eq!(long.chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn search_is_a_case_insensitive_substring() {
        assert!(matches("Jumping Jack", "jack"));
        assert!(matches("Jumping Jack", " PING "));
        assert!(matches("anything", ""));
        assert!(!matches("Jumping Jack", "sit"));
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn the_folder_comes_from_the_variable_then_xdg_then_home() {
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
            move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.into())
        }
        let lib = [
            (LIBRARY_ENV, "lib"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir_from(env(&lib)), Some(PathBuf::from("lib")));
        let xdg = [(LIBRARY_ENV, ""), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(
            dir_from(env(&xdg)),
            Some(PathBuf::from("/x/skeleguide/poses"))
        );
        let home = [("XDG_DATA_HOME", "relative"), ("HOME", "/h")];
        assert_eq!(
            dir_from(env(&home)),
            Some(PathBuf::from("/h/.local/share/skeleguide/poses"))
        );
        assert_eq!(dir_from(env(&[])), None);
    }

    #[test]
    fn a_saved_preset_scans_back_and_a_second_save_needs_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("new/poses");
        let mut set = PoseSet::new(300, 200);
        set.people.push(default_person((150.0, 100.0), 150.0));
        assert_eq!(save(&lib, "Tall one", &set, false).unwrap(), "Tall one");
        let err = save(&lib, "Tall one", &set, false).unwrap_err();
        assert!(err.contains("Overwrite"), "{err}");
        save(&lib, "Tall one", &set, true).unwrap();
        std::fs::write(lib.join("broken.json"), "{ nope").unwrap();
        std::fs::write(lib.join(".hidden.json"), "{ nope").unwrap();
        std::fs::write(lib.join("notes.txt"), "not a preset").unwrap();
        let scan = scan(&lib).unwrap();
        assert_eq!(scan.presets.len(), 1);
        assert_eq!(scan.presets[0].name, "Tall one");
        assert_eq!(scan.presets[0].poses, set);
        assert_eq!(
            scan.presets[0].thumbnail.dimensions(),
            (THUMB_SIDE, THUMB_SIDE)
        );
        assert_eq!(scan.skipped.len(), 1);
        let message = scan.skipped_message(&lib).unwrap();
        assert!(message.starts_with("Skipped a file in"), "{message}");
        assert!(
            message.contains(": broken.json: malformed JSON"),
            "{message}"
        );
        delete(&lib, "Tall one").unwrap();
        assert!(std::fs::read_dir(&lib)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("Tall")));
    }

    #[test]
    fn a_missing_folder_is_an_empty_library() {
        let dir = tempfile::tempdir().unwrap();
        let scan = scan(&dir.path().join("none")).unwrap();
        assert!(scan.presets.is_empty() && scan.skipped.is_empty());
    }
}
