//! Grouping joint candidates into people: limb by limb from the neck outwards, each limb's
//! pairs chosen as the best assignment, then fragments without a neck merged into a person.

use crate::metrics::pose::hungarian;
use crate::pose::skeleton::{LIMBS, NUM_JOINTS};
use crate::pose::{Keypoint, Pose};

/// Most candidates kept per joint type (the strongest); bounds the pairing work on noisy maps.
const MAX_CANDIDATES: usize = 24;

pub(super) fn keep_best(c: &mut Vec<Candidate>) {
    if c.len() > MAX_CANDIDATES {
        c.sort_by(|a, b| b.score.total_cmp(&a.score));
        c.truncate(MAX_CANDIDATES);
    }
}

/// A joint candidate in image pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Candidate {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) score: f64,
}

impl Candidate {
    /// A joint a person already holds, as a candidate of full score.
    pub(super) fn held(k: Keypoint) -> Self {
        Candidate {
            x: k.x,
            y: k.y,
            score: 1.0,
        }
    }
}

/// For limb `(a, b)` of a person holding exactly one of its joints: the held joint, the
/// missing one, and whether the held one is `a` (the limb runs from it).
pub(super) fn half_held(p: &Pose, (a, b): (usize, usize)) -> Option<(Keypoint, usize, bool)> {
    match (p.joints[a], p.joints[b]) {
        (Some(ka), None) => Some((ka, b, true)),
        (None, Some(kb)) => Some((kb, a, false)),
        _ => None,
    }
}

/// Assembles people from joint candidates: for each limb in `LIMBS` order (neck outwards),
/// the candidate pairs of the assignment with the best total `limb` score (Hungarian; each
/// candidate once per limb) are attached, best first, to the person of the already-placed
/// end. A candidate with no limb
/// becomes a one-joint person when its score is at least `lone_score` and it lies farther
/// than `lone_dist` from every placed joint.
pub(super) fn group(
    cands: &[Vec<Candidate>; NUM_JOINTS],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
    lone_dist: f64,
    lone_score: f64,
) -> Vec<Pose> {
    // person slots: candidate index per joint
    let mut people: Vec<[Option<usize>; NUM_JOINTS]> = Vec::new();
    let find = |people: &Vec<[Option<usize>; NUM_JOINTS]>, j: usize, i: usize| {
        people.iter().position(|p| p[j] == Some(i))
    };
    for (k, &(a, b)) in LIMBS.iter().enumerate() {
        let mut pairs = Vec::new();
        for (ia, ca) in cands[a].iter().enumerate() {
            for (ib, cb) in cands[b].iter().enumerate() {
                if let Some(s) = limb(k, ca, cb) {
                    let d = ((ca.x - cb.x).powi(2) + (ca.y - cb.y).powi(2)).sqrt();
                    pairs.push((s, d, ia, ib));
                }
            }
        }
        // the pairs of the assignment with the best total score, not the greedy best-first
        // pairs: when two people's limbs of one type overlap, the best single pair is often a
        // cross pair that leaves the other person the wrong joint
        let (na, nb) = (cands[a].len(), cands[b].len());
        let mut cost = vec![0.0; na * nb];
        for &(s, _, ia, ib) in &pairs {
            cost[ia * nb + ib] = -s;
        }
        let best = hungarian(&cost, na, nb);
        pairs.retain(|&(_, _, ia, ib)| best[ia] == Some(ib));
        pairs.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.total_cmp(&q.1)));
        let mut used_a = vec![false; cands[a].len()];
        let mut used_b = vec![false; cands[b].len()];
        for (_, _, ia, ib) in pairs {
            if used_a[ia] || used_b[ib] {
                continue;
            }
            let pa = find(&people, a, ia);
            let pb = find(&people, b, ib);
            let ok = match (pa, pb) {
                (None, None) => {
                    let mut p = [None; NUM_JOINTS];
                    p[a] = Some(ia);
                    p[b] = Some(ib);
                    people.push(p);
                    true
                }
                (Some(p), None) => {
                    if people[p][b].is_none() {
                        people[p][b] = Some(ib);
                        true
                    } else {
                        false
                    }
                }
                (None, Some(q)) => {
                    if people[q][a].is_none() {
                        people[q][a] = Some(ia);
                        true
                    } else {
                        false
                    }
                }
                (Some(p), Some(q)) if p == q => true,
                (Some(p), Some(q)) => {
                    let disjoint =
                        (0..NUM_JOINTS).all(|j| people[p][j].is_none() || people[q][j].is_none());
                    if disjoint {
                        let other = people[q];
                        for j in 0..NUM_JOINTS {
                            if other[j].is_some() {
                                people[p][j] = other[j];
                            }
                        }
                        people.remove(q);
                    }
                    disjoint
                }
            };
            if ok {
                used_a[ia] = true;
                used_b[ib] = true;
            }
        }
    }
    // lone joints
    let placed: Vec<(f64, f64)> = people
        .iter()
        .flat_map(|p| {
            p.iter()
                .enumerate()
                .filter_map(|(j, i)| i.map(|i| (cands[j][i].x, cands[j][i].y)))
                .collect::<Vec<_>>()
        })
        .collect();
    for j in 0..NUM_JOINTS {
        for (i, c) in cands[j].iter().enumerate() {
            if c.score < lone_score || find(&people, j, i).is_some() {
                continue;
            }
            let far = placed
                .iter()
                .all(|&(x, y)| ((x - c.x).powi(2) + (y - c.y).powi(2)).sqrt() > lone_dist);
            if far {
                let mut p = [None; NUM_JOINTS];
                p[j] = Some(i);
                people.push(p);
            }
        }
    }
    merge_fragments(&mut people, cands);
    let mut out: Vec<Pose> = people
        .into_iter()
        .map(|p| {
            Pose::from_joints(std::array::from_fn(|j| {
                p[j].map(|i| Keypoint::new(cands[j][i].x, cands[j][i].y))
            }))
        })
        .collect();
    // a stable order: left to right by the first present joint
    out.sort_by(|a, b| {
        let x = |p: &Pose| p.joints.iter().flatten().next().map_or(0.0, |k| k.x);
        x(a).total_cmp(&x(b))
    });
    out
}

/// Every person has a neck (the root of the skeleton tree; COCO-18 derives it from the
/// shoulders). A group without one is a fragment cut off by a hidden joint (e.g. a hip covered
/// by the other hip in a profile view): it joins the nearest person with a neck that has none
/// of its joint types, when one lies within that person's bounding-box diagonal. Fragments
/// left over then join each other the same way (within half the larger one's diagonal).
fn merge_fragments(
    people: &mut Vec<[Option<usize>; NUM_JOINTS]>,
    cands: &[Vec<Candidate>; NUM_JOINTS],
) {
    merge_pass(people, cands, true, 1.0);
    merge_pass(people, cands, false, 0.5);
}

fn bbox_diag_of(p: &[(f64, f64)]) -> f64 {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &(x, y) in p {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt()
}

fn merge_pass(
    people: &mut Vec<[Option<usize>; NUM_JOINTS]>,
    cands: &[Vec<Candidate>; NUM_JOINTS],
    into_neck: bool,
    reach: f64,
) {
    let pts = |p: &[Option<usize>; NUM_JOINTS]| -> Vec<(f64, f64)> {
        (0..NUM_JOINTS)
            .filter_map(|j| p[j].map(|i| (cands[j][i].x, cands[j][i].y)))
            .collect()
    };
    let mut i = 0;
    while i < people.len() {
        if people[i][1].is_some() {
            i += 1;
            continue;
        }
        let frag = pts(&people[i]);
        let mut best: Option<(f64, usize)> = None;
        for (q, p) in people.iter().enumerate() {
            if q == i || (p[1].is_none() == into_neck) {
                continue;
            }
            if (0..NUM_JOINTS).any(|j| p[j].is_some() && people[i][j].is_some()) {
                continue;
            }
            let ppts = pts(p);
            let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
            for &(x, y) in &ppts {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
            let diag = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
            let d = frag
                .iter()
                .flat_map(|a| {
                    ppts.iter()
                        .map(move |b| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt())
                })
                .fold(f64::MAX, f64::min);
            let diag = if into_neck {
                diag
            } else {
                let fd = bbox_diag_of(&frag);
                diag.max(fd)
            };
            if d <= (reach * diag).max(1.0) && best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, q));
            }
        }
        match best {
            Some((_, q)) => {
                let f = people[i];
                for j in 0..NUM_JOINTS {
                    if f[j].is_some() {
                        people[q][j] = f[j];
                    }
                }
                people.remove(i);
            }
            None => i += 1,
        }
    }
}
