// Shows the GPU-drawn layout (shaders/layout.wgsl, image-sized) on the canvas, inside egui's
// render pass: each screen pixel shows the layout pixel under it (nearest, like the CPU
// overlay texture), with the overlay opacity. Layout pixels no shape covered are transparent.
// Output is premultiplied alpha, as egui blends.

struct View {
    // the image's top-left corner, in framebuffer pixels
    origin: vec2<f32>,
    // framebuffer pixels per image pixel, horizontally and vertically
    scale: vec2<f32>,
    opacity: f32,
    // 1 when the framebuffer is sRGB (egui then works in linear space), else 0
    linear_output: u32,
    _pad0: u32,
    _pad1: u32,
};

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var layout_tex: texture_2d<f32>;

@vertex
fn vs_main(@builtin(vertex_index) vi: u32) -> @builtin(position) vec4<f32> {
    // one triangle covering the whole viewport (the callback's rectangle)
    let uv = vec2<f32>(f32((vi << 1u) & 2u), f32(vi & 2u));
    return vec4<f32>(uv * 2.0 - 1.0, 0.0, 1.0);
}

fn linear_from_gamma(c: vec3<f32>) -> vec3<f32> {
    let lo = c / 12.92;
    let hi = pow((c + 0.055) / 1.055, vec3<f32>(2.4));
    return select(hi, lo, c < vec3<f32>(0.04045));
}

@fragment
fn fs_main(@builtin(position) frag: vec4<f32>) -> @location(0) vec4<f32> {
    let size = vec2<f32>(textureDimensions(layout_tex));
    let p = floor((frag.xy - view.origin) / view.scale);
    if p.x < 0.0 || p.y < 0.0 || p.x >= size.x || p.y >= size.y {
        discard;
    }
    let texel = textureLoad(layout_tex, vec2<i32>(p), 0);
    let alpha = texel.a * view.opacity;
    if alpha <= 0.0 {
        discard;
    }
    var rgb = texel.rgb;
    if view.linear_output == 1u {
        rgb = linear_from_gamma(rgb);
    }
    return vec4<f32>(rgb * alpha, alpha);
}
