//! Helpers shared by the trainer's integration tests.

use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
use skeleguide_trainer::data::synth::{write_dataset, Split, SynthOptions};

/// A synthetic training set of `count` examples (128 px, seed 11).
pub(crate) fn dataset(count: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        count,
        seed: 11,
        split: Split::Train,
        size: 128,
        min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
        threads: 1,
    };
    write_dataset(d.path(), &opts, &|| {}).unwrap();
    d
}
