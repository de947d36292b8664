//! Parsing `--devices SPEC` into a [`Cluster`]:
//! - `N`: N copies of the `local` profile on a fast LAN;
//! - `PROFILE[*COUNT][@RATE]`, comma-separated, e.g.
//!   `nano@50mbit,xavier*2@300mbit,pi3@100mbit` (RATE in kbit/mbit/gbit,
//!   default: the profile's usual link); PROFILE may be a built-in name or a
//!   path to a profile JSON written by `tessera profile`;
//! - a path to a cluster JSON file (`{"devices": [{"name", "profile", "link"}]}`
//!   where `profile` is a built-in name, a profile path, or an inline profile).

use serde::Deserialize;

use crate::device::{Cluster, Device, DeviceProfile, Link};
use crate::error::{PlanError, Result};
use crate::profiles;

fn bad(msg: impl Into<String>) -> PlanError {
    PlanError::Devices(msg.into())
}

/// Reads a file (native only; wasm callers pass JSON text instead).
fn read_text(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {path}: {e}")))
}

/// Resolves a profile name or profile-file path.
pub fn profile(name: &str) -> Result<DeviceProfile> {
    if let Some(a) = profiles::anchor(name) {
        return Ok(profiles::build(a));
    }
    if name.ends_with(".json") {
        let p: DeviceProfile = serde_json::from_str(&read_text(name)?).map_err(|e| bad(format!("{name}: {e}")))?;
        p.validate().map_err(bad)?;
        return Ok(p);
    }
    Err(bad(format!("unknown profile '{name}' (built-in: {})", profiles::names())))
}

fn default_mbps(name: &str) -> f64 {
    profiles::anchor(name).map_or(1000.0, |a| a.default_mbps)
}

/// Parses a rate such as `50mbit`, `1gbit`, `300Mbps`, `800kbit`.
pub fn parse_rate(s: &str) -> Result<f64> {
    let l = s.trim().to_ascii_lowercase();
    let l = l.trim_end_matches("/s").trim_end_matches("ps").trim_end_matches("it");
    let (num, mult) = if let Some(n) = l.strip_suffix("gb") {
        (n, 1000.0)
    } else if let Some(n) = l.strip_suffix("mb") {
        (n, 1.0)
    } else if let Some(n) = l.strip_suffix("kb") {
        (n, 1e-3)
    } else {
        return Err(bad(format!("rate '{s}' needs a unit: kbit, mbit or gbit (e.g. 50mbit)")));
    };
    let v: f64 = num.trim().parse().map_err(|_| bad(format!("bad rate '{s}'")))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(bad(format!("rate '{s}' must be positive (a link of zero bandwidth carries nothing)")));
    }
    Ok(v * mult)
}

/// Link latency assumed for a spec without one: WiFi/Ethernet round trips
/// measured in seed 001 (0.4 ms) plus message handling.
const DEFAULT_LATENCY_MS: f64 = 0.5;

/// Parses a `--devices` spec.
pub fn parse(spec: &str) -> Result<Cluster> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(bad("empty device spec"));
    }
    if let Ok(n) = spec.parse::<usize>() {
        if n == 0 || n > 1024 {
            return Err(bad(format!("device count must be 1..=1024, got {n}")));
        }
        let p = profile("local")?;
        let devices = (0..n).map(|i| Device { name: format!("local#{i}"), profile: p.clone(), link: Link::new(1000.0, 0.1) }).collect();
        return Ok(Cluster { devices });
    }
    if spec.ends_with(".json") && !spec.contains(',') && !spec.contains('@') && std::path::Path::new(spec).is_file() {
        let text = read_text(spec)?;
        let looks_like_profile = text.contains("\"ops\"") && !text.contains("\"devices\"");
        if !looks_like_profile {
            return parse_cluster_json(&text);
        }
    }
    let mut devices = Vec::new();
    for item in spec.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(bad(format!("empty entry in '{spec}'")));
        }
        let (head, rate) = match item.split_once('@') {
            Some((h, r)) => (h, Some(parse_rate(r)?)),
            None => (item, None),
        };
        let (name, count) = match head.split_once('*') {
            Some((n, c)) => (n, c.parse::<usize>().map_err(|_| bad(format!("bad count in '{item}'")))?),
            None => (head, 1),
        };
        if count == 0 {
            return Err(bad(format!("count must be positive in '{item}'")));
        }
        let p = profile(name)?;
        let mbps = rate.unwrap_or_else(|| default_mbps(name));
        for _ in 0..count {
            devices.push(Device { name: String::new(), profile: p.clone(), link: Link::new(mbps, DEFAULT_LATENCY_MS) });
        }
    }
    name_devices(&mut devices);
    let c = Cluster { devices };
    c.validate().map_err(bad)?;
    Ok(c)
}

/// Names devices `profile#k` by order of appearance.
fn name_devices(devices: &mut [Device]) {
    let mut seen = std::collections::HashMap::new();
    for d in devices {
        if d.name.is_empty() {
            let k = seen.entry(d.profile.name.clone()).or_insert(0usize);
            d.name = format!("{}#{k}", d.profile.name);
            *k += 1;
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ProfileRef {
    Name(String),
    Inline(Box<DeviceProfile>),
}

#[derive(Deserialize)]
struct DeviceEntry {
    #[serde(default)]
    name: String,
    profile: ProfileRef,
    #[serde(default)]
    link: Option<Link>,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct ClusterFile {
    devices: Vec<DeviceEntry>,
}

/// Parses a cluster JSON document.
pub fn parse_cluster_json(text: &str) -> Result<Cluster> {
    let f: ClusterFile = serde_json::from_str(text).map_err(|e| bad(format!("cluster file: {e}")))?;
    let mut devices = Vec::new();
    for e in f.devices {
        let (p, default_rate) = match e.profile {
            ProfileRef::Name(n) => {
                let r = default_mbps(&n);
                (profile(&n)?, r)
            }
            ProfileRef::Inline(p) => (*p, 1000.0),
        };
        let link = e.link.unwrap_or_else(|| Link::new(default_rate, DEFAULT_LATENCY_MS));
        for i in 0..e.count {
            let name = match (e.name.is_empty(), e.count) {
                (true, _) => String::new(),
                (false, 1) => e.name.clone(),
                (false, _) => format!("{}#{i}", e.name),
            };
            devices.push(Device { name, profile: p.clone(), link: link.clone() });
        }
    }
    name_devices(&mut devices);
    let c = Cluster { devices };
    c.validate().map_err(bad)?;
    let mut names = std::collections::HashSet::new();
    if let Some(d) = c.devices.iter().find(|d| !names.insert(d.name.clone())) {
        return Err(bad(format!("duplicate device name '{}'", d.name)));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_lists_and_rates() {
        assert_eq!(parse("3").unwrap().len(), 3);
        let c = parse("nano@50mbit,xavier*2@300mbit,pi3").unwrap();
        let names: Vec<_> = c.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["nano#0", "xavier#0", "xavier#1", "pi3#0"]);
        assert_eq!(c.devices[0].link.mbps, 50.0);
        assert_eq!(c.devices[2].link.mbps, 300.0);
        assert_eq!(c.devices[3].link.mbps, 94.1);
        assert_eq!(parse_rate("1gbit").unwrap(), 1000.0);
        assert_eq!(parse_rate("800kbit").unwrap(), 0.8);
    }

    #[test]
    fn impossible_specs_are_clear_errors() {
        for (spec, needle) in [
            ("0", "device count"),
            ("nano@0mbit", "must be positive"),
            ("nano@fast", "needs a unit"),
            ("toaster", "unknown profile 'toaster'"),
            ("nano*0", "count must be positive"),
            ("nano,,xavier", "empty entry"),
            ("", "empty device spec"),
        ] {
            let e = parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn cluster_json_with_inline_and_named_profiles() {
        let c = parse_cluster_json(r#"{"devices":[{"name":"cam","profile":"pi3","link":{"mbps":20}},{"profile":"nano","count":2}]}"#).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.devices[0].name, "cam");
        assert_eq!(c.devices[0].link.mbps, 20.0);
        assert_eq!(c.devices[2].name, "nano#1");
        assert!(parse_cluster_json(r#"{"devices":[{"profile":"pi3","link":{"mbps":0}}]}"#).is_err());
        assert!(parse_cluster_json("{").is_err());
    }
}
