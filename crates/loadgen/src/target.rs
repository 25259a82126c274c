//! Where the load goes, and one keep-alive HTTP/1 connection to it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A server on the loopback interface.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port`, for the `Host` header.
    pub authority: HeaderValue,
}

impl Target {
    /// Parses `http://HOST:PORT` (a trailing `/` is allowed). Only loopback
    /// addresses are accepted: this tool is for benchmarks on one machine.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .context("the URL must start with http:// (no TLS)")?
            .trim_end_matches('/');
        if rest.contains('/') {
            bail!("give the server's base URL (http://HOST:PORT); the path is a separate option");
        }
        let (host, port) = rest.rsplit_once(':').context("the URL needs a port")?;
        let port: u16 = port.parse().context("invalid port")?;
        let ip: IpAddr = match host.trim_start_matches('[').trim_end_matches(']') {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            other => other
                .parse()
                .context("the host must be an IP address or localhost")?,
        };
        if !ip.is_loopback() {
            bail!("refusing {ip}: load is only generated against loopback addresses");
        }
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            authority: HeaderValue::from_str(rest)?,
        })
    }

    /// Opens a connection; its driver runs as a task until it closes.
    pub async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// Parses `Name: value`.
pub fn parse_header(s: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = s
        .split_once(':')
        .with_context(|| format!("header {s:?} is not `Name: value`"))?;
    Ok((
        HeaderName::from_bytes(name.trim().as_bytes())?,
        HeaderValue::from_str(value.trim())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(Target::parse("http://127.0.0.1:8080").is_ok());
        assert!(Target::parse("http://localhost:80/").is_ok());
        assert!(Target::parse("http://[::1]:8080").is_ok());
        assert!(Target::parse("http://10.0.0.1:8080").is_err());
        assert!(Target::parse("http://example.com:80").is_err());
        assert!(Target::parse("https://127.0.0.1:443").is_err());
        assert!(Target::parse("http://127.0.0.1:8080/healthz").is_err());
    }

    #[test]
    fn headers_are_name_colon_value() {
        let (n, v) = parse_header("Authorization: Bearer x:y").unwrap();
        assert_eq!(n, "authorization");
        assert_eq!(v, "Bearer x:y");
        assert!(parse_header("no colon").is_err());
    }
}
