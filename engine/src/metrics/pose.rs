//! Pose metrics: Hungarian matching of people, PCK and PCKh.
