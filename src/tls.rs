//! The server's connections: plain, or TLS from PEM files, optionally requiring client certificates (mTLS), re-read on SIGHUP
//! without a restart: new connections get the new certificate, open ones keep theirs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 128;

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
    /// The CA bundle client certificates must chain to (mTLS); `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
}

/// The server's TLS configuration in force.
#[derive(Debug, Clone)]
pub struct Tls {
    files: TlsFiles,
    config: Arc<ArcSwap<ServerConfig>>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!(e).context(format!("cannot read {}", path.display())))
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not PEM certificates: {e}", path.display()))?;
    anyhow::ensure!(!certificates.is_empty(), "{}: holds no certificate", path.display());
    Ok(certificates)
}

fn server_config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key: {e}", files.key.display()))?;
    let builder = ServerConfig::builder();
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca)? {
                roots.add(certificate).map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("{} and {} do not match: {e}", files.cert.display(), files.key.display()))?;
    // gRPC is HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl Tls {
    /// Reads the files; any problem stops start-up with the file named.
    pub fn load(files: TlsFiles) -> anyhow::Result<Tls> {
        let config = server_config(&files)?;
        Ok(Tls { files, config: Arc::new(ArcSwap::from_pointee(config)) })
    }

    /// Re-reads the files (SIGHUP); a bad file keeps the configuration in force and says why.
    pub fn reload(&self) {
        match server_config(&self.files) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "TLS files not reloaded; the certificate in force stays")
            }
        }
    }
}

/// A client connection, plain or TLS, cut when its peer has sent nothing for the idle limit.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    silence: Option<Silence>,
}

/// The transport under a connection.
#[derive(Debug)]
enum Stream {
    /// Plaintext HTTP/2.
    Plain(TcpStream),
    /// HTTP/2 over TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

/// How long a peer may stay silent, and when its silence runs out.
#[derive(Debug)]
struct Silence {
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Connection {
    fn new(stream: Stream, idle_limit: Option<Duration>) -> Connection {
        let silence = idle_limit.map(|limit| Silence { limit, deadline: Box::pin(tokio::time::sleep(limit)) });
        Connection { stream, silence }
    }
}

/// What the server knows of a connection's peer; tonic puts it into each request's extensions.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub address: Option<SocketAddr>,
    /// The client's certificate chain (mTLS), leaf first.
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Connected for Connection {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        match &self.stream {
            Stream::Plain(stream) => Peer { address: stream.peer_addr().ok(), certificates: None },
            Stream::Tls(stream) => {
                let (tcp, session) = stream.get_ref();
                Peer {
                    address: tcp.peer_addr().ok(),
                    certificates: session.peer_certificates().map(|chain| Arc::new(chain.to_vec())),
                }
            }
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let filled = buf.filled().len();
        let read = match &mut this.stream {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        };
        let Some(silence) = &mut this.silence else { return read };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > filled => {
                silence.deadline.as_mut().reset(tokio::time::Instant::now() + silence.limit);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if silence.deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer sent nothing for the idle limit",
            ))),
            other => other,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

/// The connections of `listener`, after their TLS handshake when `tls` is given. Each handshake
/// runs in its own task, so a slow client delays no one; failed ones are dropped (logged at
/// debug). Accepts until the server stops taking connections (it keeps accepting while it
/// drains, so load balancers see NOT_SERVING rather than refused connections).
pub fn incoming(
    listener: TcpListener,
    tls: Option<Tls>,
    idle_limit: Option<Duration>,
) -> ReceiverStream<Result<Connection, std::io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Some(tls) = &tls else {
                if sender.send(Ok(Connection::new(Stream::Plain(stream), idle_limit))).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = TlsAcceptor::from(tls.config.load_full());
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(Connection::new(Stream::Tls(Box::new(stream)), idle_limit))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
