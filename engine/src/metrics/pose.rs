//! Pose metrics: Hungarian matching of people, PCK and PCKh.
//!
//! Definitions used everywhere in the project:
//! * **Person matching.** The cost of pairing a predicted person with a ground-truth person is
//!   the mean Euclidean distance (pixels) over the joints present in both. Pairs with no joint
//!   in common cost [`NO_OVERLAP_COST`] and are never reported as matched. The assignment that
//!   minimises the total cost is found with the Hungarian algorithm ([`hungarian`]).
//! * **Evaluated joints.** Only ground-truth joints that are present *and inside the canvas*
//!   count: a joint outside the image cannot be recovered from it.
//! * **PCK@f.** A ground-truth joint is correct when its matched person predicts that joint
//!   within `f` × the diagonal of the ground-truth person's bounding box (present joints, inside
//!   or outside the canvas). Joints of unmatched ground-truth people are wrong.
//! * **PCKh@f.** The same with `f` × the ground truth's head size. Head size is defined as
//!   2 × the nose-neck distance when both are present, else the ear-ear distance, else the
//!   eye-eye distance × 2.5 (a person with none of these is skipped, and said so in
//!   [`PckCount::skipped_people`]).
//! * **Aligned PCKh@f** ([`pckh_aligned`]). PCKh after moving each matched predicted person
//!   so that the centroid of the joints it shares with its ground-truth person lands on the
//!   ground truth's: how a person is posed, whatever the place they were put. Matching is the
//!   same as PCKh's (by position), so a person paired with the wrong ground truth stays wrong.
//! * **Count accuracy.** The share of images whose predicted number of people is exact.

use crate::pose::skeleton::joint;
use crate::pose::{Pose, PoseSet, NUM_JOINTS};

/// Cost of pairing two people who share no present joint.
pub const NO_OVERLAP_COST: f64 = 1e9;

/// The minimum-cost assignment of rows to columns of a `rows × cols` cost matrix (row-major).
/// Returns, for each row, its column (or `None` when there are more rows than columns).
/// O(n³) (the potentials / shortest augmenting path form), for small n.
pub fn hungarian(cost: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    assert_eq!(cost.len(), rows * cols, "cost matrix size");
    // Work on an n×m matrix with n <= m (transpose when needed).
    let transpose = rows > cols;
    let (n, m) = if transpose {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let c = |i: usize, j: usize| {
        if transpose {
            cost[j * cols + i]
        } else {
            cost[i * cols + j]
        }
    };
    // 1-based arrays; p[j] = row assigned to column j (0 = none).
    let inf = f64::INFINITY;
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![inf; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = c(i0 - 1, j - 1) - u[i0] - v[j];
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
            for j in 0..=m {
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
    for (j, &pj) in p.iter().enumerate().take(m + 1).skip(1) {
        if pj != 0 {
            let (r, col) = if transpose {
                (j - 1, pj - 1)
            } else {
                (pj - 1, j - 1)
            };
            out[r] = Some(col);
        }
    }
    out
}

/// Mean distance over the joints present in both people, or `None` when they share none.
pub fn mean_joint_distance(a: &Pose, b: &Pose) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for j in 0..NUM_JOINTS {
        if let (Some(p), Some(q)) = (a.joints[j], b.joints[j]) {
            sum += ((p.x - q.x).powi(2) + (p.y - q.y).powi(2)).sqrt();
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// Matches ground-truth people to predicted people: for each ground-truth person, the index of
/// its predicted person, or `None`.
pub fn match_people(pred: &PoseSet, gt: &PoseSet) -> Vec<Option<usize>> {
    let (r, c) = (gt.people.len(), pred.people.len());
    let mut cost = Vec::with_capacity(r * c);
    for g in &gt.people {
        for p in &pred.people {
            cost.push(mean_joint_distance(g, p).unwrap_or(NO_OVERLAP_COST));
        }
    }
    hungarian(&cost, r, c)
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.filter(|&j| cost[i * c + j] < NO_OVERLAP_COST))
        .collect()
}

/// Correct and evaluated joint counts, summed over images.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PckCount {
    /// Evaluated joints predicted within the threshold.
    pub correct: usize,
    /// Evaluated ground-truth joints (present and inside the canvas).
    pub total: usize,
    /// Ground-truth people without a usable reference size (no evaluated joints then).
    pub skipped_people: usize,
}

impl PckCount {
    /// correct / total (1.0 when nothing was evaluated).
    pub fn value(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }

    /// Adds another count to this one, field by field.
    pub fn add(&mut self, o: PckCount) {
        self.correct += o.correct;
        self.total += o.total;
        self.skipped_people += o.skipped_people;
    }
}

fn inside(set: &PoseSet, x: f64, y: f64) -> bool {
    x >= 0.0 && y >= 0.0 && x < set.width as f64 && y < set.height as f64
}

/// Diagonal of the bounding box of the present joints.
pub fn bbox_diag(p: &Pose) -> Option<f64> {
    p.body_bbox()
        .map(|(x0, y0, x1, y1)| ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt())
}

/// Head size (see the module docs): 2 × nose-neck, else ear-ear, else 2.5 × eye-eye.
pub fn head_size(p: &Pose) -> Option<f64> {
    let d = |a: usize, b: usize| match (p.joints[a], p.joints[b]) {
        (Some(u), Some(v)) => Some(((u.x - v.x).powi(2) + (u.y - v.y).powi(2)).sqrt()),
        _ => None,
    };
    d(joint::NOSE, joint::NECK)
        .map(|x| 2.0 * x)
        .or_else(|| d(joint::R_EAR, joint::L_EAR))
        .or_else(|| d(joint::R_EYE, joint::L_EYE).map(|x| 2.5 * x))
        .filter(|&s| s > 0.0)
}

/// The shift that moves the centroid of `p`'s joints shared with `g` onto `g`'s.
fn centroid_shift(p: &Pose, g: &Pose) -> (f64, f64) {
    let (mut dx, mut dy, mut n) = (0.0, 0.0, 0usize);
    for j in 0..NUM_JOINTS {
        if let (Some(a), Some(b)) = (g.joints[j], p.joints[j]) {
            dx += a.x - b.x;
            dy += a.y - b.y;
            n += 1;
        }
    }
    if n == 0 {
        (0.0, 0.0)
    } else {
        (dx / n as f64, dy / n as f64)
    }
}

fn pck_with(
    pred: &PoseSet,
    gt: &PoseSet,
    align: bool,
    threshold: impl Fn(&Pose) -> Option<f64>,
) -> PckCount {
    let matches = match_people(pred, gt);
    let mut out = PckCount::default();
    for (g, m) in gt.people.iter().zip(&matches) {
        let Some(thr) = threshold(g) else {
            out.skipped_people += 1;
            continue;
        };
        let (sx, sy) = match m {
            Some(i) if align => centroid_shift(&pred.people[*i], g),
            _ => (0.0, 0.0),
        };
        for j in 0..NUM_JOINTS {
            let Some(k) = g.joints[j] else { continue };
            if !inside(gt, k.x, k.y) {
                continue;
            }
            out.total += 1;
            if let Some(q) = m.and_then(|i| pred.people[i].joints[j]) {
                if ((q.x + sx - k.x).powi(2) + (q.y + sy - k.y).powi(2)).sqrt() <= thr {
                    out.correct += 1;
                }
            }
        }
    }
    out
}

/// PCK of one image: a joint is correct within `frac_of_bbox_diag` × its ground-truth person's
/// bounding-box diagonal, after Hungarian matching of people.
pub fn pck(pred: &PoseSet, gt: &PoseSet, frac_of_bbox_diag: f64) -> PckCount {
    pck_with(pred, gt, false, |g| {
        bbox_diag(g)
            .filter(|&d| d > 0.0)
            .map(|d| d * frac_of_bbox_diag)
    })
}

/// PCKh of one image: a joint is correct within `frac_of_head` × the ground truth's head size
/// ([`head_size`]); people without one are skipped.
pub fn pckh(pred: &PoseSet, gt: &PoseSet, frac_of_head: f64) -> PckCount {
    pck_with(pred, gt, false, |g| head_size(g).map(|h| h * frac_of_head))
}

/// PCKh with each matched person moved onto its ground truth first (see the module docs):
/// the pose, not the placement.
pub fn pckh_aligned(pred: &PoseSet, gt: &PoseSet, frac_of_head: f64) -> PckCount {
    pck_with(pred, gt, true, |g| head_size(g).map(|h| h * frac_of_head))
}

/// Whether the number of people is exact.
pub fn count_exact(pred: &PoseSet, gt: &PoseSet) -> bool {
    pred.people.len() == gt.people.len()
}

/// Share of (prediction, ground truth) pairs whose people count is exact (1.0 for none).
pub fn count_accuracy<'a>(pairs: impl IntoIterator<Item = (&'a PoseSet, &'a PoseSet)>) -> f64 {
    let (mut ok, mut n) = (0usize, 0usize);
    for (p, g) in pairs {
        n += 1;
        ok += count_exact(p, g) as usize;
    }
    if n == 0 {
        1.0
    } else {
        ok as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pose::Keypoint;

    fn brute_force(cost: &[f64], rows: usize, cols: usize) -> f64 {
        // the best total over all injective maps of the smaller side
        fn rec(cost: &[f64], rows: usize, cols: usize, i: usize, used: &mut Vec<bool>) -> f64 {
            if i == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            let free = cols - used.iter().filter(|&&u| u).count();
            // a row may stay unassigned only when there are more rows left than free columns
            if rows - i > free {
                best = rec(cost, rows, cols, i + 1, used);
            }
            for j in 0..cols {
                if !used[j] {
                    used[j] = true;
                    best = best.min(cost[i * cols + j] + rec(cost, rows, cols, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        rec(cost, rows, cols, 0, &mut vec![false; cols])
    }

    #[test]
    fn hungarian_is_optimal_on_random_matrices() {
        let mut s = 7u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 1000) as f64 / 10.0
        };
        for (rows, cols) in [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (5, 5),
            (2, 4),
            (4, 2),
            (3, 5),
        ] {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..rows * cols).map(|_| rnd()).collect();
                let a = hungarian(&cost, rows, cols);
                let mut cols_used: Vec<usize> = a.iter().flatten().copied().collect();
                let assigned = cols_used.len();
                assert_eq!(assigned, rows.min(cols));
                cols_used.sort();
                cols_used.dedup();
                assert_eq!(cols_used.len(), assigned, "a column used twice");
                let total: f64 = a
                    .iter()
                    .enumerate()
                    .filter_map(|(i, j)| j.map(|j| cost[i * cols + j]))
                    .sum();
                let best = brute_force(&cost, rows, cols);
                assert!(
                    (total - best).abs() < 1e-9,
                    "{rows}x{cols}: {total} vs {best}"
                );
            }
        }
    }

    #[test]
    fn hungarian_known_case() {
        // rows prefer the same column; the optimum is the anti-diagonal
        let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        assert_eq!(hungarian(&cost, 3, 3), vec![Some(1), Some(0), Some(2)]);
        assert_eq!(hungarian(&[], 0, 3), Vec::<Option<usize>>::new());
        assert_eq!(hungarian(&[], 2, 0), vec![None, None]);
    }

    fn person(points: &[(usize, f64, f64)]) -> Pose {
        let mut j = [None; NUM_JOINTS];
        for &(i, x, y) in points {
            j[i] = Some(Keypoint::new(x, y));
        }
        Pose::from_joints(j)
    }

    fn set(people: Vec<Pose>) -> PoseSet {
        PoseSet {
            width: 200,
            height: 200,
            people,
        }
    }

    #[test]
    fn pck_matches_people_in_any_order() {
        let a = person(&[(0, 10.0, 10.0), (1, 10.0, 30.0), (8, 10.0, 90.0)]);
        let b = person(&[(0, 150.0, 10.0), (1, 150.0, 30.0), (8, 150.0, 90.0)]);
        let gt = set(vec![a.clone(), b.clone()]);
        let pred = set(vec![b.clone(), a.clone()]);
        let r = pck(&pred, &gt, 0.05);
        assert_eq!((r.correct, r.total), (6, 6));
        assert_eq!(match_people(&pred, &gt), vec![Some(1), Some(0)]);
        assert!(count_exact(&pred, &gt));
    }

    #[test]
    fn pck_threshold_is_five_percent_of_the_diagonal() {
        // bbox 60 x 80 -> diagonal 100 -> threshold 5 px
        let gt = set(vec![person(&[
            (0, 0.0, 0.0),
            (1, 60.0, 80.0),
            (2, 30.0, 40.0),
        ])]);
        let pred = set(vec![person(&[
            (0, 4.9, 0.0),   // correct
            (1, 60.0, 85.5), // 5.5 px off: wrong
            (3, 30.0, 40.0), // a joint the ground truth lacks: ignored
        ])]);
        let r = pck(&pred, &gt, 0.05);
        assert_eq!((r.correct, r.total), (1, 3));
        assert!((r.value() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn unmatched_people_and_outside_joints() {
        let a = person(&[(0, 10.0, 10.0), (1, 10.0, 30.0)]);
        // the second person has one joint outside the canvas: not evaluated
        let b = person(&[(0, 150.0, 10.0), (1, 150.0, 250.0)]);
        let gt = set(vec![a.clone(), b]);
        let pred = set(vec![a]);
        let r = pck(&pred, &gt, 0.05);
        assert_eq!((r.correct, r.total), (2, 3));
        assert!(!count_exact(&pred, &gt));
        let acc = count_accuracy([(&pred, &gt), (&gt, &gt)]);
        assert!((acc - 0.5).abs() < 1e-12);
    }

    #[test]
    fn pckh_uses_the_head_size() {
        use joint::*;
        // nose-neck 10 px -> head size 20 -> PCKh@0.5 threshold 10 px
        let gt = set(vec![person(&[
            (NOSE, 50.0, 40.0),
            (NECK, 50.0, 50.0),
            (R_HIP, 50.0, 120.0),
        ])]);
        assert_eq!(head_size(&gt.people[0]), Some(20.0));
        let pred = set(vec![person(&[
            (NOSE, 50.0, 49.0),   // 9 px: correct
            (NECK, 50.0, 50.0),   // correct
            (R_HIP, 50.0, 131.0), // 11 px: wrong
        ])]);
        let r = pckh(&pred, &gt, 0.5);
        assert_eq!((r.correct, r.total), (2, 3));
        // ear-ear fallback, then skipped
        let ears = person(&[(R_EAR, 0.0, 0.0), (L_EAR, 8.0, 0.0)]);
        assert_eq!(head_size(&ears), Some(8.0));
        let none = set(vec![person(&[(R_HIP, 1.0, 1.0)])]);
        let r = pckh(&none, &none, 0.5);
        assert_eq!((r.total, r.skipped_people), (0, 1));
    }

    #[test]
    fn aligned_pckh_scores_the_pose_not_the_place() {
        use joint::*;
        // head size 20 -> threshold 10 px
        let g = person(&[
            (NOSE, 50.0, 40.0),
            (NECK, 50.0, 50.0),
            (R_HIP, 45.0, 120.0),
            (L_HIP, 55.0, 120.0),
        ]);
        let gt = set(vec![g]);
        // the same pose 40 px to the right, one hip 15 px lower than the rest
        let pred = set(vec![person(&[
            (NOSE, 90.0, 40.0),
            (NECK, 90.0, 50.0),
            (R_HIP, 85.0, 120.0),
            (L_HIP, 95.0, 135.0),
            (R_KNEE, 85.0, 160.0), // a joint the ground truth lacks: no part in the shift
        ])]);
        assert_eq!(pckh(&pred, &gt, 0.5).correct, 0);
        // the shift is (-40, -3.75): the hip stays 11.25 px off, the rest 3.75 px
        let r = pckh_aligned(&pred, &gt, 0.5);
        assert_eq!((r.correct, r.total), (3, 4));
        // unmatched ground truth stays wrong; a perfect prediction is perfect either way
        let empty = set(vec![]);
        assert_eq!(pckh_aligned(&empty, &gt, 0.5).correct, 0);
        assert_eq!(pckh_aligned(&gt, &gt, 0.5).correct, 4);
    }
}
