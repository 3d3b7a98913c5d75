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
    skeleton::{limb_color, COLORS, LIMBS},
    PoseSet,
};
use std::sync::OnceLock;

/// The WGSL source of the layout shader.
pub const LAYOUT_WGSL: &str = include_str!("../../shaders/layout.wgsl");

/// The format of the layout target.
pub const LAYOUT_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// Polygon vertices and circle centres are clamped to this magnitude, so the shader's integer
/// arithmetic cannot overflow. It lies a whole canvas beyond the largest texture, so only limbs
/// reaching absurdly far off the canvas can come out different from the CPU's.
const COORD_LIMIT: i64 = 1 << 14;

/// One limb polygon: its vertices in [`Geometry::verts`] and its colour.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Poly {
    pub first: u32,
    pub count: u32,
    /// RGBA8, red in the low byte.
    pub color: u32,
    pub _pad: u32,
}

/// One image row of one limb polygon (an instance of the row pass).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Row {
    pub poly: u32,
    pub y: i32,
}

/// One joint circle (an instance of the circle pass).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Circle {
    pub center: [f32; 2],
    pub radius: f32,
    pub color: [u8; 4],
}

const ROW_ATTRIBUTES: [wgpu::VertexAttribute; 2] =
    wgpu::vertex_attr_array![0 => Uint32, 1 => Sint32];
const CIRCLE_ATTRIBUTES: [wgpu::VertexAttribute; 3] =
    wgpu::vertex_attr_array![0 => Float32x2, 1 => Float32, 2 => Unorm8x4];

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct TargetUniform {
    size: [f32; 2],
    _pad: [f32; 2],
}

/// What the shader draws for one pose set: limb polygons (by rows), then joint circles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Geometry {
    pub size: (u32, u32),
    pub polys: Vec<Poly>,
    pub verts: Vec<[i32; 2]>,
    pub rows: Vec<Row>,
    pub circles: Vec<Circle>,
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

fn clamp_coord(v: i64) -> i32 {
    v.clamp(-COORD_LIMIT, COORD_LIMIT) as i32
}

fn pack(c: [u8; 3]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], 255])
}

/// Appends the limb ellipse's polygon for joints p and q: the ellipse (semi-axes int(length/2)
/// and `stick`, centred at the truncated midpoint, turned by the truncated angle in degrees)
/// sampled at every whole degree of its parameter, 0 to 360, rounded half to even, without
/// repeated consecutive points.
fn limb_polygon(p: (f64, f64), q: (f64, f64), stick: i64, out: &mut Vec<[i32; 2]>) {
    let (cx, cy) = (
        (((p.0 + q.0) / 2.0) as i64) as f64,
        (((p.1 + q.1) / 2.0) as i64) as f64,
    );
    let a = (((p.0 - q.0).hypot(p.1 - q.1) / 2.0) as i64) as f64;
    let b = stick as f64;
    let turn = ((p.1 - q.1).atan2(p.0 - q.0).to_degrees() as i64).rem_euclid(360);
    let (ct, st) = (sin_deg(90 - turn), sin_deg(turn));
    let start = out.len();
    for t in 0..=360 {
        let (ex, ey) = (a * sin_deg(90 - t), b * sin_deg(t));
        let x = (cx + ex * ct - ey * st).round_ties_even() as i64;
        let y = (cy + ex * st + ey * ct).round_ties_even() as i64;
        let v = [clamp_coord(x), clamp_coord(y)];
        if out.len() == start || out.last() != Some(&v) {
            out.push(v);
        }
    }
    if out.len() - start == 1 {
        out.push(out[start]);
    }
}

/// The geometry of the layout of `set` on its own canvas, in the CPU's draw order: every limb
/// (limb-major, then person), then every joint (joint-major, then person).
pub fn geometry(set: &PoseSet) -> Geometry {
    let (w, h) = (set.width, set.height);
    let stick = pose::stick_width(w, h);
    let mut g = Geometry {
        size: (w, h),
        ..Default::default()
    };
    for (i, &(ja, jb)) in LIMBS.iter().enumerate() {
        let color = pack(limb_color(i));
        for person in &set.people {
            let (Some(p), Some(q)) = (person.joints[ja], person.joints[jb]) else {
                continue;
            };
            let first = g.verts.len();
            limb_polygon((p.x, p.y), (q.x, q.y), stick, &mut g.verts);
            let poly = g.polys.len() as u32;
            g.polys.push(Poly {
                first: first as u32,
                count: (g.verts.len() - first) as u32,
                color,
                _pad: 0,
            });
            let ys = g.verts[first..].iter().map(|v| v[1]);
            let (y0, y1) = (ys.clone().min().unwrap_or(0), ys.max().unwrap_or(-1));
            // only the rows on the canvas
            let (y0, y1) = (y0.max(0), y1.min(h as i32 - 1));
            g.rows.extend((y0..=y1).map(|y| Row { poly, y }));
        }
    }
    let r = stick.clamp(0, COORD_LIMIT) as f32;
    for (j, &c) in COLORS.iter().enumerate() {
        for person in &set.people {
            if let Some(p) = person.joints[j] {
                g.circles.push(Circle {
                    center: [
                        clamp_coord(p.x as i64) as f32,
                        clamp_coord(p.y as i64) as f32,
                    ],
                    radius: r,
                    color: [c[0], c[1], c[2], 255],
                });
            }
        }
    }
    g
}

/// Whether `adapter` can run the layout shader (it reads storage buffers in a vertex shader).
pub fn supported(adapter: &wgpu::Adapter) -> bool {
    adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::VERTEX_STORAGE)
        && adapter.limits().max_storage_buffers_per_shader_stage >= 2
}

fn buffer(
    device: &wgpu::Device,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(256).next_power_of_two(),
        usage: usage | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The layout pipelines and their buffers.
pub struct LayoutPipeline {
    rows: wgpu::RenderPipeline,
    circles: wgpu::RenderPipeline,
    bgl: wgpu::BindGroupLayout,
    uniform: wgpu::Buffer,
    polys: wgpu::Buffer,
    verts: wgpu::Buffer,
    row_buf: wgpu::Buffer,
    circle_buf: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl LayoutPipeline {
    pub fn new(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("skeleguide layout"),
            source: wgpu::ShaderSource::Wgsl(LAYOUT_WGSL.into()),
        });
        let storage = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::VERTEX,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: true },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("skeleguide layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                storage(1),
                storage(2),
            ],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("skeleguide layout"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let pipeline = |label, vs, fs, stride, attributes| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(label),
                layout: Some(&layout),
                vertex: wgpu::VertexState {
                    module: &module,
                    entry_point: Some(vs),
                    compilation_options: Default::default(),
                    buffers: &[Some(wgpu::VertexBufferLayout {
                        array_stride: stride,
                        step_mode: wgpu::VertexStepMode::Instance,
                        attributes,
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
                    entry_point: Some(fs),
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
            })
        };
        let rows = pipeline(
            "skeleguide layout limbs",
            "vs_row",
            "fs_flat",
            std::mem::size_of::<Row>() as u64,
            &ROW_ATTRIBUTES[..],
        );
        let circles = pipeline(
            "skeleguide layout joints",
            "vs_circle",
            "fs_circle",
            std::mem::size_of::<Circle>() as u64,
            &CIRCLE_ATTRIBUTES[..],
        );
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("skeleguide layout target"),
            size: std::mem::size_of::<TargetUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let st = wgpu::BufferUsages::STORAGE;
        let polys = buffer(device, "skeleguide layout polygons", 0, st);
        let verts = buffer(device, "skeleguide layout vertices", 0, st);
        let bind_group = Self::bind(device, &bgl, &uniform, &polys, &verts);
        let vx = wgpu::BufferUsages::VERTEX;
        LayoutPipeline {
            rows,
            circles,
            bgl,
            uniform,
            polys,
            verts,
            row_buf: buffer(device, "skeleguide layout rows", 0, vx),
            circle_buf: buffer(device, "skeleguide layout joints", 0, vx),
            bind_group,
        }
    }

    fn bind(
        device: &wgpu::Device,
        bgl: &wgpu::BindGroupLayout,
        uniform: &wgpu::Buffer,
        polys: &wgpu::Buffer,
        verts: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("skeleguide layout"),
            layout: bgl,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: polys.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: verts.as_entire_binding(),
                },
            ],
        })
    }

    /// Records the layout `g` into `target` (a [`LAYOUT_FORMAT`] view of `g.size`), cleared to
    /// transparent black first. The buffer writes go through `queue`, so submit `encoder`
    /// before recording again.
    pub fn encode(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        g: &Geometry,
    ) {
        let u = TargetUniform {
            size: [g.size.0.max(1) as f32, g.size.1.max(1) as f32],
            _pad: [0.0; 2],
        };
        queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(&u));
        let mut rebind = false;
        let mut upload = |buf: &mut wgpu::Buffer, label: &str, usage, bytes: &[u8], storage| {
            if bytes.len() as u64 > buf.size() {
                *buf = buffer(device, label, bytes.len() as u64, usage);
                rebind |= storage;
            }
            if !bytes.is_empty() {
                queue.write_buffer(buf, 0, bytes);
            }
        };
        let (st, vx) = (wgpu::BufferUsages::STORAGE, wgpu::BufferUsages::VERTEX);
        let polys: &[u8] = bytemuck::cast_slice(&g.polys);
        let verts: &[u8] = bytemuck::cast_slice(&g.verts);
        upload(
            &mut self.polys,
            "skeleguide layout polygons",
            st,
            polys,
            true,
        );
        upload(
            &mut self.verts,
            "skeleguide layout vertices",
            st,
            verts,
            true,
        );
        let rows: &[u8] = bytemuck::cast_slice(&g.rows);
        let circles: &[u8] = bytemuck::cast_slice(&g.circles);
        upload(&mut self.row_buf, "skeleguide layout rows", vx, rows, false);
        upload(
            &mut self.circle_buf,
            "skeleguide layout joints",
            vx,
            circles,
            false,
        );
        if rebind {
            self.bind_group =
                Self::bind(device, &self.bgl, &self.uniform, &self.polys, &self.verts);
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
        pass.set_bind_group(0, &self.bind_group, &[]);
        if !g.rows.is_empty() {
            pass.set_pipeline(&self.rows);
            pass.set_vertex_buffer(0, self.row_buf.slice(..rows.len() as u64));
            pass.draw(0..4, 0..g.rows.len() as u32);
        }
        if !g.circles.is_empty() {
            pass.set_pipeline(&self.circles);
            pass.set_vertex_buffer(0, self.circle_buf.slice(..circles.len() as u64));
            pass.draw(0..4, 0..g.circles.len() as u32);
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
        let adapter = match cpu.filter(supported) {
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
        if !supported(&adapter) {
            return Err(format!(
                "{} cannot read storage buffers in vertex shaders",
                adapter.get_info().name
            ));
        }
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
            &geometry(set),
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
