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

/// Weights left out as external data come back from what the importer is
/// given, shared rather than copied; a reference it was not given is a
/// clear error; a reference to a tensor of other dims is refused.
#[test]
fn weights_by_reference_round_trip() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use tessera_graph::Tensor;
    use tessera_onnx::{export_with, import_with, ExternalWeights, ImportOptions, OnnxError};

    let g = zoo::build("lenet").unwrap();
    let mut held: HashMap<String, Arc<Tensor>> = HashMap::new();
    for n in g.nodes() {
        for t in n.op.tensors() {
            if t.numel() >= 1000 {
                held.insert(format!("w:{:016x}", t.content_hash()), t.clone());
            }
        }
    }
    assert!(held.len() >= 3);
    let mut referred = 0;
    let bytes = export_with(&g, &mut |t| {
        let key = format!("w:{:016x}", t.content_hash());
        held.contains_key(&key).then(|| {
            referred += 1;
            key
        })
    });
    assert_eq!(referred, held.len());
    assert!(bytes.len() * 4 < export(&g).len(), "references should drop most of the bytes: {} vs {}", bytes.len(), export(&g).len());

    match import(&bytes) {
        Err(OnnxError::MissingExternal { location, .. }) => assert!(held.contains_key(&location)),
        other => panic!("expected a missing-external error, got {:?}", other.map(|_| ())),
    }
    let opts = ImportOptions { external: ExternalWeights(Arc::new(held.clone())), ..Default::default() };
    let back = import_with(&bytes, &opts).unwrap();
    let mut shared = 0;
    for (a, b) in g.nodes().iter().zip(back.nodes()) {
        assert_eq!(a.op, b.op, "{}", a.name);
        for t in b.op.tensors() {
            shared += held.values().filter(|w| Arc::ptr_eq(w, t)).count();
        }
    }
    assert_eq!(shared, held.len(), "held weights are shared, not copied");

    let mut wrong = held.clone();
    for w in wrong.values_mut() {
        *w = Arc::new(Tensor::zeros(&[w.numel()]));
    }
    let e = import_with(&bytes, &ImportOptions { external: ExternalWeights(Arc::new(wrong)), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("do not match"), "{e}");
}
