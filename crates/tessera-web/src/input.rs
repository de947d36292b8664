//! Input streams for the coordinator page, as model inputs: the bundled
//! MNIST digits, RGBA images from the page (files, camera) resized and
//! normalised to the model's input, and procedural "ImageNet-style" images
//! (no real photographs are bundled: the page says so). Plain Rust, tested
//! natively.

use tessera_graph::Tensor;
use tessera_graph::rng::Rng;

/// How 3-channel inputs are normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    /// `(x / 255 - mean) / std` with the ImageNet mean and std (torchvision's).
    ImageNet,
    /// `x / 255` (Darknet / YOLO).
    Unit,
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// What a model takes: `[1, C, H, W]` with C = 1 or 3.
pub fn image_geometry(shape: &[usize]) -> Result<(usize, usize, usize), String> {
    match shape {
        [1, c @ (1 | 3), h, w] if *h > 0 && *w > 0 => Ok((*c, *h, *w)),
        _ => Err(format!("the model takes {shape:?}; images need an input of shape [1, 1|3, H, W]")),
    }
}

/// Bilinear sample of channel `ch` of an RGBA image at (x, y) in source pixels.
fn sample(rgba: &[u8], w: usize, h: usize, x: f32, y: f32, ch: usize) -> f32 {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |xx: usize, yy: usize| rgba[(yy * w + xx) * 4 + ch] as f32;
    let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
    let bot = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
    top * (1.0 - fy) + bot * fy
}

/// Resizes channel `ch` of an RGBA image (box-averaged when shrinking, so
/// a camera frame does not alias) into `oh × ow` values in 0..=255.
fn resize_channel(rgba: &[u8], w: usize, h: usize, ch: usize, ow: usize, oh: usize) -> Vec<f32> {
    let sx = w as f32 / ow as f32;
    let sy = h as f32 / oh as f32;
    // Samples per output pixel along each axis: enough to cover the box.
    let nx = sx.ceil().clamp(1.0, 8.0) as usize;
    let ny = sy.ceil().clamp(1.0, 8.0) as usize;
    let mut out = Vec::with_capacity(ow * oh);
    for oy in 0..oh {
        for ox in 0..ow {
            let mut acc = 0.0;
            for j in 0..ny {
                for i in 0..nx {
                    let x = (ox as f32 + (i as f32 + 0.5) / nx as f32) * sx - 0.5;
                    let y = (oy as f32 + (j as f32 + 0.5) / ny as f32) * sy - 0.5;
                    acc += sample(rgba, w, h, x, y, ch);
                }
            }
            out.push(acc / (nx * ny) as f32);
        }
    }
    out
}

fn luminance(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let y = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round().clamp(0.0, 255.0) as u8;
            [y, y, y, 255]
        })
        .collect()
}

/// An RGBA image (`w × h`, row-major) as the input `shape` of a model.
///
/// One channel (MNIST-like models): grey levels in [0, 1]; a light
/// background is inverted (MNIST digits are white on black), and the ink's
/// bounding box is scaled into the central 20×20 of 28×28 as MNIST was
/// prepared (for other sizes, the same proportions). Three channels: RGB
/// resized to H×W and normalised with `norm`.
pub fn image_to_tensor(rgba: &[u8], w: usize, h: usize, shape: &[usize], norm: Normalize) -> Result<Tensor, String> {
    if w == 0 || h == 0 || rgba.len() != w * h * 4 {
        return Err(format!("an RGBA image of {w}×{h} needs {} bytes, got {}", w * h * 4, rgba.len()));
    }
    let (c, oh, ow) = image_geometry(shape)?;
    let data = if c == 1 { grey_digit(rgba, w, h, oh, ow) } else { rgb(rgba, w, h, oh, ow, norm) };
    Tensor::new(shape.to_vec(), data).map_err(|e| e.to_string())
}

fn rgb(rgba: &[u8], w: usize, h: usize, oh: usize, ow: usize, norm: Normalize) -> Vec<f32> {
    let mut data = Vec::with_capacity(3 * oh * ow);
    for ch in 0..3 {
        let plane = resize_channel(rgba, w, h, ch, ow, oh);
        data.extend(plane.into_iter().map(|v| match norm {
            Normalize::ImageNet => (v / 255.0 - MEAN[ch]) / STD[ch],
            Normalize::Unit => v / 255.0,
        }));
    }
    data
}

fn grey_digit(rgba: &[u8], w: usize, h: usize, oh: usize, ow: usize) -> Vec<f32> {
    let grey = luminance(rgba);
    let mean = grey.chunks_exact(4).map(|p| p[0] as f64).sum::<f64>() / (w * h) as f64;
    let invert = mean > 127.0;
    let ink = |x: usize, y: usize| {
        let v = grey[(y * w + x) * 4] as f32 / 255.0;
        if invert { 1.0 - v } else { v }
    };
    // Bounding box of the ink (pixels above 30 % of the darkest-to-lightest range).
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    let mut peak = 0f32;
    for y in 0..h {
        for x in 0..w {
            peak = peak.max(ink(x, y));
        }
    }
    for y in 0..h {
        for x in 0..w {
            if ink(x, y) > 0.3 * peak && peak > 0.0 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
    }
    if x1 <= x0 || y1 <= y0 {
        (x0, y0, x1, y1) = (0, 0, w, h);
    }
    // A square box around the ink, into the central 20/28 of the output.
    let side = (x1 - x0).max(y1 - y0) as f32;
    let (cx, cy) = ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0);
    let inner_w = ow as f32 * 20.0 / 28.0;
    let inner_h = oh as f32 * 20.0 / 28.0;
    let scale = side / inner_w.min(inner_h); // source pixels per output pixel
    let mut out = Vec::with_capacity(oh * ow);
    let n = scale.ceil().clamp(1.0, 8.0) as usize;
    for oy in 0..oh {
        for ox in 0..ow {
            let mut acc = 0.0;
            for j in 0..n {
                for i in 0..n {
                    let x = cx + (ox as f32 + (i as f32 + 0.5) / n as f32 - ow as f32 / 2.0) * scale;
                    let y = cy + (oy as f32 + (j as f32 + 0.5) / n as f32 - oh as f32 / 2.0) * scale;
                    if x >= 0.0 && y >= 0.0 && x < w as f32 && y < h as f32 {
                        acc += ink(x as usize, y as usize);
                    }
                }
            }
            out.push((acc / (n * n) as f32).clamp(0.0, 1.0));
        }
    }
    out
}

/// A procedural test image `w × h` (RGBA): a colour gradient with a few
/// discs and bars, different for every `seed`. Stands in for ImageNet-style
/// photographs, which are not bundled.
pub fn synthetic_rgba(seed: u64, w: usize, h: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(7));
    let mut u = || rng.f32();
    let c0 = [u(), u(), u()];
    let c1 = [u(), u(), u()];
    let shapes: Vec<(f32, f32, f32, [f32; 3], bool)> = (0..4).map(|_| (u(), u(), 0.08 + 0.25 * u(), [u(), u(), u()], u() > 0.5)).collect();
    let mut out = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let t = (fx + fy) / 2.0;
            let mut px = [0f32; 3];
            for k in 0..3 {
                px[k] = c0[k] * (1.0 - t) + c1[k] * t;
            }
            for &(sx, sy, r, col, disc) in &shapes {
                let inside = if disc { (fx - sx).powi(2) + (fy - sy).powi(2) < r * r } else { (fx - sx).abs() < r && (fy - sy).abs() < r / 3.0 };
                if inside {
                    px = col;
                }
            }
            out.extend(px.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0) as u8));
            out.push(255);
        }
    }
    out
}

/// A model input back as an RGBA picture for the page (thumbnails): one
/// channel as grey, three as RGB (min–max stretched, so any normalisation
/// shows).
pub fn tensor_to_rgba(t: &Tensor) -> Option<(usize, usize, Vec<u8>)> {
    let (c, h, w) = image_geometry(t.shape()).ok()?;
    let d = t.data();
    let (lo, hi) = d.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let px = |ch: usize, i: usize| (((d[ch * h * w + i] - lo) / span) * 255.0).clamp(0.0, 255.0) as u8;
    let mut out = Vec::with_capacity(h * w * 4);
    for i in 0..h * w {
        if c == 1 {
            let g = px(0, i);
            out.extend([g, g, g, 255]);
        } else {
            out.extend([px(0, i), px(1, i), px(2, i), 255]);
        }
    }
    Some((w, h, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mnist_digit_survives_the_round_trip_through_rgba() {
        let digits = tessera_graph::zoo::test_digits().unwrap();
        let d = &digits[0];
        let (w, h, rgba) = tensor_to_rgba(&d.image).unwrap();
        assert_eq!((w, h), (28, 28));
        let t = image_to_tensor(&rgba, w, h, &[1, 1, 28, 28], Normalize::ImageNet).unwrap();
        // Re-centred and rescaled, so not equal pixel for pixel, but LeNet
        // must still read the same digit.
        let g = tessera_graph::zoo::build("lenet").unwrap();
        let exe = tessera_kernels::CpuBackend::new(1);
        use tessera_kernels::Backend;
        let mut e = exe.compile(&g).unwrap();
        let a = e.run(std::slice::from_ref(&d.image)).unwrap()[0].argmax();
        let b = e.run(&[t]).unwrap()[0].argmax();
        assert_eq!(a, d.label as usize);
        assert_eq!(b, a);
    }

    #[test]
    fn dark_on_light_images_are_inverted_like_mnist() {
        // A black bar on white, 100×60.
        let (w, h) = (100, 60);
        let mut rgba = vec![255u8; w * h * 4];
        for y in 10..50 {
            for x in 45..55 {
                for k in 0..3 {
                    rgba[(y * w + x) * 4 + k] = 0;
                }
            }
        }
        let t = image_to_tensor(&rgba, w, h, &[1, 1, 28, 28], Normalize::ImageNet).unwrap();
        let d = t.data();
        assert!(d[14 * 28 + 14] > 0.9, "the bar is ink (white) in the middle");
        assert!(d[0] < 0.01 && d[27] < 0.01, "the background is black");
    }

    #[test]
    fn rgb_images_are_resized_and_normalised() {
        let rgba = synthetic_rgba(3, 320, 240);
        assert_eq!(rgba.len(), 320 * 240 * 4);
        assert_ne!(synthetic_rgba(3, 8, 8), synthetic_rgba(4, 8, 8));
        let t = image_to_tensor(&rgba, 320, 240, &[1, 3, 224, 224], Normalize::ImageNet).unwrap();
        assert_eq!(t.shape(), &[1, 3, 224, 224]);
        assert!(t.data().iter().all(|v| v.is_finite() && (-2.2..=2.7).contains(v)));
        // A uniform grey image maps to (0.5 - mean) / std per channel.
        let grey = vec![128u8; 16 * 16 * 4];
        let t = image_to_tensor(&grey, 16, 16, &[1, 3, 4, 4], Normalize::ImageNet).unwrap();
        assert!((t.data()[0] - (128.0 / 255.0 - MEAN[0]) / STD[0]).abs() < 1e-5);
        let u = image_to_tensor(&grey, 16, 16, &[1, 3, 4, 4], Normalize::Unit).unwrap();
        assert!((u.data()[47] - 128.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn bad_images_and_shapes_are_errors() {
        assert!(image_to_tensor(&[0; 10], 2, 2, &[1, 1, 28, 28], Normalize::Unit).is_err());
        assert!(image_to_tensor(&[0; 16], 2, 2, &[1, 2, 28, 28], Normalize::Unit).is_err());
        assert!(image_to_tensor(&[0; 16], 2, 2, &[1, 10], Normalize::Unit).is_err());
        assert!(image_to_tensor(&[], 0, 0, &[1, 1, 28, 28], Normalize::Unit).is_err());
    }
}
