//! Image-quality metrics: PSNR and SSIM, whole-image and masked.
