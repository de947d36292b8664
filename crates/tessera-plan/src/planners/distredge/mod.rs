//! `distredge` — seed 004 (DistrEdge): LC-PSS (Algorithm 1) partitions the
//! convolutional part of the model into layer-volumes by the score
//! `C_p = α T + (1-α) O` (Eq. 3) averaged over random split decisions
//! (Eq. 4; α = 0.75, |R_s^r| = 100); OSDS (Algorithm 2) then learns the
//! height splits of every volume with DDPG (actor 400-200-100, critic
//! 400-200-100-100, lr 1e-4 / 1e-3, N_b = 64, γ = 0.99, Δε = 1/250,
//! σ² = 0.1 for 4 devices and 1 for 16), trained against the latency model
//! of [`env`]. The fully-connected tail runs on the device with the most
//! rows of the last volume (§V-A). Options: `episodes` (default 400; the
//! paper uses 4000), `alpha`, `samples`.

pub(super) mod env;
mod mlp;

use std::rc::Rc;

use tessera_graph::rng::Rng;
use tessera_graph::Graph;

use super::common::{new_plan, unit_ms};
use super::models::BandModel;
use super::{Planner, Request};
use crate::error::{PlanError, Result};
use crate::plan::{Plan, Split, SplitKind, Stage};
use crate::units::{units, Unit};
use crate::volume::Volume;
use env::{Env, EnvVolume};
use mlp::{Mlp, Out};

pub struct DistrEdge;

/// Units `[0, p)` that row splits apply to (the convolutional part).
pub(super) fn spatial_prefix(g: &Graph, us: &[Unit]) -> usize {
    let consumers = g.consumers();
    us.iter().take_while(|u| Volume::new(g, &consumers, u.start, u.end).is_ok_and(|v| v.supports(g, SplitKind::Rows).is_ok())).count()
}

/// Algorithm 1 (LC-PSS): greedy partition-point search on the averaged
/// score. Returns unit boundaries `[0, .., p]`.
pub fn lc_pss(g: &Graph, us: &[Unit], p: usize, devices: usize, alpha: f64, samples: usize, rng: &mut Rng) -> Vec<usize> {
    let consumers = g.consumers();
    // Common random split decisions: per sample and unit, sorted fractions.
    let fracs: Vec<Vec<Vec<f64>>> = (0..samples)
        .map(|_| {
            (0..p)
                .map(|_| {
                    let mut f: Vec<f64> = (0..devices - 1).map(|_| rng.f32() as f64).collect();
                    f.sort_by(f64::total_cmp);
                    f
                })
                .collect()
        })
        .collect();
    let mut band_cache: std::collections::HashMap<(usize, usize), BandModel> = std::collections::HashMap::new();
    let mut score = |bounds: &[usize]| -> (f64, f64) {
        let (mut o, mut t) = (0.0, 0.0);
        for sample in &fracs {
            for w in bounds.windows(2) {
                let band = band_cache
                    .entry((w[0], w[1]))
                    .or_insert_with(|| BandModel::new(g, &Volume::new(g, &consumers, us[w[0]].start, us[w[1] - 1].end).expect("unit range")));
                let h = band.height as f64;
                let mut prev = 0.0;
                for k in 0..devices {
                    let cut = if k + 1 < devices { (sample[w[1] - 1][k] * h).round() } else { h };
                    let rows = (cut - prev).max(0.0);
                    prev = cut.max(prev);
                    o += band.flops(rows);
                    t += band.in_bytes(rows) + band.out_bytes(rows);
                }
            }
        }
        (o / samples as f64, t / samples as f64)
    };
    // Normalise both terms by their value for one volume (Eq. 3 mixes
    // operations and bytes; the paper leaves the scaling open).
    let (o1, t1) = score(&[0, p]);
    let mut cp = |b: &[usize]| {
        let (o, t) = score(b);
        alpha * t / t1 + (1.0 - alpha) * o / o1
    };
    let mut rp = vec![0, p];
    loop {
        let mut star = rp.clone();
        for i in 0..rp.len() - 1 {
            let mut best = (f64::INFINITY, rp[i]);
            for j in rp[i]..=rp[i + 1] {
                let mut cand = rp.clone();
                if !cand.contains(&j) {
                    cand.push(j);
                    cand.sort_unstable();
                }
                let c = cp(&cand);
                if c < best.0 {
                    best = (c, j);
                }
            }
            if !star.contains(&best.1) {
                star.push(best.1);
            }
        }
        star.sort_unstable();
        if star.len() == rp.len() {
            break;
        }
        rp = star;
    }
    rp
}

/// Maps an action in [-1, 1]^(D-1) to cut points (Eq. 9, sorted).
fn action_to_cuts(a: &[f32], h: usize) -> Vec<usize> {
    let mut x: Vec<f32> = a.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    x.sort_by(f32::total_cmp);
    let mut cuts = vec![0];
    cuts.extend(x.iter().map(|v| ((h as f32) * (v + 1.0) / 2.0).round() as usize));
    cuts.push(h);
    for i in 1..cuts.len() {
        cuts[i] = cuts[i].max(cuts[i - 1]).min(h);
    }
    cuts
}

struct Transition {
    s: Vec<f32>,
    a: Vec<f32>,
    r: f32,
    s2: Option<Vec<f32>>,
}

/// Algorithm 2 (OSDS): DDPG over the split MDP. Returns the best decision
/// found and its latency.
fn osds(env: &Env, episodes: usize, rng: &mut Rng) -> (Vec<Vec<usize>>, f64) {
    let nd = env.devices();
    let l_count = env.vols.len();
    let sdim = nd + 4;
    let adim = (nd - 1).max(1);
    let mut actor = Mlp::new(&[sdim, 400, 200, 100, adim], Out::Tanh, rng);
    let mut critic = Mlp::new(&[sdim + adim, 400, 200, 100, 100, 1], Out::Linear, rng);
    let mut actor_t = actor.clone();
    let mut critic_t = critic.clone();
    let sigma = if nd >= 16 { 1.0f32 } else { 0.1f32.sqrt() };
    let (nb, gamma, tau, d_eps) = (64usize, 0.99f32, 0.01f32, 1.0 / 250.0);
    let mut buffer: Vec<Transition> = Vec::new();
    // Equal split: the reference for reward scaling and the first best.
    let equal: Vec<Vec<usize>> = env.vols.iter().map(|v| (0..=nd).map(|k| k * v.band.height / nd).collect()).collect();
    let t_ref = env.evaluate(&equal);
    let mut best = (equal, t_ref);
    let gauss = |rng: &mut Rng| -> f32 {
        let (u1, u2) = (rng.f32().max(1e-7), rng.f32());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    };
    for ep in 1..=episodes {
        let eps = 1.0 - (ep as f64 * d_eps).powi(2);
        let mut st = env.start();
        let mut decisions = Vec::with_capacity(l_count);
        for l in 0..l_count {
            let s = env.state(l, &st.t);
            let mut a = actor.forward(&s, 1).output().to_vec();
            if (rng.f32() as f64) < eps {
                for v in a.iter_mut() {
                    *v = (*v + sigma * gauss(rng)).clamp(-1.0, 1.0);
                }
            }
            let cuts = action_to_cuts(if nd > 1 { &a } else { &[] }, env.vols[l].band.height);
            st = env.step(l, &st, &cuts);
            decisions.push(cuts);
            let (r, s2) = if l + 1 == l_count {
                let (t, _) = env.finish(&st);
                ((t_ref / t) as f32, None)
            } else {
                (0.0, Some(env.state(l + 1, &st.t)))
            };
            buffer.push(Transition { s, a, r, s2 });
            if buffer.len() > 100_000 {
                buffer.swap_remove(rng.range(0, buffer.len() - 1));
            }
            if buffer.len() >= nb {
                train(&mut actor, &mut critic, &actor_t, &critic_t, &buffer, nb, gamma, rng, sdim, adim);
                actor_t.soft_update(&actor, tau);
                critic_t.soft_update(&critic, tau);
            }
        }
        let t = env.finish(&st).0;
        if t < best.1 {
            best = (decisions, t);
        }
    }
    best
}

#[allow(clippy::too_many_arguments)]
fn train(actor: &mut Mlp, critic: &mut Mlp, actor_t: &Mlp, critic_t: &Mlp, buf: &[Transition], nb: usize, gamma: f32, rng: &mut Rng, sdim: usize, adim: usize) {
    let batch: Vec<&Transition> = (0..nb).map(|_| &buf[rng.range(0, buf.len() - 1)]).collect();
    // Line 20: targets from the target networks.
    let next: Vec<&Transition> = batch.iter().copied().filter(|t| t.s2.is_some()).collect();
    let mut y: Vec<f32> = batch.iter().map(|t| t.r).collect();
    if !next.is_empty() {
        let s2: Vec<f32> = next.iter().flat_map(|t| t.s2.clone().unwrap()).collect();
        let a2 = actor_t.forward(&s2, next.len());
        let mut sa = Vec::with_capacity(next.len() * (sdim + adim));
        for (k, t) in next.iter().enumerate() {
            sa.extend_from_slice(t.s2.as_ref().unwrap());
            sa.extend_from_slice(&a2.output()[k * adim..(k + 1) * adim]);
        }
        let q2 = critic_t.forward(&sa, next.len());
        let mut k = 0;
        for (i, t) in batch.iter().enumerate() {
            if t.s2.is_some() {
                y[i] += gamma * q2.output()[k];
                k += 1;
            }
        }
    }
    // Line 21: critic regression.
    let sa: Vec<f32> = batch.iter().flat_map(|t| t.s.iter().chain(&t.a).copied().collect::<Vec<_>>()).collect();
    let q = critic.forward(&sa, nb);
    let dq: Vec<f32> = q.output().iter().zip(&y).map(|(q, y)| 2.0 * (q - y) / nb as f32).collect();
    let (gc, _) = critic.backward(&q, &dq);
    critic.adam(&gc, 1e-3);
    // Line 22: actor ascends Q(s, actor(s)).
    let s: Vec<f32> = batch.iter().flat_map(|t| t.s.clone()).collect();
    let a = actor.forward(&s, nb);
    let mut sa = Vec::with_capacity(nb * (sdim + adim));
    for k in 0..nb {
        sa.extend_from_slice(&s[k * sdim..(k + 1) * sdim]);
        sa.extend_from_slice(&a.output()[k * adim..(k + 1) * adim]);
    }
    let qa = critic.forward(&sa, nb);
    let (_, dsa) = critic.backward(&qa, &vec![-1.0 / nb as f32; nb]);
    let da: Vec<f32> = (0..nb).flat_map(|k| dsa[k * (sdim + adim) + sdim..(k + 1) * (sdim + adim)].to_vec()).collect();
    let (ga, _) = actor.backward(&a, &da);
    actor.adam(&ga, 1e-4);
}

/// Volumes already modelled, by unit range, for one planning request.
pub(super) struct VolumeCache {
    consumers: Vec<Vec<usize>>,
    vols: std::collections::HashMap<(usize, usize), Rc<EnvVolume>>,
}

impl VolumeCache {
    pub(super) fn new(g: &Graph) -> VolumeCache {
        VolumeCache { consumers: g.consumers(), vols: Default::default() }
    }
}

/// The latency model of row-split volumes `bounds` over units `[0, p)`,
/// with the rest of the model as a tail on one device.
pub(super) fn make_env<'a>(req: &Request<'a>, us: &[Unit], p: usize, bounds: &[usize], cache: &mut VolumeCache) -> Env<'a> {
    let g = req.graph;
    let cl = req.cluster;
    let vols: Vec<Rc<EnvVolume>> = bounds
        .windows(2)
        .map(|w| {
            let consumers = &cache.consumers;
            cache.vols.entry((w[0], w[1])).or_insert_with(|| Rc::new(EnvVolume::new(g, &Volume::new(g, consumers, us[w[0]].start, us[w[1] - 1].end).expect("unit range")))).clone()
        })
        .collect();
    let (tail_in_bytes, tail_out_bytes, tail_ms) = if p < us.len() {
        let inb = 4.0 * g.node(us[p - 1].end - 1).out_elems() as f64;
        let outb = 4.0 * g.node(*g.outputs().first().unwrap_or(&(g.len() - 1))).out_elems() as f64;
        let ms = cl.devices.iter().map(|d| us[p..].iter().map(|u| unit_ms(g, u, &d.profile)).sum()).collect();
        (inb, outb, ms)
    } else {
        (0.0, 0.0, vec![0.0; cl.len()])
    };
    let t_scale = vols.iter().map(|v| v.band.compute_ms(&cl.devices[0], v.band.height as f64)).sum::<f64>().max(1.0);
    Env { vols, cluster: cl, tail_in_bytes, tail_out_bytes, tail_ms, t_scale }
}

/// Stages for row-split volumes `bounds` with cut points `decisions`, and
/// the tail (units `[p, ..)`) whole on `tail_device`.
pub(super) fn rows_stages(g: &Graph, us: &[Unit], p: usize, bounds: &[usize], decisions: &[Vec<usize>], tail_device: usize) -> Vec<Stage> {
    let nd = decisions.first().map_or(1, |c| c.len() - 1);
    let mut stages: Vec<Stage> = bounds
        .windows(2)
        .zip(decisions)
        .map(|(w, cuts)| Stage::new(g, us[w[0]].start, us[w[1] - 1].end, Split::cut(SplitKind::Rows, cuts.clone(), (0..nd).collect())))
        .collect();
    if p < us.len() {
        stages.push(Stage::new(g, us[p].start, us[us.len() - 1].end, Split::whole(tail_device)));
    }
    stages
}

impl Planner for DistrEdge {
    fn name(&self) -> &'static str {
        "distredge"
    }
    fn about(&self) -> &'static str {
        "seed 004: LC-PSS layer-volumes (alpha 0.75, 100 random splits) + OSDS height splits learned by DDPG"
    }
    fn plan(&self, req: &Request) -> Result<Plan> {
        let g = req.graph;
        let cl = req.cluster;
        let us = units(g);
        let p = spatial_prefix(g, &us);
        if p == 0 {
            return Err(PlanError::Infeasible("distredge splits convolutional layer-volumes by height; this model starts with none".into()));
        }
        let mut rng = Rng::new(req.seed);
        let alpha = req.option("alpha", 0.75)?;
        let samples = req.option("samples", 100.0)? as usize;
        let episodes = req.option("episodes", 400.0)? as usize;
        let bounds = lc_pss(g, &us, p, cl.len(), alpha, samples.max(1), &mut rng);
        let env = make_env(req, &us, p, &bounds, &mut VolumeCache::new(g));
        let (decisions, _) = osds(&env, episodes, &mut rng);
        let last = decisions.last().expect("at least one volume");
        let tail_device = (0..cl.len()).max_by_key(|&j| last[j + 1] - last[j]).unwrap_or(0);
        let stages = rows_stages(g, &us, p, &bounds, &decisions, tail_device);
        Ok(new_plan(g, cl, "distredge", stages))
    }
}
