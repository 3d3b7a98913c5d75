//! Choosing among several stage-1 layouts: each candidate is read back by the PoseInverter, and
//! the one that has as many people as the prompt asks for, with the most complete skeletons
//! shaped most like a body, is kept (see [`crate::pipeline::RunOptions::candidates`]).

use crate::inverter::{body_misfit, PRIOR_CAP};
use crate::pose::layout::stick_width;
use crate::pose::{PoseSet, NUM_JOINTS};

/// The most candidates one call may sample.
pub const MAX_CANDIDATES: usize = 16;

/// Words that name one person.
const PERSON_NOUNS: [&str; 10] = [
    "man",
    "woman",
    "person",
    "boy",
    "girl",
    "child",
    "kid",
    "guy",
    "lady",
    "gentleman",
];

/// Words that name several people.
const PEOPLE_NOUNS: [&str; 10] = [
    "people", "persons", "men", "women", "children", "kids", "boys", "girls", "guys", "ladies",
];

/// Words that count everyone at once ("three people in all").
const EVERYONE: [&str; 2] = ["people", "persons"];

/// Words that end a phrase before its noun ("a shirt in red": not a person); a quantity does too.
const BREAKS: [&str; 11] = [
    ",", "the", "and", "in", "on", "with", "wearing", "at", "by", "of", "near",
];

/// An error naming the field when `k` is not a candidate count (1 to [`MAX_CANDIDATES`]).
pub fn check_candidates(field: &str, k: usize) -> Result<(), String> {
    if (1..=MAX_CANDIDATES).contains(&k) {
        Ok(())
    } else {
        Err(format!("{field} = {k}: use 1 to {MAX_CANDIDATES}"))
    }
}

/// How many people a word counts: "a", "an" one, a number word or numeral its value.
fn quantity(word: &str) -> Option<usize> {
    const WORDS: [&str; 12] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    match word {
        "a" | "an" => Some(1),
        _ => WORDS
            .iter()
            .position(|w| *w == word)
            .map(|i| i + 1)
            .or_else(|| word.parse().ok().filter(|n| (1..=99).contains(n))),
    }
}

/// How many people `prompt` asks for, when it says: a number before "people" counts everyone
/// ("three people in all: a man, …"); otherwise every counted phrase adds up ("a man and two
/// women", "one man and one woman", "an old man"), a phrase being a quantity, at most two
/// words, then a word for one or more people. `None` when it does not say ("people on the
/// street", "someone").
pub fn asked_count(prompt: &str) -> Option<usize> {
    // Punctuation stays as a word of its own: no phrase runs across it.
    let lower = prompt
        .to_lowercase()
        .replace([',', ';', ':', '.', '!', '?', '(', ')'], " , ");
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != ',')
        .filter(|w| !w.is_empty())
        .collect();
    // (quantity, the noun it counts) for every counted phrase.
    let phrases: Vec<(usize, &str)> = (0..words.len())
        .filter_map(|i| {
            let n = quantity(words[i])?;
            let noun = words[i + 1..]
                .iter()
                .take(3)
                .take_while(|w| !BREAKS.contains(w) && quantity(w).is_none())
                .find(|w| PERSON_NOUNS.contains(w) || PEOPLE_NOUNS.contains(w))?;
            Some((n, *noun))
        })
        .collect();
    if let Some((n, _)) = phrases.iter().find(|(_, noun)| EVERYONE.contains(noun)) {
        return Some(*n);
    }
    let total: usize = phrases.iter().map(|(n, _)| n).sum();
    (total > 0).then_some(total)
}

/// The seed of candidate `i` for a call with `seed`: candidate 0 is the call's own sample.
pub fn candidate_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How much a unit of [`Score::body_fit`] weighs against the whole of
/// [`Score::completeness`] when the counts tie: a skeleton shaped like a body is worth some
/// missing joints.
pub const BODY_FIT_WEIGHT: f64 = 0.1;

/// How well a candidate layout, as read back, answers the prompt; larger is better: the right
/// count, then the nearer count, then [`Score::shape`].
#[derive(Clone, Copy, Debug)]
pub struct Score {
    /// As many people as asked (when the prompt does not say: anyone at all).
    pub count_right: bool,
    /// Minus how many people too many or too few.
    pub count_gap: i64,
    /// The read people's mean share of present joints (0 when nobody is read).
    pub completeness: f64,
    /// Minus the read people's mean [`body_misfit`] (how unlike a body their bone-length ratios
    /// are; people holding no pair of bones count as the prior's cap), `-∞` when nobody is read.
    pub body_fit: f64,
}

impl Score {
    /// The skeletons' quality, once the counts tie: `completeness + BODY_FIT_WEIGHT × body_fit`.
    pub fn shape(&self) -> f64 {
        self.shape_weighing_fit(BODY_FIT_WEIGHT)
    }

    /// [`Score::shape`] with the body fit weighed by `weight` instead (for probes of the rule).
    pub fn shape_weighing_fit(&self, weight: f64) -> f64 {
        self.completeness + weight * self.body_fit
    }

    fn key(&self) -> (bool, i64, f64) {
        (self.count_right, self.count_gap, self.shape())
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.key().partial_cmp(&other.key())
    }
}

/// The score of `poses` for a prompt asking for `asked` people.
pub fn score(poses: &PoseSet, asked: Option<usize>) -> Score {
    let n = poses.people.len();
    let completeness = if n == 0 {
        0.0
    } else {
        let present: usize = poses.people.iter().map(|p| p.present_count()).sum();
        present as f64 / (n * NUM_JOINTS) as f64
    };
    let floor = stick_width(poses.width, poses.height) as f64;
    let body_fit = if n == 0 {
        f64::NEG_INFINITY
    } else {
        let misfit: f64 = poses
            .people
            .iter()
            .map(|p| body_misfit(p, floor).unwrap_or(PRIOR_CAP))
            .sum();
        -misfit / n as f64
    };
    let (count_right, count_gap) = match asked {
        Some(a) => (n == a, -(n.abs_diff(a) as i64)),
        None => (n > 0, 0),
    };
    Score {
        count_right,
        count_gap,
        completeness,
        body_fit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pose::{Keypoint, Pose};

    #[test]
    fn the_count_is_read_from_numbers_and_from_people_named_one_by_one() {
        let cases: [(&str, Option<usize>); 17] = [
            (
                "two people in red and blue shirts walking across the street",
                Some(2),
            ),
            (
                "A man in a red shirt, three people in all, in the park",
                Some(3),
            ),
            ("In the living room, 4 women sitting on the sofa", Some(4)),
            ("two people: a man standing and a woman sitting", Some(2)),
            ("one person in a white shirt lying on the bed", Some(1)),
            ("a woman in a red shirt standing on the street", Some(1)),
            (
                "a man in a blue top and a woman in green sitting on the bench",
                Some(2),
            ),
            ("An old man waving", Some(1)),
            ("a tall young woman and an old man on the bench", Some(2)),
            ("a man and two women on the street", Some(3)),
            ("one man and one woman", Some(2)),
            ("11 people on the plaza", Some(11)),
            ("a man waving a hand, two people in all", Some(2)),
            ("people on the street", None),
            ("someone by the window", None),
            ("a red shirt on a chair", None),
            ("", None),
        ];
        for (prompt, want) in cases {
            assert_eq!(asked_count(prompt), want, "{prompt}");
        }
    }

    fn person(joints: usize) -> Pose {
        let mut p = Pose::default();
        for j in p.joints.iter_mut().take(joints) {
            *j = Some(Keypoint::new(1.0, 1.0));
        }
        p
    }

    fn set(people: &[usize]) -> PoseSet {
        PoseSet {
            width: 64,
            height: 64,
            people: people.iter().map(|&j| person(j)).collect(),
        }
    }

    #[test]
    fn the_right_count_wins_then_the_nearer_count_then_the_more_complete_skeletons() {
        let two = Some(2);
        assert!(score(&set(&[6, 6]), two) > score(&set(&[18]), two));
        assert!(score(&set(&[18]), two) > score(&set(&[]), two));
        assert!(score(&set(&[18, 18, 18]), two) > score(&set(&[18, 18, 18, 18]), two));
        assert!(score(&set(&[18, 12]), two) > score(&set(&[12, 12]), two));
        assert!(score(&set(&[4]), None) > score(&set(&[]), None));
    }

    #[test]
    fn with_the_count_right_a_body_shaped_skeleton_beats_a_more_complete_stretched_one() {
        let body = crate::pose::edit::default_person((64.0, 64.0), 100.0);
        // the wrists and ankles three times as far from the elbows and knees
        let mut stretched = body.clone();
        for (end, mid) in [(4, 3), (7, 6), (10, 9), (13, 12)] {
            let (e, m) = (body.joints[end].unwrap(), body.joints[mid].unwrap());
            stretched.joints[end] = Some(Keypoint::new(
                m.x + 3.0 * (e.x - m.x),
                m.y + 3.0 * (e.y - m.y),
            ));
        }
        // the body without its eyes and ears
        let mut partial = body.clone();
        for j in 14..18 {
            partial.joints[j] = None;
        }
        let one = |p: &Pose| PoseSet {
            width: 128,
            height: 128,
            people: vec![p.clone()],
        };
        let (b, s, p) = (
            score(&one(&body), Some(1)),
            score(&one(&stretched), Some(1)),
            score(&one(&partial), Some(1)),
        );
        assert!(b.body_fit > s.body_fit + 1.0, "{b:?} {s:?}");
        assert!(p > s, "{p:?} {s:?}");
        assert!(b > p, "{b:?} {p:?}");
        // the count still comes first
        assert!(s > score(&one(&body), Some(2)));
        assert_eq!(score(&set(&[]), Some(1)).body_fit, f64::NEG_INFINITY);
    }

    #[test]
    fn a_candidate_count_outside_1_to_16_is_refused_by_name() {
        assert_eq!(check_candidates("k", 1), Ok(()));
        assert_eq!(check_candidates("k", MAX_CANDIDATES), Ok(()));
        assert_eq!(check_candidates("k", 0), Err("k = 0: use 1 to 16".into()));
        assert!(check_candidates("k", 17).is_err());
    }

    #[test]
    fn candidate_zero_is_the_calls_own_seed_and_the_others_differ() {
        assert_eq!(candidate_seed(42, 0), 42);
        let seeds: std::collections::BTreeSet<u64> =
            (0..MAX_CANDIDATES).map(|i| candidate_seed(42, i)).collect();
        assert_eq!(seeds.len(), MAX_CANDIDATES);
    }
}
