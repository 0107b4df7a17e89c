//! Addresses and networks as the farm file writes them (`[firewall]` and the lb's ACLs).

use std::net::IpAddr;

use ipnet::IpNet;

/// `192.0.2.0/24`, `2001:db8::/48`, or one address (`192.0.2.7`: a /32, or /128).
///
/// A network with host bits set (`10.0.0.1/8`) is refused, naming the network it probably
/// means: silently truncating it would hide a typo (was `10.0.0.1/32` meant?). The caller
/// prefixes the key.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let net: IpNet = s.parse().map_err(|_| {
        format!("{s:?} is not an address or network; expected e.g. \"192.0.2.0/24\"")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; the network is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::parse_net;

    #[test]
    fn addresses_and_networks_but_not_host_bits() {
        assert_eq!(parse_net("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_net("10.0.0.1/8").unwrap_err(),
            "\"10.0.0.1/8\" has host bits set; the network is 10.0.0.0/8"
        );
        assert!(parse_net("2001:db8::1/32")
            .unwrap_err()
            .ends_with("the network is 2001:db8::/32"));
        assert!(parse_net("10.0.0.0/33")
            .unwrap_err()
            .contains("is not an address"));
    }
}
