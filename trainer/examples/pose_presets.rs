//! Regenerates the pose preset library in `assets/poses/` from the synthetic generator's body
//! model: one person per file, 512×512 canvas, ControlNet JSON.
//!
//! `cargo run --release -p skeleguide-trainer --example pose_presets [-- OUT_DIR]`

use skeleguide_engine::pose::{write_pose_file, ExportOptions, PoseSet};
use skeleguide_trainer::data::body::{pose_for, Action};
use skeleguide_trainer::data::rng::Rng;
use std::path::PathBuf;

/// (file stem, action, facing in radians).
const PRESETS: [(&str, Action, f64); 6] = [
    ("standing", Action::Stand, 0.0),
    ("walking", Action::Walk, 0.5),
    ("sitting", Action::Sit, 1.1),
    ("lying", Action::Lie, 0.0),
    ("waving", Action::Wave, 0.0),
    ("pointing", Action::Point, 0.2),
];

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("assets/poses"));
    std::fs::create_dir_all(&out)?;
    let (w, h) = (512u32, 512u32);
    for (i, (name, action, facing)) in PRESETS.into_iter().enumerate() {
        let mut rng = Rng::new(0x5EED_0000 + i as u64);
        // The anchor is the feet (standing, walking...), the seat point (sitting) or the
        // lying surface under the pelvis (lying); place each so the body sits mid-canvas.
        let (anchor, height) = match action {
            Action::Sit => ((256.0, 330.0), 380.0),
            Action::Lie => ((256.0, 300.0), 380.0),
            _ => ((256.0, 470.0), 420.0),
        };
        let pose = pose_for(action, anchor, height, facing, &mut rng);
        let set = PoseSet {
            width: w,
            height: h,
            people: vec![pose],
        };
        let path = out.join(format!("{name}.json"));
        write_pose_file(&path, &[set], ExportOptions::default())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
