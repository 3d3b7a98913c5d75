//! `skeleguide-train import-coco`: a manifest data set from COCO keypoint annotations.

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ImportCocoArgs {
    /// COCO keypoint annotation file (person_keypoints_*.json).
    #[arg(long)]
    annotations: PathBuf,
    /// Directory of the images named in the annotations.
    #[arg(long)]
    images: PathBuf,
    /// Directory of the person-free backgrounds (same file names as the images).
    #[arg(long)]
    backgrounds: Option<PathBuf>,
    /// COCO captions file (captions_*.json); without it prompts name the person count.
    #[arg(long)]
    captions: Option<PathBuf>,
    /// Output data set directory.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(a: ImportCocoArgs) -> Result<()> {
    let ImportCocoArgs {
        annotations,
        images,
        backgrounds,
        captions,
        out,
    } = a;
    let opts = skeleguide_trainer::data::coco::CocoImport {
        annotations,
        images,
        backgrounds,
        captions,
        out: out.clone(),
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} records written")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let s = skeleguide_trainer::data::coco::import_coco(&opts, &|| bar.inc(1))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} records ({} with COCO captions) to {}; skipped {} images without a labelled person",
        s.written,
        s.captioned,
        out.join("manifest.jsonl").display(),
        s.skipped_no_people
    );
    Ok(())
}
