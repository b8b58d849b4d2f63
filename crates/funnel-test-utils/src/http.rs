//! Asking the HTTP API of a running `funnel` from a test, without an HTTP client.

use std::io::{Read, Write};
use std::time::Duration;

/// `GET path` from the server at `address` (`127.0.0.1:8080`): its status code and
/// body, or `None` when it cannot be reached or answers something that is not HTTP.
pub fn get(address: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((code, body))
}

/// The value of the Prometheus sample `name` whose labels include `label`
/// (`pipeline="p"`) in the text exposition `metrics`, summed over every such sample.
pub fn metric(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|line| {
            let labels = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = labels.split_once("} ")?;
            labels
                .split(',')
                .any(|l| l == label)
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_metric_is_summed_over_the_samples_with_the_label() {
        let metrics = "# TYPE funnel_x counter\nfunnel_x{pipeline=\"p\",component_id=\"a\"} 2\n\
                       funnel_x{pipeline=\"p\",component_id=\"b\"} 3\nfunnel_x{pipeline=\"q\"} 7\n\
                       funnel_x_total{pipeline=\"p\"} 100\n";
        assert!((super::metric(metrics, "funnel_x", "pipeline=\"p\"") - 5.0).abs() < f64::EPSILON);
        assert!(super::metric(metrics, "funnel_y", "pipeline=\"p\"").abs() < f64::EPSILON);
    }
}
