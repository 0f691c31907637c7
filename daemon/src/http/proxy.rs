//! The PROXY protocol v2 (HAProxy's binary header) from L4 load balancers.
//!
//! A TCP balancer (HAProxy in `mode tcp`, an AWS NLB, a kube-proxy in front
//! of the TLS port) cannot add `Forwarded`: the TLS is ours. Without the
//! header every client would share the balancer's address, one per-address
//! budget for everyone. With `[server] proxy_protocol = true`, a connection
//! from a `trusted_proxies` peer must open with a v2 header (before TLS),
//! whose source address is the client from then on; a connection from any
//! other peer is a client itself and a header it sends is not believed (the
//! bytes are not TLS, so its handshake fails). Parsing is `ppp`'s; only the
//! reading is here.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Header, PROTOCOL_PREFIX};
use tokio::io::AsyncReadExt;

/// The fixed part: the 12-byte signature, version and command, family and
/// protocol, and the length of what follows.
const MINIMUM_LENGTH: usize = 16;

/// Longest header read: addresses (at most 216 bytes, AF_UNIX) plus TLVs.
const MAX_HEADER: usize = 1024;

/// Why a trusted peer's connection was closed before TLS.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("no PROXY protocol v2 header from a trusted proxy")]
    Missing,
    #[error("PROXY header of {0} bytes is too long")]
    TooLong(usize),
    #[error("malformed PROXY header: {0}")]
    Malformed(#[from] ppp::v2::ParseError),
}

/// Reads one v2 header off `stream` (exactly its bytes: TLS follows) and
/// returns the client it names, or `None` for a `LOCAL` connection (the
/// balancer's own health check) or an unspecified / non-IP source.
pub async fn read_header<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    let mut fixed = [0u8; MINIMUM_LENGTH];
    stream.read_exact(&mut fixed).await?;
    if &fixed[..PROTOCOL_PREFIX.len()] != PROTOCOL_PREFIX {
        return Err(ProxyError::Missing);
    }
    let rest = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if MINIMUM_LENGTH + rest > MAX_HEADER {
        return Err(ProxyError::TooLong(MINIMUM_LENGTH + rest));
    }
    let mut whole = fixed.to_vec();
    whole.resize(MINIMUM_LENGTH + rest, 0);
    stream.read_exact(&mut whole[MINIMUM_LENGTH..]).await?;
    let header = Header::try_from(whole.as_slice())?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = PROTOCOL_PREFIX.to_vec();
        h.extend([0x20 | command, family]);
        h.extend((addresses.len() as u16).to_be_bytes());
        h.extend(addresses);
        h
    }

    #[tokio::test]
    async fn reads_exactly_the_header_and_names_the_client() {
        let mut bytes = v2(1, 0x11, &[203, 0, 113, 9, 127, 0, 0, 1, 0x9c, 0x40, 1, 187]);
        bytes.extend(b"\x16\x03\x01 the TLS ClientHello");
        let mut r = bytes.as_slice();
        let client = read_header(&mut r).await.unwrap();
        assert_eq!(client, Some("203.0.113.9:40000".parse().unwrap()));
        assert_eq!(r, b"\x16\x03\x01 the TLS ClientHello");

        let mut six = vec![0x20, 0x01, 0x0d, 0xb8];
        six.extend([0; 12]);
        six.extend([0; 16]);
        six.extend([0, 80, 1, 187]);
        let bytes = v2(1, 0x21, &six);
        let client = read_header(&mut bytes.as_slice()).await.unwrap();
        assert_eq!(client, Some("[2001:db8::]:80".parse().unwrap()));

        // LOCAL: the balancer's own connection.
        let bytes = v2(0, 0x00, &[]);
        assert_eq!(read_header(&mut bytes.as_slice()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a ClientHello".to_vec();
        for bad in [
            hello,
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), // v1 is not accepted
            v2(1, 0x11, &[1, 2, 3]),                        // short address block
            v2(5, 0x11, &[0; 12]),                          // unknown command
        ] {
            assert!(read_header(&mut bad.as_slice()).await.is_err(), "{bad:?}");
        }
        let mut huge = v2(1, 0x11, &[0; 12]);
        huge[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert!(matches!(
            read_header(&mut huge.as_slice()).await,
            Err(ProxyError::TooLong(_))
        ));
    }
}
