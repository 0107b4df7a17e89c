//! A frontend's `tls` table and `redirect_https`.

use std::path::Path;
use std::time::Duration;

use super::{CertFiles, Frontend, FrontendTls, Mode};
use crate::raw::{RawCert, RawFarm, RawFrontend};

/// HSTS's default `max-age`: one year, the value browsers' preload lists ask for.
pub(crate) const DEFAULT_HSTS: Duration = Duration::from_secs(365 * 86_400);

/// `frontends[i].tls`: paths resolved against `base`, `hsts` parsed. Files are read by the
/// lb when it starts (their errors name the file).
pub(super) fn resolve_tls(
    f: &RawFrontend,
    mode: Mode,
    key: &str,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<FrontendTls> {
    let tls = f.tls.as_ref()?;
    if mode != Mode::Http {
        problems.push(format!(
            "{key}.tls: TLS termination needs mode = \"http\"; a tcp frontend passes TLS \
             through to its servers"
        ));
    }
    let certs = tls
        .certs
        .iter()
        .flatten()
        .map(|c| match c {
            RawCert::Combined(path) => CertFiles {
                cert: base.join(path),
                key: base.join(path),
            },
            RawCert::Pair { cert, key } => CertFiles {
                cert: base.join(cert),
                key: base.join(key),
            },
        })
        .collect();
    if tls.certs.as_ref().is_some_and(Vec::is_empty) {
        problems.push(format!(
            "{key}.tls.certs: empty; list at least one certificate, or leave `certs` out to \
             use the farm's own site certificate"
        ));
    }
    let hsts = match tls.hsts.as_deref().map(str::trim) {
        None => Some(DEFAULT_HSTS),
        Some("off") => None,
        Some(text) => match humantime_serde::re::humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!(
                    "{key}.tls.hsts: {text:?} is not a duration ({e}); expected e.g. \"1y\", \
                     \"180d\" or \"off\""
                ));
                None
            }
        },
    };
    Some(FrontendTls { certs, hsts })
}

/// `redirect_https = true` → the port of the farm's first HTTPS frontend.
pub(super) fn resolve_redirects(raw: &RawFarm, out: &mut [Frontend], problems: &mut Vec<String>) {
    let https_port = out
        .iter()
        .find(|f| f.tls.is_some() && f.mode == Mode::Http)
        .map(|f| f.port);
    for (i, f) in raw.frontends.iter().enumerate() {
        if f.redirect_https != Some(true) {
            continue;
        }
        let key = format!("frontends[{i}].redirect_https");
        let Some(fe) = out.iter_mut().find(|o| o.name == f.name) else {
            continue;
        };
        if fe.tls.is_some() || fe.mode != Mode::Http {
            problems.push(format!(
                "{key}: only a plain (no tls) frontend of mode \"http\" can redirect to HTTPS"
            ));
        } else if let Some(port) = https_port {
            fe.redirect_https = Some(port);
        } else {
            problems.push(format!(
                "{key}: no frontend has `tls`; add an HTTPS frontend to redirect to"
            ));
        }
    }
}
