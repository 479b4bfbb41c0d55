//! Just enough of the Prometheus text format to read the SFU's `/metrics`: plain values and
//! histogram buckets, and quantiles of a histogram's increase between two scrapes (linear
//! interpolation inside a bucket, as PromQL's `histogram_quantile` does).

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` of the server at `http`: the body of the response.
pub async fn scrape(http: SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(http).await?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes()).await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    Ok(text.split_once("\r\n\r\n").map_or(text.clone(), |(_, body)| body.to_owned()))
}

/// The value of the sample named exactly `name` (labels included, e.g. `m{reason="x"}`); 0 if absent.
pub fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Cumulative buckets `(le, count)` of histogram `name`, ascending, `+Inf` last.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, rest) = rest.split_once("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The increase of each cumulative bucket from `before` to `after` (same bucket layout).
pub fn delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, n)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0.0, |(_, v)| *v);
            (*le, (n - b).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolating linearly inside the bucket; a quantile
/// in the `+Inf` bucket is reported as the highest finite bound. `None` without observations.
pub fn quantile(cumulative: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = cumulative.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut prev = (0.0, 0.0);
    for &(le, n) in cumulative {
        if n >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let in_bucket = n - prev.1;
            let frac = if in_bucket > 0.0 { (rank - prev.1) / in_bucket } else { 1.0 };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, n);
    }
    Some(prev.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP sfu_x x\n# TYPE sfu_x counter\nsfu_x 42\nsfu_x_other 7\n\
        sfu_dropped_packets_total{reason=\"peer_gone\"} 3\n\
        h_bucket{le=\"0.001\"} 50\nh_bucket{le=\"0.002\"} 90\nh_bucket{le=\"+Inf\"} 100\nh_sum 0.1\nh_count 100\n";

    #[test]
    fn values() {
        assert_eq!(value(TEXT, "sfu_x"), 42.0);
        assert_eq!(value(TEXT, "sfu_x_other"), 7.0);
        assert_eq!(value(TEXT, "sfu_dropped_packets_total{reason=\"peer_gone\"}"), 3.0);
        assert_eq!(value(TEXT, "absent"), 0.0);
    }

    #[test]
    fn histogram_quantiles() {
        let b = buckets(TEXT, "h");
        assert_eq!(b, vec![(0.001, 50.0), (0.002, 90.0), (f64::INFINITY, 100.0)]);
        assert!((quantile(&b, 0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((quantile(&b, 0.7).unwrap() - 0.0015).abs() < 1e-12);
        assert_eq!(quantile(&b, 0.99), Some(0.002), "in +Inf: the highest finite bound");
        let d = delta(&[(0.001, 40.0), (0.002, 80.0), (f64::INFINITY, 80.0)], &b);
        assert_eq!(d, vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 20.0)]);
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }
}
