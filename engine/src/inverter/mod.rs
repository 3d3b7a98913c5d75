//! PoseInverter: layout image -> editable multi-person keypoints.
//!
//! The paper fine-tunes a 7B VLM for this. We read the layout in two steps that are shared by
//! a small learned network ([`PoseInverter`]) and a training-free baseline ([`ColorDecoder`]):
//!
//! 1. **Per-pixel classes.** Every pixel gets one of 36 classes: one of the 18 joints, one of
//!    the 17 limbs, or background — exactly what the rasteriser painted there (each joint and
//!    limb has its own palette colour, and later strokes cover earlier ones). The baseline
//!    reads the class from the pixel's colour within a tolerance; the network predicts it from
//!    context, so it also reads layouts whose colours have drifted (an autoencoder round trip,
//!    JPEG, blur, a photo behind the skeleton).
//! 2. **Decoding** ([`decode_classes`]): the centroid of each joint-coloured blob is a joint
//!    candidate (sub-pixel by construction); a pair of candidates is scored by how much of the
//!    segment between them carries that limb's class; people are assembled limb by
//!    limb from the neck outwards (the OpenPose order of `LIMBS`), each limb's pairs chosen as
//!    the assignment with the best total score. Then each person takes, limb
//!    by limb, the free blobs that complete it, including slivers too small to found a person
//!    (a joint mostly covered by a later one), and may share a blob another person holds when
//!    a clearly seen limb leads there; a person that is mostly another one's shared blobs (a
//!    stray fragment grown into a copy) is folded into it, and two halves of one person (the
//!    joint where they meet read as two blobs) are joined. A joint that is not found is
//!    missing.
//!    Coordinates come back in the input image's own pixels.
//!
//! Because both share step 2, comparing them measures only the per-pixel part.
//!
//! **Network.** The image is shrunk so that its longest side is at most `work_size` (256;
//! layouts are scale-consistent because the stick width scales with the image), padded to a
//! multiple of 4 and run channels-last:
//! * per-pixel features: RGB and the match to each of the 35 palette colours
//!   ([`input::pixel_features`]);
//! * pixel-unshuffle ×2, 1×1 conv to `stem` channels + SiLU (stride 2);
//! * pixel-unshuffle ×2, 1×1 conv to `width` channels + SiLU (stride 4);
//! * `blocks` residual blocks of two 3×3 convolutions (stride 4);
//! * a 1×1 conv to 4 × `stem` channels, pixel-shuffle back to stride 2, plus the stride-2 stem
//!   features, SiLU, and one residual 3×3 convolution there;
//! * a 1×1 head to 4 × 36 class logits and pixel-shuffle to stride 1, plus a per-pixel 1×1
//!   skip from the input features (the full-resolution colour evidence, which the strided
//!   path would have to squeeze through its channels).
//!
//! It is trained with a class-weighted softmax cross-entropy against the layout redrawn at the
//! working size ([`class_targets`], [`loss`]).
//!
//! Weights live in a model directory's `inverter.safetensors`; the architecture is stored in
//! the file (`config` tensor), so any trained size loads. The shipped default is embedded.
//!
//! The files, one job each: `input` (reading images, the working geometry, the network's input
//! features), `network` (the [`PoseInverter`]), `decode` (class maps and [`decode_classes`]),
//! `grouping` (joint candidates into people), `colour` (the [`ColorDecoder`] baseline),
//! `targets` (training targets and loss) and `prior` (the body's proportions).

mod colour;
mod decode;
mod grouping;
mod input;
mod network;
mod prior;
mod targets;
#[cfg(test)]
mod test_util;

pub use colour::ColorDecoder;
pub use decode::{decode_classes, ClassMap};
pub use input::{
    image_from_raw, read_layout, to_working, window_features, WorkGeometry, INPUT_CHANNELS,
};
pub use network::{InverterConfig, PoseInverter};
pub use prior::{body_misfit, POSE_PRIOR, PRIOR_CAP};
pub use targets::{class_targets, loss, one_hot};

use crate::error::PoseError;
use crate::pose::skeleton::{NUM_JOINTS, NUM_LIMBS};

/// Classes per pixel: 18 joints, 17 limbs, then background.
const NUM_CLASSES: usize = NUM_JOINTS + NUM_LIMBS + 1;
/// The background class of the network; class maps ([`ColorDecoder::classify`],
/// [`decode_classes`]) write background as [`NO_CLASS`].
pub const BACKGROUND: usize = NUM_JOINTS + NUM_LIMBS;
/// Background in a class map.
pub const NO_CLASS: u8 = 255;

/// The file of the network's weights in a model directory (`modeldir::INVERTER_FILE` is this).
pub(crate) const WEIGHTS_FILE: &str = "inverter.safetensors";

/// Errors of the inverter. Every message names the file (or input) at fault.
#[derive(Debug, thiserror::Error)]
pub enum InverterError {
    /// A layout image cannot be used (empty, too large, wrong channel count or buffer size).
    #[error("{file}: {msg}")]
    Image {
        /// The image file or input the error is about, as shown to the user.
        file: String,
        /// What is wrong with the image.
        msg: String,
    },
    /// The network's weights or configuration are invalid, missing a tensor or unreadable.
    #[error("{file}: {msg}")]
    Weights {
        /// The weights file (or `inverter` / `inverter config`), as shown to the user.
        file: String,
        /// What is wrong with the weights.
        msg: String,
    },
    /// A tensor operation of the network failed.
    #[error("inverter: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written (see [`PoseError`]).
    #[error(transparent)]
    Pose(#[from] PoseError),
}

type Result<T> = std::result::Result<T, InverterError>;
