//! The bundled sample scenes (held-out scenes from the synthetic generator, embedded in the
//! binary so they work from any directory).

pub const SAMPLES: [(&str, &[u8]); 6] = [
    ("park", include_bytes!("../../../assets/scenes/park.png")),
    (
        "living room",
        include_bytes!("../../../assets/scenes/living-room.png"),
    ),
    (
        "bedroom",
        include_bytes!("../../../assets/scenes/bedroom.png"),
    ),
    ("plaza", include_bytes!("../../../assets/scenes/plaza.png")),
    (
        "street",
        include_bytes!("../../../assets/scenes/street.png"),
    ),
    (
        "living room 2",
        include_bytes!("../../../assets/scenes/living-room-2.png"),
    ),
];

/// Decodes a sample by index.
pub fn load(i: usize) -> Result<(String, image::RgbImage), String> {
    let (name, bytes) = SAMPLES.get(i).ok_or_else(|| format!("no sample {i}"))?;
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| format!("sample {name}: {e}"))?;
    Ok((name.to_string(), img.into_rgb8()))
}
