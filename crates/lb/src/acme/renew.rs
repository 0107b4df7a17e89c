//! The renewal loop: looks at `site.pem`, orders when it is missing, unusable, does not
//! cover every name of `[acme] names`, or has passed two thirds of its lifetime (the point
//! certbot and Let's Encrypt's advice use: 60 days into a 90-day certificate, leaving a
//! third for retries), and otherwise sleeps until then — at most [`CHECK_PERIOD`] at a time,
//! so a file replaced by hand or a clock that jumped is seen. A failed order is retried
//! after [`RETRY_FIRST`], doubling up to [`RETRY_MAX`], each failure logged with the
//! server's reason.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::Account;
use webfarm_config::AcmeSettings;
use webfarm_node::Shutdown;
use webfarm_tls::cert::LoadedCert;
use webfarm_tls::rustls::ClientConfig;

use super::challenge::Challenges;
use super::{client, order, AcmeError, AcmeFiles};

/// The longest sleep between two looks at the certificate.
pub(crate) const CHECK_PERIOD: Duration = Duration::from_secs(3600);
/// The wait after a first failure. Let's Encrypt allows 5 failed validations per account,
/// name and hour: 2, 4, 8, 16 and 32 minutes stay under it.
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(120);
/// The longest wait between two attempts.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(3600);
/// The longest an attempt (account, order, validation, download) may take.
pub(crate) const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// What the renewal loop works with.
pub(crate) struct Renewal {
    /// `[acme]`.
    pub settings: AcmeSettings,
    /// Where the account and certificate are.
    pub files: AcmeFiles,
    /// The ACME server's TLS client configuration.
    pub tls: Arc<ClientConfig>,
    /// The challenges the HTTP path answers.
    pub challenges: Arc<Challenges>,
}

/// When the certificate must be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    /// Now, for this reason.
    Now(String),
    /// At this time: two thirds into the current certificate's lifetime.
    At(SystemTime),
}

/// When `cert` (`Err`: no usable file, with the reason) must be replaced by one from
/// `directory` covering `names`; `from` is the directory it was ordered from, if known.
pub(crate) fn due(
    cert: Result<&LoadedCert, String>,
    names: &[String],
    from: Option<&str>,
    directory: &str,
) -> Due {
    let cert = match cert {
        Ok(cert) => cert,
        Err(why) => return Due::Now(why),
    };
    if let Some(from) = from.filter(|f| *f != directory) {
        return Due::Now(format!("the certificate was ordered from {from}"));
    }
    if let Some(missing) = names.iter().find(|n| !cert.covers(n)) {
        return Due::Now(format!(
            "the certificate does not cover {missing} (it covers {})",
            cert.names_list()
        ));
    }
    Due::At(cert.not_before + cert.lifetime() * 2 / 3)
}

/// The wait after `failures` consecutive failures (1 or more).
pub(crate) fn backoff(failures: u32) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(RETRY_MAX)
}

/// The certificate at `path`, or why there is none to keep.
fn current(path: &Path) -> Result<LoadedCert, String> {
    if !path.exists() {
        return Err("no certificate yet".into());
    }
    LoadedCert::load(path, path, &webfarm_tls::server::provider())
        .map_err(|e| format!("the certificate cannot be used ({e})"))
}

/// Runs until `shutdown`: orders when due, sleeps otherwise, retries with backoff.
pub(crate) async fn run(ctx: Renewal, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut account: Option<Account> = None;
    let mut failures = 0u32;
    loop {
        let wait = match next_step(&ctx, failures) {
            Some(wait) => wait,
            None => {
                let attempt = tokio::time::timeout(ORDER_TIMEOUT, attempt(&ctx, &mut account));
                let result = tokio::select! {
                    () = &mut stop => return,
                    r = attempt => r.unwrap_or(Err(AcmeError::Timeout(ORDER_TIMEOUT))),
                };
                after_attempt(&ctx, result, &mut failures, &mut account)
            }
        };
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Counts and logs the outcome of an attempt; returns the wait before the next look (none
/// after a success: the loop then sleeps until the new certificate is due).
fn after_attempt(
    ctx: &Renewal,
    result: Result<(), AcmeError>,
    failures: &mut u32,
    account: &mut Option<Account>,
) -> Duration {
    let Err(e) = result else {
        *failures = 0;
        return Duration::ZERO;
    };
    *failures += 1;
    let retry = backoff(*failures);
    tracing::error!(
        "acme: ordering the certificate for {} failed (attempt {failures}): {e}; retrying in {}",
        ctx.settings.names.join(", "),
        humantime::format_duration(retry)
    );
    forget_unknown_account(ctx, &e, account);
    retry
}

/// `None` when an order is due now (logged with the reason, and the failed attempts before
/// it), else how long to sleep: until the renewal time, at most [`CHECK_PERIOD`].
fn next_step(ctx: &Renewal, failures: u32) -> Option<Duration> {
    let path = ctx.files.site();
    let cert = current(&path);
    let from = read_origin(&ctx.files);
    let directory = &ctx.settings.directory;
    match due(
        cert.as_ref().map_err(Clone::clone),
        &ctx.settings.names,
        from.as_deref(),
        directory,
    ) {
        Due::Now(reason) => {
            tracing::info!(
                "acme: ordering a certificate for {} from {}: {reason}{}",
                ctx.settings.names.join(", "),
                ctx.settings.directory,
                if failures > 0 {
                    format!(" (after {failures} failed attempt(s))")
                } else {
                    String::new()
                }
            );
            None
        }
        Due::At(at) => match at.duration_since(SystemTime::now()) {
            Ok(left) => {
                tracing::debug!(
                    "acme: {} is due for renewal at {} (in {})",
                    path.display(),
                    humantime::format_rfc3339_seconds(at),
                    humantime::format_duration(round_secs(left))
                );
                Some(left.min(CHECK_PERIOD))
            }
            Err(_) => {
                tracing::info!(
                    "acme: renewing the certificate for {}: two thirds of its lifetime have \
                     passed",
                    ctx.settings.names.join(", ")
                );
                None
            }
        },
    }
}

/// One attempt: the account (restored or created), an order, the certificate written.
async fn attempt(ctx: &Renewal, account: &mut Option<Account>) -> Result<(), AcmeError> {
    let acct = match account {
        Some(a) => a.clone(),
        None => {
            let a = client::account(&ctx.settings, &ctx.files, &ctx.tls).await?;
            account.insert(a).clone()
        }
    };
    let issued = order::order(
        &acct,
        &ctx.settings.names,
        &ctx.challenges,
        &ctx.files.site(),
    )
    .await?;
    write_origin(&ctx.files, &ctx.settings.directory);
    let cert = &issued.cert;
    tracing::info!(
        "acme: certificate for {} issued by {:?}, valid until {}; written to {} (served by \
         the HTTPS frontends without certs of their own within a second); renewal at {}",
        cert.names_list(),
        issued.issuer,
        humantime::format_rfc3339_seconds(cert.not_after),
        cert.path.display(),
        humantime::format_rfc3339_seconds(cert.not_before + cert.lifetime() * 2 / 3)
    );
    Ok(())
}

/// After `RFC 8555 §6.7 accountDoesNotExist` (a CA that lost or deleted the account), drops
/// it so that the next attempt creates one.
fn forget_unknown_account(ctx: &Renewal, e: &AcmeError, account: &mut Option<Account>) {
    let AcmeError::Protocol {
        source: instant_acme::Error::Api(problem),
        ..
    } = e
    else {
        return;
    };
    if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist") {
        *account = None;
        client::forget_account(&ctx.files);
    }
}

/// `site.json`: where the certificate was ordered from.
#[derive(serde::Serialize, serde::Deserialize)]
struct Origin {
    directory: String,
}

/// The directory of `site.json`, if it can be read.
fn read_origin(files: &AcmeFiles) -> Option<String> {
    let bytes = std::fs::read(files.origin()).ok()?;
    serde_json::from_slice::<Origin>(&bytes)
        .ok()
        .map(|o| o.directory)
}

/// Records that `site.pem` comes from `directory` (a failure only costs a needless order if
/// the directory changes later: logged).
fn write_origin(files: &AcmeFiles, directory: &str) {
    let origin = Origin {
        directory: directory.to_string(),
    };
    let json = serde_json::to_vec(&origin).unwrap_or_default();
    if let Err(e) = webfarm_tls::files::write_public(&files.origin(), &json) {
        tracing::warn!("acme: {e}");
    }
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn backoff_doubles_from_two_minutes_to_an_hour() {
        let mins: Vec<u64> = (1..=8).map(|f| backoff(f).as_secs() / 60).collect();
        assert_eq!(mins, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn due_at_two_thirds_of_the_lifetime_or_now_for_other_names_or_directory() {
        let dir = webfarm_testkit::TempDir::new("acme-due");
        let layout = webfarm_tls::ca::Layout::of_data_dir(dir.path());
        let ca = webfarm_tls::ca::FarmCa::create(&layout, "www.foobar.com").unwrap();
        ca.ensure(
            &webfarm_tls::farm::Subjects::site("www.foobar.com").site_leaf(),
            &layout.site(),
        )
        .unwrap();
        let site = layout.site();
        let cert =
            LoadedCert::load(&site.cert, &site.key, &webfarm_tls::server::provider()).unwrap();
        let names = vec!["www.foobar.com".to_string()];
        let le = "https://acme-v02.api.letsencrypt.org/directory";
        let Due::At(at) = due(Ok(&cert), &names, Some(le), le) else {
            panic!("not due yet");
        };
        let since = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let expected = since(cert.not_before) + cert.lifetime().as_secs() * 2 / 3;
        assert!(since(at).abs_diff(expected) <= 1, "{at:?}");
        assert!(at > SystemTime::now() && at < cert.not_after);
        let more = vec!["www.foobar.com".to_string(), "foobar.com".to_string()];
        match due(Ok(&cert), &more, None, le) {
            Due::Now(why) => assert!(why.contains("does not cover foobar.com"), "{why}"),
            other => panic!("{other:?}"),
        }
        let staging = "https://acme-staging-v02.api.letsencrypt.org/directory";
        match due(Ok(&cert), &names, Some(staging), le) {
            Due::Now(why) => assert!(why.contains("ordered from https://acme-staging"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            due(Err("no certificate yet".into()), &names, None, le),
            Due::Now("no certificate yet".into())
        );
        assert!(current(&dir.path().join("missing.pem")).is_err());
    }
}
