//! Image files: decoding with a size check made from the header before any pixel is allocated,
//! and atomic PNG output.

use crate::error::{display_path, PoseError};
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ExtendedColorType, GrayImage, ImageEncoder, ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::Path;

use crate::limits::MAX_JPEG_PIXELS_PER_BYTE;
pub use crate::limits::MAX_PIXELS;

/// Reads an image file as RGB. Refuses, before allocating, images whose header claims more than
/// `MAX_PIXELS`; every failure names the file.
pub fn read_rgb(path: &Path) -> Result<RgbImage, PoseError> {
    Ok(read_dynamic(path)?.into_rgb8())
}

/// Reads an image file (PNG or JPEG) keeping its channel layout, with the same header checks
/// as [`read_rgb`].
pub fn read_dynamic(path: &Path) -> Result<DynamicImage, PoseError> {
    let file = display_path(path);
    let bytes = crate::fsutil::read_limited(path, crate::limits::MAX_IMAGE_FILE_BYTES).map_err(
        |source| PoseError::Read {
            file: file.clone(),
            source,
        },
    )?;
    decode_dynamic(&bytes, &file)
}

/// Decodes an image file's bytes with the checks of [`read_dynamic`]; `file` names it in
/// messages.
pub fn decode_dynamic(bytes: &[u8], file: &str) -> Result<DynamicImage, PoseError> {
    let bad = |msg: String| PoseError::Image {
        file: file.to_string(),
        msg,
    };
    let format = image::guess_format(bytes)
        .map_err(|_| bad("not a PNG or JPEG image (unrecognised header)".into()))?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(bad(format!(
            "{format:?} images are not supported; use PNG or JPEG"
        )));
    }
    let reader = || image::ImageReader::with_format(Cursor::new(bytes), format);
    let (w, h) = match png_ihdr_size(bytes) {
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
    let pixels = w as u64 * h as u64;
    if format == ImageFormat::Jpeg && pixels > MAX_JPEG_PIXELS_PER_BYTE * bytes.len() as u64 {
        return Err(bad(format!(
            "the header claims {w}x{h} pixels but the file holds only {} bytes (truncated or corrupt)",
            bytes.len()
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
    Ok(img)
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

/// Writes an RGB PNG carrying `text` as text chunks (tEXt when the value is Latin-1, iTXt
/// otherwise, so any prompt survives), atomically.
pub fn write_png_with_text(
    path: &Path,
    img: &RgbImage,
    text: &[(&str, String)],
) -> Result<(), PoseError> {
    let bytes = encode_png_with_text(img, text).map_err(|msg| PoseError::Write {
        file: display_path(path),
        msg,
    })?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// The bytes of an RGB PNG carrying `text` as text chunks (see [`write_png_with_text`]).
pub fn encode_png_with_text(img: &RgbImage, text: &[(&str, String)]) -> Result<Vec<u8>, String> {
    let err = |msg: String| msg;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            let latin1 = v.chars().all(|c| (c as u32) < 256 && c != '\0');
            let r = if latin1 {
                enc.add_text_chunk(k.to_string(), v.clone())
            } else {
                enc.add_itxt_chunk(k.to_string(), v.clone())
            };
            r.map_err(|e| err(format!("text chunk `{k}`: {e}")))?;
        }
        let mut w = enc.write_header().map_err(|e| err(e.to_string()))?;
        w.write_image_data(img.as_raw())
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(out)
}

/// The text chunks (tEXt, zTXt and iTXt) of a PNG file.
pub fn read_png_text(path: &Path) -> Result<Vec<(String, String)>, PoseError> {
    let file = display_path(path);
    let f = std::fs::File::open(path).map_err(|source| PoseError::Read {
        file: file.clone(),
        source,
    })?;
    let reader = png::Decoder::new(std::io::BufReader::new(f))
        .read_info()
        .map_err(|e| PoseError::Image {
            file: file.clone(),
            msg: e.to_string(),
        })?;
    let info = reader.info();
    let mut out: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    for t in &info.compressed_latin1_text {
        if let Ok(s) = t.get_text() {
            out.push((t.keyword.clone(), s));
        }
    }
    for t in &info.utf8_text {
        if let Ok(s) = t.get_text() {
            out.push((t.keyword.clone(), s));
        }
    }
    Ok(out)
}
