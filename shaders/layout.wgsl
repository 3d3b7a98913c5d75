// The pose layout (ControlNet OpenPose convention), drawn on the GPU into an image-sized
// Rgba8Unorm target: one instanced quad per shape, in the CPU rasteriser's draw order (limbs,
// limb-major, then joints). Every fragment is one image pixel; its shape test is evaluated on
// the integer pixel grid the CPU rasteriser uses. Shapes are opaque and replace what is below
// them (no blending), so the last shape covering a pixel wins, as on the CPU.

struct Target {
    // target size in pixels
    size: vec2<f32>,
    // how far outside the exact ellipse a pixel may lie and still be filled (the CPU fills the
    // ellipse's rounded polygon and its outline)
    inflate: f32,
    _pad: f32,
};

@group(0) @binding(0) var<uniform> target_info: Target;

struct Shape {
    // centre, on the integer pixel grid
    @location(0) center: vec2<f32>,
    // semi-axes (a along the rotated x axis, b across); a circle has a == b == radius
    @location(1) axes: vec2<f32>,
    // cos and sin of the rotation
    @location(2) rot: vec2<f32>,
    // 0: ellipse (limb), 1: circle (joint)
    @location(3) kind: u32,
    @location(4) color: vec4<f32>,
};

struct Varyings {
    @builtin(position) position: vec4<f32>,
    @location(0) @interpolate(flat) center: vec2<f32>,
    @location(1) @interpolate(flat) axes: vec2<f32>,
    @location(2) @interpolate(flat) rot: vec2<f32>,
    @location(3) @interpolate(flat) kind: u32,
    @location(4) @interpolate(flat) color: vec4<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) vi: u32, shape: Shape) -> Varyings {
    // a square around the shape, one pixel larger than its largest semi-axis plus the slack
    let half = max(shape.axes.x, shape.axes.y) + target_info.inflate + 2.0;
    let corner = vec2<f32>(f32(vi & 1u), f32((vi >> 1u) & 1u)) * 2.0 - 1.0;
    // pixel (x, y) covers [x, x + 1): its centre is x + 0.5
    let p = shape.center + vec2<f32>(0.5, 0.5) + corner * half;
    let ndc = vec2<f32>(p.x / target_info.size.x * 2.0 - 1.0, 1.0 - p.y / target_info.size.y * 2.0);
    var out: Varyings;
    out.position = vec4<f32>(ndc, 0.0, 1.0);
    out.center = shape.center;
    out.axes = shape.axes;
    out.rot = shape.rot;
    out.kind = shape.kind;
    out.color = shape.color;
    return out;
}

// Whether the image pixel `px` (integer coordinates) is part of the shape.
fn covers(px: vec2<f32>, v: Varyings) -> bool {
    let d = px - v.center;
    if v.kind == 1u {
        // the filled circle: dx^2 + dy^2 <= r^2, exact in integers
        let r = v.axes.x;
        return d.x * d.x + d.y * d.y <= r * r;
    }
    // the ellipse in its own frame (inverse rotation)
    let e1 = v.rot;
    let e2 = vec2<f32>(-v.rot.y, v.rot.x);
    let u = dot(d, e1);
    let w = dot(d, e2);
    // a zero-length limb is a segment across the limb: keep the ellipse non-degenerate
    let a = max(v.axes.x, 0.01);
    let b = max(v.axes.y, 0.01);
    let f = (u * u) / (a * a) + (w * w) / (b * b) - 1.0;
    if f <= 0.0 {
        return true;
    }
    // Outside: the CPU also fills the polygon's outline, drawn as 8-connected lines, and rounds
    // each row's crossings, so a pixel is filled when the boundary passes within half a pixel
    // of its centre horizontally or vertically. Along the boundary normal n that reach is
    // inflate * max(|n.x|, |n.y|); the distance is estimated to first order as f / |grad f|.
    let grad = (2.0 * u / (a * a)) * e1 + (2.0 * w / (b * b)) * e2;
    let g = length(grad);
    if g <= 0.0 {
        return false;
    }
    let n = abs(grad / g);
    return f / g <= target_info.inflate * max(n.x, n.y);
}

@fragment
fn fs_main(v: Varyings) -> @location(0) vec4<f32> {
    let px = floor(v.position.xy);
    if !covers(px, v) {
        discard;
    }
    return vec4<f32>(v.color.rgb, 1.0);
}
