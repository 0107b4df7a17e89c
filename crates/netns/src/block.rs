//! A /24 address block: the bridge takes `.1`, hosts take `.2` to `.254`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::NetnsError;

/// An IPv4 /24 block, written `10.77.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    net: [u8; 3],
}

impl Block {
    /// The block whose first three octets are `net`.
    pub fn new(net: [u8; 3]) -> Block {
        Block { net }
    }

    /// The address `x.y.z.host` of the block.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, host)
    }

    /// `.1`: the bridge's address in the root namespace (the operator's host).
    pub fn gateway(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.octets()[..3] == self.net
    }

    /// Checks that `ip` can be a host's address: in the block, not `.0`, `.1` or `.255`.
    ///
    /// # Errors
    ///
    /// [`NetnsError::Invalid`] saying why.
    pub fn check_host(&self, ip: Ipv4Addr) -> Result<(), NetnsError> {
        if !self.contains(ip) {
            return Err(NetnsError::Invalid(format!("{ip} is not in {self}")));
        }
        match ip.octets()[3] {
            0 | 255 => Err(NetnsError::Invalid(format!(
                "{ip} is the network or broadcast address of {self}"
            ))),
            1 => Err(NetnsError::Invalid(format!(
                "{ip} is the bridge's address (the operator's host) in {self}"
            ))),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/24", self.addr(0))
    }
}

impl FromStr for Block {
    type Err = NetnsError;

    /// Parses `a.b.c.0/24` (the `/24` may be left out).
    fn from_str(s: &str) -> Result<Block, NetnsError> {
        let bad =
            || NetnsError::Invalid(format!("{s:?} is not an IPv4 /24 block like 10.77.0.0/24"));
        let addr = s.strip_suffix("/24").unwrap_or(s);
        let ip: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let [a, b, c, d] = ip.octets();
        if d != 0 || s.contains('/') && !s.ends_with("/24") {
            return Err(bad());
        }
        Ok(Block { net: [a, b, c] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_hosts() {
        let b: Block = "10.77.0.0/24".parse().unwrap();
        assert_eq!(b.to_string(), "10.77.0.0/24");
        assert_eq!(b.gateway().to_string(), "10.77.0.1");
        assert!(b.check_host("10.77.0.10".parse().unwrap()).is_ok());
        assert!(b.check_host("10.77.0.1".parse().unwrap()).is_err());
        assert!(b.check_host("10.77.1.10".parse().unwrap()).is_err());
        assert!("10.77.0.0/16".parse::<Block>().is_err());
        assert!("10.77.0.5/24".parse::<Block>().is_err());
        assert_eq!(
            "10.78.1.0".parse::<Block>().unwrap().addr(3).to_string(),
            "10.78.1.3"
        );
    }
}
