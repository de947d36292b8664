use super::*;
use crate::cost::cost_table;

fn macs(g: &Graph, name: &str) -> (u64, u64) {
    let t = cost_table(g);
    let r = t.rows.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no layer {name}"));
    (r.cost.macs, r.cost.output_elems)
}

#[test]
fn lenet_reproduces_seed_000_table_1() {
    let g = build("lenet").unwrap();
    assert_eq!(macs(&g, "conv1"), (86400, 3456));
    assert_eq!(macs(&g, "pool1").1, 864);
    assert_eq!(macs(&g, "conv2"), (153600, 1024));
    assert_eq!(macs(&g, "pool2").1, 256);
    assert_eq!(macs(&g, "conv3"), (30720, 120));
    assert_eq!(macs(&g, "fc1"), (10080, 84));
    assert_eq!(macs(&g, "fc2"), (840, 10));
}

/// Published totals: torchvision parameter counts (exact) and MACs.
#[test]
fn zoo_totals_match_published_figures() {
    let expect = [
        // name, params, MACs low, MACs high
        ("vgg16", 138_357_544, 15.3e9, 15.6e9),
        ("resnet50", 25_557_032, 4.0e9, 4.2e9),
        ("mobilenetv2", 3_504_872, 0.29e9, 0.31e9),
        ("alexnet", 60_965_224, 0.70e9, 1.2e9),
    ];
    for (name, params, lo, hi) in expect {
        let g = build(name).unwrap();
        let t = cost_table(&g).total;
        assert_eq!(t.params, params, "{name} params");
        assert!((lo..hi).contains(&(t.macs as f64)), "{name} MACs {}", t.macs);
    }
}

#[test]
fn yolo_shapes_and_flops() {
    let g = build("yolov2").unwrap();
    assert_eq!(g.output_shape(), &[1, 425, 13, 13]);
    // Darknet reports 29.47 BFLOPs for yolov2.cfg at 416.
    let f = 2.0 * cost_table(&g).total.macs as f64;
    assert!((29.0e9..30.0e9).contains(&f), "yolov2 flops {f}");
    let t = build("yolov2-tiny").unwrap();
    assert_eq!(t.output_shape(), &[1, 425, 13, 13]);
    let f = 2.0 * cost_table(&t).total.macs as f64;
    // yolov2-tiny.cfg (COCO) is listed at 5.41 Bn FLOPs on the Darknet site
    // (the VOC variant, with a 1024-filter conv8, at 6.97).
    assert!((5.35e9..5.45e9).contains(&f), "tiny flops {f}");
}

#[test]
fn zoo_is_deterministic_and_names_are_checked() {
    assert_eq!(build("resnet50").unwrap(), build("resnet50").unwrap());
    let e = build("resnet51").unwrap_err().to_string();
    assert!(e.contains("unknown model 'resnet51'") && e.contains("vgg16"), "{e}");
}
