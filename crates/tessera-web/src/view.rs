//! What the pages draw, computed in Rust so the JavaScript stays thin:
//! the plan as stages × parts × devices with each part's share of its
//! stage, the model catalogue, top classes, the profile table and a QR
//! code as SVG. Plain Rust, tested natively.

use serde::Serialize;
use tessera_graph::{Graph, Tensor};
use tessera_plan::plan::PartSpec;
use tessera_plan::{DeviceProfile, Plan, SplitKind};

/// One part of a stage in the drawing: a rectangle of the unit square
/// (`y0..y1` down the stage's split axis, `x0..x1` across it for grids and
/// replicas), the device index running it and a label.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PartView {
    pub device: usize,
    pub label: String,
    pub x0: f64,
    pub x1: f64,
    pub y0: f64,
    pub y1: f64,
}

/// One stage: its layers, its split and its parts.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StageView {
    pub first: String,
    pub last: String,
    /// Computing layers in the stage.
    pub layers: usize,
    /// The split kind ("whole", "rows", "grid", "out-channels", ...).
    pub split: &'static str,
    pub parts: Vec<PartView>,
}

/// A plan ready to draw: columns are stages, rectangles parts, colours devices.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlanView {
    pub stages: Vec<StageView>,
    /// Who each device index is ("peer 3 (pixel)", "coordinator").
    pub devices: Vec<String>,
}

fn spans(cuts: &[usize]) -> Vec<(f64, f64)> {
    let extent = cuts.last().copied().unwrap_or(1).max(1) as f64;
    cuts.windows(2).map(|w| (w[0] as f64 / extent, w[1] as f64 / extent)).collect()
}

/// The drawing of `plan` on `g`; `devices[i]` names device index `i`.
pub fn plan_view(g: &Graph, plan: &Plan, devices: Vec<String>) -> PlanView {
    let stages = plan
        .stages
        .iter()
        .map(|st| {
            let layers = (st.start..st.end.min(g.len())).filter(|&n| !tessera_plan::volume::is_free(&g.node(n).op)).count();
            let s = &st.split;
            let mut parts = Vec::new();
            match s.kind {
                SplitKind::Whole => parts.push(PartView { device: s.devices[0], label: "whole".into(), x0: 0.0, x1: 1.0, y0: 0.0, y1: 1.0 }),
                SplitKind::Replicas => {
                    let n = s.devices.len().max(1) as f64;
                    for (i, &d) in s.devices.iter().enumerate() {
                        let label = format!("replica {} (every {} frames)", i + 1, s.devices.len());
                        parts.push(PartView { device: d, label, x0: i as f64 / n, x1: (i + 1) as f64 / n, y0: 0.0, y1: 1.0 });
                    }
                }
                SplitKind::Grid => {
                    let cols = spans(&s.col_cuts);
                    for (i, (y0, y1)) in spans(&s.cuts).into_iter().enumerate() {
                        for (j, &(x0, x1)) in cols.iter().enumerate() {
                            if let Some(&d) = s.devices.get(i * cols.len() + j) {
                                let label = format!("tile rows {}..{} × cols {}..{}", s.cuts[i], s.cuts[i + 1], s.col_cuts[j], s.col_cuts[j + 1]);
                                parts.push(PartView { device: d, label, x0, x1, y0, y1 });
                            }
                        }
                    }
                }
                kind => {
                    let what = match kind {
                        SplitKind::Rows => "rows",
                        SplitKind::OutChannels => "out-channels",
                        SplitKind::InChannels => "in-channels",
                        _ => "fused channels",
                    };
                    for (i, ((y0, y1), &d)) in spans(&s.cuts).into_iter().zip(&s.devices).enumerate() {
                        let label = format!("{what} {}..{}", s.cuts[i], s.cuts[i + 1]);
                        parts.push(PartView { device: d, label, x0: 0.0, x1: 1.0, y0, y1 });
                    }
                }
            }
            // Empty parts are not run (Stage::parts drops them): do not draw them.
            let keep: Vec<(PartSpec, usize)> = st.parts();
            if keep.len() < parts.len() {
                parts.retain(|p| p.y1 > p.y0 && p.x1 > p.x0);
            }
            StageView { first: st.first.clone(), last: st.last.clone(), layers, split: s.kind.name(), parts }
        })
        .collect();
    PlanView { stages, devices }
}

/// A zoo model for the model menu.
#[derive(Clone, Debug, Serialize)]
pub struct ZooEntry {
    pub name: &'static str,
    pub about: &'static str,
    pub input_shape: Vec<usize>,
    pub macs: u64,
    pub params: u64,
    pub weight_bytes: u64,
}

/// The zoo with each model's size (shapes only: no weights are generated).
pub fn zoo_catalogue() -> Vec<ZooEntry> {
    tessera_graph::zoo::MODELS
        .iter()
        .filter_map(|m| {
            let g = tessera_graph::zoo::build_shapes(m.name).ok()?;
            let t = tessera_graph::cost_table(&g).total;
            Some(ZooEntry { name: m.name, about: m.about, input_shape: g.input_shape().to_vec(), macs: t.macs, params: t.params, weight_bytes: t.weight_bytes })
        })
        .collect()
}

/// What the coordinator page says about the loaded model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// "zoo" or "onnx".
    pub source: String,
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    pub layers: usize,
    pub macs: u64,
    pub params: u64,
    pub weight_bytes: u64,
    /// The input is an image (`[1, 1|3, H, W]`): image streams can feed it.
    pub image_input: bool,
    /// Class names are digits (an MNIST model: 1×1×28×28 in, 10 out).
    pub digits: bool,
}

impl ModelInfo {
    /// Describes `g` (optimised) loaded from `source`.
    pub fn of(g: &Graph, name: &str, source: &str) -> ModelInfo {
        let t = tessera_graph::cost_table(g).total;
        let input_shape = g.input_shape().to_vec();
        let output_shape = g.output_shape().to_vec();
        let image_input = crate::input::image_geometry(&input_shape).is_ok();
        let digits = input_shape == [1, 1, 28, 28] && output_shape.iter().product::<usize>() == 10;
        ModelInfo {
            name: name.to_string(),
            source: source.to_string(),
            layers: g.nodes().iter().filter(|n| !tessera_plan::volume::is_free(&n.op)).count(),
            input_shape,
            output_shape,
            macs: t.macs,
            params: t.params,
            weight_bytes: t.weight_bytes,
            image_input,
            digits,
        }
    }
}

/// The `k` most likely classes of an output: softmax over its values
/// (unless they already are probabilities), highest first.
pub fn top_classes(out: &Tensor, k: usize) -> Vec<(usize, f32)> {
    let d = out.data();
    if d.is_empty() {
        return Vec::new();
    }
    let sums_to_one = d.iter().all(|v| (0.0..=1.0).contains(v)) && (d.iter().sum::<f32>() - 1.0).abs() < 1e-3;
    let probs: Vec<f32> = if sums_to_one {
        d.to_vec()
    } else {
        let m = d.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let e: Vec<f32> = d.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    };
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, probs[i])).collect()
}

/// One row of the profile table the peer page shows (the format of
/// `tessera profile`: per op class, its points and the largest layer's rate).
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    pub class: String,
    /// (FLOPs, ms) measured points.
    pub points: Vec<(f64, f64)>,
    pub largest_gflop: f64,
    pub largest_ms: f64,
    pub gflops: f64,
}

/// The profile as table rows.
pub fn profile_rows(p: &DeviceProfile) -> Vec<ProfileRow> {
    p.ops
        .iter()
        .map(|(class, t)| {
            let (f, ms) = t.points.last().copied().unwrap_or((0.0, 1.0));
            ProfileRow { class: format!("{class:?}"), points: t.points.clone(), largest_gflop: f / 1e9, largest_ms: ms, gflops: f / ms.max(1e-9) / 1e6 }
        })
        .collect()
}

/// A QR code of `text` as a standalone SVG (black modules on white, with
/// the quiet zone), for the join page: phones scan it to join.
pub fn qr_svg(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("QR code: {e:?}"))?;
    let w = code.width();
    let colors = code.to_colors();
    let q = 4; // quiet zone, modules
    let n = w + 2 * q;
    let mut path = String::new();
    for y in 0..w {
        for x in 0..w {
            if colors[y * w + x] == qrcode::Color::Dark {
                path.push_str(&format!("M{} {}h1v1h-1z", x + q, y + q));
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {n} {n}\" shape-rendering=\"crispEdges\"><rect width=\"{n}\" height=\"{n}\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_plan::plan::{Split, Stage};

    #[test]
    fn a_plan_draws_as_stages_of_parts_covering_each_column() {
        let g = tessera_graph::passes::optimize(&tessera_graph::zoo::build("lenet").unwrap()).unwrap();
        let n = g.len();
        let mid = n / 2;
        let plan = Plan {
            model: "lenet".into(),
            planner: "test".into(),
            devices: vec!["a".into(), "b".into(), "c".into()],
            stages: vec![
                Stage::new(&g, 1, mid, Split::cut(SplitKind::Rows, vec![0, 10, 24], vec![0, 1])),
                Stage::new(&g, mid, n, Split::whole(2)),
            ],
        };
        let v = plan_view(&g, &plan, vec!["peer 1".into(), "peer 2".into(), "coordinator".into()]);
        assert_eq!(v.stages.len(), 2);
        let s0 = &v.stages[0];
        assert_eq!(s0.split, "rows");
        assert_eq!(s0.parts.len(), 2);
        assert!((s0.parts[0].y1 - 10.0 / 24.0).abs() < 1e-9 && s0.parts[1].y1 == 1.0);
        assert_eq!(s0.parts[1].device, 1);
        assert_eq!(v.stages[1].parts, vec![PartView { device: 2, label: "whole".into(), x0: 0.0, x1: 1.0, y0: 0.0, y1: 1.0 }]);
        assert!(s0.layers >= 1);
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains("\"split\":\"rows\""));
    }

    #[test]
    fn top_classes_are_softmax_probabilities_highest_first() {
        let t = Tensor::new(vec![1, 4], vec![1.0, 3.0, 2.0, 3.0]).unwrap();
        let top = top_classes(&t, 3);
        assert_eq!(top.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        assert!((top[0].1 - top[1].1).abs() < 1e-7);
        let total: f32 = top_classes(&t, 4).iter().map(|p| p.1).sum();
        assert!((total - 1.0).abs() < 1e-6);
        let p = Tensor::new(vec![3], vec![0.2, 0.7, 0.1]).unwrap();
        assert_eq!(top_classes(&p, 1), vec![(1, 0.7)]);
    }

    #[test]
    fn the_catalogue_lists_the_zoo_with_sizes() {
        let z = zoo_catalogue();
        let lenet = z.iter().find(|e| e.name == "lenet").unwrap();
        assert_eq!(lenet.input_shape, vec![1, 1, 28, 28]);
        assert!(lenet.params > 10_000 && lenet.macs > 200_000);
        assert!(z.iter().any(|e| e.name == "vgg16" && e.params > 130_000_000));
    }

    #[test]
    fn qr_codes_are_svg() {
        let s = qr_svg("http://127.0.0.1:8080/?room=ab&token=cd").unwrap();
        assert!(s.starts_with("<svg") && s.contains("<path d=\"M"));
    }
}
