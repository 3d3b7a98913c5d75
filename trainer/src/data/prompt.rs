//! The prompt grammar: varied English that names the count, the clothes, the action and the place.

use super::body::Action;
use super::people::Appearance;
use super::rng::Rng;
use super::scene::PlaceKind;

/// What the grammar needs to know about one person.
#[derive(Clone, Debug)]
pub struct PersonDesc<'a> {
    pub action: Action,
    pub looks: &'a Appearance,
    /// What the person sits or lies on ("bench", "bed", "grass"), if anything.
    pub support: Option<&'static str>,
    /// The furniture the person stands by, if any.
    pub near: Option<&'static str>,
}

fn count_word(n: usize) -> &'static str {
    match n {
        1 => "one",
        2 => "two",
        3 => "three",
        4 => "four",
        _ => "several",
    }
}

fn who(p: &PersonDesc, rng: &mut Rng) -> String {
    match rng.weighted(&[3.0, 1.0]) {
        0 => format!("a {}", p.looks.gender.noun()),
        _ => "a person".to_string(),
    }
}

/// "a" or "an" before `word`.
fn a(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn clothes(p: &PersonDesc, rng: &mut Rng) -> String {
    let s = p.looks.shirt_name();
    let t = p.looks.trousers_name();
    let a = a(s);
    match rng.below(5) {
        0 | 1 => format!("in {a} {s} shirt"),
        2 => format!("in {a} {s} shirt and {t} trousers"),
        3 => format!("wearing {a} {s} top and {t} pants"),
        _ => format!("in {s}"),
    }
}

/// The action as a participle phrase; the bool says whether it already names the place.
fn action_phrase(p: &PersonDesc, place: PlaceKind, plural: bool, rng: &mut Rng) -> (String, bool) {
    let their = if plural { "their" } else { "both" };
    match p.action {
        Action::Stand => match p.near {
            Some(f) => match rng.below(3) {
                0 => (format!("standing by the {f}"), false),
                1 => (format!("standing next to the {f}"), false),
                _ => (format!("standing near the {f}"), false),
            },
            None => (
                (*rng
                    .pick(&["standing", "standing still", "standing around"])
                    .unwrap_or(&"standing"))
                .to_string(),
                false,
            ),
        },
        Action::Walk => match rng.below(3) {
            0 => ("walking".into(), false),
            1 if !place.is_indoor() => (format!("walking across the {}", place.noun()), true),
            _ => ("walking along".into(), false),
        },
        Action::Sit => {
            let on = p.support.unwrap_or("seat");
            match rng.below(3) {
                0 => (format!("seated on the {on}"), false),
                _ => (format!("sitting on the {on}"), false),
            }
        }
        Action::Lie => {
            let on = p.support.unwrap_or("floor");
            match rng.below(3) {
                0 => (format!("lying down on the {on}"), false),
                _ => (format!("lying on the {on}"), false),
            }
        }
        Action::Wave => (
            (*rng
                .pick(&["waving", "waving a hand", "waving hello"])
                .unwrap_or(&"waving"))
            .to_string(),
            false,
        ),
        Action::RaiseArms => match rng.below(3) {
            0 => ("with arms raised".into(), false),
            1 => (format!("raising {their} arms"), false),
            _ => ("raising both arms".into(), false),
        },
        Action::Point => (
            (*rng
                .pick(&["pointing", "pointing to the side", "pointing at something"])
                .unwrap_or(&"pointing"))
            .to_string(),
            false,
        ),
    }
}

fn place_phrase(place: PlaceKind, rng: &mut Rng) -> String {
    let article = if rng.chance(0.75) { "the" } else { "a" };
    format!("{} {article} {}", place.preposition(), place.noun())
}

fn join_list(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// A prompt for `people` in `place`.
pub fn make_prompt(place: PlaceKind, people: &[PersonDesc], rng: &mut Rng) -> String {
    let n = people.len();
    let place_p = place_phrase(place, rng);
    if n == 1 {
        let p = &people[0];
        let (act, names_place) = action_phrase(p, place, false, rng);
        let subject = if rng.chance(0.15) {
            "one person".to_string()
        } else {
            who(p, rng)
        };
        let cl = clothes(p, rng);
        let tail = if names_place {
            String::new()
        } else {
            format!(" {place_p}")
        };
        return match rng.below(4) {
            0 => {
                let mut pl = place_p.clone();
                if let Some(c) = pl.get_mut(0..1) {
                    c.make_ascii_uppercase();
                }
                let verb = if act.starts_with("with ") {
                    "stands"
                } else {
                    "is"
                };
                format!("{pl}, {subject} {cl} {verb} {act}")
            }
            _ => format!("{subject} {cl} {act}{tail}"),
        };
    }
    let same = people.windows(2).all(|w| {
        w[0].action == w[1].action && w[0].support == w[1].support && w[0].near == w[1].near
    });
    let count = count_word(n);
    if same && rng.chance(0.6) {
        let (act, names_place) = action_phrase(&people[0], place, true, rng);
        let shirts: Vec<String> = people
            .iter()
            .map(|p| p.looks.shirt_name().to_string())
            .collect();
        let mut uniq: Vec<String> = Vec::new();
        for s in shirts {
            if !uniq.contains(&s) {
                uniq.push(s);
            }
        }
        let cl = format!("in {} shirts", join_list(&uniq));
        let tail = if names_place {
            String::new()
        } else {
            format!(" {place_p}")
        };
        return format!("{count} people {cl} {act}{tail}");
    }
    let descs: Vec<String> = people
        .iter()
        .map(|p| {
            let (act, _) = action_phrase(p, place, false, rng);
            format!("{} {} {act}", who(p, rng), clothes(p, rng))
        })
        .collect();
    match rng.below(3) {
        0 => format!("{count} people {place_p}: {}", join_list(&descs)),
        1 => format!("{}, {count} people in all, {place_p}", join_list(&descs)),
        _ => {
            let mut pl = place_p.clone();
            if let Some(c) = pl.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            format!("{pl}, {count} people: {}", join_list(&descs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_name_count_clothes_action_and_place() {
        let mut rng = Rng::new(4);
        for i in 0..500 {
            let looks: Vec<Appearance> = (0..3).map(|_| Appearance::random(&mut rng)).collect();
            let n = 1 + i % 3;
            let place = PlaceKind::ALL[i % PlaceKind::ALL.len()];
            let people: Vec<PersonDesc> = (0..n)
                .map(|k| PersonDesc {
                    action: Action::ALL[(i + k) % Action::ALL.len()],
                    looks: &looks[k],
                    support: Some("bench"),
                    near: Some("table"),
                })
                .collect();
            let p = make_prompt(place, &people, &mut rng);
            assert!(p.contains(place.noun()), "{p}");
            for d in &people {
                assert!(p.contains(d.looks.shirt_name()), "{p}");
            }
            if n > 1 {
                assert!(p.contains(count_word(n)), "{p}");
            }
            for bad in [" a orange", " a a", "is with", "  "] {
                assert!(!p.contains(bad), "{p:?} contains {bad:?}");
            }
            let words = [
                "stand", "walk", "sit", "seated", "lying", "wav", "rais", "point",
            ];
            assert!(words.iter().any(|w| p.contains(w)), "{p}");
            assert_eq!(
                skeleguide_engine::select::asked_count(&p),
                Some(n),
                "the engine reads the count asked for from {p:?}"
            );
        }
    }
}
