//! Training targets: the classes a layout's poses draw at the working size, one-hot targets and
//! the class-weighted cross-entropy loss.

use super::colour::ColorDecoder;
use super::input::WorkGeometry;
use super::{Result, BACKGROUND, NO_CLASS, NUM_CLASSES};
use crate::pose::skeleton::{NUM_JOINTS, NUM_LIMBS};
use crate::pose::PoseSet;
use candle_core::{Device, Tensor, D};
use image::RgbImage;

/// Loss weight of a pixel by its true class: joints, limbs, background.
const CLASS_WEIGHTS: [f32; 3] = [4.0, 2.0, 1.0];

/// The training target of one image: the class of every pixel of its padded working canvas
/// (`padded_height × padded_width`, row-major; the network's [`BACKGROUND`] class outside the
/// drawing), read from `poses` redrawn by the rasteriser at the working size, i.e. what the
/// layout shows there, later strokes covering earlier ones.
pub fn class_targets(poses: &PoseSet, g: &WorkGeometry) -> Vec<u8> {
    let set = poses.resized(g.width as u32, g.height as u32);
    let mut canvas = RgbImage::new(g.width as u32, g.height as u32);
    crate::pose::draw_on(&mut canvas, &set);
    let exact = ColorDecoder {
        tolerance: 0,
        ..Default::default()
    };
    let cls = exact.classify(&canvas);
    let mut t = vec![BACKGROUND as u8; g.padded_width * g.padded_height];
    for y in 0..g.height {
        for x in 0..g.width {
            let c = cls[y * g.width + x];
            if c != NO_CLASS {
                t[y * g.padded_width + x] = c;
            }
        }
    }
    t
}

/// One-hot targets `(n, h, w, 36)` from class labels (`0..36`, row-major per image).
pub fn one_hot(labels: &[u8], n: usize, h: usize, w: usize, device: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * NUM_CLASSES];
    for (i, &c) in labels.iter().enumerate() {
        v[i * NUM_CLASSES + (c as usize).min(BACKGROUND)] = 1.0;
    }
    Ok(Tensor::from_vec(v, (n, h, w, NUM_CLASSES), device)?)
}

/// The training loss: softmax cross-entropy per pixel against one-hot `targets`, weighted by
/// the true class ([`CLASS_WEIGHTS`]: joints, limbs, background) and normalised by the total
/// weight. `logits` and `targets` are `(B, H, W, 36)`. Built from plain differentiable ops
/// (no fused softmax, which would drop the gradient).
pub fn loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let m = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    let nll = (logp * targets)?.sum_keepdim(D::Minus1)?.neg()?;
    let mut wv = vec![CLASS_WEIGHTS[0]; NUM_JOINTS];
    wv.extend(std::iter::repeat_n(CLASS_WEIGHTS[1], NUM_LIMBS));
    wv.push(CLASS_WEIGHTS[2]);
    let wv = Tensor::from_vec(wv, NUM_CLASSES, logits.device())?;
    let w = targets.broadcast_mul(&wv)?.sum_keepdim(D::Minus1)?;
    Ok(((nll * &w)?.sum_all()? / w.sum_all()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverter::decode_classes;
    use crate::inverter::test_util::standing;

    #[test]
    fn targets_are_the_drawn_classes_at_the_working_size() {
        let mut gt = PoseSet::new(512, 512);
        gt.people.push(standing(256.0, 80.0, 40.0));
        let g = WorkGeometry::new(512, 512, 256);
        let t = class_targets(&gt, &g);
        assert_eq!(t.len(), 256 * 256);
        let at =
            |x: f64, y: f64| t[(g.to_work(y) as usize) * g.padded_width + g.to_work(x) as usize];
        // the nose joint, the neck-hip limb (6) half-way down, background far away
        let k = gt.people[0].joints[0].unwrap();
        assert_eq!(at(k.x, k.y), 0);
        let (a, b) = (
            gt.people[0].joints[1].unwrap(),
            gt.people[0].joints[8].unwrap(),
        );
        assert_eq!(
            at((a.x + b.x) / 2.0, (a.y + b.y) / 2.0) as usize,
            NUM_JOINTS + 6
        );
        assert_eq!(at(10.0, 500.0) as usize, BACKGROUND);
        // decoding the targets recovers the person (in working pixels)
        let cls: Vec<u8> = t
            .iter()
            .map(|&c| {
                if c as usize == BACKGROUND {
                    NO_CLASS
                } else {
                    c
                }
            })
            .collect();
        let people = decode_classes(&cls, 256, 256, g.stick_width(), 1);
        assert_eq!(people.len(), 1);
        let p = people[0].joints[0].unwrap();
        assert!((g.to_image(p.x) - k.x).abs() < 2.5 && (g.to_image(p.y) - k.y).abs() < 2.5);
    }
}
