//! Addresses, secrets and the terminal QR code.

use std::net::{IpAddr, Ipv4Addr};

/// `n` random bytes from the OS RNG, as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| format!("OS random number generator: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The LAN address to offer phones: the first private-range IPv4 address of
/// an interface that is up and not loopback (192.168/16 first, then 10/8,
/// then 172.16/12), else any other non-loopback, non-link-local IPv4.
/// Reads the interface list only; sends nothing anywhere.
pub fn lan_address() -> Result<IpAddr, String> {
    let ifs = if_addrs::get_if_addrs().map_err(|e| format!("listing network interfaces: {e}"))?;
    let cands: Vec<(String, IpAddr)> = ifs
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| {
            let ip = i.ip();
            (i.name, ip)
        })
        .collect();
    pick_lan(&cands).ok_or_else(|| {
        "no LAN address found (no interface with a non-loopback IPv4 address); use --bind ADDRESS".to_string()
    })
}

/// The choice [`lan_address`] makes among `(interface, address)` pairs.
pub fn pick_lan(cands: &[(String, IpAddr)]) -> Option<IpAddr> {
    let v4: Vec<(&str, Ipv4Addr)> = cands
        .iter()
        .filter_map(|(n, ip)| match ip {
            IpAddr::V4(a) if !a.is_loopback() && !a.is_link_local() && !a.is_unspecified() && !a.is_multicast() => {
                Some((n.as_str(), *a))
            }
            _ => None,
        })
        .collect();
    // Container and VM bridges are rarely what a phone can reach.
    let virtual_if = |n: &str| {
        ["docker", "br-", "veth", "virbr", "cni", "flannel", "vmnet", "vboxnet"].iter().any(|p| n.starts_with(p))
    };
    let rank = |(n, a): &(&str, Ipv4Addr)| {
        let o = a.octets();
        let class = if o[0] == 192 && o[1] == 168 {
            0
        } else if o[0] == 10 {
            1
        } else if o[0] == 172 && (16..32).contains(&o[1]) {
            2
        } else {
            3
        };
        (virtual_if(n) as u8, class)
    };
    v4.iter().min_by_key(|c| rank(c)).map(|(_, a)| IpAddr::V4(*a))
}

/// The URL as a QR code drawn with Unicode half blocks (two modules per
/// character row), light on dark so it scans from a dark terminal.
pub fn qr_text(url: &str) -> Result<String, String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(|e| format!("QR code: {e}"))?;
    Ok(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = random_hex(16).unwrap();
        let b = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn lan_choice_prefers_home_networks_and_skips_bridges() {
        let c = |n: &str, ip: &str| (n.to_string(), ip.parse::<IpAddr>().unwrap());
        let pick = |v: Vec<(String, IpAddr)>| pick_lan(&v).map(|a| a.to_string());
        assert_eq!(
            pick(vec![c("lo", "127.0.0.1"), c("eth0", "10.1.2.3"), c("wlan0", "192.168.1.20")]),
            Some("192.168.1.20".into())
        );
        assert_eq!(pick(vec![c("docker0", "192.168.5.1"), c("eth0", "10.1.2.3")]), Some("10.1.2.3".into()));
        assert_eq!(pick(vec![c("eth0", "169.254.3.3"), c("eth1", "fe80::1")]), None);
        assert_eq!(pick(vec![c("lo", "127.0.0.1")]), None);
        assert_eq!(pick(vec![c("eth0", "100.64.0.7")]), Some("100.64.0.7".into()));
    }

    #[test]
    fn qr_renders() {
        let q = qr_text("http://192.168.1.20:8080/?room=0123456789ab&token=0123456789abcdef0123456789abcdef").unwrap();
        assert!(q.lines().count() > 10);
        assert!(q.contains('█') || q.contains('▀') || q.contains('▄'));
    }
}
