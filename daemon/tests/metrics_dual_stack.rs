//! The metrics listener with its default address answers over IPv4 and IPv6 (D-14): upstream's
//! `:port` is dual stack, and a cluster of either family must be able to scrape it.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use multus_daemon::config::Config;
use multus_daemon::metrics::{Metrics, listener};

fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d14_metrics_dual_stack() {
    // This machine must have both loopbacks for the test to mean anything.
    assert!(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "the test needs IPv6 on lo (::1)"
    );
    let default = Config::default().metrics_bind_address;
    assert_eq!(
        default,
        std::net::Ipv6Addr::UNSPECIFIED,
        "the daemon's default is dual stack"
    );
    let l = listener::bind(default, 0).await.unwrap();
    let port = l.local_addr().unwrap().port();
    // The cache gauge is not what this test looks at.
    let metrics = Metrics::new(Box::new(|| Some(0)));
    let task = tokio::spawn(listener::serve(l, metrics));
    for addr in [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)),
    ] {
        let reply = tokio::task::spawn_blocking(move || scrape(addr))
            .await
            .unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{addr}: {reply}");
        assert!(reply.contains("# EOF"), "{addr}: an OpenMetrics body");
    }
    task.abort();

    // 0.0.0.0 stays what it says: IPv4 only.
    let v4 = listener::bind(std::net::Ipv4Addr::UNSPECIFIED.into(), 0)
        .await
        .unwrap();
    let port = v4.local_addr().unwrap().port();
    assert!(TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok());
    assert!(TcpStream::connect(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port))).is_err());
}
