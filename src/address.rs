//! The address forms rudder's flags take, as istiod's do: `HOST:PORT`, `[IPV6]:PORT`, and
//! `:PORT`. For an address to listen on, `:PORT` means every interface (istiod's `:15010`); for
//! an address to connect to, it means this host (as Go's dialer reads `:PORT`). This module only
//! parses text; it neither binds nor resolves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why an address flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an address: give HOST:PORT, [IPV6]:PORT or :PORT")]
    Malformed(String),
    #[error("{0:?} has no valid port (1-65535, or 0 for any free port)")]
    Port(String),
    #[error("{0:?}: a listen address needs an IP address, not a name")]
    NotAnIp(String),
}

/// An address to listen on: `IP:PORT`, `[IPV6]:PORT`, or `:PORT` for every IPv4 interface
/// (`0.0.0.0`, as rudder's default addresses).
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, AddressError> {
    let (host, port) = split(text)?;
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    let ip = host
        .parse::<IpAddr>()
        .map_err(|_| AddressError::NotAnIp(text.to_string()))?;
    Ok(SocketAddr::new(ip, port))
}

/// An address to connect to, as `HOST:PORT` text (names stay names): `:PORT` is this host's
/// loopback address, `127.0.0.1:PORT`.
pub fn parse_connect_address(text: &str) -> Result<String, AddressError> {
    let (host, port) = split(text)?;
    Ok(if host.is_empty() {
        format!("{}:{port}", Ipv4Addr::LOCALHOST)
    } else {
        text.trim().to_string()
    })
}

/// The host (brackets of an IPv6 address removed; empty for `:PORT`) and the port.
fn split(text: &str) -> Result<(&str, u16), AddressError> {
    let trimmed = text.trim();
    let malformed = || AddressError::Malformed(text.to_string());
    let (host, port) = match trimmed.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:").ok_or_else(malformed)?;
            if host.is_empty() {
                return Err(malformed());
            }
            (host, port)
        }
        None => {
            let (host, port) = trimmed.rsplit_once(':').ok_or_else(malformed)?;
            // An IPv6 address without brackets cannot be told from its port.
            if host.contains(':') || host.contains(char::is_whitespace) {
                return Err(malformed());
            }
            (host, port)
        }
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| AddressError::Port(text.to_string()))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_address_of_only_a_port_is_every_interface() {
        assert_eq!(
            parse_listen_address(":15010"),
            Ok("0.0.0.0:15010".parse().unwrap())
        );
    }

    #[test]
    fn listen_addresses_take_ipv4_and_bracketed_ipv6() {
        assert_eq!(
            parse_listen_address("127.0.0.1:0"),
            Ok("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen_address("[::1]:15014"),
            Ok("[::1]:15014".parse().unwrap())
        );
        assert_eq!(
            parse_listen_address("[::]:15010"),
            Ok("[::]:15010".parse().unwrap())
        );
    }

    #[test]
    fn listen_addresses_refuse_names_bad_ports_and_bare_ipv6() {
        assert!(matches!(
            parse_listen_address("localhost:15010"),
            Err(AddressError::NotAnIp(_))
        ));
        assert!(matches!(
            parse_listen_address(":65536"),
            Err(AddressError::Port(_))
        ));
        assert!(matches!(
            parse_listen_address(":"),
            Err(AddressError::Port(_))
        ));
        assert!(matches!(
            parse_listen_address("15010"),
            Err(AddressError::Malformed(_))
        ));
        assert!(matches!(
            parse_listen_address("::1:15010"),
            Err(AddressError::Malformed(_))
        ));
        assert!(matches!(
            parse_listen_address("[]:15010"),
            Err(AddressError::Malformed(_))
        ));
    }

    #[test]
    fn a_connect_address_of_only_a_port_is_this_host() {
        assert_eq!(
            parse_connect_address(":15010").as_deref(),
            Ok("127.0.0.1:15010")
        );
        assert_eq!(
            parse_connect_address("istiod.istio-system.svc:15010").as_deref(),
            Ok("istiod.istio-system.svc:15010")
        );
        assert_eq!(
            parse_connect_address("[fd00::1]:15012").as_deref(),
            Ok("[fd00::1]:15012")
        );
        assert!(parse_connect_address("istiod").is_err());
    }
}
