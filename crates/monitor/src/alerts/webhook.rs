//! Alerts sent to webhooks in Alertmanager's webhook JSON (its `webhook_config` payload,
//! `"version": "4"`), which Alertmanager's own receivers, Slack bridges and PagerDuty
//! bridges take: one POST per alert that starts firing or is resolved, a group of one.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};
use webfarm_node::http::HttpClient;

use super::Alert;

/// How long a webhook may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Alertmanager's "zero time", its `endsAt` for an alert still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The payload for `alert` (`firing` or `resolved`), the dashboard at `external_url`.
pub fn payload(alert: &Alert, external_url: &str) -> Value {
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), alert.summary.clone());
    let group = BTreeMap::from([("alertname".to_string(), alert.name().to_string())]);
    let fingerprint = format!(
        "{:016x}",
        webfarm_node::hash::fnv1a64(super::key(&alert.labels).as_bytes())
    );
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", alert.name()),
        "truncatedAlerts": 0,
        "status": alert.state,
        "receiver": "webfarm",
        "groupLabels": group,
        "commonLabels": alert.labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": alert.state,
            "labels": alert.labels,
            "annotations": annotations,
            "startsAt": rfc3339(alert.since_ms),
            "endsAt": alert.ended_ms.map_or(ZERO_TIME.to_string(), rfc3339),
            "generatorURL": external_url,
            "fingerprint": fingerprint,
        }],
    })
}

/// POSTs `alert` to every URL of `hooks`; a failure is logged, never retried (the next
/// change is sent anyway).
pub async fn send(http: &HttpClient, hooks: &[String], alert: &Alert, external_url: &str) {
    let body = Bytes::from(payload(alert, external_url).to_string());
    for url in hooks {
        match http
            .post(url, "application/json", body.clone(), TIMEOUT)
            .await
        {
            Ok(r) if r.status.is_success() => {}
            Ok(r) => tracing::warn!("alert webhook {url} answered {}", r.status),
            Err(e) => tracing::warn!("alert webhook {url}: {e}"),
        }
    }
}
