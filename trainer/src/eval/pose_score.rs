//! Layout scoring for `eval`: people matched one-to-one (Hungarian assignment) and PCKh@α.
//!
//! This is the one place eval scores poses; it moves to `engine::metrics::pose` once that module
//! lands (the PoseInverter work), keeping these definitions:
//! - **head size** of a ground-truth person: the nose–neck distance (≈ 0.1 of the standing
//!   height, close to MPII's 0.6 × head-box diagonal); without both joints, the distance between
//!   the ears; without those, a tenth of the longer side of the person's joint box;
//! - **matching**: the cost of pairing a prediction with a ground-truth person is the mean
//!   distance over the joints both have, in units of the ground-truth head size (a large cost
//!   when they share no joint); the assignment minimises the total cost;
//! - **PCKh@α**: a ground-truth joint is correct when its matched person has that joint within
//!   α × head size; the score is correct joints / present ground-truth joints, so missed people
//!   count as wrong and extra predicted people do not change it (the count accuracy does).

use skeleguide_engine::pose::skeleton::joint::{L_EAR, NECK, NOSE, R_EAR};
use skeleguide_engine::pose::{Keypoint, Pose, NUM_JOINTS};

/// Cost of pairing people that share no joint.
const NO_OVERLAP: f64 = 1e6;

fn dist(a: Keypoint, b: Keypoint) -> f64 {
    (a.x - b.x).hypot(a.y - b.y)
}

/// The head size of a ground-truth person (see the module doc); `None` without joints.
pub fn head_size(p: &Pose) -> Option<f64> {
    let j = &p.joints;
    let d = match (j[NOSE], j[NECK], j[L_EAR], j[R_EAR]) {
        (Some(a), Some(b), _, _) => dist(a, b),
        (_, _, Some(a), Some(b)) => dist(a, b),
        _ => {
            let (x0, y0, x1, y1) = p.body_bbox()?;
            0.1 * (x1 - x0).max(y1 - y0)
        }
    };
    Some(d.max(1.0))
}

/// Matching cost of prediction `p` against ground truth `g`.
pub fn match_cost(p: &Pose, g: &Pose) -> f64 {
    let Some(h) = head_size(g) else {
        return NO_OVERLAP;
    };
    let mut sum = 0.0;
    let mut n = 0;
    for k in 0..NUM_JOINTS {
        if let (Some(a), Some(b)) = (p.joints[k], g.joints[k]) {
            sum += dist(a, b) / h;
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
pub fn match_people(pred: &[Pose], gt: &[Pose]) -> Vec<Option<usize>> {
    let cost: Vec<Vec<f64>> = gt
        .iter()
        .map(|g| pred.iter().map(|p| match_cost(p, g)).collect())
        .collect();
    hungarian(&cost)
        .into_iter()
        .enumerate()
        .map(|(gi, m)| m.filter(|&pi| match_cost(&pred[pi], &gt[gi]) < NO_OVERLAP))
        .collect()
}

/// PCKh@`alpha` counts: (correct joints, present ground-truth joints).
pub fn pckh_counts(pred: &[Pose], gt: &[Pose], alpha: f64) -> (usize, usize) {
    let matches = match_people(pred, gt);
    let mut correct = 0;
    let mut total = 0;
    for (g, m) in gt.iter().zip(matches) {
        let h = head_size(g).unwrap_or(1.0);
        for k in 0..NUM_JOINTS {
            let Some(b) = g.joints[k] else { continue };
            total += 1;
            if let Some(a) = m.and_then(|pi| pred[pi].joints[k]) {
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
        // nose (0, 0), neck (4, 5): head size sqrt(41) ≈ 6.4
        Pose::from_joints(j)
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
        let gt = vec![person(0.0), person(100.0)];
        let pred = vec![person(100.0), person(0.0)];
        assert_eq!(pckh_counts(&pred, &gt, 0.5), (36, 36));
        // one person missed: half the joints
        assert_eq!(pckh_counts(&pred[..1], &gt, 0.5), (18, 36));
        // shifted by 2 px (< 0.5 × 6.4) is correct, by 4 px is not
        let near = vec![person(2.0), person(102.0)];
        assert_eq!(pckh_counts(&near, &gt, 0.5), (36, 36));
        let far = vec![person(4.0), person(104.0)];
        assert_eq!(pckh_counts(&far, &gt, 0.5), (0, 36));
        // a missing predicted joint is wrong
        let mut gap = pred.clone();
        gap[0].joints[3] = None;
        assert_eq!(pckh_counts(&gap, &gt, 0.5), (35, 36));
    }
}
