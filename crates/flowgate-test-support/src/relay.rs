//! `TcpRelay`: a loopback TCP relay in front of a real server (PostgreSQL, Redis, …) that a
//! test can cut and restore, to make a dependency unreachable without stopping the shared
//! server. `cut` closes every relayed connection and refuses new ones (accepted, then closed
//! at once, as a crashed server's port would behave behind a load balancer); `restore`
//! relays again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay from a local port to `target`; stops when dropped.
#[derive(Debug)]
pub struct TcpRelay {
    addr: SocketAddr,
    /// `true` while cut. Every relayed connection watches it.
    cut: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<u64>>,
}

impl TcpRelay {
    /// Listens on 127.0.0.1 (a free port) and relays to `target`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (cut, watcher) = watch::channel(false);
        let connections = Arc::new(Mutex::new(0));
        let counter = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watcher.borrow() {
                    drop(client);
                    continue;
                }
                if let Ok(mut count) = counter.lock() {
                    *count += 1;
                }
                tokio::spawn(relay(client, target, watcher.clone()));
            }
        });
        Ok(Self {
            addr,
            cut,
            accept,
            connections,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Connections relayed since start.
    pub fn connections(&self) -> u64 {
        self.connections.lock().map_or(0, |count| *count)
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accept.abort();
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}
