//! Evaluation metrics: image quality (PSNR, SSIM, masked variants) and pose accuracy
//! (PCK, PCKh, Hungarian matching of people).

pub mod image;
pub mod pose;
