//! The SkeleGuide desktop app (eframe 0.37, wgpu): open a scene, edit skeletons with undo/redo,
//! load and save pose JSON, export the layout.

pub mod canvas;
pub mod document;
pub mod history;
mod people_panel;
mod scene_panel;
mod status_bar;

use canvas::{Canvas, CanvasAction};
use document::{file_name, Document};
use egui::{Key, KeyboardShortcut, Modifiers};
use skeleguide_engine::pose::Edit;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How the GUI starts.
#[derive(Clone, Debug, Default)]
pub struct GuiOptions {
    pub scene: Option<PathBuf>,
    pub pose: Option<PathBuf>,
    /// Render one full window, save it as PNG there, and exit.
    pub screenshot: Option<PathBuf>,
}

/// The status line: the last thing that happened, or the last error.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

pub struct SkeleGuideApp {
    pub doc: Document,
    pub canvas: Canvas,
    pub status: Status,
    /// The path field (works without a file dialog).
    pub path_field: String,
    pub recent: Vec<PathBuf>,
    screenshot: Option<Screenshot>,
}

struct Screenshot {
    path: PathBuf,
    frame: u32,
    requested: bool,
    result: Arc<Mutex<Option<Result<(), String>>>>,
}

impl SkeleGuideApp {
    pub fn new(opts: &GuiOptions) -> Self {
        let mut app = SkeleGuideApp {
            doc: Document::default(),
            canvas: Canvas::default(),
            status: Status {
                text: "Open a scene, add a person (right-click the canvas) or load a pose.".into(),
                error: false,
            },
            path_field: String::new(),
            recent: Vec::new(),
            screenshot: None,
        };
        if let Some(s) = &opts.scene {
            app.open_path(s);
        }
        if let Some(p) = &opts.pose {
            app.open_path(p);
        }
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
        if let Err(e) = self.doc.apply(edit) {
            self.error(e);
        }
    }

    pub fn undo(&mut self) {
        let label = self.doc.history.undo_label();
        if self.doc.undo() {
            self.ok(format!("Undid {}", label.unwrap_or_default()));
        }
    }

    pub fn redo(&mut self) {
        let label = self.doc.history.redo_label();
        if self.doc.redo() {
            self.ok(format!("Redid {}", label.unwrap_or_default()));
        }
    }

    /// Shows the file dialog; without a desktop portal it returns `None` at once, and the
    /// status line points at the path field instead.
    pub fn pick(&mut self, save: bool, filter: (&str, &[&str])) -> Option<PathBuf> {
        let dialog = rfd::FileDialog::new().add_filter(filter.0, filter.1);
        let r = if save {
            dialog.save_file()
        } else {
            dialog.pick_file()
        };
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
        let (undo, redo_z, redo_y, open, save, del, mirror) = ctx.input_mut(|i| {
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
            )
        });
        if undo {
            self.undo();
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

    /// One frame of the whole window (also driven by the tests' harness).
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.dropped_files(&ctx);
        self.shortcuts(&ctx);
        egui::Panel::left("scene_panel")
            .resizable(true)
            .default_size(270.0)
            .show(ui, |ui| scene_panel::show(self, ui));
        egui::Panel::right("people_panel")
            .resizable(true)
            .default_size(230.0)
            .show(ui, |ui| people_panel::show(self, ui));
        egui::Panel::bottom("status_bar").show(ui, |ui| status_bar::show(self, ui));
        egui::CentralPanel::default().show(ui, |ui| {
            for a in self.canvas.ui(ui, &self.doc) {
                match a {
                    CanvasAction::Edit(e) => self.apply(e),
                    CanvasAction::Select(s) => self.doc.selected = s,
                }
            }
        });
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
    let app = SkeleGuideApp::new(&opts);
    let result = app.screenshot.as_ref().map(|s| s.result.clone());
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("SkeleGuide")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native("SkeleGuide", native, Box::new(move |_cc| Ok(Box::new(app))))
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
