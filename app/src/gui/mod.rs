//! The SkeleGuide desktop app (eframe 0.37, wgpu): open a scene, edit skeletons with undo/redo,
//! load and save pose JSON, export the layout.

pub mod canvas;
pub mod document;
mod generate_panel;
pub mod history;
pub mod overlay_gpu;
mod people_panel;
mod pose_library;
mod presets;
mod results_panel;
pub mod samples;
mod scene_panel;
mod status_bar;

use crate::worker::{Event, JobKind, Worker};
use canvas::{Canvas, CanvasAction};
use document::{file_name, Document};
use egui::{Key, KeyboardShortcut, Modifiers};
use skeleguide_engine::modeldir::TextGuidance;
use skeleguide_engine::pipeline::RunOptions;
use skeleguide_engine::pose::Edit;
use skeleguide_engine::sampling::Stage;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How the GUI starts.
#[derive(Clone, Debug, Default)]
pub struct GuiOptions {
    pub scene: Option<PathBuf>,
    pub pose: Option<PathBuf>,
    /// Render one full window, save it as PNG there, and exit.
    pub screenshot: Option<PathBuf>,
    /// Model directory for generation.
    pub model: Option<PathBuf>,
}

/// The status line: the last thing that happened, or the last error.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// Generation settings.
#[derive(Clone, Debug)]
pub struct GenSettings {
    /// The batch dialog is open.
    pub batch_open: bool,
    pub batch_prompts: String,
    pub batch_seeds: (u64, u64),
    pub batch_use_pose: bool,
    pub batch_out: String,
    pub model_dir: String,
    pub prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub live_preview: bool,
    /// Keep the scene's own pixels outside the person (the default).
    pub keep_background: bool,
    /// Classifier-free guidance per stage; `None`: the model's default.
    pub guidance: Option<TextGuidance>,
    /// Stage-1 candidates; `None`: the model's default.
    pub candidates: Option<usize>,
}

/// The side a texture of `w`×`h` is shown at so that it fits `max_side` (the GPU's largest
/// texture side), keeping its aspect: `(w, h)` itself when it fits.
pub fn texture_size(w: u32, h: u32, max_side: usize) -> (u32, u32) {
    let max_side = max_side.max(1) as f64;
    let s = (max_side / w.max(h).max(1) as f64).min(1.0);
    let fit = |v: u32| ((v as f64 * s).round() as u32).clamp(1, max_side as u32);
    (fit(w), fit(h))
}

/// `img` as a texture image that fits the GPU's largest texture side, scaled down when it does
/// not (a panorama is shown downscaled; the document keeps the full resolution for export).
pub fn fitted_color_image(ctx: &egui::Context, img: &image::RgbImage) -> egui::ColorImage {
    let max_side = ctx.input(|i| i.max_texture_side);
    let (w, h) = texture_size(img.width(), img.height(), max_side);
    let shown;
    let img = if (w, h) == img.dimensions() {
        img
    } else {
        shown = image::imageops::thumbnail(img, w, h);
        &shown
    };
    egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

/// A file filter: its name and the extensions it accepts.
pub type FileFilter = (&'static str, &'static [&'static str]);

/// Asks the user for a file to open (`false`) or save (`true`); `None`: none was chosen.
pub type FileDialog = Box<dyn FnMut(bool, FileFilter) -> Option<PathBuf>>;

/// The native file dialog.
pub fn native_file_dialog(save: bool, filter: FileFilter) -> Option<PathBuf> {
    let dialog = rfd::FileDialog::new().add_filter(filter.0, filter.1);
    if save {
        dialog.save_file()
    } else {
        dialog.pick_file()
    }
}

/// Steps used by live preview renders.
pub const PREVIEW_STEPS: usize = 8;

/// One rendered variant.
pub struct ResultItem {
    pub image: image::RgbImage,
    pub texture: egui::TextureHandle,
    /// What made it (written into the exported PNG).
    pub label: crate::export::RunLabel,
}

impl ResultItem {
    pub fn aspect(&self) -> f32 {
        self.image.height() as f32 / self.image.width().max(1) as f32
    }
}

/// The job in flight: id, and the last progress (stage, step, total).
#[derive(Clone, Copy, Debug)]
pub struct Running {
    pub job: u64,
    pub reason_only: bool,
    pub progress: Option<(Stage, usize, usize)>,
}

pub struct SkeleGuideApp {
    pub doc: Document,
    pub canvas: Canvas,
    pub status: Status,
    /// The path field (works without a file dialog).
    pub path_field: String,
    pub recent: Vec<PathBuf>,
    pub gen: GenSettings,
    pub results: Vec<ResultItem>,
    pub selected_result: Option<usize>,
    /// Before/after wipe position of the selected result.
    pub wipe: f32,
    pub running: Option<Running>,
    /// Every event received, in order (the progress log; tests read it).
    pub events: Vec<Event>,
    /// Where `pick` asks for files (tests answer in its place).
    pub file_dialog: FileDialog,
    /// The user's pose library: its folder, the preset menu's and the save controls' state.
    library: pose_library::LibraryUi,
    /// The skeleton changed by an edit, undo or redo this frame (live preview re-renders).
    edited: bool,
    worker: Option<Worker>,
    ctx: Option<egui::Context>,
    scene_texture: Option<egui::TextureHandle>,
    scene_texture_rev: Option<PathBuf>,
    screenshot: Option<Screenshot>,
}

struct Screenshot {
    path: PathBuf,
    frame: u32,
    requested: bool,
    result: Arc<Mutex<Option<Result<(), String>>>>,
}

impl SkeleGuideApp {
    /// The app on the options' model, scene and pose; a file that cannot be opened is reported
    /// in the status line.
    pub fn new(opts: &GuiOptions) -> Self {
        let mut app = Self::without_files(opts);
        // the status line says what failed
        let _ = app.open_files(opts);
        app
    }

    /// The app on the options' files, or the first of them that cannot be opened (the window
    /// need not open to say so).
    pub fn open(opts: &GuiOptions) -> Result<Self, String> {
        let mut app = Self::without_files(opts);
        app.open_files(opts)?;
        Ok(app)
    }

    fn without_files(opts: &GuiOptions) -> Self {
        let mut app = SkeleGuideApp {
            doc: Document::default(),
            canvas: Canvas::default(),
            status: Status {
                text: "Open a scene, add a person (right-click the canvas) or load a pose.".into(),
                error: false,
            },
            path_field: String::new(),
            recent: Vec::new(),
            gen: GenSettings {
                batch_open: false,
                batch_prompts: String::new(),
                batch_seeds: (0, 3),
                batch_use_pose: true,
                batch_out: String::new(),
                model_dir: opts
                    .model
                    .clone()
                    .or_else(crate::default_model_dir)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                prompt: "a person standing".into(),
                seed: 0,
                steps: skeleguide_engine::sampling::DEFAULT_STEPS,
                live_preview: false,
                keep_background: true,
                guidance: None,
                candidates: None,
            },
            results: Vec::new(),
            selected_result: None,
            wipe: 0.5,
            running: None,
            events: Vec::new(),
            file_dialog: Box::new(native_file_dialog),
            library: pose_library::LibraryUi::new(crate::pose_library::default_dir()),
            edited: false,
            worker: None,
            ctx: None,
            scene_texture: None,
            scene_texture_rev: None,
            screenshot: None,
        };
        if let Some(path) = &opts.screenshot {
            app.screenshot = Some(Screenshot {
                path: path.clone(),
                frame: 0,
                requested: false,
                result: Arc::new(Mutex::new(None)),
            });
        }
        app
    }

    /// Opens the scene (or the first sample) and the pose of the options; the first error.
    fn open_files(&mut self, opts: &GuiOptions) -> Result<(), String> {
        let mut first_error = None;
        match &opts.scene {
            Some(s) => self.open_path(s),
            None => self.open_sample(0),
        }
        if self.status.error {
            first_error = Some(self.status.text.clone());
        }
        if let Some(p) = &opts.pose {
            self.open_path(p);
            if self.status.error && first_error.is_none() {
                first_error = Some(self.status.text.clone());
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn ok(&mut self, text: impl Into<String>) {
        self.status = Status {
            text: text.into(),
            error: false,
        };
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.status = Status {
            text: text.into(),
            error: true,
        };
    }

    fn remember(&mut self, p: &Path) {
        self.recent.retain(|r| r != p);
        self.recent.insert(0, p.to_path_buf());
        self.recent.truncate(8);
    }

    /// Opens a scene image or a pose file, chosen by extension (drag-and-drop, path field, CLI).
    pub fn open_path(&mut self, p: &Path) {
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let result = if ext == "json" {
            self.doc.open_pose(p).map(|_| {
                format!(
                    "Loaded {} ({} people)",
                    file_name(p),
                    self.doc.poses().people.len()
                )
            })
        } else {
            let r = self.doc.open_scene(p).map(|_| {
                let (w, h) = self.doc.canvas();
                format!("Opened scene {} ({w}x{h})", file_name(p))
            });
            self.canvas.fit_requested = true;
            r
        };
        match result {
            Ok(msg) => {
                self.remember(p);
                self.ok(msg);
            }
            Err(e) => self.error(e),
        }
    }

    /// Opens a bundled sample scene.
    pub fn open_sample(&mut self, i: usize) {
        match samples::load(i) {
            Ok((name, img)) => {
                self.doc
                    .set_scene(img, PathBuf::from(format!("sample:{name}")));
                self.canvas.fit_requested = true;
                self.ok(format!("Opened the sample scene “{name}”"));
            }
            Err(e) => self.error(e),
        }
    }

    /// Writes the selected result as PNG (parameters in text chunks) with the pose JSON beside it.
    pub fn export_result(&mut self, path: &Path) {
        let Some(r) = self.selected_result.and_then(|i| self.results.get(i)) else {
            self.error("Select a result first.");
            return;
        };
        let pose = self.doc.poses().clone();
        let meta = crate::export::metadata(&r.label, Some(&pose));
        match crate::export::write_result(path, &r.image, &meta, Some(&pose)) {
            Ok(side) => {
                let side = side
                    .map(|s| format!(" and {}", s.display()))
                    .unwrap_or_default();
                self.ok(format!("Wrote {}{side}", path.display()))
            }
            Err(e) => self.error(e),
        }
    }

    pub fn save_pose(&mut self, p: &Path) {
        match self.doc.save_pose(p) {
            Ok(()) => {
                self.remember(p);
                self.ok(format!("Saved {}", p.display()));
            }
            Err(e) => self.error(e),
        }
    }

    pub fn apply(&mut self, edit: Edit) {
        match self.doc.apply(edit) {
            Ok(()) => self.edited = true,
            Err(e) => self.error(e),
        }
    }

    /// Sends a job to the engine thread (started on first use). `steps` overrides the setting
    /// (live preview).
    pub fn submit(&mut self, kind: JobKind, steps: Option<usize>) {
        let Some(scene) = self.doc.scene.clone() else {
            self.error("Open a scene first.");
            return;
        };
        if self.gen.model_dir.trim().is_empty() {
            self.error("Set the model directory first.");
            return;
        }
        let worker = match &mut self.worker {
            Some(w) => w,
            None => {
                let ctx = self.ctx.clone();
                self.worker.insert(Worker::spawn(move || {
                    if let Some(c) = &ctx {
                        c.request_repaint();
                    }
                }))
            }
        };
        let opts = RunOptions {
            steps: steps.unwrap_or(self.gen.steps).max(1),
            seed: self.gen.seed,
            keep_background: self.gen.keep_background,
            guidance: self.gen.guidance,
            candidates: self.gen.candidates,
            contrast: None,
        };
        let reason_only = matches!(kind, JobKind::Reason);
        let job = worker.submit(
            PathBuf::from(self.gen.model_dir.trim()),
            std::sync::Arc::new(scene),
            self.gen.prompt.clone(),
            opts,
            kind,
        );
        self.running = Some(Running {
            job,
            reason_only,
            progress: None,
        });
    }

    pub fn cancel(&mut self) {
        if let Some(w) = &self.worker {
            w.cancel();
        }
    }

    /// Handles the engine's events.
    pub fn poll_worker(&mut self, ctx: &egui::Context) {
        let Some(w) = &self.worker else { return };
        for e in w.poll() {
            self.events.push(e.clone());
            let current = self.running.map(|r| r.job);
            match e {
                Event::Started { .. } => {}
                Event::Progress {
                    job,
                    stage,
                    step,
                    total,
                } => {
                    if current == Some(job) {
                        self.running = Some(Running {
                            job,
                            reason_only: self.running.is_some_and(|r| r.reason_only),
                            progress: Some((stage, step, total)),
                        });
                    }
                }
                Event::Layout {
                    job, poses, note, ..
                } => {
                    if self.running.is_some_and(|r| r.job == job && r.reason_only) {
                        self.running = None;
                    }
                    match poses {
                        Some(p) => {
                            let n = p.people.len();
                            let (w, h) = self.doc.canvas();
                            let p = if (p.width, p.height) == (w, h) {
                                p
                            } else {
                                p.resized(w, h)
                            };
                            self.doc.history.replace("reasoned pose", p);
                            self.doc.revision += 1;
                            self.ok(format!("Reasoned a pose with {n} people"));
                        }
                        None => self.ok(format!("Reasoned a layout; {}", note.unwrap_or_default())),
                    }
                }
                Event::Image { job, image, label } => {
                    let tex = ctx.load_texture(
                        format!("result-{job}"),
                        fitted_color_image(ctx, &image),
                        egui::TextureOptions::LINEAR,
                    );
                    let seed = label.seed;
                    self.results.push(ResultItem {
                        image,
                        texture: tex,
                        label,
                    });
                    self.selected_result = Some(self.results.len() - 1);
                    if current == Some(job) {
                        self.running = None;
                    }
                    self.ok(format!("Rendered seed {seed}"));
                }
                Event::Failed { job, message } => {
                    if current == Some(job) {
                        self.running = None;
                    }
                    self.error(message);
                }
                Event::BatchDone {
                    job,
                    written,
                    skipped,
                    out,
                } => {
                    if current == Some(job) {
                        self.running = None;
                    }
                    self.ok(format!(
                        "Batch: {written} written, {skipped} already there, in {}",
                        out.display()
                    ));
                }
                Event::Cancelled { job } => {
                    if current == Some(job) {
                        self.running = None;
                        self.ok("Cancelled");
                    }
                }
            }
        }
    }

    pub fn undo(&mut self) {
        let label = self.doc.history.undo_label();
        if self.doc.undo() {
            self.edited = true;
            self.ok(format!("Undid {}", label.unwrap_or_default()));
        }
    }

    pub fn redo(&mut self) {
        let label = self.doc.history.redo_label();
        if self.doc.redo() {
            self.edited = true;
            self.ok(format!("Redid {}", label.unwrap_or_default()));
        }
    }

    /// L: dragged joints keep their bone lengths, or move freely again.
    pub fn toggle_length_lock(&mut self) {
        let lock = !self.canvas.drag_options.lock_lengths;
        self.canvas.drag_options.lock_lengths = lock;
        self.ok(if lock {
            "Bone lengths locked: a dragged joint turns about its parent"
        } else {
            "Bone lengths free: a dragged joint moves alone"
        });
    }

    /// X: drags are mirrored onto the other side of the body, or not.
    pub fn toggle_symmetric(&mut self) {
        let symmetric = !self.canvas.drag_options.symmetric;
        self.canvas.drag_options.symmetric = symmetric;
        self.ok(if symmetric {
            "Symmetric editing on: the other side follows as a mirror image"
        } else {
            "Symmetric editing off"
        });
    }

    /// Shows the file dialog; without a desktop portal it returns `None` at once, and the
    /// status line points at the path field instead.
    pub fn pick(&mut self, save: bool, filter: FileFilter) -> Option<PathBuf> {
        let r = (self.file_dialog)(save, filter);
        if r.is_none() {
            self.ok("No file chosen. If no dialog appeared, type a path in the field and press Open / Save.");
        }
        r
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let cmd = Modifiers::COMMAND;
        let (undo, redo_z, redo_y, open, save, del, mirror, lock, symmetric) = ctx.input_mut(|i| {
            // check the longer chord first: Ctrl+Shift+Z must not also count as Ctrl+Z
            let redo_z = i.consume_shortcut(&KeyboardShortcut::new(cmd | Modifiers::SHIFT, Key::Z));
            (
                i.consume_shortcut(&KeyboardShortcut::new(cmd, Key::Z)),
                redo_z,
                i.consume_shortcut(&KeyboardShortcut::new(cmd, Key::Y)),
                i.consume_shortcut(&KeyboardShortcut::new(cmd, Key::O)),
                i.consume_shortcut(&KeyboardShortcut::new(cmd, Key::S)),
                i.consume_key(Modifiers::NONE, Key::Delete),
                i.consume_key(Modifiers::NONE, Key::M),
                i.consume_key(Modifiers::NONE, Key::L),
                i.consume_key(Modifiers::NONE, Key::X),
            )
        });
        if undo {
            self.undo();
        }
        if lock {
            self.toggle_length_lock();
        }
        if symmetric {
            self.toggle_symmetric();
        }
        if redo_z || redo_y {
            self.redo();
        }
        if open {
            if let Some(p) = self.pick(false, ("Pose JSON", &["json"])) {
                self.open_path(&p);
            }
        }
        if save {
            let target = self
                .doc
                .pose_path
                .clone()
                .or_else(|| self.pick(true, ("Pose JSON", &["json"])));
            if let Some(p) = target {
                self.save_pose(&p);
            }
        }
        if let Some(s) = self.doc.selected {
            if del {
                self.apply(Edit::Delete { person: s });
            }
            if mirror {
                self.apply(Edit::Mirror { person: s });
            }
        }
    }

    fn dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for p in dropped {
            self.open_path(&p);
        }
    }

    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let Some(s) = &mut self.screenshot else {
            return;
        };
        s.frame += 1;
        ctx.request_repaint();
        if !s.requested && s.frame >= 4 {
            s.requested = true;
            let (path, result) = (s.path.clone(), s.result.clone());
            ctx.request_screenshot(move |img| {
                let r = save_color_image(&path, &img);
                *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
        if s.result.lock().map(|r| r.is_some()).unwrap_or(true) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    fn update_scene_texture(&mut self, ctx: &egui::Context) {
        if self.scene_texture_rev != self.doc.scene_path {
            self.scene_texture = self.doc.scene.as_ref().map(|s| {
                let img = fitted_color_image(ctx, s);
                ctx.load_texture("scene-compare", img, egui::TextureOptions::LINEAR)
            });
            self.scene_texture_rev = self.doc.scene_path.clone();
        }
    }

    /// One frame of the whole window (also driven by the tests' harness).
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.ctx = Some(ctx.clone());
        self.poll_worker(&ctx);
        self.update_scene_texture(&ctx);
        self.dropped_files(&ctx);
        self.shortcuts(&ctx);
        egui::Panel::left("scene_panel")
            .resizable(true)
            .default_size(270.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("left_scroll")
                    .show(ui, |ui| {
                        scene_panel::show(self, ui);
                        ui.separator();
                        generate_panel::show(self, ui);
                    });
            });
        egui::Panel::right("people_panel")
            .resizable(true)
            .default_size(240.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("right_scroll")
                    .show(ui, |ui| {
                        people_panel::show(self, ui);
                        ui.separator();
                        results_panel::show(self, ui);
                    });
            });
        egui::Panel::bottom("status_bar").show(ui, |ui| status_bar::show(self, ui));
        egui::CentralPanel::default().show(ui, |ui| {
            for a in self.canvas.ui(ui, &self.doc) {
                match a {
                    CanvasAction::Edit(e) => self.apply(e),
                    CanvasAction::Select(s) => self.doc.selected = s,
                }
            }
        });
        generate_panel::batch_window(self, &ctx);
        // live preview: one render of the skeleton after this frame's edits, from the canvas,
        // the keys or the panels
        if std::mem::take(&mut self.edited)
            && self.gen.live_preview
            && self.doc.scene.is_some()
            && !self.gen.model_dir.trim().is_empty()
        {
            let poses = self.doc.poses().clone();
            self.submit(
                JobKind::Render { poses },
                Some(PREVIEW_STEPS.min(self.gen.steps)),
            );
        }
        self.screenshot_step(&ctx);
    }
}

impl eframe::App for SkeleGuideApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame(ui);
    }
}

fn save_color_image(path: &Path, img: &egui::ColorImage) -> Result<(), String> {
    let [w, h] = img.size;
    let mut rgb = image::RgbImage::new(w as u32, h as u32);
    for (dst, src) in rgb.pixels_mut().zip(&img.pixels) {
        let [r, g, b, _] = src.to_srgba_unmultiplied();
        *dst = image::Rgb([r, g, b]);
    }
    skeleguide_engine::imageio::write_png_rgb(path, &rgb).map_err(|e| e.to_string())
}

/// Opens the window and runs until it is closed.
pub fn run(opts: GuiOptions) -> anyhow::Result<()> {
    let app = SkeleGuideApp::open(&opts).map_err(|e| anyhow::anyhow!(e))?;
    let result = app.screenshot.as_ref().map(|s| s.result.clone());
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("SkeleGuide")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let start = move |cc: &eframe::CreationContext<'_>| {
        let mut app = app;
        // the layout overlay on the GPU when eframe runs on wgpu (SKELEGUIDE_CPU_OVERLAY=1 keeps
        // the CPU texture, for comparisons)
        if std::env::var_os("SKELEGUIDE_CPU_OVERLAY").is_none() {
            app.canvas.gpu_overlay = cc.wgpu_render_state.as_ref().and_then(overlay_gpu::install);
        }
        Ok(Box::new(app) as Box<dyn eframe::App>)
    };
    eframe::run_native("SkeleGuide", native, Box::new(start))
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e} (is a display available? set DISPLAY, or use the CLI subcommands)"))?;
    if let (Some(result), Some(path)) = (result, opts.screenshot) {
        match result
            .lock()
            .map_err(|_| anyhow::anyhow!("screenshot state poisoned"))?
            .take()
        {
            Some(Ok(())) => eprintln!("screenshot written to {}", path.display()),
            Some(Err(e)) => anyhow::bail!("{e}"),
            None => anyhow::bail!(
                "{}: the window closed before the screenshot was taken",
                path.display()
            ),
        }
    }
    Ok(())
}
