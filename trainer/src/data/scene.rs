//! Places, the pinhole camera, furniture and props of the synthetic scenes, and their drawing.
//!
//! The world is in metres: X to the right, Y up from the floor, Z the depth away from the camera,
//! which sits at (0, `height`, 0) looking along +Z with a level optical axis, so the horizon is
//! the image row `horizon` and everything on the floor scales with depth as `focal / Z`. The
//! environment (floor, walls, sky, distant buildings or trees) is ray-cast per pixel; furniture
//! and props are shaded boxes and ellipsoids drawn far to near.

use super::raster::{lerp, mul, shade, Canvas, Rgbf};
use super::rng::{hash01, Rng};

/// The kinds of places.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlaceKind {
    LivingRoom,
    Bedroom,
    Park,
    Street,
    Plaza,
}

impl PlaceKind {
    pub const ALL: [PlaceKind; 5] = [
        PlaceKind::LivingRoom,
        PlaceKind::Bedroom,
        PlaceKind::Park,
        PlaceKind::Street,
        PlaceKind::Plaza,
    ];

    /// The name used in manifests' facts.
    pub fn name(self) -> &'static str {
        match self {
            PlaceKind::LivingRoom => "living_room",
            PlaceKind::Bedroom => "bedroom",
            PlaceKind::Park => "park",
            PlaceKind::Street => "street",
            PlaceKind::Plaza => "plaza",
        }
    }

    /// "living room", "park", ...
    pub fn noun(self) -> &'static str {
        match self {
            PlaceKind::LivingRoom => "living room",
            PlaceKind::Bedroom => "bedroom",
            PlaceKind::Park => "park",
            PlaceKind::Street => "street",
            PlaceKind::Plaza => "plaza",
        }
    }

    /// The preposition that goes with the place: "in the park", "on the street".
    pub fn preposition(self) -> &'static str {
        match self {
            PlaceKind::Street => "on",
            _ => "in",
        }
    }

    pub fn is_indoor(self) -> bool {
        matches!(self, PlaceKind::LivingRoom | PlaceKind::Bedroom)
    }

    pub fn from_name(name: &str) -> Option<PlaceKind> {
        PlaceKind::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A level pinhole camera, in output pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Camera {
    /// Focal length in pixels.
    pub focal: f64,
    /// Principal point column.
    pub cx: f64,
    /// Image row of the horizon (the principal point row).
    pub horizon: f64,
    /// Height of the camera above the floor, metres.
    pub height: f64,
    /// Image side in pixels.
    pub size: f64,
}

impl Camera {
    /// Image position of a world point (Z > 0).
    pub fn project(&self, p: [f64; 3]) -> (f64, f64) {
        (
            self.cx + self.focal * p[0] / p[2],
            self.horizon + self.focal * (self.height - p[1]) / p[2],
        )
    }

    /// Image row of the floor at depth `z`.
    pub fn floor_y(&self, z: f64) -> f64 {
        self.horizon + self.focal * self.height / z
    }

    /// Depth of the floor seen at image row `y` (below the horizon).
    pub fn floor_depth(&self, y: f64) -> Option<f64> {
        (y > self.horizon + 1e-9).then(|| self.focal * self.height / (y - self.horizon))
    }

    /// Pixels per metre at depth `z`.
    pub fn px_per_m(&self, z: f64) -> f64 {
        self.focal / z
    }

    /// World X of image column `x` at depth `z`.
    pub fn x_at(&self, x: f64, z: f64) -> f64 {
        (x - self.cx) * z / self.focal
    }
}

/// Furniture kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FurnitureKind {
    Chair,
    Bench,
    Sofa,
    Bed,
    Table,
}

impl FurnitureKind {
    pub fn name(self) -> &'static str {
        match self {
            FurnitureKind::Chair => "chair",
            FurnitureKind::Bench => "bench",
            FurnitureKind::Sofa => "sofa",
            FurnitureKind::Bed => "bed",
            FurnitureKind::Table => "table",
        }
    }

    pub fn can_sit(self) -> bool {
        !matches!(self, FurnitureKind::Table)
    }

    pub fn can_lie(self) -> bool {
        matches!(self, FurnitureKind::Sofa | FurnitureKind::Bed)
    }
}

/// A horizontal rectangle in the world (a seat, a bed top, a table top).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Surface {
    pub x0: f64,
    pub x1: f64,
    pub z0: f64,
    pub z1: f64,
    /// Height above the floor, metres.
    pub y: f64,
}

impl Surface {
    pub fn contains(&self, x: f64, z: f64) -> bool {
        (self.x0..=self.x1).contains(&x) && (self.z0..=self.z1).contains(&z)
    }
}

/// An axis-aligned box drawn with shaded faces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxPart {
    pub min: [f64; 3],
    pub max: [f64; 3],
    pub color: Rgbf,
}

fn bx(min: [f64; 3], max: [f64; 3], color: Rgbf) -> BoxPart {
    BoxPart { min, max, color }
}

/// A footprint on the floor, for collision tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Footprint {
    pub x0: f64,
    pub x1: f64,
    pub z0: f64,
    pub z1: f64,
}

impl Footprint {
    pub fn overlaps(&self, o: &Footprint, gap: f64) -> bool {
        self.x0 < o.x1 + gap && o.x0 < self.x1 + gap && self.z0 < o.z1 + gap && o.z0 < self.z1 + gap
    }
}

/// A piece of furniture with the surface one sits or lies on (a table's top for tables).
#[derive(Clone, Debug, PartialEq)]
pub struct Furniture {
    pub kind: FurnitureKind,
    /// Footprint centre.
    pub x: f64,
    pub z: f64,
    /// Extent along X and Z.
    pub width: f64,
    pub depth: f64,
    pub surface: Surface,
    /// Beds: the headboard is at +X.
    pub head_right: bool,
    pub parts: Vec<BoxPart>,
    /// X intervals taken by sitters.
    pub occupied: Vec<(f64, f64)>,
    /// Someone lies on it.
    pub lain_on: bool,
}

impl Furniture {
    pub fn footprint(&self) -> Footprint {
        Footprint {
            x0: self.x - self.width / 2.0,
            x1: self.x + self.width / 2.0,
            z0: self.z - self.depth / 2.0,
            z1: self.z + self.depth / 2.0,
        }
    }

    /// Whether the X interval is free for a sitter.
    pub fn seat_free(&self, x0: f64, x1: f64) -> bool {
        !self.lain_on && self.occupied.iter().all(|&(a, b)| x1 <= a || b <= x0)
    }
}

/// Props: scenery without a surface for people.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PropKind {
    Tree,
    Bush,
    Lamp,
    Plant,
    Wardrobe,
    Fountain,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prop {
    pub kind: PropKind,
    pub x: f64,
    pub z: f64,
    pub size: f64,
    pub color: Rgbf,
    pub color2: Rgbf,
}

impl Prop {
    /// A world-space box around everything the prop draws.
    pub fn world_box(&self) -> ([f64; 3], [f64; 3]) {
        let (x, z, sz) = (self.x, self.z, self.size);
        let (rx, top, rz) = match self.kind {
            PropKind::Tree => (1.45 * sz, 3.9 * sz, 0.3),
            PropKind::Bush => (0.6 * sz, 0.9 * sz, 0.3),
            PropKind::Lamp => (0.2, sz + 0.4, 0.1),
            PropKind::Plant => (0.4 * sz, 0.35 + 0.7 * sz, 0.2),
            PropKind::Wardrobe => (0.5, sz, 0.275),
            PropKind::Fountain => (1.2 * sz, 1.3, 1.2 * sz),
        };
        ([x - rx, 0.0, z - rz], [x + rx, top, z + rz])
    }

    pub fn footprint(&self) -> Footprint {
        let r = match self.kind {
            PropKind::Tree => 0.35,
            PropKind::Bush => 0.6 * self.size,
            PropKind::Lamp => 0.2,
            PropKind::Plant => 0.3,
            PropKind::Wardrobe => 0.55,
            PropKind::Fountain => 1.2 * self.size,
        };
        let (rz0, rz1) = if self.kind == PropKind::Wardrobe {
            (0.3, 0.3)
        } else {
            (r, r)
        };
        Footprint {
            x0: self.x - r,
            x1: self.x + r,
            z0: self.z - rz0,
            z1: self.z + rz1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum FloorKind {
    Wood,
    Carpet,
    Tiles,
}

/// Everything about a place's backdrop, chosen once per scene.
#[derive(Clone, Debug, PartialEq)]
struct Env {
    seed: u64,
    wall: Rgbf,
    trim: Rgbf,
    floor: Rgbf,
    floor2: Rgbf,
    floor_kind: FloorKind,
    ceiling: Rgbf,
    half_width: f64,
    back: f64,
    room_height: f64,
    window: Option<[f64; 4]>,
    picture: Option<([f64; 4], Rgbf)>,
    rug: Option<([f64; 4], Rgbf)>,
    sky_top: Rgbf,
    sky_low: Rgbf,
    ground: Rgbf,
    path: Option<(f64, f64, f64, Rgbf)>,
    tile: f64,
    buildings: Vec<(f64, f64, f64, Rgbf)>,
    road: Option<f64>,
    far_trees: Rgbf,
}

/// A place with its camera, furniture and props.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub place: PlaceKind,
    pub camera: Camera,
    pub furniture: Vec<Furniture>,
    pub props: Vec<Prop>,
    /// Depth range where people may stand (metres).
    pub z_min: f64,
    pub z_max: f64,
    /// |X| limit for people and furniture (room half width, or a generous outdoor bound).
    pub x_limit: f64,
    env: Env,
}

const WOODS: [Rgbf; 5] = [
    [150.0, 100.0, 60.0],
    [120.0, 78.0, 45.0],
    [175.0, 130.0, 85.0],
    [95.0, 62.0, 40.0],
    [190.0, 160.0, 120.0],
];
const FABRICS: [Rgbf; 8] = [
    [90.0, 110.0, 150.0],
    [150.0, 60.0, 55.0],
    [110.0, 130.0, 90.0],
    [170.0, 150.0, 120.0],
    [80.0, 80.0, 90.0],
    [200.0, 180.0, 150.0],
    [120.0, 90.0, 130.0],
    [60.0, 100.0, 100.0],
];
const WALLS: [Rgbf; 7] = [
    [225.0, 215.0, 195.0],
    [200.0, 215.0, 225.0],
    [205.0, 220.0, 195.0],
    [235.0, 225.0, 210.0],
    [215.0, 205.0, 215.0],
    [240.0, 235.0, 225.0],
    [220.0, 195.0, 170.0],
];
const BUILDINGS: [Rgbf; 6] = [
    [190.0, 150.0, 120.0],
    [200.0, 190.0, 170.0],
    [160.0, 110.0, 90.0],
    [170.0, 175.0, 180.0],
    [220.0, 200.0, 150.0],
    [140.0, 150.0, 160.0],
];

fn pick(rng: &mut Rng, items: &[Rgbf]) -> Rgbf {
    *rng.pick(items).unwrap_or(&[128.0; 3])
}

fn vary_pick(rng: &mut Rng, items: &[Rgbf], amount: f64) -> Rgbf {
    let c = pick(rng, items);
    vary(rng, c, amount)
}

fn vary(rng: &mut Rng, c: Rgbf, amount: f64) -> Rgbf {
    let k = 1.0 + rng.jitter(amount);
    [
        (c[0] * k + rng.jitter(8.0)).clamp(0.0, 255.0),
        (c[1] * k + rng.jitter(8.0)).clamp(0.0, 255.0),
        (c[2] * k + rng.jitter(8.0)).clamp(0.0, 255.0),
    ]
}

impl Scene {
    /// A random scene of `place` for an image `size` pixels square, whose free-standing people
    /// may be as short as `min_person_height` of the image.
    pub fn generate(place: PlaceKind, size: u32, min_person_height: f64, rng: &mut Rng) -> Scene {
        let s = size as f64;
        let indoor = place.is_indoor();
        let camera = Camera {
            focal: s * rng.range(0.85, 1.2),
            cx: s * (0.5 + rng.jitter(0.04)),
            horizon: s * rng.range(0.3, 0.46),
            height: if indoor {
                rng.range(1.25, 1.7)
            } else {
                rng.range(1.3, 1.8)
            },
            size: s,
        };
        let env = Env::generate(place, &camera, rng);
        // people: at most 80 % of the image tall, feet above the bottom edge, at least
        // `min_person_height` tall (for a 1.7 m person)
        let z_near = (camera.focal * 1.9 / (0.8 * s))
            .max(camera.focal * camera.height / (0.97 * s - camera.horizon));
        let z_far_size = camera.focal * 1.7 / (min_person_height * s);
        let z_far = if indoor {
            (env.back - 0.5).min(z_far_size)
        } else {
            // outdoors: in front of the far backdrop, and on the pavement (not the road)
            let limit = match (place, env.road) {
                (PlaceKind::Park, _) => 40.0,
                (_, Some(road)) => road - 0.4,
                _ => env.back - 1.0,
            };
            z_far_size.min(limit)
        };
        let z_max = z_far.max(z_near + 0.5);
        let x_limit = if indoor { env.half_width } else { 30.0 };
        let mut scene = Scene {
            place,
            camera,
            furniture: Vec::new(),
            props: Vec::new(),
            z_min: z_near,
            z_max,
            x_limit,
            env,
        };
        scene.furnish(rng);
        scene
    }

    /// Image bounding box (min_x, min_y, max_x, max_y) of a world box.
    pub fn image_bbox(&self, min: [f64; 3], max: [f64; 3]) -> (f64, f64, f64, f64) {
        let mut b = (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        for k in 0..8 {
            let p = [
                if k & 1 == 0 { min[0] } else { max[0] },
                if k & 2 == 0 { min[1] } else { max[1] },
                if k & 4 == 0 { min[2] } else { max[2] },
            ];
            let q = self.camera.project([p[0], p[1], p[2].max(0.05)]);
            b = (b.0.min(q.0), b.1.min(q.1), b.2.max(q.0), b.3.max(q.1));
        }
        b
    }

    /// Image bounding box of a furniture piece.
    pub fn furniture_bbox(&self, f: &Furniture) -> (f64, f64, f64, f64) {
        let mut b = (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        for p in &f.parts {
            let q = self.image_bbox(p.min, p.max);
            b = (b.0.min(q.0), b.1.min(q.1), b.2.max(q.2), b.3.max(q.3));
        }
        b
    }

    /// Visible X range at depth `z`, shrunk by `margin` metres.
    pub fn x_range(&self, z: f64, margin: f64) -> (f64, f64) {
        let a = self.camera.x_at(0.0, z).max(-self.x_limit) + margin;
        let b = self.camera.x_at(self.camera.size, z).min(self.x_limit) - margin;
        (a, b)
    }

    fn footprint_free(&self, f: &Footprint) -> bool {
        self.furniture
            .iter()
            .all(|o| !o.footprint().overlaps(f, 0.3))
            && self.props.iter().all(|p| !p.footprint().overlaps(f, 0.3))
    }

    /// Places furniture and props for the place.
    fn furnish(&mut self, rng: &mut Rng) {
        use FurnitureKind::*;
        let wood = vary_pick(rng, &WOODS, 0.1);
        let fabric = vary_pick(rng, &FABRICS, 0.1);
        let mut wanted: Vec<FurnitureKind> = match self.place {
            PlaceKind::LivingRoom => {
                let mut v = vec![Sofa];
                if rng.chance(0.7) {
                    v.push(Table);
                }
                for _ in 0..rng.below(3) {
                    v.push(Chair);
                }
                v
            }
            PlaceKind::Bedroom => {
                let mut v = vec![Bed];
                if rng.chance(0.6) {
                    v.push(Chair);
                }
                if rng.chance(0.5) {
                    v.push(Table);
                }
                v
            }
            PlaceKind::Park => {
                let mut v = vec![Bench];
                if rng.chance(0.5) {
                    v.push(Bench);
                }
                if rng.chance(0.25) {
                    v.push(Table);
                }
                v
            }
            PlaceKind::Street | PlaceKind::Plaza => {
                let mut v = Vec::new();
                if rng.chance(0.7) {
                    v.push(Bench);
                }
                if rng.chance(0.6) {
                    v.push(Table);
                    v.push(Chair);
                    if rng.chance(0.5) {
                        v.push(Chair);
                    }
                }
                if v.is_empty() {
                    v.push(Bench);
                }
                v
            }
        };
        // the main piece first, so it gets the best spot
        let mut table_at: Option<(f64, f64)> = None;
        for kind in wanted.drain(..) {
            for _ in 0..30 {
                let f = self.make_furniture(kind, wood, fabric, table_at, rng);
                if let Some(f) = f {
                    if self.footprint_free(&f.footprint()) {
                        if kind == Table {
                            table_at = Some((f.x, f.z));
                        }
                        self.furniture.push(f);
                        break;
                    }
                }
            }
        }
        // props
        let props: Vec<PropKind> = match self.place {
            PlaceKind::LivingRoom => (0..rng.below(2)).map(|_| PropKind::Plant).collect(),
            PlaceKind::Bedroom => {
                let mut v = Vec::new();
                if rng.chance(0.5) {
                    v.push(PropKind::Wardrobe);
                }
                if rng.chance(0.4) {
                    v.push(PropKind::Plant);
                }
                v
            }
            PlaceKind::Park => {
                let mut v: Vec<PropKind> = (0..1 + rng.below(3)).map(|_| PropKind::Tree).collect();
                v.extend((0..rng.below(3)).map(|_| PropKind::Bush));
                v
            }
            PlaceKind::Street => (0..rng.below(3)).map(|_| PropKind::Lamp).collect(),
            PlaceKind::Plaza => {
                let mut v: Vec<PropKind> = (0..rng.below(2)).map(|_| PropKind::Lamp).collect();
                if rng.chance(0.5) {
                    v.push(PropKind::Fountain);
                }
                v
            }
        };
        for kind in props {
            for _ in 0..20 {
                let p = self.make_prop(kind, rng);
                if self.footprint_free(&p.footprint()) {
                    self.props.push(p);
                    break;
                }
            }
        }
    }

    fn make_prop(&self, kind: PropKind, rng: &mut Rng) -> Prop {
        let (z, size, color, color2) = match kind {
            PropKind::Tree => (
                rng.range(self.z_min + 1.0, self.z_max + 8.0),
                rng.range(0.8, 1.3),
                vary(rng, [60.0, 120.0, 50.0], 0.2),
                vary(rng, [100.0, 70.0, 45.0], 0.15),
            ),
            PropKind::Bush => (
                rng.range(self.z_min + 0.5, self.z_max + 4.0),
                rng.range(0.6, 1.0),
                vary(rng, [70.0, 130.0, 60.0], 0.2),
                [0.0; 3],
            ),
            PropKind::Lamp => (
                rng.range(self.z_min + 1.0, self.z_max),
                rng.range(3.0, 4.0),
                [50.0, 55.0, 60.0],
                [250.0, 240.0, 190.0],
            ),
            PropKind::Plant => (
                rng.range(self.z_min + 1.0, self.env.back - 0.4),
                rng.range(0.8, 1.2),
                vary(rng, [60.0, 130.0, 60.0], 0.2),
                vary(rng, [170.0, 90.0, 60.0], 0.2),
            ),
            PropKind::Wardrobe => (
                self.env.back - 0.35,
                rng.range(1.8, 2.2),
                vary_pick(rng, &WOODS, 0.1),
                [0.0; 3],
            ),
            PropKind::Fountain => (
                rng.range(self.z_max * 0.7, self.z_max + 4.0),
                rng.range(0.8, 1.3),
                [175.0, 175.0, 170.0],
                [110.0, 160.0, 210.0],
            ),
        };
        let (a, b) = self.x_range(z, 0.0);
        let x = rng.range(a.min(b), b.max(a));
        Prop {
            kind,
            x,
            z,
            size,
            color,
            color2,
        }
    }

    fn make_furniture(
        &self,
        kind: FurnitureKind,
        wood: Rgbf,
        fabric: Rgbf,
        near: Option<(f64, f64)>,
        rng: &mut Rng,
    ) -> Option<Furniture> {
        use FurnitureKind::*;
        let (width, depth) = match kind {
            Chair => (rng.range(0.44, 0.52), rng.range(0.44, 0.5)),
            Bench => (rng.range(1.3, 1.8), rng.range(0.4, 0.48)),
            Sofa => (rng.range(1.9, 2.3), rng.range(0.85, 0.95)),
            Bed => (rng.range(2.0, 2.15), rng.range(1.3, 1.6)),
            Table => (rng.range(0.8, 1.4), rng.range(0.6, 0.85)),
        };
        // depth: within the people's range, whole piece visible
        let zlo = self.z_min + depth / 2.0 + 0.2;
        let zhi = if self.place.is_indoor() {
            (self.env.back - depth / 2.0 - 0.05).min(self.z_max + 1.0)
        } else {
            self.z_max
        };
        if zhi <= zlo {
            return None;
        }
        let (x, z) = match (kind, near) {
            (Chair, Some((tx, tz))) if rng.chance(0.8) => {
                let side = if rng.chance(0.5) { 1.0 } else { -1.0 };
                (tx + side * rng.range(0.9, 1.1), tz + rng.jitter(0.2))
            }
            _ => {
                let z = rng.range(zlo, zhi);
                let (a, b) = self.x_range(z, width / 2.0 + 0.1);
                if b <= a {
                    return None;
                }
                (rng.range(a, b), z)
            }
        };
        let (a, b) = self.x_range(z, width / 2.0);
        if x < a || x > b || z < zlo || z > zhi + 0.5 {
            return None;
        }
        let (x0, x1) = (x - width / 2.0, x + width / 2.0);
        let (z0, z1) = (z - depth / 2.0, z + depth / 2.0);
        let mut parts = Vec::new();
        let leg = 0.05;
        let legs = |parts: &mut Vec<BoxPart>, h: f64, inset: f64, c: Rgbf| {
            for (lx, lz) in [
                (x0 + inset, z0 + inset),
                (x1 - inset - leg, z0 + inset),
                (x0 + inset, z1 - inset - leg),
                (x1 - inset - leg, z1 - inset - leg),
            ] {
                parts.push(bx([lx, 0.0, lz], [lx + leg, h, lz + leg], c));
            }
        };
        let mut head_right = false;
        let surface = match kind {
            Chair => {
                let h = rng.range(0.44, 0.48);
                let c = if rng.chance(0.5) { wood } else { fabric };
                legs(&mut parts, h - 0.05, 0.0, mul(wood, 0.8));
                parts.push(bx([x0, h - 0.05, z0], [x1, h, z1], c));
                parts.push(bx([x0, h, z1 - 0.05], [x1, h + rng.range(0.4, 0.5), z1], c));
                Surface {
                    x0,
                    x1,
                    z0,
                    z1: z1 - 0.05,
                    y: h,
                }
            }
            Bench => {
                let h = rng.range(0.43, 0.47);
                let c = if self.place == PlaceKind::Park {
                    wood
                } else {
                    vary(rng, [120.0, 120.0, 125.0], 0.2)
                };
                let metal = [45.0, 45.0, 50.0];
                for lx in [x0 + 0.1, x1 - 0.16] {
                    parts.push(bx(
                        [lx, 0.0, z0 + 0.03],
                        [lx + 0.06, h - 0.05, z1 - 0.03],
                        metal,
                    ));
                }
                parts.push(bx([x0, h - 0.06, z0], [x1, h, z1], c));
                if rng.chance(0.6) {
                    parts.push(bx([x0, h + 0.08, z1 - 0.05], [x1, h + 0.4, z1], c));
                    parts.push(bx(
                        [x0 + 0.1, h, z1 - 0.04],
                        [x0 + 0.16, h + 0.4, z1],
                        metal,
                    ));
                    parts.push(bx(
                        [x1 - 0.16, h, z1 - 0.04],
                        [x1 - 0.1, h + 0.4, z1],
                        metal,
                    ));
                }
                Surface {
                    x0,
                    x1,
                    z0,
                    z1,
                    y: h,
                }
            }
            Sofa => {
                let h = rng.range(0.4, 0.45);
                let arm = 0.18;
                let back = 0.2;
                legs(&mut parts, 0.08, 0.05, mul(wood, 0.6));
                parts.push(bx([x0, 0.08, z0], [x1, 0.28, z1 - back], mul(fabric, 0.9)));
                parts.push(bx([x0 + arm, 0.28, z0], [x1 - arm, h, z1 - back], fabric));
                parts.push(bx(
                    [x0, 0.08, z1 - back],
                    [x1, rng.range(0.8, 0.9), z1],
                    fabric,
                ));
                parts.push(bx(
                    [x0, 0.08, z0],
                    [x0 + arm, 0.6, z1 - back],
                    mul(fabric, 0.95),
                ));
                parts.push(bx(
                    [x1 - arm, 0.08, z0],
                    [x1, 0.6, z1 - back],
                    mul(fabric, 0.95),
                ));
                Surface {
                    x0: x0 + arm,
                    x1: x1 - arm,
                    z0,
                    z1: z1 - back,
                    y: h,
                }
            }
            Bed => {
                head_right = rng.chance(0.5);
                let top = rng.range(0.5, 0.56);
                let sheet = vary(rng, [235.0, 235.0, 230.0], 0.05);
                let blanket = vary_pick(rng, &FABRICS, 0.15);
                legs(&mut parts, 0.12, 0.02, mul(wood, 0.7));
                parts.push(bx([x0, 0.12, z0], [x1, 0.3, z1], wood));
                parts.push(bx([x0, 0.3, z0], [x1, top - 0.03, z1], sheet));
                let (bl0, bl1) = if head_right {
                    (x0, x0 + width * 0.6)
                } else {
                    (x1 - width * 0.6, x1)
                };
                parts.push(bx([bl0, 0.28, z0 - 0.02], [bl1, top, z1], blanket));
                let (p0, p1) = if head_right {
                    (x1 - 0.55, x1 - 0.1)
                } else {
                    (x0 + 0.1, x0 + 0.55)
                };
                parts.push(bx(
                    [p0, top - 0.03, z0 + 0.15],
                    [p1, top + 0.06, z1 - 0.15],
                    sheet,
                ));
                let (h0, h1) = if head_right {
                    (x1 - 0.06, x1)
                } else {
                    (x0, x0 + 0.06)
                };
                parts.push(bx(
                    [h0, 0.0, z0],
                    [h1, rng.range(0.9, 1.1), z1],
                    mul(wood, 0.9),
                ));
                let (s0, s1) = if head_right {
                    (x0, x1 - 0.06)
                } else {
                    (x0 + 0.06, x1)
                };
                Surface {
                    x0: s0,
                    x1: s1,
                    z0,
                    z1,
                    y: top,
                }
            }
            Table => {
                let h = if self.place == PlaceKind::LivingRoom && rng.chance(0.5) {
                    rng.range(0.42, 0.48)
                } else {
                    rng.range(0.72, 0.76)
                };
                let c = if self.place.is_indoor() || rng.chance(0.5) {
                    wood
                } else {
                    [235.0, 235.0, 235.0]
                };
                legs(&mut parts, h - 0.04, 0.04, mul(c, 0.85));
                parts.push(bx([x0, h - 0.04, z0], [x1, h, z1], c));
                Surface {
                    x0,
                    x1,
                    z0,
                    z1,
                    y: h,
                }
            }
        };
        // draw far parts first
        parts.sort_by(|a, b| {
            let za = a.min[2] + a.max[2];
            let zb = b.min[2] + b.max[2];
            zb.total_cmp(&za)
        });
        Some(Furniture {
            kind,
            x,
            z,
            width,
            depth,
            surface,
            head_right,
            parts,
            occupied: Vec::new(),
            lain_on: false,
        })
    }

    /// The colour of the backdrop (floor, walls, sky, far scenery) at output pixel (x, y).
    pub fn backdrop(&self, x: f64, y: f64) -> Rgbf {
        self.env.shade(&self.camera, self.place, x, y)
    }

    /// Draws the backdrop over the whole canvas.
    pub fn draw_backdrop(&self, c: &mut Canvas) {
        let h = self.camera.size;
        c.fill_rows_with(0.0, h, |x, y| self.backdrop(x, y));
    }

    /// Draws a furniture piece with its contact shadow.
    pub fn draw_furniture(&self, f: &Furniture, c: &mut Canvas) {
        let fp = f.footprint();
        let e = 0.06;
        let shadow = [
            [fp.x0 - e, 0.0, fp.z0 - e],
            [fp.x1 + e, 0.0, fp.z0 - e],
            [fp.x1 + e, 0.0, fp.z1 + e],
            [fp.x0 - e, 0.0, fp.z1 + e],
        ]
        .map(|p| self.camera.project(p));
        c.blend_poly(&shadow, [20.0, 15.0, 10.0], 0.3);
        for part in &f.parts {
            self.draw_box(part, c);
        }
    }

    fn draw_box(&self, b: &BoxPart, c: &mut Canvas) {
        let cam = &self.camera;
        let [x0, y0, z0] = b.min;
        let [x1, y1, z1] = b.max;
        if z0 <= 0.05 {
            return;
        }
        let p = |x: f64, y: f64, z: f64| cam.project([x, y, z]);
        if x0 > 0.0 {
            c.fill_poly(
                &[p(x0, y0, z0), p(x0, y0, z1), p(x0, y1, z1), p(x0, y1, z0)],
                mul(b.color, 0.72),
            );
        }
        if x1 < 0.0 {
            c.fill_poly(
                &[p(x1, y0, z0), p(x1, y0, z1), p(x1, y1, z1), p(x1, y1, z0)],
                mul(b.color, 0.72),
            );
        }
        if y1 < cam.height {
            c.fill_poly(
                &[p(x0, y1, z0), p(x1, y1, z0), p(x1, y1, z1), p(x0, y1, z1)],
                mul(b.color, 1.08),
            );
        } else if y0 > cam.height {
            c.fill_poly(
                &[p(x0, y0, z0), p(x1, y0, z0), p(x1, y0, z1), p(x0, y0, z1)],
                mul(b.color, 0.6),
            );
        }
        // the front face, lit a little more at the top
        let (ya, yb) = (p(x0, y1, z0).1, p(x0, y0, z0).1);
        let col = b.color;
        c.fill_poly_with(
            &[p(x0, y0, z0), p(x1, y0, z0), p(x1, y1, z0), p(x0, y1, z0)],
            move |_, y| {
                let t = if yb > ya { (y - ya) / (yb - ya) } else { 0.0 };
                mul(col, 0.95 - 0.15 * t)
            },
        );
    }

    /// Draws a prop.
    pub fn draw_prop(&self, p: &Prop, c: &mut Canvas) {
        let cam = &self.camera;
        let s = cam.px_per_m(p.z);
        let ground = cam.project([p.x, 0.0, p.z]);
        let at = |y: f64| cam.project([p.x, y, p.z]);
        let blob = |c: &mut Canvas, centre: (f64, f64), rx: f64, ry: f64, col: Rgbf, seed: u64| {
            c.ellipse_with(centre, rx, ry, 0.0, |nx, ny| {
                let n = hash01(seed, (nx * 9.0) as i64, (ny * 9.0) as i64);
                mul(shade(col, nx, ny), 0.94 + 0.12 * n)
            });
        };
        match p.kind {
            PropKind::Tree => {
                c.blend_ellipse(ground, 1.2 * s, 0.35 * s, [20.0, 30.0, 10.0], 0.35);
                let trunk_h = 1.8 * p.size;
                self.draw_box(
                    &bx(
                        [p.x - 0.12, 0.0, p.z - 0.12],
                        [p.x + 0.12, trunk_h + 0.3, p.z + 0.12],
                        p.color2,
                    ),
                    c,
                );
                let r = 1.1 * p.size * s;
                let top = at(trunk_h + 0.9 * p.size);
                let seed = (p.x * 1000.0) as i64 as u64;
                blob(
                    c,
                    (top.0 - 0.5 * r, top.1 + 0.2 * r),
                    0.7 * r,
                    0.6 * r,
                    mul(p.color, 0.9),
                    seed,
                );
                blob(
                    c,
                    (top.0 + 0.5 * r, top.1 + 0.15 * r),
                    0.75 * r,
                    0.65 * r,
                    p.color,
                    seed.wrapping_add(1),
                );
                blob(
                    c,
                    (top.0, top.1 - 0.35 * r),
                    0.8 * r,
                    0.7 * r,
                    mul(p.color, 1.1),
                    seed.wrapping_add(2),
                );
            }
            PropKind::Bush => {
                let r = 0.6 * p.size * s;
                let cen = at(0.45 * p.size);
                blob(c, cen, r, 0.75 * r, p.color, (p.z * 1000.0) as i64 as u64);
            }
            PropKind::Lamp => {
                self.draw_box(
                    &bx(
                        [p.x - 0.05, 0.0, p.z - 0.05],
                        [p.x + 0.05, p.size, p.z + 0.05],
                        p.color,
                    ),
                    c,
                );
                let lamp = at(p.size + 0.15);
                c.ellipse_with(lamp, 0.18 * s, 0.22 * s, 0.0, |nx, ny| {
                    shade(p.color2, nx, ny)
                });
            }
            PropKind::Plant => {
                self.draw_box(
                    &bx(
                        [p.x - 0.15, 0.0, p.z - 0.15],
                        [p.x + 0.15, 0.35, p.z + 0.15],
                        p.color2,
                    ),
                    c,
                );
                let r = 0.32 * p.size * s;
                blob(
                    c,
                    at(0.35 + 0.3 * p.size),
                    r,
                    1.2 * r,
                    p.color,
                    (p.x * 977.0) as i64 as u64,
                );
            }
            PropKind::Wardrobe => {
                let (w, d) = (1.0, 0.55);
                self.draw_box(
                    &bx(
                        [p.x - w / 2.0, 0.0, p.z - d / 2.0],
                        [p.x + w / 2.0, p.size, p.z + d / 2.0],
                        p.color,
                    ),
                    c,
                );
                // the door gap
                let a = cam.project([p.x, 0.1, p.z - d / 2.0 - 0.001]);
                let b = cam.project([p.x, p.size - 0.1, p.z - d / 2.0 - 0.001]);
                c.capsule(a, b, 0.4, 0.4, mul(p.color, 0.5));
            }
            PropKind::Fountain => {
                let r = 1.2 * p.size;
                self.draw_box(
                    &bx([p.x - r, 0.0, p.z - r], [p.x + r, 0.45, p.z + r], p.color),
                    c,
                );
                let w = 0.12;
                let water = [
                    [p.x - r + w, 0.42, p.z - r + w],
                    [p.x + r - w, 0.42, p.z - r + w],
                    [p.x + r - w, 0.42, p.z + r - w],
                    [p.x - r + w, 0.42, p.z + r - w],
                ]
                .map(|q| cam.project(q));
                c.fill_poly(&water, p.color2);
                self.draw_box(
                    &bx(
                        [p.x - 0.12, 0.0, p.z - 0.12],
                        [p.x + 0.12, 1.3, p.z + 0.12],
                        p.color,
                    ),
                    c,
                );
                let _ = ground;
            }
        }
    }
}

impl Env {
    fn generate(place: PlaceKind, cam: &Camera, rng: &mut Rng) -> Env {
        let seed = rng.next_u64();
        let wall = vary_pick(rng, &WALLS, 0.05);
        let floor_kind = match place {
            PlaceKind::LivingRoom => {
                if rng.chance(0.7) {
                    FloorKind::Wood
                } else {
                    FloorKind::Tiles
                }
            }
            PlaceKind::Bedroom => {
                if rng.chance(0.6) {
                    FloorKind::Wood
                } else {
                    FloorKind::Carpet
                }
            }
            _ => FloorKind::Tiles,
        };
        let floor = match floor_kind {
            FloorKind::Wood => vary_pick(rng, &WOODS, 0.1),
            FloorKind::Carpet => vary_pick(rng, &FABRICS, 0.1),
            FloorKind::Tiles => vary(rng, [185.0, 180.0, 170.0], 0.12),
        };
        let floor2 = mul(floor, rng.range(0.8, 0.92));
        let back = rng.range(5.5, 9.0);
        let half_width = rng.range(2.6, 4.0);
        let room_height = rng.range(2.6, 3.0);
        let window = rng.chance(0.75).then(|| {
            let w = rng.range(0.9, 1.6);
            let x = rng.range(-half_width + 0.3 + w / 2.0, half_width - 0.3 - w / 2.0);
            let y0 = rng.range(0.8, 1.1);
            [x - w / 2.0, x + w / 2.0, y0, y0 + rng.range(1.0, 1.3)]
        });
        let picture = rng.chance(0.6).then(|| {
            let w = rng.range(0.5, 1.0);
            let x = rng.range(-half_width + 0.3 + w / 2.0, half_width - 0.3 - w / 2.0);
            let y0 = rng.range(1.3, 1.6);
            (
                [x - w / 2.0, x + w / 2.0, y0, y0 + w * rng.range(0.6, 0.9)],
                vary_pick(rng, &FABRICS, 0.3),
            )
        });
        let rug = (place.is_indoor() && rng.chance(0.6)).then(|| {
            let w = rng.range(1.5, 2.6);
            let d = rng.range(1.2, 2.0);
            let z = rng.range(3.0, back - 1.0);
            let x = rng.jitter(1.0);
            (
                [x - w / 2.0, x + w / 2.0, z - d / 2.0, z + d / 2.0],
                vary_pick(rng, &FABRICS, 0.2),
            )
        });
        let sky_top = vary(rng, [90.0, 140.0, 210.0], 0.1);
        let sky_low = vary(rng, [200.0, 220.0, 235.0], 0.05);
        let ground = match place {
            PlaceKind::Park => vary(rng, [95.0, 150.0, 70.0], 0.12),
            _ => vary(rng, [175.0, 172.0, 165.0], 0.1),
        };
        let path = (place == PlaceKind::Park && rng.chance(0.7)).then(|| {
            (
                rng.jitter(3.0),
                rng.range(0.8, 1.5),
                rng.jitter(0.5),
                vary(rng, [195.0, 180.0, 150.0], 0.08),
            )
        });
        let far = match place {
            PlaceKind::Park => rng.range(35.0, 60.0),
            PlaceKind::Street => rng.range(11.0, 16.0),
            _ => rng.range(16.0, 24.0),
        };
        let mut buildings = Vec::new();
        if matches!(place, PlaceKind::Street | PlaceKind::Plaza) {
            // facades across the whole visible width at depth `far`
            let span = far * cam.size / cam.focal;
            let mut x = -span - 2.0;
            while x < span + 2.0 {
                let w = rng.range(5.0, 11.0);
                buildings.push((
                    x,
                    x + w,
                    rng.range(6.0, 16.0),
                    vary_pick(rng, &BUILDINGS, 0.1),
                ));
                x += w;
            }
        }
        let road = (place == PlaceKind::Street).then(|| far - rng.range(3.0, 4.5));
        Env {
            seed,
            wall,
            trim: vary(rng, [240.0, 240.0, 235.0], 0.03),
            floor,
            floor2,
            floor_kind,
            ceiling: vary(rng, [240.0, 238.0, 232.0], 0.02),
            half_width,
            back: if place.is_indoor() { back } else { far },
            room_height,
            window,
            picture,
            rug,
            sky_top,
            sky_low,
            ground,
            path,
            tile: rng.range(0.4, 0.8),
            buildings,
            road,
            far_trees: vary(rng, [50.0, 95.0, 55.0], 0.15),
        }
    }

    fn shade(&self, cam: &Camera, place: PlaceKind, x: f64, y: f64) -> Rgbf {
        let dx = (x - cam.cx) / cam.focal;
        let dy = (cam.horizon - y) / cam.focal;
        if place.is_indoor() {
            self.shade_room(cam, dx, dy)
        } else {
            self.shade_outdoor(cam, place, dx, dy)
        }
    }

    fn shade_room(&self, cam: &Camera, dx: f64, dy: f64) -> Rgbf {
        let h = cam.height;
        // nearest plane hit of the ray (dx, dy, 1) from (0, h, 0)
        let mut t = self.back;
        let mut surf = 0; // 0 back wall, 1 floor, 2 ceiling, 3 left, 4 right
        if dy < 0.0 && h / -dy < t {
            t = h / -dy;
            surf = 1;
        }
        if dy > 0.0 && (self.room_height - h) / dy < t {
            t = (self.room_height - h) / dy;
            surf = 2;
        }
        if dx < 0.0 && self.half_width / -dx < t {
            t = self.half_width / -dx;
            surf = 3;
        }
        if dx > 0.0 && self.half_width / dx < t {
            t = self.half_width / dx;
            surf = 4;
        }
        let (wx, wy, wz) = (dx * t, h + dy * t, t);
        match surf {
            1 => self.floor_color(wx, wz),
            2 => mul(self.ceiling, 0.97 - 0.02 * (wz / self.back)),
            0 => {
                if wy < 0.1 {
                    return mul(self.trim, 0.9);
                }
                if let Some([x0, x1, y0, y1]) = self.window {
                    if wx > x0 - 0.06 && wx < x1 + 0.06 && wy > y0 - 0.06 && wy < y1 + 0.06 {
                        let inside = wx > x0 && wx < x1 && wy > y0 && wy < y1;
                        let mullion = (wx - (x0 + x1) / 2.0).abs() < 0.03;
                        if inside && !mullion {
                            let t = ((wy - y0) / (y1 - y0)).clamp(0.0, 1.0);
                            return lerp(self.sky_low, self.sky_top, t);
                        }
                        return self.trim;
                    }
                }
                if let Some(([x0, x1, y0, y1], col)) = self.picture {
                    if wx > x0 && wx < x1 && wy > y0 && wy < y1 {
                        let m = 0.05;
                        if wx > x0 + m && wx < x1 - m && wy > y0 + m && wy < y1 - m {
                            let u = (wx - x0) / (x1 - x0);
                            let v = (wy - y0) / (y1 - y0);
                            let wave = ((u * 7.0 + v * 3.0).sin() * 0.5 + 0.5) * 0.4;
                            return lerp(col, [235.0, 220.0, 180.0], wave);
                        }
                        return [60.0, 45.0, 30.0];
                    }
                }
                // soft light falloff towards the corners
                let k =
                    1.0 - 0.06 * (wx / self.half_width).powi(2) - 0.05 * (wy / self.room_height);
                mul(self.wall, k)
            }
            _ => {
                if wy < 0.1 {
                    return mul(self.trim, 0.8);
                }
                mul(self.wall, 0.86 - 0.04 * (wy / self.room_height))
            }
        }
    }

    fn floor_color(&self, wx: f64, wz: f64) -> Rgbf {
        if let Some(([x0, x1, z0, z1], col)) = self.rug {
            if wx > x0 && wx < x1 && wz > z0 && wz < z1 {
                let border = (wx - x0).min(x1 - wx).min(wz - z0).min(z1 - wz) < 0.12;
                let n = hash01(self.seed ^ 7, (wx * 40.0) as i64, (wz * 40.0) as i64);
                let c = if border { mul(col, 0.7) } else { col };
                return mul(c, 0.95 + 0.08 * n);
            }
        }
        let fog = (wz / 12.0).min(1.0) * 0.08;
        let base = match self.floor_kind {
            FloorKind::Wood => {
                let pw = 0.18;
                let plank = (wx / pw).floor();
                let off = hash01(self.seed, plank as i64, 0) * 2.0;
                let seg = ((wz + off) / 1.2).floor();
                let v = hash01(self.seed, plank as i64, seg as i64);
                let grain = hash01(self.seed ^ 3, (wx * 60.0) as i64, (wz * 8.0) as i64);
                let seam = (wx / pw - plank) < 0.06 || ((wz + off) / 1.2 - seg) < 0.015;
                let c = lerp(self.floor, self.floor2, v);
                let c = mul(c, 0.96 + 0.06 * grain);
                if seam {
                    mul(c, 0.75)
                } else {
                    c
                }
            }
            FloorKind::Carpet => {
                let n = hash01(self.seed, (wx * 50.0) as i64, (wz * 50.0) as i64);
                mul(self.floor, 0.94 + 0.1 * n)
            }
            FloorKind::Tiles => {
                let (u, v) = (wx / self.tile, wz / self.tile);
                let (iu, iv) = (u.floor(), v.floor());
                let grout = (u - iu) < 0.05 || (v - iv) < 0.05;
                if grout {
                    mul(self.floor2, 0.8)
                } else {
                    let n = hash01(self.seed, iu as i64, iv as i64);
                    mul(self.floor, 0.94 + 0.1 * n)
                }
            }
        };
        lerp(base, [200.0, 200.0, 200.0], fog)
    }

    fn shade_outdoor(&self, cam: &Camera, place: PlaceKind, dx: f64, dy: f64) -> Rgbf {
        let h = cam.height;
        let far = self.back;
        // the far backdrop plane: trees (park) or facades (street, plaza)
        let ground_t = if dy < 0.0 { h / -dy } else { f64::INFINITY };
        if ground_t < far {
            let (wx, wz) = (dx * ground_t, ground_t);
            return self.ground_color(place, wx, wz);
        }
        let (bx_, by) = (dx * far, h + dy * far);
        if place == PlaceKind::Park {
            let ridge = 4.0
                + 2.0 * (bx_ * 0.15 + (self.seed % 97) as f64).sin()
                + 1.2 * (bx_ * 0.37 + (self.seed % 13) as f64).sin()
                + 0.8 * (bx_ * 0.9).sin();
            if by < ridge {
                let n = hash01(self.seed ^ 5, (bx_ * 3.0) as i64, (by * 3.0) as i64);
                let k = 0.8 + 0.25 * (by / ridge) + 0.1 * n;
                return mul(self.far_trees, k);
            }
        } else {
            for &(x0, x1, top, col) in &self.buildings {
                if bx_ >= x0 && bx_ < x1 && by < top {
                    if by < 0.0 {
                        return mul(col, 0.6);
                    }
                    // windows in a grid, a ground floor band
                    let fx = (bx_ - x0) / 1.6;
                    let fy = by / 3.0;
                    let in_win = (fx - fx.floor()) > 0.3
                        && (fx - fx.floor()) < 0.75
                        && (fy - fy.floor()) > 0.35
                        && (fy - fy.floor()) < 0.8
                        && by > 3.0
                        && by < top - 0.8;
                    if in_win {
                        let n = hash01(self.seed, fx as i64, fy as i64);
                        return lerp([60.0, 75.0, 95.0], [150.0, 180.0, 210.0], n * 0.6);
                    }
                    if by < 3.0 {
                        return mul(col, 0.75);
                    }
                    let edge = (bx_ - x0) < 0.25 || (x1 - bx_) < 0.25;
                    return mul(col, if edge { 0.85 } else { 1.0 });
                }
            }
        }
        if dy < 0.0 {
            return self.ground_color(place, dx * ground_t.min(1e4), ground_t.min(1e4));
        }
        let t = (dy * 2.5).clamp(0.0, 1.0);
        lerp(self.sky_low, self.sky_top, t)
    }

    fn ground_color(&self, place: PlaceKind, wx: f64, wz: f64) -> Rgbf {
        let haze = ((wz - 5.0) / 60.0).clamp(0.0, 0.35);
        let base = match place {
            PlaceKind::Park => {
                if let Some((px, pw, slope, col)) = self.path {
                    if (wx - (px + slope * wz)).abs() < pw / 2.0 {
                        let n = hash01(self.seed ^ 11, (wx * 30.0) as i64, (wz * 30.0) as i64);
                        return lerp(mul(col, 0.95 + 0.08 * n), self.sky_low, haze);
                    }
                }
                let n = hash01(self.seed, (wx * 25.0) as i64, (wz * 25.0) as i64);
                let patch = hash01(self.seed ^ 9, (wx * 0.8) as i64, (wz * 0.8) as i64);
                mul(self.ground, 0.88 + 0.12 * n + 0.08 * patch)
            }
            PlaceKind::Street if self.road.is_some_and(|r| wz > r) => {
                let r = self.road.unwrap_or(0.0);
                let curb = wz - r < 0.2;
                let lane = ((wz - (r + self.back) / 2.0).abs() < 0.08)
                    && ((wx / 2.0).floor() as i64 % 2 == 0);
                if curb {
                    [200.0, 200.0, 195.0]
                } else if lane {
                    [235.0, 235.0, 220.0]
                } else {
                    let n = hash01(self.seed, (wx * 20.0) as i64, (wz * 20.0) as i64);
                    mul([80.0, 80.0, 85.0], 0.95 + 0.1 * n)
                }
            }
            _ => {
                let (u, v) = (wx / self.tile, wz / self.tile);
                let (iu, iv) = (u.floor(), v.floor());
                if (u - iu) < 0.05 || (v - iv) < 0.05 {
                    mul(self.ground, 0.78)
                } else {
                    let n = hash01(self.seed, iu as i64, iv as i64);
                    mul(self.ground, 0.92 + 0.12 * n)
                }
            }
        };
        lerp(base, self.sky_low, haze)
    }
}
