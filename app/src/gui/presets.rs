//! The pose preset library (`assets/poses/`, embedded): one person per file, placed into the
//! current scene by the people panel.

use skeleguide_engine::pose::edit::fit_person;
use skeleguide_engine::pose::{parse_pose_json, ImportOptions, Pose};

/// (label, file name, JSON text).
pub(super) const PRESETS: [(&str, &str, &str); 6] = [
    (
        "Standing",
        "standing.json",
        include_str!("../../../assets/poses/standing.json"),
    ),
    (
        "Walking",
        "walking.json",
        include_str!("../../../assets/poses/walking.json"),
    ),
    (
        "Sitting",
        "sitting.json",
        include_str!("../../../assets/poses/sitting.json"),
    ),
    (
        "Lying",
        "lying.json",
        include_str!("../../../assets/poses/lying.json"),
    ),
    (
        "Waving",
        "waving.json",
        include_str!("../../../assets/poses/waving.json"),
    ),
    (
        "Pointing",
        "pointing.json",
        include_str!("../../../assets/poses/pointing.json"),
    ),
];

/// The first person of preset `index`, fitted to a `w`×`h` scene: centred, as tall as 45 % of
/// the scene height (lying presets keep their aspect, so they come out as long, not tall).
pub(super) fn preset_person(index: usize, w: u32, h: u32) -> Result<Pose, String> {
    let (_, file, text) = PRESETS
        .get(index)
        .ok_or_else(|| format!("no pose preset #{index}"))?;
    let doc = parse_pose_json(text, file, &ImportOptions::default()).map_err(|e| e.to_string())?;
    let src = doc
        .frames
        .first()
        .and_then(|f| f.people.first())
        .ok_or_else(|| format!("{file}: the preset holds no person"))?;
    // Scale by the preset's own canvas, so a lying body stays as long as a standing one is tall.
    let src_h = doc.frames[0].height.max(1) as f64;
    let (y0, y1) = src
        .joints
        .iter()
        .flatten()
        .fold((f64::MAX, f64::MIN), |(a, b), k| (a.min(k.y), b.max(k.y)));
    let frac = ((y1 - y0) / src_h).clamp(0.02, 1.0);
    let height = h as f64 * 0.55 * frac;
    Ok(fit_person(src, (w as f64 / 2.0, h as f64 / 2.0), height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_fits_the_scene() {
        for (i, (label, _, _)) in PRESETS.iter().enumerate() {
            let p = preset_person(i, 640, 480).unwrap();
            assert!(p.present_count() >= 14, "{label}: {}", p.present_count());
            for k in p.joints.iter().flatten() {
                assert!(
                    k.x > 0.0 && k.x < 640.0 && k.y > 0.0 && k.y < 480.0,
                    "{label}: {k:?}"
                );
            }
        }
    }
}
