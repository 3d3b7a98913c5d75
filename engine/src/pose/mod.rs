//! OpenPose-18 poses.
