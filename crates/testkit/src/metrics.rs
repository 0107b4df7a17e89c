//! Reading a scrape of `/metrics` (Prometheus text format) in tests.

/// The value of the first sample of `name` in `text` whose labels include every pair of
/// `labels` (other labels allowed); `None` when there is no such sample.
///
/// `name` is the sample's whole name (`haproxy_server_status`,
/// `haproxy_backend_total_time_seconds_count`).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let wanted = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse().ok()).flatten()
        })
}

/// The sum of every sample of `name` whose labels include `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            let wanted = n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// What `promtool check metrics` (Debian's `prometheus` package) prints for `text`: nothing
/// when the exposition is clean. A failure of promtool itself (a non-zero exit that printed
/// nothing) fails the test.
///
/// # Panics
/// When `promtool` cannot run or fails silently.
pub fn promtool_check(promtool: &std::path::Path, text: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", promtool.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("promtool's stdin");
    }
    let out = child.wait_with_output().expect("promtool's output");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || !printed.trim().is_empty(),
        "promtool failed silently"
    );
    printed.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE a counter\n\
                        a_total{proxy=\"web\",code=\"2xx\"} 3\n\
                        a_total{proxy=\"web\",code=\"5xx\"} 1\n\
                        b 7.5\n";

    #[test]
    fn finds_samples_by_name_and_labels() {
        assert_eq!(sample(TEXT, "a_total", &[("code", "5xx")]), Some(1.0));
        assert_eq!(sample(TEXT, "b", &[]), Some(7.5));
        assert_eq!(sample(TEXT, "a_total", &[("code", "4xx")]), None);
        assert_eq!(sum(TEXT, "a_total", &[("proxy", "web")]), 4.0);
    }
}
