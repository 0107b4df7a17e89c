//! One certificate order (RFC 8555 §7.4): a new order for the names, an http-01 challenge
//! published and declared ready for each pending authorization, the order polled until
//! ready, finalized with a CSR for a new key, and the chain fetched; the chain and key are
//! checked, then written to `site.pem` in one atomic rename.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use webfarm_tls::cert::LoadedCert;

use super::challenge::{Challenges, Published};
use super::AcmeError;

/// How the order is polled while the CA validates and issues: every 250 ms at first, 1.5
/// times longer each time (honouring `Retry-After`), for two minutes at most.
fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(120))
}

/// What an order produced, once written.
#[derive(Debug)]
pub(crate) struct Issued {
    /// The certificate as loaded back from its file.
    pub cert: LoadedCert,
    /// The issuer's common name (for the log).
    pub issuer: String,
}

/// Orders a certificate for `names` with `account`, answering its challenges through
/// `challenges`, and writes it (chain and key) to `site`.
///
/// # Errors
///
/// The server refuses or cannot be reached, a challenge fails (the server's reason is in
/// the error), or the certificate cannot be checked or written; `site` is then unchanged.
///
/// # Cancel safety
///
/// Cancelling withdraws the published challenges; `site` is only ever replaced whole.
pub(crate) async fn order(
    account: &Account,
    names: &[String],
    challenges: &Arc<Challenges>,
    site: &Path,
) -> Result<Issued, AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(AcmeError::protocol("new order"))?;
    let status = order.state().status;
    tracing::info!(
        "acme: order {} for {} ({status:?})",
        order.url(),
        names.join(", ")
    );
    let published = answer_challenges(&mut order, challenges).await?;
    let status = order
        .poll_ready(&polling())
        .await
        .map_err(AcmeError::protocol("waiting for the challenges"))?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(&mut order).await);
    }
    drop(published);
    let key_pem = order
        .finalize()
        .await
        .map_err(AcmeError::protocol("finalizing the order"))?;
    let chain_pem = order
        .poll_certificate(&polling())
        .await
        .map_err(AcmeError::protocol("downloading the certificate"))?;
    install(&chain_pem, &key_pem, names, site)
}

/// Publishes the http-01 key authorization of every pending authorization of `order` and
/// tells the server it is ready (RFC 8555 §7.5.1). Valid ones (reused) need nothing.
async fn answer_challenges(
    order: &mut Order,
    challenges: &Arc<Challenges>,
) -> Result<Vec<Published>, AcmeError> {
    let mut published = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(AcmeError::protocol("fetching an authorization"))?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => {
                tracing::info!("acme: {name}: already authorized");
                continue;
            }
            other => {
                return Err(AcmeError::Authorization {
                    name,
                    reason: format!("the authorization is {other:?}"),
                })
            }
        }
        let Some(mut challenge) = authz.challenge(ChallengeType::Http01) else {
            return Err(AcmeError::Authorization {
                name,
                reason: "the server offers no http-01 challenge".into(),
            });
        };
        let key_authorization = challenge.key_authorization();
        published.push(challenges.publish(&challenge.token, key_authorization.as_str()));
        challenge
            .set_ready()
            .await
            .map_err(AcmeError::protocol(format!("{name}: http-01 ready")))?;
        tracing::info!("acme: {name}: http-01 challenge published, validation requested");
    }
    Ok(published)
}

/// Why `order` became invalid: the first failed challenge's error, as the server said it.
async fn why_invalid(order: &mut Order) -> AcmeError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        let name = state.identifier().to_string();
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
            return AcmeError::Authorization {
                name,
                reason: problem.to_string(),
            };
        }
        if state.status != AuthorizationStatus::Valid {
            return AcmeError::Authorization {
                name,
                reason: format!("the authorization is {:?}", state.status),
            };
        }
    }
    AcmeError::Authorization {
        name: "the order".into(),
        reason: "invalid, and the server gave no reason".into(),
    }
}

/// Checks the chain and key (the key matches, every name is covered), then replaces `site`
/// with them in one rename.
fn install(
    chain_pem: &str,
    key_pem: &str,
    names: &[String],
    site: &Path,
) -> Result<Issued, AcmeError> {
    let staged = webfarm_tls::files::sibling(site, ".new");
    let contents = format!("{}\n{}", chain_pem.trim_end(), key_pem);
    webfarm_tls::files::write_private(&staged, contents.as_bytes()).map_err(AcmeError::Write)?;
    let checked =
        LoadedCert::load(&staged, &staged, &webfarm_tls::server::provider()).and_then(|cert| {
            names
                .iter()
                .try_for_each(|n| cert.require_name(n))
                .map(|()| cert)
        });
    let cert = match checked {
        Ok(cert) => cert,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(AcmeError::Certificate(e));
        }
    };
    std::fs::rename(&staged, site).map_err(|source| {
        AcmeError::Write(webfarm_tls::TlsError::Write {
            path: site.to_path_buf(),
            source,
        })
    })?;
    let issuer = issuer_name(&cert);
    let cert = LoadedCert {
        path: site.to_path_buf(),
        ..cert
    };
    Ok(Issued { cert, issuer })
}

/// The common name of the certificate's issuer, or `?`.
fn issuer_name(cert: &LoadedCert) -> String {
    x509_issuer(&cert.key.cert[0]).unwrap_or_else(|| "?".into())
}

fn x509_issuer(der: &[u8]) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = x509.issuer().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
