//! Helpers shared by the trainer's integration tests.

use skeleguide_trainer::data::synth::{write_dataset, Split, SynthOptions};

/// A synthetic training set of `count` examples (128 px, seed 11).
pub(crate) fn dataset(count: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        count,
        seed: 11,
        split: Split::Train,
        size: 128,
        threads: 1,
    };
    write_dataset(d.path(), &opts, &|| {}).unwrap();
    d
}
