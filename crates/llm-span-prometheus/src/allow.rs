//! IP networks for the allowlist, on [`ipnet`]'s network types.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::error::ExporterError;

/// An IPv4 or IPv6 network, kept with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr(IpNet);

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, `[::1]/128`, or a bare address (a /32 or /128).
    ///
    /// Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`). An IPv4-mapped IPv6 network
    /// (`::ffff:10.0.0.0/104`) becomes the IPv4 network it denotes, since clients are
    /// matched by their canonical address.
    ///
    /// ipnet checks the prefix length against the family and does the network
    /// arithmetic. The text is read around it on purpose: the address by the standard
    /// library's parser, because ipnet's own parser also takes IPv4 octets with leading
    /// zeros (`010.0.0.0/8`, which some tools read as octal), and the prefix only as one
    /// to three decimal digits; brackets and bare addresses are ours to allow.
    pub(crate) fn parse(text: &str) -> Result<Self, ExporterError> {
        let invalid = || ExporterError::InvalidCidr {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => {
                // Only plain decimal digits: u8's parser would also take "+8".
                if prefix.is_empty()
                    || prefix.len() > 3
                    || !prefix.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(invalid());
                }
                (addr, Some(prefix.parse::<u8>().map_err(|_| invalid())?))
            }
            None => (trimmed, None),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip: IpAddr = addr.parse().map_err(|_| invalid())?;
        let net = match prefix {
            // Fails for a prefix longer than the address (/33, /129).
            Some(prefix) => IpNet::new(ip, prefix).map_err(|_| invalid())?,
            None => IpNet::from(ip),
        };
        Ok(Self(unmap(net.trunc())))
    }

    /// Whether `ip` is in the network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what
    /// an IPv4 client of a dual-stack socket looks like) are matched as IPv4.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        // ipnet never matches an address of the other family, /0 included.
        self.0.contains(&ip.to_canonical())
    }
}

/// The IPv4 network that an IPv4-mapped IPv6 network of prefix 96 or more denotes
/// (`::ffff:10.0.0.0/104` is `10.0.0.0/8`); any other network as it is.
fn unmap(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(prefix)) =
            (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4) = Ipv4Net::new(v4, prefix) {
                return IpNet::V4(v4);
            }
        }
    }
    net
}

/// An allowlist; empty means every client is allowed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    networks: Vec<Cidr>,
}

impl Allowlist {
    pub(crate) fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Self, ExporterError> {
        let networks = texts
            .iter()
            .map(|t| Cidr::parse(t.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use ipnet::Ipv6Net;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).expect("valid cidr")
    }

    /// The IPv4 network `net/prefix`, `net` given as a number.
    fn v4(net: u32, prefix: u8) -> Cidr {
        Cidr(IpNet::V4(
            Ipv4Net::new(net.into(), prefix).expect("test prefix"),
        ))
    }

    /// The IPv6 network `net/prefix`, `net` given as a number.
    fn v6(net: u128, prefix: u8) -> Cidr {
        Cidr(IpNet::V6(
            Ipv6Net::new(net.into(), prefix).expect("test prefix"),
        ))
    }

    #[test]
    fn parses_v4_networks_and_bare_addresses() {
        assert_eq!(cidr("10.0.0.0/8"), v4(0x0a00_0000, 8));
        assert_eq!(cidr("10.1.2.3/8"), v4(0x0a00_0000, 8));
        assert_eq!(cidr("127.0.0.1"), v4(0x7f00_0001, 32));
        assert_eq!(cidr(" 0.0.0.0/0 "), v4(0, 0));
        assert_eq!(cidr("192.168.1.1/32"), v4(0xc0a8_0101, 32));
    }

    #[test]
    fn parses_v6_networks() {
        assert_eq!(cidr("::1"), v6(1, 128));
        assert_eq!(cidr("[::1]"), v6(1, 128));
        assert_eq!(cidr("[::1]/128"), v6(1, 128));
        assert_eq!(cidr("fd00::1/8"), v6(0xfd << 120, 8));
        assert_eq!(cidr("::/0"), v6(0, 0));
    }

    #[test]
    fn mapped_v6_networks_become_v4() {
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:127.0.0.1"), cidr("127.0.0.1/32"));
        // Too short a prefix to be an IPv4 network: stays IPv6.
        assert!(matches!(cidr("::ffff:0.0.0.0/95"), Cidr(IpNet::V6(_))));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "host",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "1.2.3.4.5",
            "[10.0.0.1",
            "fe80::1%eth0",
        ] {
            match Cidr::parse(bad) {
                Err(ExporterError::InvalidCidr { text }) => assert_eq!(text, bad),
                other => panic!("{bad:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn contains_v4() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        assert!(!net.contains(ip("::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(cidr("192.168.0.0/23").contains(ip("192.168.1.200")));
        assert!(!cidr("192.168.0.0/23").contains(ip("192.168.2.0")));
    }

    #[test]
    fn contains_v6() {
        let net = cidr("fd00::/8");
        assert!(net.contains(ip("fd12:3456::1")));
        assert!(!net.contains(ip("fe80::1")));
        assert!(!net.contains(ip("10.0.0.1")));
        assert!(cidr("::1").contains(ip("::1")));
        assert!(!cidr("::1").contains(ip("::2")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        // /0 of one family does not admit the other.
        assert!(!cidr("::/0").contains(ip("10.0.0.1")));
    }

    #[test]
    fn mapped_clients_match_v4_networks() {
        let mapped = ip("::ffff:127.0.0.1");
        assert!(cidr("127.0.0.1/32").contains(mapped));
        assert!(cidr("127.0.0.0/8").contains(mapped));
        assert!(!cidr("10.0.0.0/8").contains(mapped));
        assert!(!cidr("::/0").contains(mapped));
    }

    #[test]
    fn allowlist() {
        let empty = Allowlist::default();
        assert!(empty.is_empty());
        assert!(empty.admits(ip("8.8.8.8")));
        let list = Allowlist::parse_all(&["10.0.0.0/8", "::1"]).expect("valid");
        assert!(list.admits(ip("10.2.3.4")));
        assert!(list.admits(ip("::1")));
        assert!(!list.admits(ip("127.0.0.1")));
        assert!(matches!(
            Allowlist::parse_all(&["10.0.0.0/8", "nope"]),
            Err(ExporterError::InvalidCidr { text }) if text == "nope"
        ));
    }
}
