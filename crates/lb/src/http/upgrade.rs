//! Protocol upgrades (WebSocket): after the server answered `101 Switching Protocols`, the
//! client's and the server's connections are joined and bytes copied both ways until
//! either side closes. The server's slot stays taken while the tunnel lives.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::backend::server::ActiveRequest;
use crate::http::conn::ConnGuard;

/// Joins the client's connection (once hyper hands it over) with the server's in a task.
/// `guard` keeps the client connection counted busy, so the keep-alive timeout never cuts
/// a quiet tunnel.
pub(crate) fn tunnel(
    client: OnUpgrade,
    server_upgrade: OnUpgrade,
    slot: ActiveRequest,
    guard: ConnGuard,
) {
    tokio::spawn(async move {
        let id = slot.server().id.clone();
        let (c, s) = match tokio::try_join!(client, server_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("upgrade through server {id} failed: {e}");
                return;
            }
        };
        let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
        match tokio::io::copy_bidirectional(&mut c, &mut s).await {
            Ok((up, down)) => tracing::debug!(
                "tunnel through server {id} closed: {up} bytes up, {down} bytes down"
            ),
            Err(e) => tracing::debug!("tunnel through server {id} ended: {e}"),
        }
        drop(slot);
        drop(guard);
    });
}
