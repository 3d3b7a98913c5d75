//! `skeleguide invert LAYOUT -o POSE.json`: layout image -> editable keypoints.

use anyhow::{bail, Result};
use clap::Args;
use skeleguide_engine::inverter::read_layout;
use skeleguide_engine::modeldir::INVERTER_FILE;
use skeleguide_engine::pipeline::{invert_layout_image, InverterChoice};
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
    /// Model directory whose inverter.safetensors to use.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Force the training-free colour-segmentation decoder.
    #[arg(long, conflicts_with = "network")]
    pub baseline: bool,
    /// Force the network (the model directory's, else the shipped weights: see
    /// assets/models/tiny/INVERTER.md). Without --baseline or --network: the colour decoder when
    /// the image carries the palette exactly (a clean layout file, where it is the more
    /// accurate), else the network (decoded layouts, JPEGs, photos).
    #[arg(long)]
    pub network: bool,
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
        if !dir.join(INVERTER_FILE).is_file() && !a.baseline {
            eprintln!(
                "note: {} has no {INVERTER_FILE}; the shipped network is used where a network is",
                dir.display(),
            );
        }
    }
    let img = read_layout(&a.layout)?;
    let choice = if a.baseline {
        InverterChoice::Colour
    } else if a.network {
        InverterChoice::Network
    } else {
        InverterChoice::Auto
    };
    let set = invert_layout_image(a.model.as_deref(), &img, choice)?;
    write_pose_file(
        &a.output,
        std::slice::from_ref(&set),
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
