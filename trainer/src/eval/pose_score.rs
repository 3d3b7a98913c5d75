//! Layout scoring for `eval`: people matched one-to-one (Hungarian assignment) and PCKh@α.
//!
//! This is the one place eval scores poses. Its definitions are those of
//! `engine::metrics::pose` (the PoseInverter branch), so that eval can switch to that module
//! when both are merged without its numbers moving:
//! - **head size** of a ground-truth person: 2 × the nose–neck distance; without both joints,
//!   the ear–ear distance; without those, 2.5 × the eye–eye distance; a person with none of
//!   these is skipped;
//! - **matching**: the cost of pairing a prediction with a ground-truth person is the mean
//!   pixel distance over the joints both have (pairs sharing no joint are never matched); the
//!   assignment minimises the total cost;
//! - **PCKh@α**: a ground-truth joint (present and inside the canvas) is correct when its
//!   matched person has that joint within α × head size; the score is correct / evaluated
//!   joints, so missed people count as wrong and extra predicted people do not change it (the
//!   count accuracy does).

use skeleguide_engine::pose::skeleton::joint::{L_EAR, L_EYE, NECK, NOSE, R_EAR, R_EYE};
use skeleguide_engine::pose::{Keypoint, Pose, PoseSet, NUM_JOINTS};

/// Cost of pairing people that share no joint.
const NO_OVERLAP: f64 = 1e9;

fn dist(a: Keypoint, b: Keypoint) -> f64 {
    (a.x - b.x).hypot(a.y - b.y)
}

/// The head size of a ground-truth person (see the module doc).
pub fn head_size(p: &Pose) -> Option<f64> {
    let d = |a: usize, b: usize| match (p.joints[a], p.joints[b]) {
        (Some(u), Some(v)) => Some(dist(u, v)),
        _ => None,
    };
    d(NOSE, NECK)
        .map(|x| 2.0 * x)
        .or_else(|| d(R_EAR, L_EAR))
        .or_else(|| d(R_EYE, L_EYE).map(|x| 2.5 * x))
        .filter(|&s| s > 0.0)
}

/// Matching cost of prediction `p` against ground truth `g`: mean pixel distance over the
/// joints both have.
pub fn match_cost(p: &Pose, g: &Pose) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for k in 0..NUM_JOINTS {
        if let (Some(a), Some(b)) = (p.joints[k], g.joints[k]) {
            sum += dist(a, b);
            n += 1;
        }
    }
    if n == 0 {
        NO_OVERLAP
    } else {
        sum / n as f64
    }
}

/// Minimum-cost assignment of rows to columns of a rectangular cost matrix (`cost[r][c]`),
/// O(n³) (shortest augmenting paths with potentials). Returns, per row, its column, or `None`
/// for rows left over when there are more rows than columns.
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<Option<usize>> {
    let rows = cost.len();
    let cols = cost.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    // Work on a square n×n matrix padded with zeros.
    let n = rows.max(cols);
    let at = |r: usize, c: usize| -> f64 {
        if r < rows && c < cols {
            cost[r][c]
        } else {
            0.0
        }
    };
    // 1-based arrays: u (rows), v (cols), p[col] = row matched to col, way[col] = previous col.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = at(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; rows];
    for (j, &r) in p.iter().enumerate().skip(1) {
        if r >= 1 && r <= rows && j <= cols {
            out[r - 1] = Some(j - 1);
        }
    }
    out
}

/// For each ground-truth person, the index of its matched prediction (if any).
pub fn match_people(pred: &PoseSet, gt: &PoseSet) -> Vec<Option<usize>> {
    let cost: Vec<Vec<f64>> = gt
        .people
        .iter()
        .map(|g| pred.people.iter().map(|p| match_cost(p, g)).collect())
        .collect();
    hungarian(&cost)
        .into_iter()
        .enumerate()
        .map(|(gi, m)| m.filter(|&pi| cost[gi][pi] < NO_OVERLAP))
        .collect()
}

/// PCKh@`alpha` counts of one image: (correct joints, evaluated ground-truth joints).
pub fn pckh_counts(pred: &PoseSet, gt: &PoseSet, alpha: f64) -> (usize, usize) {
    let matches = match_people(pred, gt);
    let inside =
        |k: Keypoint| k.x >= 0.0 && k.y >= 0.0 && k.x < gt.width as f64 && k.y < gt.height as f64;
    let mut correct = 0;
    let mut total = 0;
    for (g, m) in gt.people.iter().zip(matches) {
        let Some(h) = head_size(g) else { continue };
        for k in 0..NUM_JOINTS {
            let Some(b) = g.joints[k].filter(|&b| inside(b)) else {
                continue;
            };
            total += 1;
            if let Some(a) = m.and_then(|pi| pred.people[pi].joints[k]) {
                if dist(a, b) <= alpha * h {
                    correct += 1;
                }
            }
        }
    }
    (correct, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(dx: f64) -> Pose {
        let mut j = [None; NUM_JOINTS];
        for (k, v) in j.iter_mut().enumerate() {
            *v = Some(Keypoint::new(dx + (k % 3) as f64 * 4.0, k as f64 * 5.0));
        }
        // nose (0, 0), neck (4, 5): head size 2·sqrt(41) ≈ 12.8, PCKh@0.5 radius ≈ 6.4
        Pose::from_joints(j)
    }

    fn set(people: Vec<Pose>) -> PoseSet {
        PoseSet {
            width: 400,
            height: 200,
            people,
        }
    }

    #[test]
    fn hungarian_finds_the_optimum() {
        // greedy would take (0,0)=1 then (1,1)=10; the optimum is 2 + 3
        let c = vec![vec![1.0, 2.0], vec![3.0, 10.0]];
        assert_eq!(hungarian(&c), vec![Some(1), Some(0)]);
        // rectangular: 3 rows, 2 columns
        let c = vec![vec![5.0, 1.0], vec![1.0, 5.0], vec![0.5, 0.5]];
        let m = hungarian(&c);
        let total: f64 = m
            .iter()
            .enumerate()
            .filter_map(|(r, c2)| c2.map(|cc| c[r][cc]))
            .sum();
        assert_eq!(m.iter().flatten().count(), 2);
        // optimum 1.5: (row 1, col 0) + (row 2, col 1) or (row 0, col 1) + (row 2, col 0)
        assert!((total - 1.5).abs() < 1e-12, "{m:?}");
        // brute force on a 4x4
        let c: Vec<Vec<f64>> = (0..4)
            .map(|r| (0..4).map(|k| ((r * 7 + k * 13) % 11) as f64).collect())
            .collect();
        let m = hungarian(&c);
        let got: f64 = (0..4).map(|r| c[r][m[r].unwrap()]).sum();
        let mut best = f64::INFINITY;
        for a in 0..4 {
            for b in 0..4 {
                for d in 0..4 {
                    for e in 0..4 {
                        let s = [a, b, d, e];
                        if (0..4).all(|i| (0..i).all(|k| s[i] != s[k])) {
                            best = best.min((0..4).map(|r| c[r][s[r]]).sum());
                        }
                    }
                }
            }
        }
        assert_eq!(got, best);
    }

    #[test]
    fn pckh_counts_matched_people_regardless_of_order() {
        let gt = set(vec![person(10.0), person(110.0)]);
        let pred = set(vec![person(110.0), person(10.0)]);
        assert_eq!(pckh_counts(&pred, &gt, 0.5), (36, 36));
        // one person missed: half the joints
        let one = set(vec![person(110.0)]);
        assert_eq!(pckh_counts(&one, &gt, 0.5), (18, 36));
        // shifted by 6 px (< 0.5 × 12.8) is correct, by 7 px is not
        let near = set(vec![person(16.0), person(116.0)]);
        assert_eq!(pckh_counts(&near, &gt, 0.5), (36, 36));
        let far = set(vec![person(17.0), person(117.0)]);
        assert_eq!(pckh_counts(&far, &gt, 0.5), (0, 36));
        // a missing predicted joint is wrong
        let mut gap = pred.clone();
        gap.people[0].joints[3] = None;
        assert_eq!(pckh_counts(&gap, &gt, 0.5), (35, 36));
        // joints outside the canvas are not evaluated
        let mut out = gt.clone();
        out.people[0].joints[17] = Some(Keypoint::new(-5.0, 10.0));
        assert_eq!(pckh_counts(&out, &out, 0.5), (35, 35));
    }
}
