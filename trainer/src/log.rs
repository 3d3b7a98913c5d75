//! Watching a run: the per-step JSONL log, the loss-curve PNG and sample grids.

use crate::phase::Phase;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LOG_FILE: &str = "train.jsonl";
pub const CURVE_FILE: &str = "loss.png";

/// One optimiser step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Serialised as its string form (`0-ae`, `0-dit`, `1`, `2`, `3`).
    pub phase: Phase,
    /// Step within the phase, from 1.
    pub step: usize,
    /// The optimised loss.
    pub loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_reason: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_render: Option<f64>,
    pub lr: f64,
    pub grad_norm: f64,
    pub step_time_s: f64,
    pub samples_per_s: f64,
}

/// The JSONL log plus the records kept in memory for the curve.
pub struct RunLog {
    path: PathBuf,
    pub records: Vec<StepRecord>,
}

impl RunLog {
    /// Reopens the log of a resumed run, dropping steps after the checkpoint (a killed run
    /// may have logged steps it never checkpointed).
    pub fn resume(out: &Path, phase: Phase, step: usize) -> std::io::Result<Self> {
        Self::keep(out, |r| {
            r.phase < phase || (r.phase == phase && r.step <= step)
        })
    }

    /// A log kept in memory only (a data-parallel rank other than 0: rank 0 writes the file).
    pub fn unwritten(out: &Path) -> Self {
        Self {
            path: out.join(LOG_FILE),
            records: Vec::new(),
        }
    }

    /// Reopens the log of a run that starts at `phase`, keeping only the earlier phases' steps
    /// (a run of one phase continues the log of the phases before it).
    pub fn starting_at(out: &Path, phase: Phase) -> std::io::Result<Self> {
        Self::keep(out, |r| r.phase < phase)
    }

    fn keep(out: &Path, keep: impl Fn(&StepRecord) -> bool) -> std::io::Result<Self> {
        let path = out.join(LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let records: Vec<StepRecord> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<StepRecord>(l).ok())
            .filter(|r| keep(r))
            .collect();
        // a run that fails before its first step leaves no empty log behind
        if path.exists() {
            let mut body = String::new();
            for r in &records {
                body.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
                body.push('\n');
            }
            skeleguide_engine::fsutil::write_atomic(&path, body.as_bytes())
                .map_err(std::io::Error::other)?;
        }
        Ok(Self { path, records })
    }

    pub fn push(&mut self, r: StepRecord) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(
            f,
            "{}",
            serde_json::to_string(&r).map_err(std::io::Error::other)?
        )?;
        self.records.push(r);
        Ok(())
    }

    /// Writes the loss curve of every phase so far (`loss.png`).
    pub fn plot(&self, out: &Path) -> Result<(), String> {
        plot_losses(&self.records, &out.join(CURVE_FILE))
    }
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded egui font: no system fonts needed.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// A loss-curve PNG: one series per phase (and per loss term in phase 2), x = step of the run.
pub fn plot_losses(records: &[StepRecord], path: &Path) -> Result<(), String> {
    register_font();
    let (w, h) = (900u32, 420u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = records.len().max(2);
        let ymax = records
            .iter()
            .map(|r| r.loss)
            .filter(|v| v.is_finite())
            .fold(1e-6f64, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0..n, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("step (whole run)")
            .y_desc("loss")
            .draw()
            .map_err(|e| e.to_string())?;
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        let mut phases: Vec<Phase> = Vec::new();
        for r in records {
            if !phases.contains(&r.phase) {
                phases.push(r.phase);
            }
        }
        for (pi, ph) in phases.iter().enumerate() {
            let pts: Vec<(usize, f64)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.phase == *ph && r.loss.is_finite())
                .map(|(i, r)| (i, r.loss))
                .collect();
            let c = colors[pi % colors.len()];
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label(format!("phase {ph}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or("plot buffer has a bad size")?;
    write_png(&img, path)
}

/// Encodes and writes a PNG atomically.
pub fn write_png(img: &image::RgbImage, path: &Path) -> Result<(), String> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    skeleguide_engine::fsutil::write_atomic(path, &bytes).map_err(|e| e.to_string())
}

/// A grid of rows of equally sized images (e.g. scene | layout | render per example).
pub fn grid(rows: &[Vec<image::RgbImage>]) -> image::RgbImage {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0) as u32;
    let (cw, ch) = rows
        .iter()
        .flatten()
        .fold((1, 1), |(w, h), i| (w.max(i.width()), h.max(i.height())));
    let pad = 2;
    let mut out = image::RgbImage::from_pixel(
        cols * (cw + pad) + pad,
        rows.len() as u32 * (ch + pad) + pad,
        image::Rgb([255, 255, 255]),
    );
    for (ri, row) in rows.iter().enumerate() {
        for (ci, img) in row.iter().enumerate() {
            let x = pad + ci as u32 * (cw + pad);
            let y = pad + ri as u32 * (ch + pad);
            image::imageops::overlay(&mut out, img, x as i64, y as i64);
        }
    }
    out
}
