//! The centre canvas: the scene, the layout overlay (drawn so that the designer sees exactly
//! what the model is given: on wgpu by `shaders/layout.wgsl`, see `overlay_gpu`, which matches
//! the engine's rasteriser; otherwise by the engine's rasteriser itself), and draggable skeletons.
//!
//! Mouse: drag a joint to move it (with the length lock it turns about its parent and carries the
//! joints below it; symmetric, the other side's joint follows as its mirror image); drag inside
//! the selected person's box to move the person and its top corner handle to scale it about its
//! feet; click to select; right-click a joint to hide it; right-click elsewhere for the context
//! menu. Wheel zooms at the cursor; middle-drag or Space+drag pans. Hands and faces are small
//! dots under the joints: drag one to move that point alone, right-click it to hide the part.

use super::document::Document;
use super::overlay_gpu::{self, GpuOverlay};
use egui::{
    Color32, PointerButton, Pos2, Rect, Sense, Stroke, StrokeKind, TextureHandle, TextureOptions,
    Ui, Vec2,
};
use skeleguide_engine::pose::edit::Part;
use skeleguide_engine::pose::layout::HAND_EDGES;
use skeleguide_engine::pose::proportions::{feet_point, DragOptions};
use skeleguide_engine::pose::{self, skeleton::COLORS, Edit, Pose, PoseSet, LIMBS};
use std::borrow::Cow;

/// Joint handle radius in screen points.
const HANDLE: f32 = 5.0;

/// The radius of a hand or face point, in screen points: it grows with the zoom so a hand keeps
/// its shape, but stays readable zoomed out and well under a joint's handle zoomed in.
fn part_radius(zoom: f32) -> f32 {
    (zoom * 0.9).clamp(1.25, HANDLE * 0.6)
}

/// The side of the square in which a hand or face point can be grabbed, in screen points.
fn part_hit_side(zoom: f32) -> f32 {
    (part_radius(zoom) * 2.0 + 2.0).max(5.0)
}

/// The face's contours (first point, last point, closed): jaw, brows, nose, eyes and lips.
const FACE_CONTOURS: [(usize, usize, bool); 9] = [
    (0, 16, false),
    (17, 21, false),
    (22, 26, false),
    (27, 30, false),
    (31, 35, false),
    (36, 41, true),
    (42, 47, true),
    (48, 59, true),
    (60, 67, true),
];

/// The lines drawn between a part's `len` points: the hand's bones (a finger only when all its
/// points are there), or the face's contours that fit.
fn part_lines(part: Part, len: usize) -> impl Iterator<Item = (usize, usize)> {
    let face = FACE_CONTOURS
        .into_iter()
        .filter(move |&(_, last, _)| matches!(part, Part::Face) && last < len)
        .flat_map(|(first, last, closed)| {
            (first..last)
                .map(|i| (i, i + 1))
                .chain(closed.then_some((last, first)))
        });
    let hand = HAND_EDGES
        .into_iter()
        .filter(move |&(_, b)| !matches!(part, Part::Face) && (b - 1) / 4 * 4 + 4 < len);
    face.chain(hand)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Drag {
    Joint {
        person: usize,
        joint: usize,
        start: (f64, f64),
        x: f64,
        y: f64,
        /// The editor's options when the drag began.
        options: DragOptions,
    },
    /// A point of a hand or the face.
    Point {
        person: usize,
        part: Part,
        index: usize,
        start: (f64, f64),
        x: f64,
        y: f64,
    },
    Move {
        person: usize,
        dx: f64,
        dy: f64,
    },
    Scale {
        person: usize,
        /// The point between the feet, which stays.
        anchor: (f64, f64),
        factor: f64,
    },
}

impl Drag {
    /// Follows the pointer at `at`, for a press that began at `grab` (both in image pixels).
    fn follow(&mut self, grab: (f64, f64), at: (f64, f64)) {
        let (mx, my) = (at.0 - grab.0, at.1 - grab.1);
        match self {
            Drag::Joint { start, x, y, .. } | Drag::Point { start, x, y, .. } => {
                (*x, *y) = (start.0 + mx, start.1 + my)
            }
            Drag::Move { dx, dy, .. } => (*dx, *dy) = (mx, my),
            Drag::Scale { anchor, factor, .. } => {
                // the pointer projected on the line from the feet through the grabbed point, so
                // the handle follows the pointer and the grab itself scales nothing
                let (gx, gy) = (grab.0 - anchor.0, grab.1 - anchor.1);
                let (px, py) = (at.0 - anchor.0, at.1 - anchor.1);
                let reach = gx * gx + gy * gy;
                *factor = if reach > 1e-9 {
                    ((px * gx + py * gy) / reach).max(0.05)
                } else {
                    1.0
                };
            }
        }
    }

    fn edit(&self) -> Edit {
        match *self {
            Drag::Joint {
                person,
                joint,
                x,
                y,
                options,
                ..
            } => Edit::DragJoint {
                person,
                joint,
                to: (x, y),
                options,
            },
            Drag::Point {
                person,
                part,
                index,
                x,
                y,
                ..
            } => Edit::MovePoint {
                person,
                part,
                index,
                x,
                y,
            },
            Drag::Move { person, dx, dy } => Edit::Translate { person, dx, dy },
            Drag::Scale {
                person,
                anchor,
                factor,
            } => Edit::Scale {
                person,
                sx: factor,
                sy: factor,
                anchor,
            },
        }
    }
}

/// An action the canvas asks the app to run (so the app's status line reports it).
#[derive(Debug, PartialEq)]
pub enum CanvasAction {
    Edit(Edit),
    Select(Option<usize>),
}

pub struct Canvas {
    /// Screen points per image pixel.
    pub zoom: f32,
    /// Screen offset of the image origin from the canvas' top-left corner.
    pub offset: Vec2,
    pub fit_requested: bool,
    /// Layout overlay opacity, 0..1.
    pub opacity: f32,
    /// How a dragged joint moves the rest of the body (length lock, symmetric editing).
    pub drag_options: DragOptions,
    drag: Option<Drag>,
    /// Where the press of the current drag began, in image pixels.
    grab: (f64, f64),
    /// A middle-drag or Space+drag that began on the canvas is moving the view.
    panning: bool,
    scene_tex: Option<(u64, TextureHandle)>,
    overlay_tex: Option<(OverlayKey, TextureHandle)>,
    /// Set when the overlay is drawn on the GPU (eframe on wgpu); else the CPU texture is used.
    pub gpu_overlay: Option<GpuOverlay>,
    /// The last canvas rectangle, for tests and fit.
    pub rect: Rect,
}

#[derive(Clone, Copy, PartialEq, Debug)]
struct OverlayKey {
    revision: u64,
    drag: Option<Drag>,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            zoom: 1.0,
            offset: Vec2::ZERO,
            fit_requested: true,
            opacity: 1.0,
            drag_options: DragOptions::default(),
            drag: None,
            grab: (0.0, 0.0),
            panning: false,
            scene_tex: None,
            overlay_tex: None,
            gpu_overlay: None,
            rect: Rect::NOTHING,
        }
    }
}

impl Canvas {
    /// Image pixel -> screen point.
    pub fn to_screen(&self, x: f64, y: f64) -> Pos2 {
        self.rect.min + self.offset + Vec2::new(x as f32, y as f32) * self.zoom
    }

    /// Screen point -> image pixel.
    pub fn to_image(&self, p: Pos2) -> (f64, f64) {
        let v = (p - self.rect.min - self.offset) / self.zoom;
        (v.x as f64, v.y as f64)
    }

    fn fit(&mut self, size: (u32, u32)) {
        let (w, h) = (size.0.max(1) as f32, size.1.max(1) as f32);
        let avail = self.rect.size() - Vec2::splat(16.0);
        self.zoom = (avail.x / w).min(avail.y / h).clamp(0.02, 32.0);
        self.offset = (self.rect.size() - Vec2::new(w, h) * self.zoom) / 2.0;
    }

    fn zoom_at(&mut self, factor: f32, at: Pos2) {
        let new_zoom = (self.zoom * factor).clamp(0.02, 64.0);
        let f = new_zoom / self.zoom;
        let anchor = at - self.rect.min;
        self.offset = anchor - (anchor - self.offset) * f;
        self.zoom = new_zoom;
    }

    /// Whether a drag is in progress (live preview shows it, the history does not yet).
    pub fn dragging(&self) -> bool {
        self.drag.is_some()
    }

    pub fn ui(&mut self, ui: &mut Ui, doc: &Document) -> Vec<CanvasAction> {
        let mut actions = Vec::new();
        let (resp, painter) = ui.allocate_painter(ui.available_size(), Sense::click_and_drag());
        self.rect = resp.rect;
        if self.fit_requested && self.rect.width() > 32.0 {
            self.fit(doc.canvas());
            self.fit_requested = false;
        }

        // zoom and pan, also over a joint or the selected person's box (widgets on the canvas)
        let over = ui.rect_contains_pointer(resp.rect);
        if over {
            let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = zoom * (scroll * 0.0015).exp();
            if (factor - 1.0).abs() > 1e-4 {
                if let Some(p) = ui.input(|i| i.pointer.hover_pos()) {
                    self.zoom_at(factor, p);
                }
            }
        }
        let space = ui.input(|i| i.key_down(egui::Key::Space));
        let (pan_pressed, pan_down, pointer_delta) = ui.input(|i| {
            let p = &i.pointer;
            (
                p.button_pressed(PointerButton::Middle)
                    || (space && p.button_pressed(PointerButton::Primary)),
                p.button_down(PointerButton::Middle) || (space && p.primary_down()),
                p.delta(),
            )
        });
        self.panning = pan_down && (self.panning || (pan_pressed && over));
        if self.panning {
            self.offset += pointer_delta;
        }
        let grab = ui
            .input(|i| i.pointer.press_origin())
            .map(|p| self.to_image(p));

        let shown: Cow<PoseSet> = match self.drag.map(|d| d.edit().apply(doc.poses())) {
            Some(Ok(p)) => Cow::Owned(p),
            _ => Cow::Borrowed(doc.poses()),
        };
        let (cw, ch) = doc.canvas();
        let img_rect = Rect::from_min_max(
            self.to_screen(0.0, 0.0),
            self.to_screen(cw as f64, ch as f64),
        );
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));

        // scene and layout overlay
        painter.rect_filled(resp.rect, 0.0, Color32::from_gray(28));
        match (&doc.scene, self.scene_texture(ui, doc)) {
            (Some(_), Some(tex)) => {
                painter.image(tex, img_rect, uv, Color32::WHITE);
            }
            _ => {
                painter.rect_filled(img_rect, 0.0, Color32::BLACK);
            }
        }
        let gpu = self.gpu_overlay.as_ref().and_then(|g| {
            overlay_gpu::paint_callback(g, painter.clip_rect(), img_rect, self.opacity, &shown)
        });
        if let Some(callback) = gpu {
            painter.add(callback);
        } else {
            let overlay = self.overlay_texture(ui, doc.revision, &shown);
            let alpha = (self.opacity.clamp(0.0, 1.0) * 255.0) as u8;
            painter.image(overlay, img_rect, uv, Color32::from_white_alpha(alpha));
        }

        // interaction: selected person's box (move, scale), then joints on top
        let sel = doc.selected.filter(|&s| s < shown.people.len());
        if let Some(s) = sel {
            if let Some((x0, y0, x1, y1)) = shown.people[s].body_bbox() {
                let r = Rect::from_min_max(self.to_screen(x0, y0), self.to_screen(x1, y1))
                    .expand(HANDLE * 2.0);
                let body = ui.interact(r, resp.id.with("bbox"), Sense::click_and_drag());
                if body.drag_started_by(PointerButton::Primary) && !space && self.drag.is_none() {
                    self.start_drag(
                        grab,
                        Drag::Move {
                            person: s,
                            dx: 0.0,
                            dy: 0.0,
                        },
                    );
                }
                context_menu(
                    &body,
                    doc,
                    self.to_image(body.interact_pointer_pos().unwrap_or(r.center())),
                    &mut actions,
                );
                // the handle sits at the top, away from the feet that stay
                let corner = Rect::from_center_size(r.right_top(), Vec2::splat(HANDLE * 2.4));
                let handle = ui
                    .interact(corner, resp.id.with("scale"), Sense::drag())
                    .on_hover_text("Drag to scale the person; its feet stay where they stand");
                let feet = feet_point(&shown.people[s]);
                if let (true, Some(anchor)) = (
                    handle.drag_started_by(PointerButton::Primary) && !space,
                    feet,
                ) {
                    self.start_drag(
                        grab,
                        Drag::Scale {
                            person: s,
                            anchor,
                            factor: 1.0,
                        },
                    );
                }
                painter.rect_stroke(
                    r,
                    2.0,
                    Stroke::new(1.0, Color32::from_white_alpha(160)),
                    StrokeKind::Middle,
                );
                painter.rect_filled(corner, 1.0, Color32::WHITE);
            }
        }
        // hands and faces before the joints, so a joint wins where they overlap
        for (pi, person) in shown.people.iter().enumerate() {
            self.parts_ui(
                ui,
                &painter,
                resp.id,
                (pi, person),
                (space, grab),
                &mut actions,
            );
        }
        for (pi, person) in shown.people.iter().enumerate() {
            for (j, k) in person.joints.iter().enumerate() {
                let Some(k) = k else { continue };
                let c = self.to_screen(k.x, k.y);
                let id = resp.id.with(("joint", pi, j));
                let r = ui.interact(
                    Rect::from_center_size(c, Vec2::splat(HANDLE * 2.6)),
                    id,
                    Sense::click_and_drag(),
                );
                if r.drag_started_by(PointerButton::Primary) && !space {
                    self.start_drag(
                        grab,
                        Drag::Joint {
                            person: pi,
                            joint: j,
                            start: (k.x, k.y),
                            x: k.x,
                            y: k.y,
                            options: self.drag_options,
                        },
                    );
                    actions.push(CanvasAction::Select(Some(pi)));
                }
                if r.clicked() {
                    actions.push(CanvasAction::Select(Some(pi)));
                }
                if r.secondary_clicked() {
                    actions.push(CanvasAction::Edit(Edit::HideJoint {
                        person: pi,
                        joint: j,
                    }));
                }
                let r = r.on_hover_text(format!(
                    "person {} · {} (right-click hides)",
                    pi + 1,
                    pose::JOINT_NAMES[j]
                ));
                let selected = Some(pi) == sel;
                let rad = if selected || r.hovered() {
                    HANDLE * 1.25
                } else {
                    HANDLE
                };
                let [cr, cg, cb] = COLORS[j];
                painter.circle(
                    c,
                    rad,
                    Color32::from_rgb(cr, cg, cb),
                    Stroke::new(
                        if selected { 2.0 } else { 1.0 },
                        if selected {
                            Color32::WHITE
                        } else {
                            Color32::BLACK
                        },
                    ),
                );
            }
            // thin limb guides so a skeleton stays readable at low overlay opacity
            if self.opacity < 0.5 {
                for (i, &(a, b)) in LIMBS.iter().enumerate() {
                    if let (Some(p), Some(q)) = (person.joints[a], person.joints[b]) {
                        let [r, g, bb] = COLORS[i];
                        painter.line_segment(
                            [self.to_screen(p.x, p.y), self.to_screen(q.x, q.y)],
                            Stroke::new(1.5, Color32::from_rgb(r, g, bb)),
                        );
                    }
                }
            }
        }

        // the drag follows the pointer from where it was pressed, so the motion before egui
        // tells a drag from a click is kept and the grabbed point stays under the pointer
        let pointer = ui
            .input(|i| i.pointer.interact_pos())
            .map(|p| self.to_image(p));
        if let (Some(d), Some(at)) = (&mut self.drag, pointer) {
            d.follow(self.grab, at);
        }

        // end of a drag: one undoable edit
        let released = ui.input(|i| i.pointer.any_released());
        if released {
            if let Some(d) = self.drag.take() {
                let no_op = match d {
                    Drag::Joint {
                        person,
                        joint,
                        x,
                        y,
                        ..
                    } => doc
                        .poses()
                        .people
                        .get(person)
                        .and_then(|p| p.joints[joint])
                        .is_some_and(|k| k.x == x && k.y == y),
                    Drag::Point {
                        person,
                        part,
                        index,
                        x,
                        y,
                        ..
                    } => doc
                        .poses()
                        .people
                        .get(person)
                        .and_then(|p| part.points(p)?.get(index).copied().flatten())
                        .is_some_and(|k| k.x == x && k.y == y),
                    Drag::Move { dx, dy, .. } => dx == 0.0 && dy == 0.0,
                    Drag::Scale { factor, .. } => factor == 1.0,
                };
                if !no_op {
                    actions.push(CanvasAction::Edit(d.edit()));
                }
            }
        }

        // background: click selects, right-click opens the menu
        if resp.clicked() {
            let hit = resp.interact_pointer_pos().and_then(|p| {
                let (x, y) = self.to_image(p);
                doc.person_at(x, y, (HANDLE * 2.0 / self.zoom) as f64)
            });
            actions.push(CanvasAction::Select(hit));
        }
        let at = self.to_image(resp.interact_pointer_pos().unwrap_or(resp.rect.center()));
        context_menu(&resp, doc, at, &mut actions);
        actions
    }

    /// Draws the hands and face of person `pi` as thin lines and small dots and lets their
    /// points be dragged (`space`: the view is being panned; `grab`: where the press began).
    fn parts_ui(
        &mut self,
        ui: &Ui,
        painter: &egui::Painter,
        canvas_id: egui::Id,
        (pi, person): (usize, &Pose),
        (space, grab): (bool, Option<(f64, f64)>),
        actions: &mut Vec<CanvasAction>,
    ) {
        let rad = part_radius(self.zoom);
        let side = part_hit_side(self.zoom);
        for part in Part::ALL {
            let Some(points) = part.points(person) else {
                continue;
            };
            let (line_color, dot_color) = match part {
                Part::Face => (Color32::from_gray(170), Color32::WHITE),
                _ => (
                    Color32::from_rgb(120, 170, 255),
                    Color32::from_rgb(40, 90, 255),
                ),
            };
            for (a, b) in part_lines(part, points.len()) {
                if let (Some(a), Some(b)) = (points[a], points[b]) {
                    painter.line_segment(
                        [self.to_screen(a.x, a.y), self.to_screen(b.x, b.y)],
                        Stroke::new(1.0, line_color),
                    );
                }
            }
            for (i, k) in points.iter().enumerate() {
                let Some(k) = k else { continue };
                let c = self.to_screen(k.x, k.y);
                let r = ui.interact(
                    Rect::from_center_size(c, Vec2::splat(side)),
                    canvas_id.with(("part", pi, part, i)),
                    Sense::click_and_drag(),
                );
                if r.drag_started_by(PointerButton::Primary) && !space {
                    self.start_drag(
                        grab,
                        Drag::Point {
                            person: pi,
                            part,
                            index: i,
                            start: (k.x, k.y),
                            x: k.x,
                            y: k.y,
                        },
                    );
                    actions.push(CanvasAction::Select(Some(pi)));
                }
                if r.clicked() {
                    actions.push(CanvasAction::Select(Some(pi)));
                }
                if r.secondary_clicked() {
                    actions.push(CanvasAction::Edit(Edit::HidePart { person: pi, part }));
                }
                // the tip's text is built only while hovered: there are 112 points per person
                let r = r.on_hover_ui(|ui| {
                    ui.label(format!(
                        "person {} · {} point {i} (right-click hides the {})",
                        pi + 1,
                        part.name(),
                        part.name()
                    ));
                });
                let rad = if r.hovered() { rad * 1.5 } else { rad };
                painter.circle(c, rad, dot_color, Stroke::new(0.5, Color32::BLACK));
            }
        }
    }

    /// Starts `drag` for the press at `grab` (image pixels; `None` when the pointer is gone).
    fn start_drag(&mut self, grab: Option<(f64, f64)>, drag: Drag) {
        if let Some(g) = grab {
            self.grab = g;
            self.drag = Some(drag);
        }
    }

    fn scene_texture(&mut self, ui: &Ui, doc: &Document) -> Option<egui::TextureId> {
        let scene = doc.scene.as_ref()?;
        let key = doc.scene_path.as_ref().map_or(0, |p| {
            skeleguide_engine::hash::fnv1a(p.to_string_lossy().as_bytes())
        }) ^ (scene.width() as u64) << 32
            ^ scene.height() as u64;
        if self.scene_tex.as_ref().is_none_or(|(k, _)| *k != key) {
            let img = super::fitted_color_image(ui.ctx(), scene);
            self.scene_tex = Some((
                key,
                ui.ctx().load_texture("scene", img, TextureOptions::LINEAR),
            ));
        }
        self.scene_tex.as_ref().map(|(_, t)| t.id())
    }

    /// The engine's layout of the poses on a transparent canvas (black = transparent).
    fn overlay_texture(&mut self, ui: &Ui, revision: u64, shown: &PoseSet) -> egui::TextureId {
        let key = OverlayKey {
            revision,
            drag: self.drag,
        };
        if self.overlay_tex.as_ref().is_none_or(|(k, _)| *k != key) {
            // a canvas past the GPU's texture side is drawn at the size it is shown at
            let max_side = ui.ctx().input(|i| i.max_texture_side);
            let (w, h) = super::texture_size(shown.width, shown.height, max_side);
            let rgb = if (w, h) == (shown.width, shown.height) {
                pose::draw_layout(None, shown)
            } else {
                pose::draw_layout(None, &shown.resized(w, h))
            };
            // black is transparent; every other pixel is opaque, so no premultiplication is needed
            let pixels = rgb
                .as_raw()
                .chunks_exact(3)
                .map(|p| match p {
                    [0, 0, 0] => Color32::TRANSPARENT,
                    _ => Color32::from_rgb(p[0], p[1], p[2]),
                })
                .collect();
            let img = egui::ColorImage::new([rgb.width() as usize, rgb.height() as usize], pixels);
            match &mut self.overlay_tex {
                Some((k, tex)) => {
                    tex.set(img, TextureOptions::NEAREST);
                    *k = key;
                }
                None => {
                    self.overlay_tex = Some((
                        key,
                        ui.ctx()
                            .load_texture("layout", img, TextureOptions::NEAREST),
                    ))
                }
            }
        }
        self.overlay_tex
            .as_ref()
            .map(|(_, t)| t.id())
            .expect("set above")
    }
}

/// The right-click menu: add a person here; act on the selected person.
fn context_menu(
    resp: &egui::Response,
    doc: &Document,
    at: (f64, f64),
    actions: &mut Vec<CanvasAction>,
) {
    resp.context_menu(|ui| {
        let (_, h) = doc.canvas();
        if ui.button("Add person here").clicked() {
            actions.push(CanvasAction::Edit(Edit::AddPerson {
                center: at,
                height: h as f64 * 0.45,
            }));
            ui.close();
        }
        let Some(s) = doc.selected else { return };
        ui.separator();
        let items: [(&str, Edit); 4] = [
            (
                "Duplicate",
                Edit::Duplicate {
                    person: s,
                    offset: (h as f64 * 0.05, 0.0),
                },
            ),
            ("Delete (Del)", Edit::Delete { person: s }),
            ("Mirror (M)", Edit::Mirror { person: s }),
            ("Swap left/right", Edit::SwapLeftRight { person: s }),
        ];
        for (label, edit) in items {
            if ui.button(label).clicked() {
                actions.push(CanvasAction::Edit(edit));
                ui.close();
            }
        }
    });
}
