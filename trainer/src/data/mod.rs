//! Training data: the synthetic human-in-scene generator and manifest data sets.

pub mod body;
pub mod coco;
pub mod manifest;
pub mod people;
pub mod prompt;
pub mod raster;
pub mod rng;
pub mod scene;
pub mod synth;

pub use manifest::{Manifest, ManifestError, Record, Sample};
pub use synth::{
    example_seed, generate_example, write_dataset, Example, Facts, Split, SynthOptions,
};

/// Errors of the data generators.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {msg}")]
    Output { path: String, msg: String },
    #[error(transparent)]
    Engine(#[from] skeleguide_engine::PoseError),
    #[error("{0}")]
    Invalid(String),
}

/// The path `rel` names inside a data set's folder `root`, refused (with why) when it is
/// absolute, climbs out with `..`, or, once it exists, leads outside `root` through a link: a
/// data set reads only its own files.
pub fn path_inside(root: &std::path::Path, rel: &str) -> Result<std::path::PathBuf, String> {
    use std::path::{Component, Path};
    let p = Path::new(rel);
    if p.is_absolute() {
        return Err(format!(
            "{rel} is an absolute path; paths are relative to the data set's folder"
        ));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("{rel} leaves the data set's folder"));
    }
    let full = root.join(p);
    if let (Ok(real), Ok(real_root)) = (full.canonicalize(), root.canonicalize()) {
        if !real.starts_with(&real_root) {
            return Err(format!(
                "{rel} leads outside the data set's folder (a link)"
            ));
        }
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::path_inside;

    #[test]
    fn data_set_paths_stay_inside_their_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.png"), b"x").unwrap();
        assert!(path_inside(d.path(), "a.png").is_ok());
        assert!(path_inside(d.path(), "./sub/b.png").is_ok());
        for bad in ["../../../../etc/passwd", "/etc/passwd", "sub/../../x.png"] {
            assert!(path_inside(d.path(), bad).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        let e = path_inside(d.path(), "out/passwd").unwrap_err();
        assert!(e.contains("link"), "{e}");
    }
}
