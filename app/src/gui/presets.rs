//! The built-in pose presets (`assets/poses/`, embedded): one person per file, placed into the
//! current scene by the preset menu, and the placement the user's library presets share.

use skeleguide_engine::pose::edit::{place_about, union_bbox};
use skeleguide_engine::pose::{parse_pose_json, ImportOptions, Pose, PoseSet};

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

/// The people of preset `index` on the canvas it was drawn on.
pub(super) fn preset_set(index: usize) -> Result<PoseSet, String> {
    let (_, file, text) = PRESETS
        .get(index)
        .ok_or_else(|| format!("no pose preset #{index}"))?;
    let doc = parse_pose_json(text, file, &ImportOptions::default()).map_err(|e| e.to_string())?;
    doc.frames
        .into_iter()
        .next()
        .filter(|f| !f.people.is_empty())
        .ok_or_else(|| format!("{file}: the preset holds no person"))
}

/// The first person of preset `index`, fitted to a `w`×`h` scene by [`place_people`].
pub(super) fn preset_person(index: usize, w: u32, h: u32) -> Result<Pose, String> {
    let mut set = preset_set(index)?;
    set.people.truncate(1);
    Ok(place_people(&set, w, h).remove(0))
}

/// The people of `src` fitted together to a `w`×`h` scene: centred, as tall as 55 % of the
/// scene height times the share of `src`'s canvas height they fill (lying presets keep their
/// aspect, so they come out as long, not tall). Built-in and library presets are placed alike.
pub(super) fn place_people(src: &PoseSet, w: u32, h: u32) -> Vec<Pose> {
    let Some(bbox) = union_bbox(src.people.iter().filter_map(Pose::body_bbox)) else {
        return src.people.clone();
    };
    let (y0, y1) = (bbox.1, bbox.3);
    // Scale by the preset's own canvas, so a lying body stays as long as a standing one is tall.
    let frac = ((y1 - y0) / src.height.max(1) as f64).clamp(0.02, 1.0);
    let height = h as f64 * 0.55 * frac;
    let s = if y1 - y0 > 1e-9 {
        height / (y1 - y0)
    } else {
        1.0
    };
    place_about(&src.people, bbox, s, (w as f64 / 2.0, h as f64 / 2.0))
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

    #[test]
    fn a_group_is_placed_as_one_person_would_be() {
        use skeleguide_engine::pose::edit::{default_person, fit_person};
        let mut one = PoseSet::new(400, 300);
        one.people.push(default_person((100.0, 150.0), 120.0));
        let (_, y0, _, y1) = one.people[0].body_bbox().unwrap();
        let h = 480.0 * 0.55 * ((y1 - y0) / 300.0);
        assert_eq!(
            place_people(&one, 640, 480),
            vec![fit_person(&one.people[0], (320.0, 240.0), h)]
        );
        // a second person of the same height beside the first: both scale by the same factor
        let mut two = one.clone();
        two.people.push(default_person((300.0, 150.0), 120.0));
        let placed = place_people(&two, 640, 480);
        let neck = |p: &Pose| p.joints[1].unwrap();
        let gap = neck(&placed[1]).x - neck(&placed[0]).x;
        assert!((gap - 200.0 * 480.0 * 0.55 / 300.0).abs() < 1e-9, "{gap}");
        assert!((neck(&placed[0]).y - neck(&placed[1]).y).abs() < 1e-9);
    }
}
