//! The training-free colour-segmentation baseline ([`ColorDecoder`]): each pixel's class read
//! from the palette, the class map decoded like the network's.

use super::decode::decode_classes;
use super::input::{check_image, nearest_palette};
use super::{Result, NO_CLASS};
use crate::pose::{stick_width, PoseSet};
use image::RgbImage;

/// The training-free baseline: classifies each pixel by the palette (each joint and limb has
/// its own colour) and decodes the class map with [`decode_classes`], like the network. Exact
/// on clean layouts; colour drift (blur, JPEG, an autoencoder) breaks it.
#[derive(Clone, Copy, Debug)]
pub struct ColorDecoder {
    /// Largest per-channel difference to a palette colour that still counts as that colour.
    pub tolerance: u8,
    /// People with fewer joints are dropped: a blob or two of a palette colour in a photo is
    /// not a person.
    pub min_joints: usize,
}

impl Default for ColorDecoder {
    fn default() -> Self {
        ColorDecoder {
            tolerance: 12,
            min_joints: 3,
        }
    }
}

impl ColorDecoder {
    /// Per-pixel class: 0..18 joints, 18..35 limbs, [`NO_CLASS`] background.
    pub fn classify(&self, img: &RgbImage) -> Vec<u8> {
        self.scan(img).0
    }

    /// The class map and whether the image reads cleanly (see [`Self::reads_cleanly`]), in
    /// one pass over the palette.
    fn scan(&self, img: &RgbImage) -> (Vec<u8>, bool) {
        let tol = self.tolerance as f32;
        let (mut near, mut exact) = (0usize, 0usize);
        let classes = img
            .pixels()
            .map(|p| {
                let (c, d) = nearest_palette(p.0);
                near += (d <= 48.0) as usize;
                if d <= tol {
                    exact += 1;
                    c as u8
                } else {
                    NO_CLASS
                }
            })
            .collect();
        // the tolerance is below 48, so every exact pixel is a near one too
        (classes, exact > 0 && 2 * exact >= near.max(exact))
    }

    /// Whether the image carries the palette exactly enough for this decoder: of the pixels
    /// within 48 (per channel) of a palette colour, at least half are within the tolerance.
    /// True for a layout drawn by a rasteriser (no antialiasing) over black or a scene; false
    /// after an autoencoder, JPEG or heavy blur, where the network reads more.
    pub fn reads_cleanly(&self, img: &RgbImage) -> bool {
        self.scan(img).1
    }

    /// The poses of a layout image, in its own pixels.
    pub fn invert(&self, img: &RgbImage) -> Result<PoseSet> {
        check_image(img)?;
        Ok(self.decode(img, &self.scan(img).0))
    }

    /// [`Self::invert`] when the image reads cleanly, else `None`, classifying only once.
    pub fn invert_if_clean(&self, img: &RgbImage) -> Result<Option<PoseSet>> {
        check_image(img)?;
        let (classes, clean) = self.scan(img);
        Ok(clean.then(|| self.decode(img, &classes)))
    }

    /// The poses of `img` from its full-resolution class map.
    fn decode(&self, img: &RgbImage, classes: &[u8]) -> PoseSet {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let sw = stick_width(img.width(), img.height()) as f64;
        let people = decode_classes(classes, w, h, sw, self.min_joints);
        PoseSet {
            width: img.width(),
            height: img.height(),
            people,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverter::test_util::standing;
    use crate::pose::draw_layout;
    use crate::pose::skeleton::NUM_JOINTS;
    use image::imageops;

    #[test]
    fn colour_decoder_recovers_a_clean_layout() {
        let mut gt = PoseSet::new(512, 384);
        gt.people.push(standing(120.0, 60.0, 30.0));
        let mut second = standing(360.0, 80.0, 25.0);
        second.joints[4] = None; // a missing wrist
        gt.people.push(second);
        let img = draw_layout(None, &gt);
        let pred = ColorDecoder::default().invert(&img).unwrap();
        assert_eq!(pred.people.len(), 2);
        let r = crate::metrics::pose::pck(&pred, &gt, 0.05);
        assert_eq!(r.correct, r.total, "{r:?}");
        assert!(pred.people[1].joints[4].is_none());
        // sub-pixel: every joint within 1.5 px
        for (p, g) in pred.people.iter().zip(&gt.people) {
            for j in 0..NUM_JOINTS {
                if let (Some(a), Some(b)) = (p.joints[j], g.joints[j]) {
                    assert!(
                        (a.x - b.x).abs() < 1.5 && (a.y - b.y).abs() < 1.5,
                        "joint {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn clean_layouts_read_cleanly_and_blurred_ones_do_not() {
        let mut gt = PoseSet::new(256, 256);
        gt.people.push(standing(128.0, 40.0, 20.0));
        let img = draw_layout(None, &gt);
        let dec = ColorDecoder::default();
        assert!(dec.reads_cleanly(&img));
        assert!(!dec.reads_cleanly(&imageops::blur(&img, 1.5)));
        assert!(
            !dec.reads_cleanly(&RgbImage::new(8, 8)),
            "black has no palette pixel"
        );
    }
}
