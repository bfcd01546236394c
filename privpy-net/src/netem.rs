//! A network emulator as a TCP proxy: one-way delay and bandwidth per direction.
//!
//! This kernel has no `netem`, so links are emulated in user space. [`run_proxy`]
//! accepts connections on a bound listener and forwards each to `upstream`; bytes
//! in each direction pass through a [`LinkClock`] ([`LinkProfile`]: they occupy the
//! link for `8·b / bandwidth` after the previous bytes, then arrive `delay` later).
//! Put one proxy in front of each server's peer port and point the other servers'
//! `peer_addr` at the proxies, and the TLS deployment runs as on a LAN or a WAN; it
//! works for any other TCP program too (`privpy-server netem`).
//!
//! The in-process transport applies the same model
//! ([`privpy_core::transport::channel_mesh_with`]).

use privpy_core::transport::{LinkClock, LinkProfile};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Largest chunk read at once; a chunk is delivered as a unit.
const CHUNK: usize = 64 * 1024;

/// Forwards every connection accepted on `listener` to `upstream` through emulated
/// links (one per direction), until `shutdown` turns true. A connection whose
/// upstream cannot be reached is closed.
pub async fn run_proxy(
    listener: TcpListener,
    upstream: SocketAddr,
    profile: LinkProfile,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((down, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            tokio::join!(pump(dr, uw, profile), pump(ur, dw, profile));
        });
    }
}

/// Binds `listen` and runs [`run_proxy`] to `upstream` on a runtime of its own until
/// the process receives Ctrl-C (the `privpy-server netem` command).
///
/// # Errors
/// The runtime cannot start or `listen` cannot be bound.
pub fn proxy_until_ctrl_c(
    listen: SocketAddr,
    upstream: SocketAddr,
    profile: LinkProfile,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen).await?;
        let (stop, stop_rx) = watch::channel(false);
        let proxy = tokio::spawn(run_proxy(listener, upstream, profile, stop_rx));
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
        let _ = proxy.await;
        Ok(())
    })
}

/// One direction: read, stamp with the arrival time, deliver at that time.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, profile: LinkProfile) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut clock = LinkClock::new(profile);
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let at = clock.send(n);
                    if tx.send((at, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Round trips take twice the delay; a large transfer takes its size over the
    /// bandwidth.
    #[test]
    fn delay_and_bandwidth_are_imposed() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // An echo server.
            let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let echo_addr = echo.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((s, _)) = echo.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.into_split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            });
            let profile = LinkProfile {
                delay: Duration::from_millis(15),
                bits_per_sec: 40e6,
            };
            let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let proxy_addr = proxy.local_addr().unwrap();
            let (_stop, stop_rx) = watch::channel(false);
            tokio::spawn(run_proxy(proxy, echo_addr, profile, stop_rx));
            let mut c = TcpStream::connect(proxy_addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            let mut b = [0u8; 10];
            for _ in 0..3 {
                let t = Instant::now();
                c.write_all(b"0123456789").await.unwrap();
                c.read_exact(&mut b).await.unwrap();
                let rtt = t.elapsed();
                assert!(rtt >= Duration::from_millis(30), "{rtt:?}");
                assert!(rtt < Duration::from_millis(200), "{rtt:?}");
            }
            // 1 MB one way at 40 Mbit/s: 0.2 s, echoed back on the same model.
            let big = vec![7u8; 1_000_000];
            let t = Instant::now();
            let (mut r, mut w) = c.into_split();
            let send = async move { w.write_all(&big).await.unwrap() };
            let recv = async move {
                let mut got = vec![0u8; 1_000_000];
                r.read_exact(&mut got).await.unwrap();
                got
            };
            let ((), got) = tokio::join!(send, recv);
            assert!(got.iter().all(|&x| x == 7));
            let took = t.elapsed();
            assert!(took >= Duration::from_millis(200), "{took:?}");
            assert!(took < Duration::from_secs(3), "{took:?}");
        });
    }
}
