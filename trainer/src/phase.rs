//! The training phases, in run order. Their string forms (`0-ae`, `0-dit`, `1`, `2`, `3`) are
//! part of a run's files: `train.jsonl` records, the checkpoint's `phase` metadata, sample grid
//! names, and the seeds of each phase's random stream (hashed from the string), so they never
//! change.

// Phases are matched exhaustively: a new phase must be handled everywhere, never by a `_` arm.
#![warn(clippy::wildcard_enum_match_arm)]

use std::fmt;
use std::str::FromStr;

/// A training phase. The order of the variants is the order of a run (`Ord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `0-ae`: phase 0, first part: the tiny autoencoder.
    Ae,
    /// `0-dit`: phase 0, second part: the base DiT with the text encoder.
    Dit,
    /// `1`: the skeletal LoRA (`L_reason`).
    Skeletal,
    /// `2`: both LoRAs jointly (`λ_reason·L_reason + λ_render·L_render`).
    Joint,
    /// `3`: the appearance LoRA (`L_render` on the ground-truth layout).
    Appearance,
}

impl Phase {
    /// Every phase, in run order.
    pub const ALL: [Phase; 5] = [
        Phase::Ae,
        Phase::Dit,
        Phase::Skeletal,
        Phase::Joint,
        Phase::Appearance,
    ];

    /// The phase's name in a run's files and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Ae => "0-ae",
            Phase::Dit => "0-dit",
            Phase::Skeletal => "1",
            Phase::Joint => "2",
            Phase::Appearance => "3",
        }
    }

    /// The LoRA phase `--phase n` names (`1`, `2` or `3`).
    pub const fn lora(n: u8) -> Option<Phase> {
        match n {
            1 => Some(Phase::Skeletal),
            2 => Some(Phase::Joint),
            3 => Some(Phase::Appearance),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that widths such as `{:>5}` apply
        f.pad(self.as_str())
    }
}

/// A string that names no phase.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a phase (0-ae, 0-dit, 1, 2, 3)")]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

impl PartialEq<str> for Phase {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Phase {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_in_run_order() {
        let names: Vec<String> = Phase::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["0-ae", "0-dit", "1", "2", "3"]);
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), p);
        }
        assert!(Phase::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(format!("{:>5}", Phase::Skeletal), "    1");
        assert!("4".parse::<Phase>().is_err());
        assert!("0".parse::<Phase>().is_err());
        assert!(serde_json::from_str::<Phase>("\"x\"").is_err());
        assert_eq!(Phase::lora(2), Some(Phase::Joint));
        assert_eq!(Phase::lora(0), None);
    }
}
