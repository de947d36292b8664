//! export → import reproduces every zoo model: names, ops, shapes and
//! weights, node for node.

use tessera_graph::zoo;
use tessera_onnx::{export, import};

#[test]
fn every_zoo_model_round_trips() {
    for m in zoo::MODELS {
        let g = zoo::build(m.name).unwrap();
        let bytes = export(&g);
        let back = import(&bytes).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        assert_eq!(back.len(), g.len(), "{}: node count", m.name);
        for (a, b) in g.nodes().iter().zip(back.nodes()) {
            assert_eq!(a.name, b.name, "{}", m.name);
            assert_eq!(a.shape, b.shape, "{}: {}", m.name, a.name);
            assert_eq!(a.op, b.op, "{}: {} ({})", m.name, a.name, a.op.name());
            assert_eq!(a.inputs, b.inputs, "{}: {}", m.name, a.name);
        }
        assert_eq!(back.inputs(), g.inputs(), "{}", m.name);
        assert_eq!(back.outputs(), g.outputs(), "{}", m.name);
        assert_eq!(back.name, g.name);
    }
}
