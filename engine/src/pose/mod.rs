//! Poses: the OpenPose-18 skeleton, `Pose`/`PoseSet`, JSON import/export for the OpenPose
//! family, pure edit operations and the layout rasteriser.

pub mod edit;
mod error;
pub mod io;
pub mod layout;
pub mod proportions;
pub mod skeleton;
pub mod types;

pub use edit::{Edit, EditError};
pub use error::PoseError;
pub use io::{
    parse_pose_json, read_pose_file, to_json, write_pose_file, ExportOptions, ImportOptions,
    PoseDocument, PoseFormat,
};
pub use layout::{draw_layout, draw_layout_parts, draw_on, person_mask, stick_width, LayoutParts};
pub use skeleton::{COLORS, JOINT_NAMES, LIMBS, NUM_JOINTS};
pub use types::{Keypoint, OutsidePoints, Pose, PoseSet};
