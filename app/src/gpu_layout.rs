//! The pose layout drawn by the GPU (`shaders/layout.wgsl`): the same picture as the engine's
//! CPU rasteriser (`skeleguide_engine::pose::layout`), so that the canvas shows what the model is
//! given. The shapes (one per limb ellipse and joint circle, in the CPU's draw order) are computed
//! here with the CPU's truncations; the shader tests each image pixel against them.
//!
//! [`LayoutPipeline`] records the drawing into any encoder (the canvas does it inside egui's
//! frame); [`Headless`] draws a `PoseSet` offscreen and reads it back (tests, checks).

use bytemuck::{Pod, Zeroable};
use image::RgbImage;
use skeleguide_engine::pose::{
    self,
    skeleton::{limb_color, COLORS, LIMBS, NUM_JOINTS},
    PoseSet,
};
use std::sync::OnceLock;

/// The WGSL source of the layout shader.
pub const LAYOUT_WGSL: &str = include_str!("../../shaders/layout.wgsl");

/// The format of the layout target.
pub const LAYOUT_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// How far (pixels, along each semi-axis) outside the exact ellipse a pixel centre may lie and
/// still be filled: the CPU fills the ellipse's rounded polygon together with its outline.
pub const ELLIPSE_INFLATE: f32 = 0.5;

/// Coordinates are clamped to this magnitude (exact in f32), far outside any canvas.
const COORD_LIMIT: i64 = 1 << 22;

const KIND_ELLIPSE: u32 = 0;
const KIND_CIRCLE: u32 = 1;

/// One shape instance, as the layout shader reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Shape {
    /// Centre on the integer pixel grid.
    pub center: [f32; 2],
    /// Semi-axes (a along the rotated x axis, b across); a circle has a = b = radius.
    pub axes: [f32; 2],
    /// cos and sin of the rotation.
    pub rot: [f32; 2],
    /// 0: limb ellipse, 1: joint circle.
    pub kind: u32,
    /// RGBA, 8 bits each.
    pub color: [u8; 4],
}

const SHAPE_ATTRIBUTES: [wgpu::VertexAttribute; 5] = wgpu::vertex_attr_array![
    0 => Float32x2,
    1 => Float32x2,
    2 => Float32x2,
    3 => Uint32,
    4 => Unorm8x4,
];

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct TargetUniform {
    size: [f32; 2],
    inflate: f32,
    _pad: f32,
}

/// sin of an integer number of degrees, rounded to f32 as OpenCV's table holds it (the CPU
/// rasteriser uses the same values).
fn sin_deg(deg: i64) -> f64 {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        (0..360)
            .map(|d| f64::from((f64::from(d)).to_radians().sin() as f32))
            .collect()
    });
    t[deg.rem_euclid(360) as usize]
}

fn clamp_coord(v: i64) -> f32 {
    v.clamp(-COORD_LIMIT, COORD_LIMIT) as f32
}

/// The shapes of the layout of `set` on its own canvas, in draw order: every limb (limb-major,
/// then person), then every joint (joint-major, then person).
pub fn shapes(set: &PoseSet) -> Vec<Shape> {
    let stick = pose::stick_width(set.width, set.height);
    let r = clamp_coord(stick);
    let mut out = Vec::with_capacity(set.people.len() * (LIMBS.len() + NUM_JOINTS));
    for (i, &(a, b)) in LIMBS.iter().enumerate() {
        let [cr, cg, cb] = limb_color(i);
        for person in &set.people {
            let (Some(p), Some(q)) = (person.joints[a], person.joints[b]) else {
                continue;
            };
            // the CPU's rules: truncated midpoint, half length and angle in degrees
            let (mx, my) = ((p.x + q.x) / 2.0, (p.y + q.y) / 2.0);
            let half = ((p.x - q.x).hypot(p.y - q.y) / 2.0) as i64;
            let angle = ((p.y - q.y).atan2(p.x - q.x).to_degrees() as i64).rem_euclid(360);
            out.push(Shape {
                center: [clamp_coord(mx as i64), clamp_coord(my as i64)],
                axes: [clamp_coord(half), r],
                rot: [sin_deg(90 - angle) as f32, sin_deg(angle) as f32],
                kind: KIND_ELLIPSE,
                color: [cr, cg, cb, 255],
            });
        }
    }
    for (j, &[cr, cg, cb]) in COLORS.iter().enumerate() {
        for person in &set.people {
            if let Some(p) = person.joints[j] {
                out.push(Shape {
                    center: [clamp_coord(p.x as i64), clamp_coord(p.y as i64)],
                    axes: [r, r],
                    rot: [1.0, 0.0],
                    kind: KIND_CIRCLE,
                    color: [cr, cg, cb, 255],
                });
            }
        }
    }
    out
}

/// The layout pipeline and its buffers.
pub struct LayoutPipeline {
    pipeline: wgpu::RenderPipeline,
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    instances: wgpu::Buffer,
}

impl LayoutPipeline {
    pub fn new(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("skeleguide layout"),
            source: wgpu::ShaderSource::Wgsl(LAYOUT_WGSL.into()),
        });
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("skeleguide layout"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("skeleguide layout"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("skeleguide layout"),
            layout: Some(&layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[Some(wgpu::VertexBufferLayout {
                    array_stride: std::mem::size_of::<Shape>() as wgpu::BufferAddress,
                    step_mode: wgpu::VertexStepMode::Instance,
                    attributes: &SHAPE_ATTRIBUTES,
                })],
            },
            primitive: wgpu::PrimitiveState {
                topology: wgpu::PrimitiveTopology::TriangleStrip,
                ..Default::default()
            },
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                // no blending: a later shape replaces what is below it
                targets: &[Some(wgpu::ColorTargetState {
                    format: LAYOUT_FORMAT,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("skeleguide layout target"),
            size: std::mem::size_of::<TargetUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("skeleguide layout"),
            layout: &bgl,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            }],
        });
        let instances = Self::instance_buffer(device, 256);
        LayoutPipeline {
            pipeline,
            uniform,
            bind_group,
            instances,
        }
    }

    fn instance_buffer(device: &wgpu::Device, shapes: u64) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("skeleguide layout shapes"),
            size: shapes * std::mem::size_of::<Shape>() as u64,
            usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Records the layout of `shapes` into `target` (a [`LAYOUT_FORMAT`] view of `size`),
    /// cleared to transparent black first. The buffer writes go through `queue`, so submit
    /// `encoder` before recording again.
    pub fn encode(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        size: (u32, u32),
        shapes: &[Shape],
    ) {
        let u = TargetUniform {
            size: [size.0.max(1) as f32, size.1.max(1) as f32],
            inflate: ELLIPSE_INFLATE,
            _pad: 0.0,
        };
        queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(&u));
        let bytes = std::mem::size_of_val(shapes) as u64;
        if bytes > self.instances.size() {
            let n = (shapes.len() as u64).next_power_of_two();
            self.instances = Self::instance_buffer(device, n);
        }
        if !shapes.is_empty() {
            queue.write_buffer(&self.instances, 0, bytemuck::cast_slice(shapes));
        }
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("skeleguide layout"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: target,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::TRANSPARENT),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        if !shapes.is_empty() {
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.set_vertex_buffer(0, self.instances.slice(..bytes));
            pass.draw(0..4, 0..shapes.len() as u32);
        }
    }
}

/// A layout texture of the given size, for [`LayoutPipeline::encode`].
pub fn layout_texture(device: &wgpu::Device, size: (u32, u32), readable: bool) -> wgpu::Texture {
    let mut usage = wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::TEXTURE_BINDING;
    if readable {
        usage |= wgpu::TextureUsages::COPY_SRC;
    }
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some("skeleguide layout"),
        size: wgpu::Extent3d {
            width: size.0.max(1),
            height: size.1.max(1),
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: LAYOUT_FORMAT,
        usage,
        view_formats: &[],
    })
}

/// A device of its own, for drawing layouts offscreen.
pub struct Headless {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: LayoutPipeline,
    /// The adapter in use.
    pub adapter: wgpu::AdapterInfo,
}

impl Headless {
    /// Opens an adapter (a CPU one, e.g. Mesa's lavapipe, when there is one, so results do not
    /// depend on the machine's GPU), or explains why none could be opened.
    pub fn new() -> Result<Self, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let cpu = adapters
            .into_iter()
            .filter(|a| a.get_info().device_type == wgpu::DeviceType::Cpu)
            .min_by_key(|a| {
                // Vulkan (lavapipe) before GL (llvmpipe)
                (a.get_info().backend != wgpu::Backend::Vulkan) as u8
            });
        let adapter = match cpu {
            Some(a) => a,
            None => {
                let fallback =
                    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                        force_fallback_adapter: true,
                        ..Default::default()
                    }));
                match fallback {
                    Ok(a) => a,
                    Err(_) => pollster::block_on(
                        instance.request_adapter(&wgpu::RequestAdapterOptions::default()),
                    )
                    .map_err(|e| format!("no wgpu adapter: {e}"))?,
                }
            }
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("skeleguide layout"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| format!("cannot open the wgpu device: {e}"))?;
        let pipeline = LayoutPipeline::new(&device);
        Ok(Headless {
            device,
            queue,
            pipeline,
            adapter: adapter.get_info(),
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Draws the layout of `set` on black at the set's own size (what
    /// `pose::draw_layout(None, set)` draws on the CPU).
    pub fn render(&mut self, set: &PoseSet) -> Result<RgbImage, String> {
        let (w, h) = (set.width, set.height);
        if w == 0 || h == 0 {
            return Ok(RgbImage::new(w, h));
        }
        let texture = self.draw_texture(set)?;
        let rgba = self.read_rgba(&texture)?;
        let rgb = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        RgbImage::from_raw(w, h, rgb).ok_or_else(|| "readback size mismatch".to_string())
    }

    /// The layout of `set` in a new (readable, bindable) layout texture of the set's size.
    pub fn draw_texture(&mut self, set: &PoseSet) -> Result<wgpu::Texture, String> {
        let (w, h) = (set.width, set.height);
        let max = self.device.limits().max_texture_dimension_2d;
        if w == 0 || h == 0 || w > max || h > max {
            return Err(format!(
                "a {w}x{h} layout does not fit this device's textures (1 to {max} pixels a side)"
            ));
        }
        let texture = layout_texture(&self.device, (w, h), true);
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("skeleguide layout"),
            });
        self.pipeline.encode(
            &self.device,
            &self.queue,
            &mut encoder,
            &view,
            (w, h),
            &shapes(set),
        );
        self.queue.submit([encoder.finish()]);
        Ok(texture)
    }

    /// The pixels of a 4-bytes-per-pixel texture made with `COPY_SRC`, rows tightly packed.
    pub fn read_rgba(&self, texture: &wgpu::Texture) -> Result<Vec<u8>, String> {
        let (w, h) = (texture.width(), texture.height());
        let row = (w * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
            * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("skeleguide readback"),
            size: row as u64 * h as u64,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("skeleguide readback"),
            });
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &readback,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(row),
                    rows_per_image: Some(h),
                },
            },
            wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
        );
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        readback
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("wgpu poll: {e}"))?;
        rx.recv()
            .map_err(|_| "the readback was dropped".to_string())?
            .map_err(|e| format!("cannot read the texture back: {e}"))?;
        let mut out = Vec::with_capacity(w as usize * h as usize * 4);
        {
            let data = readback
                .slice(..)
                .get_mapped_range()
                .map_err(|e| format!("cannot read the texture back: {e}"))?;
            for src in data.chunks_exact(row as usize) {
                out.extend_from_slice(&src[..w as usize * 4]);
            }
        }
        readback.unmap();
        Ok(out)
    }
}
