//! Class maps ([`ClassMap`]) and their decoding into people ([`decode_classes`]): joint blobs,
//! limb scores, and the passes that complete, untangle, merge and join the grouped people.

use super::grouping::{group, half_held, keep_best, Candidate};
use super::input::WorkGeometry;
use super::prior::regroup_by_prior;
use super::BACKGROUND;
use crate::pose::skeleton::{LIMBS, NUM_JOINTS, NUM_LIMBS};
use crate::pose::{Keypoint, Pose};

/// Per-pixel classes of an image at its working size: `0..18` joints, `18..35` limbs,
/// [`super::NO_CLASS`] background; row-major `geometry.width × geometry.height`.
#[derive(Clone, Debug)]
pub struct ClassMap {
    /// How the image maps to the working size the classes are given at.
    pub geometry: WorkGeometry,
    /// One class per working pixel, row-major (see the type's docs).
    pub classes: Vec<u8>,
    /// The map reads a drawn layout: the classes were fused with the image's exact colours at
    /// its own size, and those colours agree with what the network reads
    /// ([`super::network::DRAWN_AGREEMENT`]). Its small groups are then people partly hidden or
    /// out of frame, not stray fragments of a misread map ([`super::network::FUSED_MIN_JOINTS`]).
    pub drawn: bool,
}

/// Whether a limb between two joints `len` apart, whose circles have radius `radius`, shows
/// less than two pixels outside both circles.
fn limb_is_hidden(len: f64, radius: f64) -> bool {
    len - 2.0 * radius - 1.0 < 2.0
}

/// Scores a limb between two joints `len` pixels apart whose circles have radius `radius`
/// (same units): the mean of `field(t)` over 9 points of the part of the segment outside both
/// circles, when at least 2/3 of the samples exceed 0.4. When that part is shorter than two
/// pixels the limb is hidden under the circles, and the pair is accepted by proximity with
/// [`HIDDEN_LIMB_SCORE`] (less a little per pixel of length, so the nearest pair wins a tie).
fn score_limb(len: f64, radius: f64, field: impl Fn(f64) -> f64) -> Option<f64> {
    const N: usize = 9;
    if limb_is_hidden(len, radius) {
        return Some(HIDDEN_LIMB_SCORE - 0.001 * len);
    }
    let t0 = (radius + 0.5) / len;
    let t1 = 1.0 - t0;
    let mut sum = 0.0;
    let mut hits = 0;
    for i in 0..N {
        let t = t0 + (t1 - t0) * i as f64 / (N - 1) as f64;
        let s = field(t);
        sum += s;
        if s > 0.4 {
            hits += 1;
        }
    }
    (hits * 3 >= N * 2).then_some(sum / N as f64)
}

/// Blobs of one joint type closer than this many stick widths are one joint
/// ([`merge_split_blobs`]): two people's same joints are rarely that close.
const JOINT_MERGE_RADIUS: f64 = 2.5;

/// The score of a pair whose limb is hidden under its two joint circles. Two joints that
/// close are almost surely one limb, so this ranks just below a limb seen whole (1.0) and well
/// above a long segment that is seen only at its ends and covered in between (about 0.5-0.6),
/// so that small people (stick width 1-2 px, where neck-shoulder and face limbs are hidden)
/// keep their shoulders rather than lose them to a neighbour's neck.
const HIDDEN_LIMB_SCORE: f64 = 0.95;

/// People from a class map (`0..18` joints, `18..35` limbs, [`super::NO_CLASS`] background) of a
/// `w`×`h` layout drawn with stick width `sw`: joint candidates are the centroids of joint
/// blobs (8-connected, at least a fifth of a full circle), limbs are scored along the segment
/// between two candidates, people are grouped by [`group`], groups of fewer than `min_joints`
/// joints are dropped as fragments, each person left then takes the free blobs, slivers
/// included, that its limbs lead to ([`complete`]), and last may share a blob another person
/// holds when a clearly seen limb leads there. Then a person made mostly of another's
/// shared blobs is folded into it ([`absorb_duplicates`]), and two halves of one person are
/// joined ([`join_halves`]). Coordinates are in the map's pixels, continuous (pixel `i`
/// covers `[i, i + 1)`).
pub fn decode_classes(cls: &[u8], w: usize, h: usize, sw: f64, min_joints: usize) -> Vec<Pose> {
    let full = std::f64::consts::PI * sw * sw;
    let min_area = (0.2 * full).max(1.0) as usize;
    let mut cands: [Vec<Candidate>; NUM_JOINTS] = std::array::from_fn(|_| Vec::new());
    // blobs below `min_area`: too weak to found a person, but a person may take one
    let mut slivers: [Vec<Candidate>; NUM_JOINTS] = std::array::from_fn(|_| Vec::new());
    for_each_region(
        cls,
        w,
        h,
        |c| c < NUM_JOINTS,
        |c, pixels| {
            let n = pixels.len();
            let (sx, sy) = pixels.iter().fold((0f64, 0f64), |(sx, sy), &i| {
                (sx + (i % w) as f64, sy + (i / w) as f64)
            });
            let cand = Candidate {
                // the rasteriser draws at the truncated point: add half a pixel back
                x: sx / n as f64 + 0.5,
                y: sy / n as f64 + 0.5,
                score: (n as f64 / full).min(1.0),
            };
            if n >= min_area {
                cands[c].push(cand);
            } else {
                slivers[c].push(cand);
            }
        },
    );
    merge_split_blobs(
        &mut cands,
        &mut slivers,
        JOINT_MERGE_RADIUS * sw,
        min_area as f64 / full,
    );
    for c in cands.iter_mut().chain(slivers.iter_mut()) {
        keep_best(c);
    }
    // 1 where limb k is seen; 0.5 where something drawn after it (a later limb or a joint)
    // covers the point, since it may hide the limb; 0 on background or earlier limbs
    let limb_at = |k: usize, x: f64, y: f64| -> f64 {
        let (xi, yi) = (x.round() as i64, y.round() as i64);
        let mut best = 0.0f64;
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (nx, ny) = (xi + dx, yi + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let c = cls[ny as usize * w + nx as usize] as usize;
                if c == NUM_JOINTS + k {
                    return 1.0;
                }
                if c < NUM_JOINTS || (c > NUM_JOINTS + k && c < BACKGROUND) {
                    best = best.max(0.5);
                }
            }
        }
        best
    };
    let limb = |k: usize, a: &Candidate, b: &Candidate| {
        let len = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
        score_limb(len, sw, |t| {
            // back to pixel indices (the candidates carry the +0.5 of pixel centres)
            limb_at(k, a.x - 0.5 + t * (b.x - a.x), a.y - 0.5 + t * (b.y - a.y))
        })
    };
    let mut people = group(&cands, &limb, 3.0 * sw, 0.6);
    // fragments go first, so that their blobs are free again and completing cannot lift one
    // over the bar
    people.retain(|p| p.present_count() >= min_joints);
    // candidates no person took, and the slivers, may still complete a person
    let mut rest = slivers;
    for (j, cs) in cands.iter().enumerate() {
        for c in cs {
            let taken = people
                .iter()
                .any(|p| p.joints[j].is_some_and(|k| k.x == c.x && k.y == c.y));
            if !taken {
                rest[j].push(*c);
            }
        }
    }
    complete(&mut people, &rest, &limb);
    // two people's same joints closer than the merge radius are one blob, held by one of them:
    // the other may share it when a limb seen clearly (not hidden under the circles, score
    // above SHARED_JOINT_SCORE) leads there
    let clear = |k: usize, a: &Candidate, b: &Candidate| {
        let len = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
        if limb_is_hidden(len, sw) {
            return None;
        }
        limb(k, a, b).filter(|&s| s > SHARED_JOINT_SCORE)
    };
    complete(&mut people, &cands, &clear);
    // last, joints no blob gave, where a limb leads
    complete_from_limb_ends(&mut people, &limb_ends(cls, w, h, sw), sw);
    untangle_chains(&mut people, &limb);
    regroup_by_prior(&mut people, &limb, sw);
    absorb_duplicates(&mut people);
    join_halves(&mut people, HALF_JOIN_RADIUS * sw);
    people
}

/// The four limb chains that leave the neck beside a counterpart: (root joint, the
/// counterpart root on the other side, the chain's joints, the neck-to-root limb).
const SIDE_CHAINS: [(usize, usize, [usize; 3], usize); 4] = [
    (2, 5, [2, 3, 4], 0),
    (5, 2, [5, 6, 7], 1),
    (8, 11, [8, 9, 10], 6),
    (11, 8, [11, 12, 13], 9),
];

/// A chain must be at least this much nearer its counterpart after a swap (as a share of the
/// distance before) for [`untangle_chains`] to swap it.
const UNTANGLE_GAIN: f64 = 0.5;

/// Swaps whole arm or leg chains between two people where the pixels cannot tell them apart but
/// the body can: when two people's necks both reach the other's shoulder (or hip) by a limb as
/// good as their own, and each shoulder then lies much nearer the other shoulder of its new
/// person ([`UNTANGLE_GAIN`]), the chains are exchanged. Overlapping people whose torsos run
/// along one line otherwise keep the assignment the grouping happened to find first.
fn untangle_chains(
    people: &mut [Pose],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
) {
    let dist = |a: Keypoint, b: Keypoint| (a.x - b.x).hypot(a.y - b.y);
    for &(root, other, chain, k) in &SIDE_CHAINS {
        for p in 0..people.len() {
            for q in p + 1..people.len() {
                let get = |i: usize, j: usize| people[i].joints[j];
                let (Some(np), Some(nq), Some(rp), Some(rq), Some(op), Some(oq)) = (
                    get(p, 1),
                    get(q, 1),
                    get(p, root),
                    get(q, root),
                    get(p, other),
                    get(q, other),
                ) else {
                    continue;
                };
                let before = dist(rp, op) + dist(rq, oq);
                let after = dist(rq, op) + dist(rp, oq);
                if after >= UNTANGLE_GAIN * before {
                    continue;
                }
                // the weaker of the two neck-to-root limbs, as grouped or swapped
                let fit = |a: Keypoint, b: Keypoint| {
                    limb(k, &Candidate::held(a), &Candidate::held(b)).unwrap_or(0.0)
                };
                let own = fit(np, rp).min(fit(nq, rq));
                let swapped = fit(np, rq).min(fit(nq, rp));
                if swapped + 0.05 < own {
                    continue;
                }
                for j in chain {
                    let t = people[p].joints[j];
                    people[p].joints[j] = people[q].joints[j];
                    people[q].joints[j] = t;
                }
            }
        }
    }
}

/// How near (in stick widths) a limb's end must lie to a person's joint to count as reaching
/// it, in [`complete_from_limb_ends`].
const LIMB_END_RADIUS: f64 = 3.0;

/// The two ends of every connected region (8-connected, at least two stick widths long) of
/// each limb class, along the region's principal axis.
fn limb_ends(cls: &[u8], w: usize, h: usize, sw: f64) -> [Vec<[(f64, f64); 2]>; NUM_LIMBS] {
    let min_area = ((0.2 * std::f64::consts::PI * sw * sw) as usize).max(2);
    let mut ends: [Vec<[(f64, f64); 2]>; NUM_LIMBS] = std::array::from_fn(|_| Vec::new());
    for_each_region(
        cls,
        w,
        h,
        |c| (NUM_JOINTS..BACKGROUND).contains(&c),
        |c, pixels| {
            if pixels.len() < min_area {
                return;
            }
            if let Some(e) = principal_ends(pixels, w) {
                if (e[0].0 - e[1].0).hypot(e[0].1 - e[1].1) >= 2.0 * sw {
                    ends[c - NUM_JOINTS].push(e);
                }
            }
        },
    );
    ends
}

/// The 8 neighbours of a pixel, row by row.
const NEIGHBOURS_8: [(i64, i64); 8] = [
    (-1, -1),
    (0, -1),
    (1, -1),
    (-1, 0),
    (1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// Calls `f(class, pixels)` for each 8-connected region of one class among the pixels whose
/// class `wanted` accepts, in the scan order of the regions' first pixels.
fn for_each_region(
    cls: &[u8],
    w: usize,
    h: usize,
    wanted: impl Fn(usize) -> bool,
    mut f: impl FnMut(usize, &[usize]),
) {
    let mut seen = vec![false; w * h];
    let (mut stack, mut pixels) = (Vec::new(), Vec::new());
    for start in 0..w * h {
        let c = cls[start];
        if seen[start] || !wanted(c as usize) {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        pixels.clear();
        while let Some(i) = stack.pop() {
            pixels.push(i);
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for (dx, dy) in NEIGHBOURS_8 {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let ni = ny as usize * w + nx as usize;
                if !seen[ni] && cls[ni] == c {
                    seen[ni] = true;
                    stack.push(ni);
                }
            }
        }
        f(c as usize, &pixels);
    }
}

/// Fills joints that no blob gave from the limbs leading to them: an autoencoder's round trip
/// keeps a layout's limbs better than its small joint circles, whose pixels it blurs into the
/// limbs' colours or the background. For each limb (in `LIMBS` order, neck outwards, repeated
/// while joints are added) and each person holding one of its joints but not the other, a
/// region of that limb's class with one end within [`LIMB_END_RADIUS`] stick widths of the
/// held joint (the nearest such region) gives the missing joint at its other end. It runs after
/// the blob-based completion, so it only fills joints that would otherwise be missing.
fn complete_from_limb_ends(people: &mut [Pose], ends: &[Vec<[(f64, f64); 2]>; NUM_LIMBS], sw: f64) {
    let radius = LIMB_END_RADIUS * sw;
    let mut used: Vec<Vec<bool>> = ends.iter().map(|e| vec![false; e.len()]).collect();
    for _ in 0..NUM_JOINTS {
        let mut added = false;
        for (k, &(a, b)) in LIMBS.iter().enumerate() {
            for p in people.iter_mut() {
                let Some((have, want, _)) = half_held(p, (a, b)) else {
                    continue;
                };
                // (distance of the near end, region, far end)
                let mut best: Option<(f64, usize, (f64, f64))> = None;
                for (ri, e) in ends[k].iter().enumerate() {
                    if used[k][ri] {
                        continue;
                    }
                    for (here, there) in [(e[0], e[1]), (e[1], e[0])] {
                        let d = (here.0 - have.x).hypot(here.1 - have.y);
                        if d <= radius && best.is_none_or(|(bd, _, _)| d < bd) {
                            best = Some((d, ri, there));
                        }
                    }
                }
                if let Some((_, ri, there)) = best {
                    used[k][ri] = true;
                    p.joints[want] = Some(Keypoint::new(there.0, there.1));
                    added = true;
                }
            }
        }
        if !added {
            break;
        }
    }
}

/// The two ends (pixel centres) of a region along its principal axis.
fn principal_ends(pixels: &[usize], w: usize) -> Option<[(f64, f64); 2]> {
    let n = pixels.len() as f64;
    let xy = |i: usize| ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
    let (mx, my) = pixels.iter().fold((0.0, 0.0), |(sx, sy), &i| {
        let (x, y) = xy(i);
        (sx + x / n, sy + y / n)
    });
    let (mut cxx, mut cyy, mut cxy) = (0.0, 0.0, 0.0);
    for &i in pixels {
        let (x, y) = xy(i);
        cxx += (x - mx) * (x - mx);
        cyy += (y - my) * (y - my);
        cxy += (x - mx) * (y - my);
    }
    let angle = 0.5 * (2.0 * cxy).atan2(cxx - cyy);
    let (dx, dy) = (angle.cos(), angle.sin());
    let (lo, hi) = pixels.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &i| {
        let (x, y) = xy(i);
        let t = (x - mx) * dx + (y - my) * dy;
        (lo.min(t), hi.max(t))
    });
    (hi > lo).then_some([(mx + lo * dx, my + lo * dy), (mx + hi * dx, my + hi * dy)])
}

/// How close (in stick widths) the joints two halves of one person both have must lie for
/// [`join_halves`]: wide enough to join the halves of a split person, narrow enough to leave
/// neighbours apart.
const HALF_JOIN_RADIUS: f64 = 8.0;

/// Joins two people that are halves of one person: every joint type both have (at least one:
/// where the halves meet, read as two nearby blobs) lies within `radius` of its counterpart.
/// The larger half keeps its positions for those types.
fn join_halves(people: &mut Vec<Pose>, radius: f64) {
    loop {
        let mut pair = None;
        'search: for a in 0..people.len() {
            for b in 0..people.len() {
                if a == b || people[a].present_count() < people[b].present_count() {
                    continue;
                }
                let mut shared = 0;
                let mut fits = true;
                for j in 0..NUM_JOINTS {
                    if let (Some(p), Some(q)) = (people[a].joints[j], people[b].joints[j]) {
                        shared += 1;
                        fits &= ((p.x - q.x).powi(2) + (p.y - q.y).powi(2)).sqrt() <= radius;
                    }
                }
                if fits && shared > 0 {
                    pair = Some((a, b));
                    break 'search;
                }
            }
        }
        let Some((a, b)) = pair else { break };
        fold_into(people, b, a);
    }
}

/// Removes person `from` and gives its joints to person `into` where that one has none.
fn fold_into(people: &mut Vec<Pose>, from: usize, into: usize) {
    let gone = people.remove(from);
    let into = if into > from { into - 1 } else { into };
    for (mine, theirs) in people[into].joints.iter_mut().zip(gone.joints) {
        if mine.is_none() {
            *mine = theirs;
        }
    }
}

/// Folds a person that is mostly another person into it. After sharing, a stray fragment (a
/// second nose-and-eyes blob of a misread head, say) can grow along the blobs another person
/// holds into a copy of that person with a few joints of its own. A person sharing at least
/// as many joints (the same blob: identical coordinates) with one other person as it has of
/// its own is such a copy: its own joints go to that person where it lacks them, and the copy
/// is dropped. Smaller people are folded first.
fn absorb_duplicates(people: &mut Vec<Pose>) {
    loop {
        let same = |a: &Pose, b: &Pose, j: usize| match (a.joints[j], b.joints[j]) {
            (Some(p), Some(q)) => p.x == q.x && p.y == q.y,
            _ => false,
        };
        let mut order: Vec<usize> = (0..people.len()).collect();
        order.sort_by_key(|&i| people[i].present_count());
        let mut fold = None;
        for &b in &order {
            let shared_any =
                |j: usize| (0..people.len()).any(|o| o != b && same(&people[b], &people[o], j));
            let own = (0..NUM_JOINTS)
                .filter(|&j| people[b].joints[j].is_some() && !shared_any(j))
                .count();
            // the person it shares the most blobs with
            let best = (0..people.len())
                .filter(|&a| a != b)
                .map(|a| {
                    let shared = (0..NUM_JOINTS)
                        .filter(|&j| same(&people[b], &people[a], j))
                        .count();
                    (shared, a)
                })
                .max();
            if let Some((_, a)) = best.filter(|&(shared, _)| shared > 0 && shared >= own) {
                fold = Some((b, a));
                break;
            }
        }
        let Some((b, a)) = fold else { break };
        fold_into(people, b, a);
    }
}

/// The limb score that lets a person share a joint blob another person holds (see
/// [`decode_classes`]).
const SHARED_JOINT_SCORE: f64 = 0.9;

/// Merges the blobs of one joint type whose centroids lie within `radius` of each other, the
/// larger first (area-weighted centroid, score the summed share of a circle): a joint circle
/// cut in two by a later circle, or speckled by a network, is one joint. The merged blobs are
/// sorted again into candidates and slivers by `min_score` (the sliver bar as a share of a
/// circle).
fn merge_split_blobs(
    cands: &mut [Vec<Candidate>; NUM_JOINTS],
    slivers: &mut [Vec<Candidate>; NUM_JOINTS],
    radius: f64,
    min_score: f64,
) {
    for j in 0..NUM_JOINTS {
        let mut all: Vec<Candidate> = cands[j].drain(..).chain(slivers[j].drain(..)).collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score));
        // scores summed unclamped while merging (the area as a share of a circle)
        let mut kept: Vec<Candidate> = Vec::new();
        for c in all {
            let near = kept
                .iter_mut()
                .find(|k| ((k.x - c.x).powi(2) + (k.y - c.y).powi(2)).sqrt() < radius);
            match near {
                Some(k) => {
                    let sum = k.score + c.score;
                    k.x = (k.x * k.score + c.x * c.score) / sum;
                    k.y = (k.y * k.score + c.y * c.score) / sum;
                    k.score = sum;
                }
                None => kept.push(c),
            }
        }
        for mut c in kept {
            let area = c.score;
            c.score = area.min(1.0);
            if area >= min_score {
                cands[j].push(c);
            } else {
                slivers[j].push(c);
            }
        }
    }
}

/// Gives each person's missing joints from `rest` (candidates in no person): limb by limb in
/// `LIMBS` order, a person with one end of a limb takes the free candidate of the other end
/// that `limb` scores best, each candidate once; repeated while it adds joints, since a joint
/// added opens the limbs beyond it.
fn complete(
    people: &mut [Pose],
    rest: &[Vec<Candidate>; NUM_JOINTS],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
) {
    let mut used: Vec<Vec<bool>> = rest.iter().map(|c| vec![false; c.len()]).collect();
    for _ in 0..NUM_JOINTS {
        let mut added = false;
        for (k, &(a, b)) in LIMBS.iter().enumerate() {
            // (score, person, free joint, candidate)
            let mut offers = Vec::new();
            for (pi, p) in people.iter().enumerate() {
                let Some((have, want, forward)) = half_held(p, (a, b)) else {
                    continue;
                };
                let h = Candidate::held(have);
                for (ci, c) in rest[want].iter().enumerate() {
                    if used[want][ci] {
                        continue;
                    }
                    let s = if forward {
                        limb(k, &h, c)
                    } else {
                        limb(k, c, &h)
                    };
                    if let Some(s) = s {
                        offers.push((s, pi, want, ci));
                    }
                }
            }
            offers.sort_by(|p, q| q.0.total_cmp(&p.0));
            for (_, pi, want, ci) in offers {
                if used[want][ci] || people[pi].joints[want].is_some() {
                    continue;
                }
                used[want][ci] = true;
                let c = rest[want][ci];
                people[pi].joints[want] = Some(Keypoint::new(c.x, c.y));
                added = true;
            }
        }
        if !added {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverter::test_util::standing;
    use crate::inverter::{ColorDecoder, NO_CLASS};
    use crate::pose::{draw_layout, stick_width, PoseSet};

    #[test]
    fn a_joint_mostly_covered_by_a_later_one_is_still_found() {
        // a profile head: the left ear (drawn after the right one) covers all of the right
        // ear's circle but a sliver below the size that may found a person
        let mut p = standing(120.0, 60.0, 30.0);
        let r_ear = p.joints[16].unwrap();
        p.joints[17] = Some(Keypoint::new(r_ear.x + 1.0, r_ear.y));
        let mut gt = PoseSet::new(512, 384);
        gt.people.push(p);
        let img = draw_layout(None, &gt);
        let dec = ColorDecoder::default();
        let cls = dec.classify(&img);
        let shown = cls.iter().filter(|&&c| c == 16).count();
        let sw = stick_width(512, 384) as f64;
        assert!(
            shown > 0 && (shown as f64) < 0.2 * std::f64::consts::PI * sw * sw,
            "{shown} pixels of the right ear show"
        );
        let pred = dec.invert(&img).unwrap();
        assert_eq!(pred.people.len(), 1);
        let k = pred.people[0].joints[16].expect("the covered right ear");
        assert!(
            (k.x - r_ear.x).abs() < 4.0 && (k.y - r_ear.y).abs() < 4.0,
            "{k:?} vs {r_ear:?}"
        );
    }

    #[test]
    fn joints_whose_circles_are_lost_are_found_at_their_limbs_ends() {
        let mut gt = PoseSet::new(512, 384);
        gt.people.push(standing(120.0, 60.0, 30.0));
        let img = draw_layout(None, &gt);
        let exact = ColorDecoder {
            tolerance: 0,
            ..Default::default()
        };
        // the right elbow's and wrist's circles blurred away, as an autoencoder does
        let mut cls = exact.classify(&img);
        for c in cls.iter_mut() {
            if *c == 3 || *c == 4 {
                *c = NO_CLASS;
            }
        }
        let sw = stick_width(512, 384) as f64;
        let people = decode_classes(&cls, 512, 384, sw, 3);
        assert_eq!(people.len(), 1, "{people:?}");
        let tol = 0.05 * crate::metrics::pose::bbox_diag(&gt.people[0]).unwrap();
        for j in [3, 4] {
            let (t, k) = (gt.people[0].joints[j].unwrap(), people[0].joints[j]);
            let k = k.unwrap_or_else(|| panic!("joint {j} missing: {people:?}"));
            let d = (k.x - t.x).hypot(k.y - t.y);
            assert!(d <= tol, "joint {j} {d:.1} px off (tolerance {tol:.1})");
        }
        // without the forearm's pixels nothing leads to the wrist: it stays missing
        let forearm = NUM_JOINTS + LIMBS.iter().position(|&l| l == (3, 4)).unwrap();
        for c in cls.iter_mut() {
            if *c as usize == forearm {
                *c = NO_CLASS;
            }
        }
        let people = decode_classes(&cls, 512, 384, sw, 3);
        assert_eq!(people.len(), 1, "{people:?}");
        assert!(people[0].joints[3].is_some());
        assert_eq!(people[0].joints[4], None, "{people:?}");
    }

    #[test]
    fn leg_chains_the_pixels_cannot_tell_apart_go_to_the_person_whose_other_hip_is_beside_them() {
        // two people one above the other, torsos along one line: each neck reaches either
        // right hip through the same drawn torso, and the grouping took the far one
        let (a, b) = (standing(100.0, 40.0, 20.0), standing(100.0, 90.0, 20.0));
        let (mut p, mut q) = (a.clone(), b.clone());
        for j in [8, 9, 10] {
            p.joints[j] = b.joints[j];
            q.joints[j] = a.joints[j];
        }
        let ambiguous = |_: usize, _: &Candidate, _: &Candidate| Some(1.0);
        let mut people = vec![p.clone(), q.clone()];
        untangle_chains(&mut people, &ambiguous);
        assert_eq!(people, vec![a.clone(), b.clone()]);
        // when the pixels do tell (only the limbs as grouped are drawn), they win
        let drawn: Vec<(usize, f64, f64)> = [&p, &q]
            .iter()
            .flat_map(|o| {
                [(6, 8), (9, 11)].map(|(k, j)| (k, o.joints[1].unwrap().y, o.joints[j].unwrap().y))
            })
            .collect();
        let own_only = |k: usize, x: &Candidate, y: &Candidate| {
            Some(if drawn.contains(&(k, x.y, y.y)) {
                1.0
            } else {
                0.2
            })
        };
        let mut people = vec![p.clone(), q.clone()];
        untangle_chains(&mut people, &own_only);
        assert_eq!(people, vec![p, q]);
    }

    #[test]
    fn two_halves_meeting_at_a_split_neck_are_one_person() {
        let a = standing(120.0, 60.0, 30.0);
        let (mut left, mut right) = (Pose::default(), Pose::default());
        for j in [1, 2, 3, 4, 8, 9, 10] {
            left.joints[j] = a.joints[j];
        }
        for j in [0, 5, 6, 7, 11, 12, 13, 14, 15, 16, 17] {
            right.joints[j] = a.joints[j];
        }
        let neck = a.joints[1].unwrap();
        right.joints[1] = Some(Keypoint::new(neck.x + 5.0, neck.y + 2.0));
        // a whole person beside them, and a fragment whose neck is far from theirs
        let b = standing(300.0, 60.0, 30.0);
        let mut far = Pose::default();
        for j in [1, 2, 3, 4] {
            far.joints[j] = a.joints[j].map(|k| Keypoint::new(k.x, k.y + 100.0));
        }
        let mut people = vec![left, right.clone(), b.clone(), far.clone()];
        join_halves(&mut people, 16.0);
        assert_eq!(people.len(), 3, "{people:?}");
        let whole = &people[0];
        assert_eq!(whole.present_count(), NUM_JOINTS);
        assert_eq!(whole.joints[1], right.joints[1], "the larger half's neck");
        assert_eq!(whole.joints[2], a.joints[2]);
        assert_eq!(people[1], b);
        assert_eq!(people[2], far);
    }

    #[test]
    fn a_copy_grown_along_shared_blobs_is_folded_into_its_person() {
        let a = standing(120.0, 60.0, 30.0);
        // a stray head fragment that took a's neck and hips by sharing: 3 of a's blobs, 3 of
        // its own (a second nose a pixel away, and the eyes a lacks)
        let mut a_no_eyes = a.clone();
        a_no_eyes.joints[14] = None;
        a_no_eyes.joints[15] = None;
        let mut copy = Pose::default();
        for j in [1, 8, 11] {
            copy.joints[j] = a.joints[j];
        }
        let nose = a.joints[0].unwrap();
        copy.joints[0] = Some(Keypoint::new(nose.x + 1.0, nose.y));
        copy.joints[14] = a.joints[14];
        copy.joints[15] = a.joints[15];
        // another person whose hip blob is also a's: one joint of many, a separate person
        let mut b = standing(300.0, 60.0, 30.0);
        b.joints[8] = a.joints[8];
        let mut people = vec![a_no_eyes.clone(), copy, b.clone()];
        absorb_duplicates(&mut people);
        assert_eq!(people.len(), 2, "{people:?}");
        assert_eq!(people[1], b);
        let merged = &people[0];
        assert_eq!(
            merged.joints[0], a_no_eyes.joints[0],
            "a keeps its own nose"
        );
        assert_eq!(merged.joints[14], a.joints[14]);
        assert_eq!(merged.joints[15], a.joints[15]);
        assert_eq!(merged.present_count(), a.present_count());
    }
}
