// The pose layout (ControlNet OpenPose convention), drawn on the GPU into an image-sized
// Rgba8Unorm target with the CPU rasteriser's exact pixel rules. Shapes are opaque and replace
// what is below them (no blending), and are drawn in the CPU's order (limb ellipses,
// limb-major, then joint circles), so the last shape covering a pixel wins, as on the CPU.
//
// Limbs: each limb is the convex polygon of its sampled ellipse (integer vertices, given). One
// instance per (polygon, image row): the vertex shader finds the row's span like the CPU's
// scan converter (the outline as 8-connected lines walked from their left end, plus each
// edge's crossing of the row, rounded), and emits the quad covering exactly those pixels.
// Joints: one quad per circle; a pixel is inside when dx^2 + dy^2 <= r^2.

struct Target {
    // target size in pixels
    size: vec2<f32>,
    _pad: vec2<f32>,
};

struct Poly {
    first: u32,
    count: u32,
    // RGBA8, red in the low byte
    color: u32,
    _pad: u32,
};

@group(0) @binding(0) var<uniform> target_info: Target;
@group(0) @binding(1) var<storage, read> polys: array<Poly>;
@group(0) @binding(2) var<storage, read> verts: array<vec2<i32>>;

fn to_ndc(p: vec2<f32>) -> vec4<f32> {
    return vec4<f32>(p.x / target_info.size.x * 2.0 - 1.0, 1.0 - p.y / target_info.size.y * 2.0, 0.0, 1.0);
}

// floor(a / b) for b > 0. Only non-negative operands are divided: integer division and
// remainder of negative numbers are not portable (GLSL leaves them undefined).
fn floor_div(a: i32, b: i32) -> i32 {
    if a >= 0 {
        return a / b;
    }
    return -((-a + b - 1) / b);
}

fn ceil_div(a: i32, b: i32) -> i32 {
    return -floor_div(-a, b);
}

fn touch(span: vec2<i32>, x: i32) -> vec2<i32> {
    return vec2<i32>(min(span.x, x), max(span.y, x));
}

// The pixels of row y on the 8-connected line p-q, walked from its left end with the
// midpoint error term starting at half the major extent.
fn line_span(p: vec2<i32>, q: vec2<i32>, y: i32, span_in: vec2<i32>) -> vec2<i32> {
    var span = span_in;
    var a = p;
    var b = q;
    if b.x < a.x {
        a = q;
        b = p;
    }
    let dx = b.x - a.x;
    let dy = abs(b.y - a.y);
    let sy = select(select(0, 1, b.y > a.y), -1, b.y < a.y);
    // steps taken along y to reach row y
    var k = (y - a.y) * sy;
    if sy == 0 {
        k = select(-1, 0, y == a.y);
    }
    if k < 0 || k > dy {
        return span;
    }
    if dx >= dy {
        if dy == 0 {
            return touch(touch(span, a.x), b.x);
        }
        // step i is on row k when (k - 1) dx + h < i dy <= k dx + h
        let h = dx / 2;
        let lo = max(floor_div((k - 1) * dx + h, dy) + 1, 0);
        let hi = min(floor_div(k * dx + h, dy), dx);
        if lo <= hi {
            span = touch(touch(span, a.x + lo), a.x + hi);
        }
        return span;
    }
    // one pixel per row: x advances ceil((k dx - h) / dy) times by row k
    let h = dy / 2;
    return touch(span, a.x + max(ceil_div(k * dx - h, dy), 0));
}

// The edge p-q's crossing of row y (strictly sloped edges), rounded half away from zero.
fn crossing_span(p: vec2<i32>, q: vec2<i32>, y: i32, span: vec2<i32>) -> vec2<i32> {
    if p.y == q.y {
        return span;
    }
    var lo = p;
    var hi = q;
    if q.y < p.y {
        lo = q;
        hi = p;
    }
    if y < lo.y || y > hi.y {
        return span;
    }
    let den = hi.y - lo.y;
    let num = (y - lo.y) * (hi.x - lo.x);
    let qd = floor_div(num, den);
    let r = num - qd * den;
    var x = lo.x + qd;
    // x + r/den rounded: up past the half, and at the half away from zero
    if 2 * r > den || (2 * r == den && x >= 0) {
        x = x + 1;
    }
    return touch(span, x);
}

struct Flat {
    @builtin(position) position: vec4<f32>,
    @location(0) @interpolate(flat) color: vec4<f32>,
};

struct Row {
    @location(0) poly: u32,
    @location(1) y: i32,
};

@vertex
fn vs_row(@builtin(vertex_index) vi: u32, row: Row) -> Flat {
    let poly = polys[row.poly];
    var span = vec2<i32>(2147483647, -2147483647);
    for (var k = 0u; k < poly.count; k = k + 1u) {
        let p = verts[poly.first + k];
        let q = verts[poly.first + (k + 1u) % poly.count];
        span = line_span(p, q, row.y, span);
        span = crossing_span(p, q, row.y, span);
    }
    var out: Flat;
    out.color = unpack4x8unorm(poly.color);
    if span.x > span.y {
        // nothing on this row: a degenerate quad
        out.position = vec4<f32>(2.0, 2.0, 0.0, 1.0);
        return out;
    }
    // pixels span.x ..= span.y of row y cover [span.x, span.y + 1) x [y, y + 1)
    let x = select(f32(span.x), f32(span.y + 1), (vi & 1u) == 1u);
    let y = f32(row.y) + f32((vi >> 1u) & 1u);
    out.position = to_ndc(vec2<f32>(x, y));
    return out;
}

@fragment
fn fs_flat(v: Flat) -> @location(0) vec4<f32> {
    return vec4<f32>(v.color.rgb, 1.0);
}

struct Circle {
    @location(0) center: vec2<f32>,
    @location(1) radius: f32,
    @location(2) color: vec4<f32>,
};

struct CircleOut {
    @builtin(position) position: vec4<f32>,
    @location(0) @interpolate(flat) center: vec2<f32>,
    @location(1) @interpolate(flat) radius: f32,
    @location(2) @interpolate(flat) color: vec4<f32>,
};

@vertex
fn vs_circle(@builtin(vertex_index) vi: u32, c: Circle) -> CircleOut {
    // the square of pixels centre - r ..= centre + r
    let corner = vec2<f32>(f32(vi & 1u), f32((vi >> 1u) & 1u));
    let p = c.center - vec2<f32>(c.radius) + corner * (2.0 * c.radius + 1.0);
    var out: CircleOut;
    out.position = to_ndc(p);
    out.center = c.center;
    out.radius = c.radius;
    out.color = c.color;
    return out;
}

@fragment
fn fs_circle(v: CircleOut) -> @location(0) vec4<f32> {
    // integer pixel coordinates: exact in f32 on any canvas
    let d = floor(v.position.xy) - v.center;
    if d.x * d.x + d.y * d.y > v.radius * v.radius {
        discard;
    }
    return vec4<f32>(v.color.rgb, 1.0);
}
