//! The synthetic human-in-scene generator: one example from one seed, and whole manifest data
//! sets written to disk.
//!
//! An example is a place (room, park, street, plaza) in perspective with furniture, and one to
//! three people whose poses obey the scene: standing on the floor, sitting on a seat, lying on a
//! bed, sofa or the grass, all scaled by depth and never overlapping. It carries the background
//! (no people), the image, the layout (the engine's `pose::draw_layout` over the background),
//! the person mask (the visible silhouettes), the poses, a prompt and the structured facts.

use super::body::{Action, BodyModel, PoseOptions};
use super::people::{Appearance, Figure};
use super::prompt::{make_prompt, PersonDesc};
use super::raster::Canvas;
use super::rng::{mix64, Rng};
use super::scene::{Footprint, FurnitureKind, PlaceKind, Scene};
use super::DataError;
use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};
use skeleguide_engine::pose::skeleton::joint::*;
use skeleguide_engine::pose::{draw_layout, ExportOptions, Pose, PoseSet};
use std::f64::consts::PI;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Smallest and largest `--size`.
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 1024;
/// Most examples in one data set.
pub const MAX_COUNT: usize = 10_000_000;
/// The least height of a standing person, as a fraction of the image, unless a data set says
/// otherwise (`--min-person-height`); sitting and lying people come out shorter.
pub const DEFAULT_MIN_PERSON_HEIGHT: f64 = 0.16;
/// The range `--min-person-height` accepts.
pub const MIN_PERSON_HEIGHT_RANGE: std::ops::RangeInclusive<f64> = 0.05..=0.6;

/// Checks a `min_person_height` value; the message names `what` (the option or field).
pub fn check_min_person_height(what: &str, v: f64) -> Result<(), DataError> {
    if MIN_PERSON_HEIGHT_RANGE.contains(&v) {
        return Ok(());
    }
    Err(DataError::Invalid(format!(
        "{what} = {v}: must be between {} and {} (a fraction of the image height)",
        MIN_PERSON_HEIGHT_RANGE.start(),
        MIN_PERSON_HEIGHT_RANGE.end()
    )))
}
/// Canvas pixels per output pixel (2x2 supersampling).
const SUPERSAMPLE: usize = 2;

/// Train or test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The seed of example `index` of a split. It is an injective function of
/// (`seed`, `split`, `index`) for indices below 2^63 — a bijective mix of
/// `mix(seed) ^ (2·index + split)` — so a test example never shares its seed with a train
/// example of the same data set seed: the splits come from disjoint seed sets.
pub fn example_seed(seed: u64, split: Split, index: u64) -> u64 {
    let lane = match split {
        Split::Train => 0,
        Split::Test => 1,
    };
    mix64(mix64(seed ^ 0x5ce1_e6a1_de00_0000) ^ (index.wrapping_mul(2) | lane))
}

/// Structured facts about an example, for evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub place: String,
    pub count: usize,
    pub people: Vec<PersonFacts>,
    pub furniture: Vec<FurnitureFacts>,
    pub camera: CameraFacts,
}

/// One person, in the same order as the poses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersonFacts {
    pub action: String,
    pub gender: String,
    pub shirt: String,
    pub trousers: String,
    pub long_sleeves: bool,
    pub hair: String,
    pub long_hair: bool,
    /// "floor", "grass", or the kind of furniture sat or lain on.
    pub support: String,
    /// Index into `furniture` of what the person sits or lies on.
    pub on: Option<usize>,
    /// Index into `furniture` of what the person stands by.
    pub near: Option<usize>,
    /// World position of the anchor (the support point under the pelvis), metres.
    pub anchor: [f64; 3],
    /// Standing height in metres and in pixels at the person's depth.
    pub height_m: f64,
    pub height_px: f64,
    /// Image row of the floor under the pelvis.
    pub floor_y: f64,
    /// Image row of the support surface (seat, bed, floor) under the pelvis.
    pub support_y: f64,
    /// Yaw in radians (0 faces the camera, π/2 the viewer's right).
    pub facing: f64,
    /// Bounding box of the annotated joints: [min_x, min_y, max_x, max_y].
    pub bbox: [f64; 4],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FurnitureFacts {
    pub kind: String,
    /// Footprint centre and size, metres.
    pub x: f64,
    pub z: f64,
    pub width: f64,
    pub depth: f64,
    /// Height of the seat / lying / table surface, metres.
    pub surface_height: f64,
    /// Image bounding box of the surface: [min_x, min_y, max_x, max_y].
    pub surface_bbox: [f64; 4],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CameraFacts {
    pub focal: f64,
    pub cx: f64,
    pub horizon_y: f64,
    pub height_m: f64,
}

/// One generated example in memory.
#[derive(Clone, Debug)]
pub struct Example {
    pub background: RgbImage,
    pub image: RgbImage,
    pub layout: RgbImage,
    pub mask: GrayImage,
    pub poses: PoseSet,
    pub prompt: String,
    pub facts: Facts,
}

/// What keeps a person up.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Support {
    Floor,
    Grass,
    Furniture(usize),
}

struct Placed {
    action: Action,
    figure: Figure,
    pose: Pose,
    anchor: [f64; 3],
    height_m: f64,
    facing: f64,
    support: Support,
    near: Option<usize>,
    footprint: Footprint,
    bbox: (f64, f64, f64, f64),
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn action_weights(place: PlaceKind) -> [f64; 7] {
    // stand, walk, sit, lie, wave, raise arms, point
    match place {
        PlaceKind::LivingRoom => [2.0, 1.0, 3.0, 1.2, 1.2, 0.8, 1.0],
        PlaceKind::Bedroom => [1.5, 0.6, 2.5, 2.5, 1.0, 0.8, 0.8],
        PlaceKind::Park => [1.5, 2.0, 2.0, 1.5, 1.2, 1.0, 1.0],
        PlaceKind::Street => [1.5, 3.0, 1.5, 0.0, 1.0, 0.6, 1.2],
        PlaceKind::Plaza => [1.5, 2.5, 1.5, 0.0, 1.2, 1.0, 1.2],
    }
}

/// Generates one example of `size`×`size` pixels from its seed, its standing people at least
/// `min_person_height` of the image tall.
pub fn generate_example(
    size: u32,
    min_person_height: f64,
    seed: u64,
) -> Result<Example, DataError> {
    let (mut scene, mut people_rng, mut rng) = scene_of(size, min_person_height, seed)?;
    let placed = place_people(&mut scene, &mut people_rng);
    if placed.is_empty() {
        return Err(DataError::Invalid(format!(
            "seed {seed}: no person fits the scene"
        )));
    }
    render(&scene, placed, &mut rng.fork(3))
}

/// The empty scene of example `seed`, the random stream its people are drawn from, and the
/// example's own stream (for the prompt's wording).
fn scene_of(size: u32, min_person_height: f64, seed: u64) -> Result<(Scene, Rng, Rng), DataError> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(DataError::Invalid(format!(
            "image size {size} is outside {MIN_SIZE}..={MAX_SIZE}"
        )));
    }
    check_min_person_height("the least person height", min_person_height)?;
    let mut rng = Rng::new(seed);
    let place = PlaceKind::ALL[rng.below(PlaceKind::ALL.len())];
    let mut scene_rng = rng.fork(1);
    let scene = Scene::generate(place, size, min_person_height, &mut scene_rng);
    let people_rng = rng.fork(2);
    Ok((scene, people_rng, rng))
}

/// One to three people placed in `scene` (marking the furniture they use), far to near.
fn place_people(scene: &mut Scene, people_rng: &mut Rng) -> Vec<Placed> {
    let wanted = 1 + people_rng.weighted(&[0.45, 0.35, 0.2]);
    let mut placed: Vec<Placed> = Vec::new();
    for i in 0..wanted {
        let tries = if i == 0 { 200 } else { 60 };
        for t in 0..tries {
            // after many failures fall back to plain standing
            let fallback = t >= tries / 2;
            if let Some(p) = try_place(scene, &placed, fallback, people_rng) {
                if let Support::Furniture(k) = p.support {
                    let f = &mut scene.furniture[k];
                    if p.action == Action::Lie {
                        f.lain_on = true;
                    } else {
                        f.occupied.push((p.anchor[0] - 0.3, p.anchor[0] + 0.3));
                    }
                }
                placed.push(p);
                break;
            }
        }
    }
    placed.sort_by(|a, b| b.anchor[2].total_cmp(&a.anchor[2]));
    placed
}

/// What the prompt is made from for one person.
fn describe<'a>(scene: &Scene, p: &'a Placed) -> PersonDesc<'a> {
    PersonDesc {
        action: p.action,
        looks: &p.figure.looks,
        support: matches!(p.action, Action::Sit | Action::Lie).then(|| support_name(scene, p)),
        near: p.near.map(|k| scene.furniture[k].kind.name()),
    }
}

/// The part of each person's prompt description that bears on the layout (action, what they
/// sit or lie on, what they stand by, man or woman), sorted: two sets of people with equal keys
/// get the same prompt up to colours and wording.
fn prompt_keys(scene: &Scene, placed: &[Placed]) -> Vec<PromptKey> {
    let mut keys: Vec<PromptKey> = placed
        .iter()
        .map(|p| {
            let d = describe(scene, p);
            (d.action, d.support, d.near, d.looks.gender.noun())
        })
        .collect();
    keys.sort();
    keys
}

/// What keeps `p` up, as facts and prompts name it.
fn support_name(scene: &Scene, p: &Placed) -> &'static str {
    match p.support {
        Support::Floor => "floor",
        Support::Grass => "grass",
        Support::Furniture(k) => scene.furniture[k].kind.name(),
    }
}

/// A person as [`prompt_keys`] sees them.
type PromptKey = (
    Action,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

/// Example `seed`'s people drawn again by the generator, for the same scene and prompt.
#[derive(Clone, Debug)]
pub struct Redraw {
    /// The example's own people, drawn from its own stream (equal to `generate_example`'s).
    pub original: PoseSet,
    /// The first of up to `tries` fresh draws whose people the prompt describes the same way
    /// (same number, and per person the same action, seat or bed, landmark and gender), or
    /// `None` when none did.
    pub redrawn: Option<PoseSet>,
    /// Draws made.
    pub draws: usize,
    /// What the prompt says of each person bearing on the layout, shared by both sets, sorted:
    /// `"<action> on <seat, bed, floor or grass, or -> by <landmark or -> <man|woman>"`.
    pub described: Vec<String>,
}

/// Draws example `seed`'s people again from fresh random streams (the same ones on every call) until
/// the prompt would describe them the same way: a sample of what the data itself allows for
/// that scene and prompt. The layout metrics of `redrawn` against `original` are what a model
/// that samples the generator's distribution exactly would score.
pub fn redraw_people(
    size: u32,
    min_person_height: f64,
    seed: u64,
    tries: usize,
) -> Result<Redraw, DataError> {
    let (scene, mut people_rng, _) = scene_of(size, min_person_height, seed)?;
    let poses = |placed: &[Placed]| {
        let mut set = PoseSet::new(size, size);
        set.people = placed.iter().map(|p| p.pose.clone()).collect();
        set
    };
    let mut own = scene.clone();
    let placed = place_people(&mut own, &mut people_rng);
    let want = prompt_keys(&own, &placed);
    let original = poses(&placed);
    let mut redrawn = None;
    let mut draws = 0;
    for t in 0..tries as u64 {
        draws += 1;
        let mut rng = Rng::new(mix64(seed ^ 0x7ed2_a3c0_91b4_5e6f) ^ mix64(t));
        let mut s = scene.clone();
        let again = place_people(&mut s, &mut rng);
        if !again.is_empty() && prompt_keys(&s, &again) == want {
            redrawn = Some(poses(&again));
            break;
        }
    }
    let described = want
        .iter()
        .map(|(action, on, near, gender)| {
            format!(
                "{} on {} by {} {gender}",
                action.name(),
                on.unwrap_or("-"),
                near.unwrap_or("-")
            )
        })
        .collect();
    Ok(Redraw {
        original,
        redrawn,
        draws,
        described,
    })
}

fn try_place(
    scene: &mut Scene,
    others: &[Placed],
    fallback: bool,
    rng: &mut Rng,
) -> Option<Placed> {
    let cam = scene.camera;
    let mut w = action_weights(scene.place);
    let seats: Vec<usize> = (0..scene.furniture.len())
        .filter(|&k| scene.furniture[k].kind.can_sit() && !scene.furniture[k].lain_on)
        .collect();
    let beds: Vec<usize> = (0..scene.furniture.len())
        .filter(|&k| {
            let f = &scene.furniture[k];
            f.kind.can_lie() && !f.lain_on && f.occupied.is_empty()
        })
        .collect();
    if seats.is_empty() {
        w[2] = 0.0;
    }
    if beds.is_empty() && scene.place != PlaceKind::Park {
        w[3] = 0.0;
    }
    let action = if fallback {
        Action::Stand
    } else {
        Action::ALL[rng.weighted(&w)]
    };
    let model = BodyModel::sampled(rng);
    let height_m = rng.range(1.55, 1.9);
    let mut opts = PoseOptions::default();
    let mut near = None;
    let (anchor, support, footprint) = match action {
        Action::Sit => {
            let k = *rng.pick(&seats)?;
            let f = &scene.furniture[k];
            let s = f.surface;
            let margin = 0.26;
            let x = if f.kind == FurnitureKind::Chair || s.x1 - s.x0 < 2.0 * margin {
                (s.x0 + s.x1) / 2.0
            } else {
                rng.range(s.x0 + margin, s.x1 - margin)
            };
            if !f.seat_free(x - 0.3, x + 0.3) {
                return None;
            }
            let z = if f.kind == FurnitureKind::Bed {
                s.z0 + 0.3
            } else {
                s.z0 + (s.z1 - s.z0) * 0.45
            };
            opts.facing = rng.jitter(0.5);
            opts.seat_height = s.y / height_m;
            let fp = Footprint {
                x0: x - 0.3,
                x1: x + 0.3,
                z0: z - 0.65,
                z1: z + 0.2,
            };
            ([x, s.y, z], Support::Furniture(k), fp)
        }
        Action::Lie => {
            let use_grass = scene.place == PlaceKind::Park && (beds.is_empty() || rng.chance(0.7));
            if use_grass {
                let z = rng.range(scene.z_min + 0.5, scene.z_max);
                let (a, b) = scene.x_range(z, 1.0);
                if b <= a {
                    return None;
                }
                let x = rng.range(a, b);
                opts.head_towards = if rng.chance(0.5) { 1.0 } else { -1.0 };
                let fp = Footprint {
                    x0: x - 1.0,
                    x1: x + 1.0,
                    z0: z - 0.4,
                    z1: z + 0.4,
                };
                ([x, 0.0, z], Support::Grass, fp)
            } else {
                let k = *rng.pick(&beds)?;
                let f = &scene.furniture[k];
                let s = f.surface;
                opts.head_towards = match f.kind {
                    FurnitureKind::Bed => {
                        if f.head_right {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                    _ => {
                        if rng.chance(0.5) {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                };
                // the body's middle (not the pelvis) goes to the middle of the surface
                let x = (s.x0 + s.x1) / 2.0 + opts.head_towards * 0.03 * height_m;
                let z = (s.z0 + s.z1) / 2.0 + rng.jitter(0.05);
                let fp = Footprint {
                    x0: s.x0,
                    x1: s.x1,
                    z0: s.z0,
                    z1: s.z1,
                };
                ([x, s.y, z], Support::Furniture(k), fp)
            }
        }
        _ => {
            let by = !scene.furniture.is_empty() && rng.chance(0.45);
            let (x, z) = if by {
                let k = rng.below(scene.furniture.len());
                let f = &scene.furniture[k];
                near = Some(k);
                let side = if rng.chance(0.5) { 1.0 } else { -1.0 };
                (
                    f.x + side * (f.width / 2.0 + rng.range(0.35, 0.7)),
                    f.z + rng.jitter(0.3),
                )
            } else {
                let z = scene.z_min + (scene.z_max - scene.z_min) * rng.f64().powf(1.3);
                let (a, b) = scene.x_range(z, 0.4);
                if b <= a {
                    return None;
                }
                (rng.range(a, b), z)
            };
            opts.facing = match action {
                Action::Walk => {
                    let side = if rng.chance(0.5) { 1.0 } else { -1.0 };
                    side * rng.range(0.7, 1.9)
                }
                Action::Point => rng.range(-1.6, 1.6),
                Action::Wave | Action::RaiseArms => rng.jitter(0.8),
                _ => {
                    if rng.chance(0.15) {
                        PI + rng.jitter(0.6)
                    } else {
                        rng.jitter(1.3)
                    }
                }
            };
            let fp = Footprint {
                x0: x - 0.25,
                x1: x + 0.25,
                z0: z - 0.35,
                z1: z + 0.35,
            };
            ([x, 0.0, z], Support::Floor, fp)
        }
    };
    let [ax, ay, az] = anchor;
    if az < scene.z_min * 0.8 || az <= 0.5 {
        return None;
    }
    // collisions on the floor
    let own = match support {
        Support::Furniture(k) => Some(k),
        _ => None,
    };
    for (k, f) in scene.furniture.iter().enumerate() {
        if Some(k) != own && f.footprint().overlaps(&footprint, 0.05) {
            return None;
        }
    }
    if scene
        .props
        .iter()
        .any(|p| p.footprint().overlaps(&footprint, 0.05))
    {
        return None;
    }
    if others.iter().any(|o| o.footprint.overlaps(&footprint, 0.1)) {
        return None;
    }
    if support == Support::Floor && ax.abs() > scene.x_limit - 0.3 {
        return None;
    }
    let mut sk = model.articulate(action, &opts, rng);
    let p = height_m;
    let head_y = ay + 0.9 * p;
    sk.set_view([-ax, cam.height - head_y, az]);
    let map = move |q: [f64; 3]| cam.project([ax + p * q[0], ay + p * q[1], az - p * q[2]]);
    let pose = sk.project(map);
    let scale = cam.focal * p / az;
    let looks = Appearance::random(rng);
    let view = super::body::norm3([-ax, cam.height - head_y, az]);
    let figure = Figure::new(sk, map, scale, view, looks);
    // the whole figure inside the canvas
    let s = cam.size;
    let (x0, y0, x1, y1) = figure.extent();
    if x0 < 0.0 || y0 < 0.0 || x1 > s || y1 > s {
        return None;
    }
    if pose
        .joints
        .iter()
        .flatten()
        .any(|k| k.x < 1.0 || k.y < 1.0 || k.x > s - 1.0 || k.y > s - 1.0)
    {
        return None;
    }
    // not hidden behind nearer furniture or props (at most a quarter of the figure's box)
    let key = match support {
        Support::Furniture(k) => scene.furniture[k].z,
        _ => az,
    };
    let area = ((x1 - x0) * (y1 - y0)).max(1e-9);
    let overlap = |b: (f64, f64, f64, f64)| {
        let w = (x1.min(b.2) - x0.max(b.0)).max(0.0);
        let h = (y1.min(b.3) - y0.max(b.1)).max(0.0);
        w * h / area
    };
    let mut hidden = 0.0;
    for (k, f) in scene.furniture.iter().enumerate() {
        if Some(k) != own && f.z < key {
            hidden += overlap(scene.furniture_bbox(f));
        }
    }
    for p in &scene.props {
        if p.z < key {
            let (a, b) = p.world_box();
            hidden += overlap(scene.image_bbox(a, b));
        }
    }
    if hidden > 0.25 {
        return None;
    }
    let bbox = pose.body_bbox()?;
    let gap = 1.0;
    for o in others {
        let b = o.bbox;
        let apart =
            bbox.2 + gap < b.0 || b.2 + gap < bbox.0 || bbox.3 + gap < b.1 || b.3 + gap < bbox.1;
        if !apart {
            return None;
        }
    }
    Some(Placed {
        action,
        figure,
        pose,
        anchor,
        height_m,
        facing: opts.facing,
        support,
        near,
        footprint,
        bbox,
    })
}

/// Draws the scene with and without the people and assembles the example.
fn render(scene: &Scene, placed: Vec<Placed>, rng: &mut Rng) -> Result<Example, DataError> {
    let cam = &scene.camera;
    let size = cam.size as u32;
    let side = size as usize * SUPERSAMPLE;
    // depth-sorted draw list: furniture, props and people, far to near (people after the piece
    // they sit or lie on)
    #[derive(Clone, Copy)]
    enum Item {
        Furniture(usize),
        Prop(usize),
        Person(usize),
    }
    let mut items: Vec<(f64, u8, Item)> = Vec::new();
    for (k, f) in scene.furniture.iter().enumerate() {
        items.push((f.z, 0, Item::Furniture(k)));
    }
    for (k, p) in scene.props.iter().enumerate() {
        items.push((p.z, 0, Item::Prop(k)));
    }
    for (k, p) in placed.iter().enumerate() {
        let key = match p.support {
            Support::Furniture(f) => scene.furniture[f].z,
            _ => p.anchor[2],
        };
        items.push((key, 1, Item::Person(k)));
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    // the backdrop is the same in both renders: ray-cast it once
    let mut backdrop = Canvas::new(side, side, [0, 0, 0], SUPERSAMPLE as f64);
    scene.draw_backdrop(&mut backdrop);
    let paint = |with_people: bool| {
        let mut c = backdrop.clone();
        for &(_, _, item) in &items {
            match item {
                Item::Furniture(k) => scene.draw_furniture(&scene.furniture[k], &mut c),
                Item::Prop(k) => scene.draw_prop(&scene.props[k], &mut c),
                Item::Person(k) if with_people => {
                    c.tag = 1;
                    placed[k].figure.draw(&mut c);
                    c.tag = 0;
                }
                Item::Person(_) => {}
            }
        }
        c
    };
    let bg_canvas = paint(false);
    let img_canvas = paint(true);
    let background = bg_canvas.downsample(SUPERSAMPLE);
    let image = img_canvas.downsample(SUPERSAMPLE);
    let mask = img_canvas.mask(SUPERSAMPLE);
    let mut poses = PoseSet::new(size, size);
    poses.people = placed.iter().map(|p| p.pose.clone()).collect();
    let layout = draw_layout(Some(&background), &poses);

    // facts and prompt
    let furniture: Vec<FurnitureFacts> = scene
        .furniture
        .iter()
        .map(|f| {
            let s = f.surface;
            let corners = [
                [s.x0, s.y, s.z0],
                [s.x1, s.y, s.z0],
                [s.x0, s.y, s.z1],
                [s.x1, s.y, s.z1],
            ]
            .map(|q| cam.project(q));
            let bb = corners.iter().fold(
                [
                    f64::INFINITY,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::NEG_INFINITY,
                ],
                |b, p| [b[0].min(p.0), b[1].min(p.1), b[2].max(p.0), b[3].max(p.1)],
            );
            FurnitureFacts {
                kind: f.kind.name().into(),
                x: f.x,
                z: f.z,
                width: f.width,
                depth: f.depth,
                surface_height: s.y,
                surface_bbox: bb.map(round3),
            }
        })
        .collect();
    let people: Vec<PersonFacts> = placed
        .iter()
        .map(|p| {
            let [x, y, z] = p.anchor;
            let looks = &p.figure.looks;
            PersonFacts {
                action: p.action.name().into(),
                gender: looks.gender.noun().into(),
                shirt: looks.shirt_name().into(),
                trousers: looks.trousers_name().into(),
                long_sleeves: looks.long_sleeves,
                hair: looks.hair_name.into(),
                long_hair: looks.long_hair,
                support: support_name(scene, p).into(),
                on: match p.support {
                    Support::Furniture(k) => Some(k),
                    _ => None,
                },
                near: p.near,
                anchor: [x, y, z],
                height_m: p.height_m,
                height_px: cam.focal * p.height_m / z,
                floor_y: cam.floor_y(z),
                support_y: cam.project([x, y, z]).1,
                facing: round3(super::body::wrap_angle(p.facing)),
                bbox: [p.bbox.0, p.bbox.1, p.bbox.2, p.bbox.3].map(round3),
            }
        })
        .collect();
    let descs: Vec<PersonDesc> = placed.iter().map(|p| describe(scene, p)).collect();
    let prompt = make_prompt(scene.place, &descs, rng);
    let facts = Facts {
        place: scene.place.name().into(),
        count: people.len(),
        people,
        furniture,
        camera: CameraFacts {
            focal: cam.focal,
            cx: cam.cx,
            horizon_y: cam.horizon,
            height_m: cam.height,
        },
    };
    Ok(Example {
        background,
        image,
        layout,
        mask,
        poses,
        prompt,
        facts,
    })
}

/// Options of [`write_dataset`].
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub count: usize,
    pub seed: u64,
    pub split: Split,
    pub size: u32,
    /// The least height of a standing person, a fraction of the image.
    pub min_person_height: f64,
    /// Worker threads (the output does not depend on it).
    pub threads: usize,
}

/// One line of a synthetic `manifest.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SynthRecord {
    pub id: String,
    pub background: String,
    pub image: String,
    pub layout: String,
    pub mask: String,
    pub poses: String,
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    pub split: Split,
    pub seed: u64,
    /// The generator's least person height (data sets written before it existed used the
    /// default).
    #[serde(default = "default_min_person_height")]
    pub min_person_height: f64,
    pub facts: Facts,
}

fn default_min_person_height() -> f64 {
    DEFAULT_MIN_PERSON_HEIGHT
}

/// Subfolders of a synthetic data set.
pub const SUBDIRS: [&str; 5] = ["background", "image", "layout", "mask", "poses"];

/// Writes `count` examples and `manifest.jsonl` into `out` (created if needed). Every file is
/// written atomically; the manifest last. `progress` is called once per finished example.
pub fn write_dataset(
    out: &Path,
    opts: &SynthOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<usize, DataError> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&opts.size) {
        return Err(DataError::Invalid(format!(
            "--size {} is outside {MIN_SIZE}..={MAX_SIZE}",
            opts.size
        )));
    }
    check_min_person_height("--min-person-height", opts.min_person_height)?;
    if opts.count > MAX_COUNT {
        return Err(DataError::Invalid(format!(
            "--count {} is more than {MAX_COUNT} examples in one data set",
            opts.count
        )));
    }
    prepare_dir(out)?;
    for d in SUBDIRS {
        prepare_dir(&out.join(d))?;
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let lines: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; opts.count]);
    let first_error: Mutex<Option<DataError>> = Mutex::new(None);
    let threads = opts.threads.clamp(1, 64).min(opts.count.max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= opts.count {
                    return;
                }
                match write_example(out, opts, i) {
                    Ok(line) => {
                        if let Ok(mut l) = lines.lock() {
                            l[i] = Some(line);
                        }
                        progress();
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let lines = lines
        .into_inner()
        .map_err(|_| DataError::Invalid("a worker thread panicked".into()))?;
    let mut manifest = String::new();
    for l in lines {
        let l = l.ok_or_else(|| DataError::Invalid("an example was not written".into()))?;
        manifest.push_str(&l);
        manifest.push('\n');
    }
    skeleguide_engine::fsutil::write_atomic(&out.join("manifest.jsonl"), manifest.as_bytes())?;
    Ok(opts.count)
}

pub(crate) fn prepare_dir(dir: &Path) -> Result<(), DataError> {
    if dir.exists() && !dir.is_dir() {
        return Err(DataError::Output {
            path: dir.display().to_string(),
            msg: "exists and is not a directory".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::Output {
        path: dir.display().to_string(),
        msg: format!("cannot create the directory: {e}"),
    })
}

/// Generates and writes example `index`; returns its manifest line.
fn write_example(out: &Path, opts: &SynthOptions, index: usize) -> Result<String, DataError> {
    let seed = example_seed(opts.seed, opts.split, index as u64);
    let ex = generate_example(opts.size, opts.min_person_height, seed)?;
    let id = format!("{}-{index:06}", opts.split.name());
    let rel = |dir: &str, ext: &str| format!("{dir}/{id}.{ext}");
    let rec = SynthRecord {
        id: id.clone(),
        background: rel("background", "png"),
        image: rel("image", "png"),
        layout: rel("layout", "png"),
        mask: rel("mask", "png"),
        poses: rel("poses", "json"),
        prompt: ex.prompt.clone(),
        width: opts.size,
        height: opts.size,
        split: opts.split,
        seed,
        min_person_height: opts.min_person_height,
        facts: ex.facts.clone(),
    };
    use skeleguide_engine::imageio::{write_png_gray, write_png_rgb};
    write_png_rgb(&out.join(&rec.background), &ex.background)?;
    write_png_rgb(&out.join(&rec.image), &ex.image)?;
    write_png_rgb(&out.join(&rec.layout), &ex.layout)?;
    write_png_gray(&out.join(&rec.mask), &ex.mask)?;
    skeleguide_engine::pose::write_pose_file(
        &out.join(&rec.poses),
        std::slice::from_ref(&ex.poses),
        ExportOptions::default(),
    )?;
    serde_json::to_string(&rec).map_err(|e| DataError::Invalid(format!("{id}: {e}")))
}

/// The mid-hip point of a pose, if both hips are present.
pub fn mid_hip(p: &Pose) -> Option<(f64, f64)> {
    let (a, b) = (p.joints[R_HIP]?, p.joints[L_HIP]?);
    Some(((a.x + b.x) / 2.0, (a.y + b.y) / 2.0))
}
