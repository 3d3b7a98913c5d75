//! The engine's input limits, in one place. Every size that comes from a file or an argument is
//! checked against one of these before anything is allocated for it, and the message names the
//! file, the field and the limit. `docs/DESIGN.md` lists them.

/// Largest image or canvas, in pixels (a scene, a layout, a pose file's canvas): 100 MP, about
/// 300 MB as RGB.
pub const MAX_PIXELS: u64 = 100_000_000;
/// Largest canvas side of a pose file.
pub const MAX_CANVAS_SIDE: u64 = 65_536;
/// Largest coordinate magnitude in a pose file, in pixels (or normalised units).
pub const MAX_COORD: f64 = 1e6;
/// Most people in one pose frame.
pub const MAX_PEOPLE: usize = 1000;
/// Largest pose file read (COCO train2017 keypoints are about 240 MB).
pub const MAX_POSE_FILE_BYTES: u64 = 1 << 30;
/// Largest image file read.
pub const MAX_IMAGE_FILE_BYTES: u64 = 1 << 30;
/// Largest configuration or tokenizer file read (`config.json`, a training TOML, a tokenizer).
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// Most bytes read from an input that is not a regular file (a pipe, a FIFO, a device such as
/// `/dev/zero`), whose length cannot be checked before reading.
pub const MAX_STREAM_BYTES: u64 = 16 << 20;
/// Largest prompts file read by a batch.
pub const MAX_PROMPTS_FILE_BYTES: u64 = 64 << 20;
/// Prompts longer than this many characters are cut before tokenisation (and reported as
/// truncated): no encoder here reads more than a few hundred tokens.
pub const MAX_PROMPT_CHARS: usize = 8192;
/// Largest working resolution of a model (`config.json` `resolution`).
pub const MAX_RESOLUTION: u32 = 4096;
/// Most transformer blocks of a DiT (`depth` plus `depth_single_blocks`; FLUX.1 has 57).
pub const MAX_BLOCKS: usize = 256;
/// Largest width of any layer named in a model config (hidden sizes, channels, feature dims;
/// FLUX.1's widest is its 12,288-wide MLP).
pub const MAX_WIDTH: usize = 65_536;
/// Largest training batch.
pub const MAX_BATCH: usize = 65_536;
/// Largest LoRA rank.
pub const MAX_LORA_RANK: usize = 4096;
/// Most pixels a JPEG may claim per byte of its file: a flat colour costs bits in every 8×8
/// block (about 60 pixels per byte baseline, 200 progressive), so far more is a truncated or
/// forged file the decoder would fill in.
pub const MAX_JPEG_PIXELS_PER_BYTE: u64 = 4096;

/// `value` when it is at most `limit`, else a message naming `field` and the limit.
pub fn at_most<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    limit: T,
) -> Result<T, String> {
    if value > limit {
        Err(format!("{field} = {value} is over the limit of {limit}"))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::DitConfig;
    use crate::model::tiny_ae::TinyAeConfig;
    use crate::model::tiny_text::TinyTextConfig;

    #[test]
    fn dit_configs_take_each_limit_and_refuse_one_past_it() {
        let at = |edit: &dyn Fn(&mut DitConfig)| {
            let mut c = DitConfig::tiny();
            edit(&mut c);
            c.validate().map_err(|e| e.to_string())
        };
        at(&|c| (c.depth, c.depth_single_blocks) = (MAX_BLOCKS, 0)).unwrap();
        let e = at(&|c| (c.depth, c.depth_single_blocks) = (MAX_BLOCKS + 1, 0)).unwrap_err();
        assert!(e.contains("depth = 257"), "{e}");
        let e = at(&|c| (c.depth, c.depth_single_blocks) = (MAX_BLOCKS, 1)).unwrap_err();
        assert!(e.contains("depth + depth_single_blocks"), "{e}");
        at(&|c| c.context_in_dim = MAX_WIDTH).unwrap();
        let e = at(&|c| c.context_in_dim = MAX_WIDTH + 1).unwrap_err();
        assert!(e.contains("context_in_dim = 65537"), "{e}");
    }

    #[test]
    fn autoencoder_and_text_configs_take_each_limit_and_refuse_one_past_it() {
        let ae = |w: usize| TinyAeConfig {
            latent_channels: w,
            ..TinyAeConfig::default()
        };
        ae(MAX_WIDTH).validate().unwrap();
        assert!(ae(MAX_WIDTH + 1).validate().is_err());
        let text = |layers: usize| {
            let mut c =
                TinyTextConfig::with_vocab(vec!["<pad>".into(), "<unk>".into(), "<bos>".into()]);
            c.layers = layers;
            c
        };
        text(MAX_BLOCKS).validate().unwrap();
        let e = text(MAX_BLOCKS + 1).validate().unwrap_err().to_string();
        assert!(e.contains("layers = 257"), "{e}");
    }

    #[test]
    fn pose_canvases_take_the_pixel_limit_and_refuse_one_past_it() {
        let doc = |w: u64, h: u64| {
            let text = format!(r#"{{"people":[],"canvas_width":{w},"canvas_height":{h}}}"#);
            crate::pose::parse_pose_json(&text, "p.json", &Default::default())
        };
        doc(10_000, MAX_PIXELS / 10_000).unwrap();
        let e = doc(10_000, MAX_PIXELS / 10_000 + 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.json") && e.contains("over the limit of 100000000"),
            "{e}"
        );
    }

    #[test]
    fn streams_are_read_up_to_their_limit_and_refused_one_past_it() {
        let mut child = std::process::Command::new("head")
            .args(["-c", &(MAX_STREAM_BYTES + 1).to_string(), "/dev/zero"])
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(child) = child.as_mut() else {
            eprintln!("SKIPPED: no `head`");
            return;
        };
        let fd = child.stdout.take().unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let e = crate::fsutil::read_limited(std::path::Path::new(&path), u64::MAX).unwrap_err();
        assert!(e.to_string().contains(&MAX_STREAM_BYTES.to_string()), "{e}");
        drop(fd);
        let _ = child.wait();
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, vec![7u8; 1000]).unwrap();
        assert_eq!(crate::fsutil::read_limited(&f, 1000).unwrap().len(), 1000);
        assert!(crate::fsutil::read_limited(&f, 999).is_err());
    }

    #[test]
    fn jpegs_take_the_pixels_per_byte_limit_and_refuse_one_past_it() {
        let seed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/image/12x8.jpg");
        let jpg = std::fs::read(seed).unwrap();
        // the frame header (SOF0): FF C0, length, precision, height, width
        let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let with_size = |w: u16, h: u16| {
            let mut b = jpg.clone();
            b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
            b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
            b
        };
        let limit = MAX_JPEG_PIXELS_PER_BYTE * jpg.len() as u64;
        let (w, h) = (64u64, limit / 64);
        assert_eq!(w * h, limit, "the seed's size makes an exact limit");
        let claims = |e: &crate::PoseError| e.to_string().contains("holds only");
        if let Err(e) = crate::imageio::decode_dynamic(&with_size(w as u16, h as u16), "at.jpg") {
            assert!(!claims(&e), "at the limit: {e}");
        }
        let e = crate::imageio::decode_dynamic(&with_size(w as u16, h as u16 + 1), "past.jpg")
            .unwrap_err();
        assert!(claims(&e), "one past the limit: {e}");
    }

    #[test]
    fn at_most_takes_the_limit_and_refuses_one_past_it() {
        assert_eq!(at_most("batch", MAX_BATCH, MAX_BATCH), Ok(MAX_BATCH));
        let e = at_most("batch", MAX_BATCH + 1, MAX_BATCH).unwrap_err();
        assert_eq!(e, "batch = 65537 is over the limit of 65536");
    }
}
