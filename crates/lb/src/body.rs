//! Streamed bodies with a side effect: the request body tells when it was sent in full
//! (the response timeout starts then), the response body keeps its request counted on the
//! server until it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::pool::BoxError;
use crate::server::ActiveRequest;

/// A client's request body on its way upstream; sets its flag to `true` once the last
/// frame was read (or the body failed), so the wait for the response head can start.
pub(crate) struct RequestBody {
    inner: Incoming,
    sent: watch::Sender<bool>,
}

impl RequestBody {
    /// Wraps `inner`; the receiver turns `true` when the body was sent in full, and reports
    /// an error if the body was dropped before.
    pub fn new(inner: Incoming) -> (RequestBody, watch::Receiver<bool>) {
        let (sent, rx) = watch::channel(false);
        (RequestBody { inner, sent }, rx)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                self.sent.send_replace(true);
            }
            _ => {}
        }
        polled.map_err(|e| -> BoxError { Box::new(e) })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A server's response body on its way to the client; keeps the request counted in the
/// server's `current_conns` until it ends or is dropped, and logs a failure mid-way.
pub(crate) struct ResponseBody {
    inner: Incoming,
    active: ActiveRequest,
}

impl ResponseBody {
    /// Wraps `inner`, counted by `active`.
    pub fn new(inner: Incoming, active: ActiveRequest) -> ResponseBody {
        ResponseBody { inner, active }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(
                    "server {} failed while sending the response body: {e}",
                    self.active.server_id()
                );
                Poll::Ready(Some(Err(Box::new(e))))
            }
            other => other.map_err(|e| -> BoxError { Box::new(e) }),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
