//! Image files: decoding with a size check made from the header before any pixel is allocated,
//! and atomic PNG output.

use crate::error::{display_path, PoseError};
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ExtendedColorType, GrayImage, ImageEncoder, ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// Largest image accepted, in pixels (checked against the header before decoding).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Reads an image file as RGB. Refuses, before allocating, images whose header claims more than
/// `MAX_PIXELS`; every failure names the file.
pub fn read_rgb(path: &Path) -> Result<RgbImage, PoseError> {
    let file = display_path(path);
    let bad = |msg: String| PoseError::Image {
        file: file.clone(),
        msg,
    };
    let bytes = std::fs::read(path).map_err(|source| PoseError::Read {
        file: file.clone(),
        source,
    })?;
    let format = image::guess_format(&bytes)
        .map_err(|_| bad("not a PNG or JPEG image (unrecognised header)".into()))?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(bad(format!(
            "{format:?} images are not supported; use PNG or JPEG"
        )));
    }
    let reader = || image::ImageReader::with_format(Cursor::new(&bytes[..]), format);
    let (w, h) = match png_ihdr_size(&bytes) {
        Some(wh) => wh,
        None => reader()
            .into_dimensions()
            .map_err(|e| bad(format!("cannot read the image header: {e}")))?,
    };
    if w == 0 || h == 0 {
        return Err(bad(format!("the header claims an empty {w}x{h} image")));
    }
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(bad(format!(
            "the header claims {w}x{h} = {} megapixels; at most {} are accepted",
            w as u64 * h as u64 / 1_000_000,
            MAX_PIXELS / 1_000_000
        )));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    let mut reader = reader();
    reader.limits(limits);
    let img: DynamicImage = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    Ok(img.into_rgb8())
}

/// Width and height from a PNG's IHDR chunk, which always comes first.
fn png_ihdr_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}

/// Encodes 8-bit pixels as a PNG in memory.
pub fn encode_png(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(pixels, width, height, color)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Writes an RGB image as PNG, atomically.
pub fn write_png_rgb(path: &Path, img: &RgbImage) -> Result<(), PoseError> {
    write_png(
        path,
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )
}

/// Writes a grey image as PNG, atomically.
pub fn write_png_gray(path: &Path, img: &GrayImage) -> Result<(), PoseError> {
    write_png(
        path,
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::L8,
    )
}

fn write_png(
    path: &Path,
    pixels: &[u8],
    w: u32,
    h: u32,
    color: ExtendedColorType,
) -> Result<(), PoseError> {
    let bytes = encode_png(pixels, w, h, color).map_err(|msg| PoseError::Write {
        file: display_path(path),
        msg,
    })?;
    crate::fsutil::write_atomic(path, &bytes)
}
