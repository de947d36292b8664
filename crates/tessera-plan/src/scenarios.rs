//! The evaluation scenarios of seed 004 (DistrEdge §V-D, Tables I-III):
//! heterogeneous device groups (DA-DC) at 50 and 300 Mbit/s, heterogeneous
//! bandwidth groups (NA-ND) of Nanos or Xaviers, and 16-device groups
//! (LA-LD), all running VGG-16.

use crate::cluster;
use crate::device::Cluster;
use crate::error::{PlanError, Result};

/// One named scenario: a model and a device spec.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub model: &'static str,
    pub devices: String,
    pub about: String,
}

fn s(name: &str, devices: String, about: &str) -> Scenario {
    Scenario { name: name.into(), model: "vgg16", devices, about: about.into() }
}

/// Every scenario, in table order.
pub fn all() -> Vec<Scenario> {
    let mut v = Vec::new();
    // Table I: heterogeneous device types, at 50 and 300 Mbit/s WiFi.
    for rate in [50, 300] {
        v.push(s(&format!("DA-{rate}"), format!("tx2*2@{rate}mbit,nano*2@{rate}mbit"), "TX2x2 + Nanox2"));
        v.push(s(&format!("DB-{rate}"), format!("xavier*2@{rate}mbit,nano*2@{rate}mbit"), "Xavierx2 + Nanox2"));
        v.push(s(&format!("DC-{rate}"), format!("xavier@{rate}mbit,tx2@{rate}mbit,nano@{rate}mbit,pi3@{rate}mbit"), "Xavier + TX2 + Nano + Pi3"));
    }
    // Table II: heterogeneous bandwidths, all Nano or all Xavier.
    for dev in ["nano", "xavier"] {
        let g = |rates: [u32; 4]| rates.iter().map(|r| format!("{dev}@{r}mbit")).collect::<Vec<_>>().join(",");
        v.push(s(&format!("NA-{dev}"), g([50, 50, 200, 200]), "50x2 + 200x2 Mbit/s"));
        v.push(s(&format!("NB-{dev}"), g([100, 100, 200, 200]), "100x2 + 200x2 Mbit/s"));
        v.push(s(&format!("NC-{dev}"), g([200, 200, 300, 300]), "200x2 + 300x2 Mbit/s"));
        v.push(s(&format!("ND-{dev}"), g([50, 100, 200, 300]), "50 + 100 + 200 + 300 Mbit/s"));
    }
    // Table III: 16 devices.
    let x4 = |set: [(&str, u32); 4]| {
        let one: Vec<String> = set.iter().map(|(d, r)| format!("{d}@{r}mbit")).collect();
        vec![one.join(","); 4].join(",")
    };
    v.push(s("LA", x4([("nano", 300), ("nano", 200), ("nano", 100), ("nano", 50)]), "{(300,Nano),(200,Nano),(100,Nano),(50,Nano)}x4"));
    v.push(s("LB", x4([("pi3", 300), ("nano", 200), ("tx2", 100), ("xavier", 50)]), "{(300,Pi3),(200,Nano),(100,TX2),(50,Xavier)}x4"));
    v.push(s("LC", x4([("pi3", 200), ("nano", 200), ("tx2", 200), ("xavier", 200)]), "{(200,Pi3),(200,Nano),(200,TX2),(200,Xavier)}x4"));
    v.push(s("LD", x4([("pi3", 50), ("nano", 100), ("tx2", 200), ("xavier", 300)]), "{(50,Pi3),(100,Nano),(200,TX2),(300,Xavier)}x4"));
    v
}

/// The scenario called `name`.
pub fn by_name(name: &str) -> Result<Scenario> {
    all().into_iter().find(|s| s.name.eq_ignore_ascii_case(name)).ok_or_else(|| PlanError::Unknown {
        kind: "scenario",
        name: name.into(),
        known: all().iter().map(|s| s.name.clone()).collect::<Vec<_>>().join(", "),
    })
}

impl Scenario {
    /// The scenario's cluster.
    pub fn cluster(&self) -> Result<Cluster> {
        cluster::parse(&self.devices)
    }
}
