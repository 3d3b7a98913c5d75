//! The canvas' layout overlay on the GPU, through an egui_wgpu paint callback: each frame the
//! layout of the shown poses is drawn by `shaders/layout.wgsl` into an image-sized texture (the
//! same pixels the model is given, see [`crate::gpu_layout`]), then `shaders/overlay.wgsl` shows
//! that texture over the scene, nearest-sampled, with the overlay opacity.
//!
//! Used when eframe runs on wgpu; otherwise (the glow backend, the headless test harness) the
//! canvas keeps the CPU-rasterised overlay texture.

use crate::gpu_layout::{geometry, layout_texture, supported, Geometry, LayoutPipeline};
use bytemuck::{Pod, Zeroable};
use egui::Rect;
use egui_wgpu::{CallbackResources, CallbackTrait, RenderState, ScreenDescriptor};
use skeleguide_engine::pose::PoseSet;

/// The WGSL source of the display shader.
pub const OVERLAY_WGSL: &str = include_str!("../../../shaders/overlay.wgsl");

/// Present when the GPU overlay is installed in the wgpu renderer.
#[derive(Clone, Copy, Debug)]
pub struct GpuOverlay {
    /// The largest layout texture side the device allows.
    pub max_side: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ViewUniform {
    origin: [f32; 2],
    scale: [f32; 2],
    opacity: f32,
    linear_output: u32,
    _pad: [u32; 2],
}

/// The display pass (`shaders/overlay.wgsl`): shows a layout texture over a framebuffer.
pub struct Display {
    pipeline: wgpu::RenderPipeline,
    bgl: wgpu::BindGroupLayout,
    view_uniform: wgpu::Buffer,
    linear_output: bool,
}

impl Display {
    /// The pipeline for a framebuffer of `format`, without MSAA or depth (egui's defaults).
    pub fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("skeleguide overlay"),
            source: wgpu::ShaderSource::Wgsl(OVERLAY_WGSL.into()),
        });
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("skeleguide overlay"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("skeleguide overlay"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("skeleguide overlay"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format,
                    blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let view_uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("skeleguide overlay view"),
            size: std::mem::size_of::<ViewUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Display {
            pipeline,
            bgl,
            view_uniform,
            linear_output: format.is_srgb(),
        }
    }

    /// The bind group showing `layout` (a view of a layout texture).
    pub fn bind(&self, device: &wgpu::Device, layout: &wgpu::TextureView) -> wgpu::BindGroup {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("skeleguide overlay"),
            layout: &self.bgl,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: self.view_uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(layout),
                },
            ],
        })
    }

    /// Where the next draw puts the image: its top-left corner and framebuffer pixels per image
    /// pixel, in framebuffer pixels; `opacity` in 0..1.
    pub fn set_view(&self, queue: &wgpu::Queue, origin: [f32; 2], scale: [f32; 2], opacity: f32) {
        let view = ViewUniform {
            origin,
            scale: [scale[0].max(1e-6), scale[1].max(1e-6)],
            opacity: opacity.clamp(0.0, 1.0),
            linear_output: self.linear_output as u32,
            _pad: [0; 2],
        };
        queue.write_buffer(&self.view_uniform, 0, bytemuck::bytes_of(&view));
    }

    /// Draws the layout bound by `bind_group` over the render pass' viewport.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, bind_group: &wgpu::BindGroup) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}

struct Target {
    size: (u32, u32),
    view: wgpu::TextureView,
    bind_group: wgpu::BindGroup,
}

/// The overlay's GPU objects, kept in egui_wgpu's callback resources.
struct Resources {
    layout: LayoutPipeline,
    display: Display,
    target: Option<Target>,
    /// What the target holds, so an unchanged layout is not drawn again.
    drawn: Option<Geometry>,
}

/// Creates the overlay's pipelines in eframe's wgpu renderer (target format, no MSAA and no
/// depth buffer: eframe's defaults, which the app keeps); `None` when the adapter cannot run
/// the layout shader.
pub fn install(rs: &RenderState) -> Option<GpuOverlay> {
    if !supported(&rs.adapter) {
        return None;
    }
    let device = &rs.device;
    let resources = Resources {
        layout: LayoutPipeline::new(device),
        display: Display::new(device, rs.target_format),
        target: None,
        drawn: None,
    };
    rs.renderer.write().callback_resources.insert(resources);
    Some(GpuOverlay {
        max_side: device.limits().max_texture_dimension_2d,
    })
}

impl Resources {
    fn target(&mut self, device: &wgpu::Device, size: (u32, u32)) -> &Target {
        if self.target.as_ref().is_none_or(|t| t.size != size) {
            let texture = layout_texture(device, size, false);
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            let bind_group = self.display.bind(device, &view);
            self.target = Some(Target {
                size,
                view,
                bind_group,
            });
        }
        self.target.as_ref().expect("set above")
    }
}

/// One frame's overlay.
struct OverlayCallback {
    geometry: Geometry,
    size: (u32, u32),
    /// Where the image is drawn, in points.
    img_rect: Rect,
    opacity: f32,
}

impl CallbackTrait for OverlayCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen: &ScreenDescriptor,
        encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(res) = resources.get_mut::<Resources>() else {
            return Vec::new();
        };
        let ppp = screen.pixels_per_point;
        res.display.set_view(
            queue,
            [self.img_rect.min.x * ppp, self.img_rect.min.y * ppp],
            [
                self.img_rect.width() * ppp / self.size.0 as f32,
                self.img_rect.height() * ppp / self.size.1 as f32,
            ],
            self.opacity,
        );
        let fresh = res.target.as_ref().is_some_and(|t| t.size == self.size)
            && res.drawn.as_ref() == Some(&self.geometry);
        if !fresh {
            let target = res.target(device, self.size).view.clone();
            res.layout
                .encode(device, queue, encoder, &target, &self.geometry);
            res.drawn = Some(self.geometry.clone());
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        let Some(res) = resources.get::<Resources>() else {
            return;
        };
        let Some(target) = res.target.as_ref().filter(|t| t.size == self.size) else {
            return;
        };
        res.display.draw(render_pass, &target.bind_group);
    }
}

/// The overlay of `shown` for the image drawn at `img_rect`, clipped to `clip`; `None` when
/// nothing of it is visible or the image is too large for the device.
pub fn paint_callback(
    gpu: &GpuOverlay,
    clip: Rect,
    img_rect: Rect,
    opacity: f32,
    shown: &PoseSet,
) -> Option<egui::PaintCallback> {
    let size = (shown.width, shown.height);
    if size.0 == 0 || size.1 == 0 || size.0 > gpu.max_side || size.1 > gpu.max_side {
        return None;
    }
    let visible = clip.intersect(img_rect);
    if !visible.is_positive() || !img_rect.is_finite() {
        return None;
    }
    Some(egui_wgpu::Callback::new_paint_callback(
        visible,
        OverlayCallback {
            geometry: geometry(shown),
            size,
            img_rect,
            opacity: opacity.clamp(0.0, 1.0),
        },
    ))
}
