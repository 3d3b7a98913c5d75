//! `skeleguide invert LAYOUT -o POSE.json`: layout image -> editable keypoints.

use anyhow::{bail, Result};
use clap::Args;
use skeleguide_engine::inverter::{read_layout, ColorDecoder};
use skeleguide_engine::modeldir::INVERTER_FILE;
use skeleguide_engine::pipeline::invert_layout_image;
use skeleguide_engine::pose::{write_pose_file, ExportOptions};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InvertArgs {
    /// Layout image (PNG or JPEG, any size): OpenPose skeletons drawn in the ControlNet
    /// colours, on black or over a photo.
    pub layout: PathBuf,
    /// Output pose JSON (ControlNet form, written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Model directory whose inverter.safetensors to use (default: the embedded tiny model's).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Use the training-free colour-segmentation decoder instead of the network.
    #[arg(long)]
    pub baseline: bool,
    /// Write coordinates normalised to [0, 1] instead of pixels.
    #[arg(long)]
    pub normalized: bool,
}

pub fn run(a: InvertArgs) -> Result<()> {
    super::pose::ensure_writable(&a.output)?;
    if let Some(dir) = &a.model {
        if !dir.is_dir() {
            bail!("--model {}: not a model directory", dir.display());
        }
        if !dir.join(INVERTER_FILE).is_file() {
            eprintln!(
                "note: {} has no {INVERTER_FILE}; using the embedded default",
                dir.display()
            );
        }
    }
    let img = read_layout(&a.layout)?;
    let set = if a.baseline {
        ColorDecoder::default().invert(&img)?
    } else {
        invert_layout_image(a.model.as_deref(), &img)?
    };
    write_pose_file(
        &a.output,
        &[set.clone()],
        ExportOptions {
            normalized: a.normalized,
            keep_confidence: false,
        },
    )?;
    let joints: usize = set.people.iter().map(|p| p.present_count()).sum();
    eprintln!(
        "{} people, {joints} joints ({}x{}) -> {}",
        set.people.len(),
        set.width,
        set.height,
        a.output.display()
    );
    Ok(())
}
