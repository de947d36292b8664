//! A small multi-layer perceptron with Adam, enough for DDPG's actor and
//! critic (seed 004 §V: actor 400-200-100, critic 400-200-100-100).
//! Batched, f32, plain loops written to auto-vectorise; no threads, so it
//! runs in the browser too.

use tessera_graph::rng::Rng;

/// Output non-linearity of the last layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Out {
    Linear,
    Tanh,
}

#[derive(Clone, Debug)]
struct Layer {
    /// `[out][in]`, row-major.
    w: Vec<f32>,
    b: Vec<f32>,
    n_in: usize,
    n_out: usize,
    // Adam moments
    mw: Vec<f32>,
    vw: Vec<f32>,
    mb: Vec<f32>,
    vb: Vec<f32>,
}

/// A fully-connected network: ReLU hidden layers, `Out` on the last.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Layer>,
    out: Out,
    step: i32,
}

/// Activations kept by a forward pass for the backward pass.
pub struct Trace {
    /// Input of every layer, then the final output; each `[batch][width]`.
    acts: Vec<Vec<f32>>,
    batch: usize,
}

impl Trace {
    /// The network's output, `[batch][out]`.
    pub fn output(&self) -> &[f32] {
        self.acts.last().unwrap()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // 8 independent partial sums so the loop vectorises.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

impl Mlp {
    /// Widths `[in, hidden.., out]`, uniform fan-in initialisation (the last
    /// layer small, as in DDPG).
    pub fn new(widths: &[usize], out: Out, rng: &mut Rng) -> Mlp {
        let mut layers = Vec::new();
        for (k, w) in widths.windows(2).enumerate() {
            let (n_in, n_out) = (w[0], w[1]);
            let last = k + 2 == widths.len();
            let a = if last { 3e-3 } else { 1.0 / (n_in as f32).sqrt() };
            layers.push(Layer {
                w: rng.fill(n_in * n_out, a),
                b: rng.fill(n_out, a),
                n_in,
                n_out,
                mw: vec![0.0; n_in * n_out],
                vw: vec![0.0; n_in * n_out],
                mb: vec![0.0; n_out],
                vb: vec![0.0; n_out],
            });
        }
        Mlp { layers, out, step: 0 }
    }

    /// Forward pass over a batch `[batch][in]`.
    pub fn forward(&self, x: &[f32], batch: usize) -> Trace {
        let mut acts = vec![x.to_vec()];
        for (k, l) in self.layers.iter().enumerate() {
            let input = acts.last().unwrap();
            let mut y = vec![0f32; batch * l.n_out];
            for b in 0..batch {
                let xi = &input[b * l.n_in..(b + 1) * l.n_in];
                for o in 0..l.n_out {
                    y[b * l.n_out + o] = dot(&l.w[o * l.n_in..(o + 1) * l.n_in], xi) + l.b[o];
                }
            }
            let last = k + 1 == self.layers.len();
            for v in y.iter_mut() {
                *v = match (last, self.out) {
                    (false, _) => v.max(0.0),
                    (true, Out::Linear) => *v,
                    (true, Out::Tanh) => v.tanh(),
                };
            }
            acts.push(y);
        }
        Trace { acts, batch }
    }

    /// Backward pass from d(loss)/d(output); returns parameter gradients
    /// (per layer: dW, db) and d(loss)/d(input).
    pub fn backward(&self, t: &Trace, dout: &[f32]) -> (Vec<(Vec<f32>, Vec<f32>)>, Vec<f32>) {
        let batch = t.batch;
        let mut grads = vec![(Vec::new(), Vec::new()); self.layers.len()];
        let mut g = dout.to_vec();
        for k in (0..self.layers.len()).rev() {
            let l = &self.layers[k];
            let y = &t.acts[k + 1];
            let x = &t.acts[k];
            let last = k + 1 == self.layers.len();
            for (gi, yi) in g.iter_mut().zip(y) {
                *gi *= match (last, self.out) {
                    (false, _) => {
                        if *yi > 0.0 {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    (true, Out::Linear) => 1.0,
                    (true, Out::Tanh) => 1.0 - yi * yi,
                };
            }
            let mut dw = vec![0f32; l.n_in * l.n_out];
            let mut db = vec![0f32; l.n_out];
            let mut dx = vec![0f32; batch * l.n_in];
            for b in 0..batch {
                let xi = &x[b * l.n_in..(b + 1) * l.n_in];
                let dxi = &mut dx[b * l.n_in..(b + 1) * l.n_in];
                for o in 0..l.n_out {
                    let go = g[b * l.n_out + o];
                    if go == 0.0 {
                        continue;
                    }
                    db[o] += go;
                    let row = &mut dw[o * l.n_in..(o + 1) * l.n_in];
                    row.iter_mut().zip(xi).for_each(|(d, xv)| *d += go * xv);
                    let wrow = &l.w[o * l.n_in..(o + 1) * l.n_in];
                    dxi.iter_mut().zip(wrow).for_each(|(d, wv)| *d += go * wv);
                }
            }
            grads[k] = (dw, db);
            g = dx;
        }
        (grads, g)
    }

    /// One Adam step with learning rate `lr` on gradients from `backward`.
    pub fn adam(&mut self, grads: &[(Vec<f32>, Vec<f32>)], lr: f32) {
        self.step += 1;
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let c1 = 1.0 - b1.powi(self.step);
        let c2 = 1.0 - b2.powi(self.step);
        let upd = |p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]| {
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            }
        };
        for (l, (dw, db)) in self.layers.iter_mut().zip(grads) {
            upd(&mut l.w, &mut l.mw, &mut l.vw, dw);
            upd(&mut l.b, &mut l.mb, &mut l.vb, db);
        }
    }

    /// `self = tau * other + (1 - tau) * self` (target-network tracking).
    pub fn soft_update(&mut self, other: &Mlp, tau: f32) {
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.w.iter_mut().zip(&b.w).for_each(|(x, y)| *x = tau * y + (1.0 - tau) * *x);
            a.b.iter_mut().zip(&b.b).for_each(|(x, y)| *x = tau * y + (1.0 - tau) * *x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(3);
        let net = Mlp::new(&[3, 5, 4, 2], Out::Tanh, &mut rng);
        let x = rng.fill(6, 1.0);
        let t = net.forward(&x, 2);
        // loss = sum(outputs)
        let (grads, dx) = net.backward(&t, &vec![1.0; 4]);
        let loss = |n: &Mlp, x: &[f32]| n.forward(x, 2).output().iter().sum::<f32>();
        let h = 1e-3;
        let mut xp = x.clone();
        xp[1] += h;
        let num = (loss(&net, &xp) - loss(&net, &x)) / h;
        assert!((num - dx[1]).abs() < 1e-2, "{num} vs {}", dx[1]);
        let mut np = net.clone();
        np.layers[0].w[2] += h;
        let num = (loss(&np, &x) - loss(&net, &x)) / h;
        assert!((num - grads[0].0[2]).abs() < 1e-2, "{num} vs {}", grads[0].0[2]);
    }

    #[test]
    fn adam_fits_a_line() {
        let mut rng = Rng::new(4);
        let mut net = Mlp::new(&[1, 16, 1], Out::Linear, &mut rng);
        let xs: Vec<f32> = (0..32).map(|i| i as f32 / 32.0).collect();
        for _ in 0..2000 {
            let t = net.forward(&xs, 32);
            let d: Vec<f32> = t.output().iter().zip(&xs).map(|(y, x)| 2.0 * (y - (2.0 * x - 0.5)) / 32.0).collect();
            let (g, _) = net.backward(&t, &d);
            net.adam(&g, 1e-2);
        }
        let t = net.forward(&[0.25], 1);
        assert!((t.output()[0] - 0.0).abs() < 0.05, "{}", t.output()[0]);
    }
}
