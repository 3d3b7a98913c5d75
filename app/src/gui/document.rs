//! What the user is editing: the scene, the pose set with its undo history, the selection and
//! the files they came from. Loading never loses the current state on error.

use super::history::History;
use skeleguide_engine::imageio;
use skeleguide_engine::pose::{self, Edit, ExportOptions, ImportOptions, Pose, PoseSet};
use std::path::{Path, PathBuf};

/// Canvas used when there is no scene and no pose file yet.
pub const DEFAULT_CANVAS: (u32, u32) = (512, 512);

pub struct Document {
    pub scene: Option<image::RgbImage>,
    pub scene_path: Option<PathBuf>,
    pub pose_path: Option<PathBuf>,
    pub history: History,
    pub selected: Option<usize>,
    /// Bumped on every change of scene or poses; views cache against it.
    pub revision: u64,
}

impl Default for Document {
    fn default() -> Self {
        Document {
            scene: None,
            scene_path: None,
            pose_path: None,
            history: History::new(PoseSet::new(DEFAULT_CANVAS.0, DEFAULT_CANVAS.1)),
            selected: None,
            revision: 0,
        }
    }
}

impl Document {
    pub fn poses(&self) -> &PoseSet {
        self.history.current()
    }

    /// The canvas size: the scene's when there is one.
    pub fn canvas(&self) -> (u32, u32) {
        match &self.scene {
            Some(s) => (s.width(), s.height()),
            None => (self.poses().width, self.poses().height),
        }
    }

    fn touched(&mut self) {
        self.revision += 1;
        if let Some(s) = self.selected {
            if s >= self.poses().people.len() {
                self.selected = None;
            }
        }
    }

    /// Applies an edit; on error nothing changes and the message is returned.
    pub fn apply(&mut self, edit: Edit) -> Result<(), String> {
        let added = matches!(
            edit,
            Edit::AddPerson { .. } | Edit::InsertPerson { .. } | Edit::Duplicate { .. }
        );
        self.history.apply(edit).map_err(|e| e.to_string())?;
        if added {
            self.selected = Some(self.poses().people.len() - 1);
        }
        self.touched();
        Ok(())
    }

    /// Appends `people` as one undoable step named `label` and selects the last of them.
    pub fn insert_people(&mut self, label: String, people: Vec<Pose>) -> Result<(), String> {
        let mut set = self.poses().clone();
        for p in &people {
            // the one insert's checks (room, finite coordinates), each person in turn
            set = pose::edit::insert_person(&set, p).map_err(|e| e.to_string())?;
        }
        self.history.replace(label, set);
        self.selected = self.poses().people.len().checked_sub(1);
        self.touched();
        Ok(())
    }

    pub fn undo(&mut self) -> bool {
        let ok = self.history.undo();
        self.touched();
        ok
    }

    pub fn redo(&mut self) -> bool {
        let ok = self.history.redo();
        self.touched();
        ok
    }

    /// Opens a scene image. Poses made for another size are scaled to it (one undoable step).
    pub fn open_scene(&mut self, path: &Path) -> Result<(), String> {
        let img = imageio::read_rgb(path).map_err(|e| e.to_string())?;
        self.set_scene(img, path.to_path_buf());
        Ok(())
    }

    /// Uses `img` as the scene; `origin` names it (a file, or `sample:NAME`).
    pub fn set_scene(&mut self, img: image::RgbImage, origin: PathBuf) {
        let (w, h) = (img.width(), img.height());
        self.scene = Some(img);
        self.scene_path = Some(origin);
        let cur = self.poses();
        if (cur.width, cur.height) != (w, h) {
            let fitted = cur.resized(w, h);
            self.history.replace("fit poses to scene", fitted);
        }
        self.touched();
    }

    /// Loads a pose file (any OpenPose JSON variant; the first frame of a multi-frame file).
    pub fn open_pose(&mut self, path: &Path) -> Result<(), String> {
        let opts = ImportOptions {
            canvas: self.scene.as_ref().map(|s| (s.width(), s.height())),
            normalized: None,
        };
        let doc = pose::read_pose_file(path, &opts).map_err(|e| e.to_string())?;
        let Some(mut set) = doc.frames.into_iter().next() else {
            return Err(format!("{}: the file holds no frames", path.display()));
        };
        if let Some(s) = &self.scene {
            if (set.width, set.height) != (s.width(), s.height()) {
                set = set.resized(s.width(), s.height());
            }
        }
        self.history
            .replace(format!("open {}", file_name(path)), set);
        self.pose_path = Some(path.to_path_buf());
        self.selected = None;
        self.touched();
        Ok(())
    }

    /// Saves the poses in the ControlNet form, atomically.
    pub fn save_pose(&mut self, path: &Path) -> Result<(), String> {
        pose::write_pose_file(
            path,
            std::slice::from_ref(self.poses()),
            ExportOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        self.pose_path = Some(path.to_path_buf());
        Ok(())
    }

    /// Writes the layout image for ControlNet: scene + skeletons, with the hands and faces the
    /// poses have (the full annotator's drawing; the model itself is given the body only).
    pub fn export_layout(&self, path: &Path) -> Result<(), String> {
        let img =
            pose::draw_layout_parts(self.scene.as_ref(), self.poses(), pose::LayoutParts::FULL);
        imageio::write_png_rgb(path, &img).map_err(|e| e.to_string())
    }

    /// The person under an image-space point: a joint within `radius`, else inside a body box.
    pub fn person_at(&self, x: f64, y: f64, radius: f64) -> Option<usize> {
        let set = self.poses();
        let mut best: Option<(usize, f64)> = None;
        for (i, p) in set.people.iter().enumerate() {
            for k in p.joints.iter().flatten() {
                let d = ((k.x - x).powi(2) + (k.y - y).powi(2)).sqrt();
                if d <= radius && best.is_none_or(|(_, b)| d < b) {
                    best = Some((i, d));
                }
            }
        }
        if let Some((i, _)) = best {
            return Some(i);
        }
        // the smallest box containing the point (nested people: the inner one)
        set.people
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let (x0, y0, x1, y1) = p.body_bbox()?;
                (x >= x0 && x <= x1 && y >= y0 && y <= y1).then_some((i, (x1 - x0) * (y1 - y0)))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| p.display().to_string())
}
