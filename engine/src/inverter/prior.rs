//! The pose prior: bone-length statistics of the body ([`POSE_PRIOR`]) and the regrouping of
//! joints between people that they favour where the pixels cannot tell.

use super::grouping::Candidate;
use crate::pose::skeleton::{LIMBS, NUM_JOINTS};
use crate::pose::Pose;

/// Bone-length statistics of the body: for pairs of limbs (indices into `LIMBS`), the mean and
/// standard deviation of the log ratio of their drawn lengths, over 20,000 people of the
/// synthetic pose model (3-D bodies of sampled proportions in every action, projected, then
/// rotated, scaled, mirrored and jittered as the inverter's training layouts are; the trainer's
/// `pose_prior_is_the_generators_statistics` test recomputes them). Mirrored limbs (the two
/// sides' bones, mean 0), neighbouring bones of one arm or leg, and the face against the trunk.
pub const POSE_PRIOR: [(usize, usize, f64, f64); 28] = [
    (0, 1, 0.000, 0.503),    // n 43158
    (2, 4, 0.005, 0.390),    // n 38955
    (3, 5, 0.002, 0.405),    // n 35591
    (6, 9, 0.000, 0.072),    // n 43158
    (7, 10, 0.001, 0.179),   // n 38895
    (8, 11, 0.001, 0.155),   // n 35590
    (13, 15, -0.003, 0.467), // n 21727
    (14, 16, -0.009, 0.706), // n 4211
    (2, 3, 0.160, 0.330),    // n 38955
    (4, 5, 0.159, 0.335),    // n 38961
    (7, 8, -0.074, 0.274),   // n 38930
    (10, 11, -0.075, 0.278), // n 38922
    (6, 7, 0.321, 0.267),    // n 40889
    (9, 10, 0.323, 0.271),   // n 40919
    (0, 6, -1.637, 0.565),   // n 43158
    (1, 9, -1.638, 0.565),   // n 43158
    (12, 13, 0.718, 0.553),  // n 27318
    (13, 14, -0.509, 0.656), // n 17548
    (15, 16, -0.510, 0.654), // n 17419
    (2, 6, -0.719, 0.269),   // n 40956
    (4, 9, -0.724, 0.278),   // n 40931
    (12, 6, -1.315, 0.314),  // n 33478
    (13, 6, -2.072, 0.391),  // n 27318
    (15, 6, -2.062, 0.379),  // n 27320
    (14, 6, -1.607, 0.397),  // n 18413
    (16, 6, -1.563, 0.416),  // n 18286
    (14, 12, -0.234, 0.396), // n 17548
    (16, 12, -0.236, 0.389), // n 17419
];

/// The most one [`POSE_PRIOR`] term may add (a squared z-score): a foreshortened bone or a
/// jittered small person is unlikely, not impossible.
pub const PRIOR_CAP: f64 = 16.0;

/// How much a unit of [`implausibility`] weighs against a unit of limb evidence in
/// [`regroup_by_prior`].
const PRIOR_WEIGHT: f64 = 0.03;

/// The least gain (limb evidence less [`PRIOR_WEIGHT`] × the fall in implausibility) for which
/// [`regroup_by_prior`] moves joints.
const PRIOR_MARGIN: f64 = 0.05;

/// How unlike a body a person's proportions are: the sum over the [`POSE_PRIOR`] pairs whose
/// four joints it holds of the squared z-score of the pair's log length ratio (at most
/// [`PRIOR_CAP`]) less 1, its expectation, so that a bone that fits the body lowers it and one
/// that does not raises it. Lengths are at least `floor` (a stick width: below it the drawing
/// does not resolve them).
fn implausibility(p: &Pose, floor: f64) -> f64 {
    prior_terms(p, floor).map(|z2| z2 - 1.0).sum()
}

/// For each [`POSE_PRIOR`] pair whose four joints `p` holds, the squared z-score of the pair's
/// log length ratio, at most [`PRIOR_CAP`]; lengths at least `floor`.
fn prior_terms(p: &Pose, floor: f64) -> impl Iterator<Item = f64> + '_ {
    let len = move |k: usize| p.limb_length(k).map(|l| l.max(floor));
    POSE_PRIOR.iter().filter_map(move |&(k, l, mean, sd)| {
        let z = ((len(k)? / len(l)?).ln() - mean) / sd;
        Some((z * z).min(PRIOR_CAP))
    })
}

/// How unlike a body a person's proportions are on average: the mean over the [`POSE_PRIOR`]
/// pairs whose four joints it holds of the squared z-score of the pair's log length ratio (each
/// at most [`PRIOR_CAP`]; about 1 for a body the prior describes). `None` when it holds no
/// pair. Lengths are at least `floor`, as in [`implausibility`].
pub fn body_misfit(p: &Pose, floor: f64) -> Option<f64> {
    let (n, sum) = prior_terms(p, floor).fold((0usize, 0.0), |(n, s), z2| (n + 1, s + z2));
    (n > 0).then(|| sum / n as f64)
}

/// The joints a regrouping moves together: the neck alone, and each other joint with every
/// joint beyond it in the skeleton tree (`LIMBS` runs from the neck outwards), e.g. an elbow
/// with its wrist, a shoulder with its arm, an eye with its ear.
fn movable_sets() -> Vec<[bool; NUM_JOINTS]> {
    (0..NUM_JOINTS)
        .map(|j| {
            let mut set = [false; NUM_JOINTS];
            set[j] = true;
            if j != 1 {
                for &(a, b) in &LIMBS {
                    if set[a] {
                        set[b] = true;
                    }
                }
            }
            set
        })
        .collect()
}

/// The summed `limb` scores of the limbs of `x` and `y` with one end in `set` and the other
/// outside, and how many there are; `None` when one of them is not a limb at all.
fn crossing_evidence(
    set: &[bool; NUM_JOINTS],
    x: &Pose,
    y: &Pose,
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
) -> Option<(f64, usize)> {
    let mut total = 0.0;
    let mut n = 0;
    for (k, &(a, b)) in LIMBS.iter().enumerate() {
        if set[a] == set[b] {
            continue;
        }
        for z in [x, y] {
            if let (Some(u), Some(v)) = (z.joints[a], z.joints[b]) {
                total += limb(k, &Candidate::held(u), &Candidate::held(v))?;
                n += 1;
            }
        }
    }
    Some((total, n))
}

/// Regroups joints between people where the body tells better than the pixels. Overlapping
/// people's limbs of one type share a colour, so a link to the wrong person's wrist, knee or
/// ear can score as well as the right one, or better where the right one runs under later
/// strokes. For every two people and every movable set of joints ([`movable_sets`]), the set is
/// exchanged between them (or given to the one lacking it, from the one holding it) when the
/// limbs crossing the set's edge stay limbs, as many as before, and the gain, [`PRIOR_WEIGHT`]
/// × the fall in the two people's summed [`implausibility`] less the fall in those limbs'
/// summed scores, exceeds [`PRIOR_MARGIN`]. Repeated (at most three rounds) while it moves
/// joints.
pub(super) fn regroup_by_prior(
    people: &mut [Pose],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
    sw: f64,
) {
    let sets = movable_sets();
    for _ in 0..3 {
        let mut moved = false;
        for set in &sets {
            for p in 0..people.len() {
                for q in 0..people.len() {
                    let holds =
                        |i: usize| (0..NUM_JOINTS).any(|j| set[j] && people[i].joints[j].is_some());
                    // an exchange once per pair (p < q, both hold some of the set); a gift from
                    // p, which holds some, to q, which holds none
                    if p == q || !holds(p) || (holds(q) && p > q) {
                        continue;
                    }
                    let (mut np, mut nq) = (people[p].clone(), people[q].clone());
                    for j in (0..NUM_JOINTS).filter(|&j| set[j]) {
                        std::mem::swap(&mut np.joints[j], &mut nq.joints[j]);
                    }
                    let Some((own, n_own)) = crossing_evidence(set, &people[p], &people[q], limb)
                    else {
                        continue;
                    };
                    let Some((moved_score, n_moved)) = crossing_evidence(set, &np, &nq, limb)
                    else {
                        continue;
                    };
                    if n_own != n_moved || n_own == 0 {
                        continue;
                    }
                    let before = implausibility(&people[p], sw) + implausibility(&people[q], sw);
                    let after = implausibility(&np, sw) + implausibility(&nq, sw);
                    if PRIOR_WEIGHT * (before - after) - (own - moved_score) > PRIOR_MARGIN {
                        people[p] = np;
                        people[q] = nq;
                        moved = true;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverter::test_util::standing;
    use crate::pose::Keypoint;

    #[test]
    fn a_forearm_the_pixels_cannot_place_goes_to_the_person_whose_body_it_fits() {
        // a tall and a short person side by side, their right forearms exchanged: both links
        // score alike, and only the body's proportions tell them apart
        let (a, b) = (standing(100.0, 40.0, 20.0), standing(140.0, 70.0, 12.0));
        let (mut p, mut q) = (a.clone(), b.clone());
        for j in [3, 4] {
            p.joints[j] = b.joints[j];
            q.joints[j] = a.joints[j];
        }
        assert!(implausibility(&p, 1.0) > implausibility(&a, 1.0) + 10.0);
        let ambiguous = |_: usize, _: &Candidate, _: &Candidate| Some(1.0);
        let mut people = vec![p.clone(), q.clone()];
        regroup_by_prior(&mut people, &ambiguous, 1.0);
        assert_eq!(people, vec![a.clone(), b.clone()]);
        // the truth stays as it is
        let mut people = vec![a.clone(), b.clone()];
        regroup_by_prior(&mut people, &ambiguous, 1.0);
        assert_eq!(people, vec![a.clone(), b.clone()]);
        // when the pixels do tell (the links as grouped are drawn, the others barely), they win
        let grouped: Vec<_> = [&p, &q]
            .iter()
            .flat_map(|o| [(o.joints[2], o.joints[3]), (o.joints[3], o.joints[4])])
            .collect();
        let drawn = |k: usize, x: &Candidate, y: &Candidate| {
            let key = (Some(Keypoint::new(x.x, x.y)), Some(Keypoint::new(y.x, y.y)));
            Some(if ![2, 3].contains(&k) || grouped.contains(&key) {
                1.0
            } else {
                0.1
            })
        };
        let mut people = vec![p.clone(), q.clone()];
        regroup_by_prior(&mut people, &drawn, 1.0);
        assert_eq!(people, vec![p, q]);
    }

    #[test]
    fn a_body_like_person_misfits_less_than_one_with_a_stretched_forearm() {
        let a = standing(100.0, 40.0, 20.0);
        let fit = body_misfit(&a, 1.0).unwrap();
        assert!(fit < 2.0, "{fit}");
        let mut stretched = a.clone();
        // the right wrist three forearms from the elbow
        let (e, w) = (a.joints[3].unwrap(), a.joints[4].unwrap());
        stretched.joints[4] = Some(Keypoint::new(
            e.x + 3.0 * (w.x - e.x),
            e.y + 3.0 * (w.y - e.y),
        ));
        assert!(body_misfit(&stretched, 1.0).unwrap() > fit + 0.5);
        // a neck and a nose hold one bone and no pair to compare
        let mut head = Pose::from_joints([None; NUM_JOINTS]);
        head.joints[0] = a.joints[0];
        head.joints[1] = a.joints[1];
        assert_eq!(body_misfit(&head, 1.0), None);
    }

    #[test]
    fn an_ear_held_by_the_wrong_person_is_given_to_the_one_it_fits() {
        let (a, b) = (standing(100.0, 40.0, 20.0), standing(180.0, 40.0, 20.0));
        // a holds b's left ear and not its own; b has none
        let (mut p, mut q) = (a.clone(), b.clone());
        p.joints[17] = b.joints[17];
        q.joints[17] = None;
        let ambiguous = |_: usize, _: &Candidate, _: &Candidate| Some(1.0);
        let mut people = vec![p, q];
        regroup_by_prior(&mut people, &ambiguous, 1.0);
        let mut want_a = a.clone();
        want_a.joints[17] = None;
        assert_eq!(people, vec![want_a, b]);
    }
}
