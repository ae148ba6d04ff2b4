//! Connections that are plaintext or TLS, as one type each for the server side (handed to
//! tonic with what the client's certificate proved) and the client side (handed to hyper).

use super::cert::CertInfo;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a server knows about an accepted connection. tonic puts it in every request's
/// extensions (`request.extensions().get::<ConnInfo>()`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// True when the connection is TLS.
    pub tls: bool,
    /// The client's certificate, when it presented one (rustls verified it against the
    /// trusted CAs during the handshake, so it chains to one of them and is not expired).
    pub client_cert: Option<CertInfo>,
}

impl ConnInfo {
    /// True when the client authenticated with a certificate.
    pub fn has_client_cert(&self) -> bool {
        self.client_cert.is_some()
    }
}

enum ServerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection, plaintext or TLS (see [`super::TlsAcceptor::accept`]), with
/// its [`ConnInfo`].
pub struct ServerConn {
    io: ServerIo,
    info: ConnInfo,
    /// Dropped with the connection (e.g. to count connections per client).
    guard: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl ServerConn {
    /// A plaintext connection.
    pub fn plain(tcp: TcpStream) -> Self {
        let remote = tcp.peer_addr().ok();
        Self {
            io: ServerIo::Plain(tcp),
            info: ConnInfo {
                remote,
                ..ConnInfo::default()
            },
            guard: None,
        }
    }

    pub(crate) fn tls(
        stream: tokio_rustls::server::TlsStream<TcpStream>,
        remote: Option<SocketAddr>,
        client_cert: Option<CertInfo>,
    ) -> Self {
        Self {
            io: ServerIo::Tls(Box::new(stream)),
            info: ConnInfo {
                remote,
                tls: true,
                client_cert,
            },
            guard: None,
        }
    }

    /// Keeps `guard` until the connection is dropped (closed).
    pub fn with_guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// What is known about the connection.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl tonic::transport::server::Connected for ServerConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// Forwards the tokio I/O traits to whichever stream a connection wraps.
macro_rules! forward_io {
    ($ty:ty, $io:ident, $plain:path, $tls:path) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                match &mut self.get_mut().$io {
                    $plain(s) => Pin::new(s).poll_read(cx, buf),
                    $tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                match &mut self.get_mut().$io {
                    $plain(s) => Pin::new(s).poll_write(cx, buf),
                    $tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<std::io::Result<usize>> {
                match &mut self.get_mut().$io {
                    $plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    $tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match &self.$io {
                    $plain(s) => s.is_write_vectored(),
                    $tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match &mut self.get_mut().$io {
                    $plain(s) => Pin::new(s).poll_flush(cx),
                    $tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
                }
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                match &mut self.get_mut().$io {
                    $plain(s) => Pin::new(s).poll_shutdown(cx),
                    $tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
                }
            }
        }
    };
}

forward_io!(ServerConn, io, ServerIo::Plain, ServerIo::Tls);

/// The client side of a peer connection, plaintext or TLS.
pub(crate) enum ClientIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A client connection (the newtype the I/O traits are implemented on).
pub(crate) struct ClientConn {
    pub(crate) io: ClientIo,
}

forward_io!(ClientConn, io, ClientIo::Plain, ClientIo::Tls);
