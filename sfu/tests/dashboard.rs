//! The Grafana dashboard (`k8s/grafana/sfu-fleet.json`) asks only for metrics the server
//! registers: every `sfu_*` name in its queries (less a histogram's `_bucket`, `_sum`,
//! `_count`) is the name of a metric created in `sfu/src` or `signaling/src`.

use std::collections::BTreeSet;
use std::path::Path;

/// `sfu_*` metric names given to metric constructors: string literals in the sources.
fn registered(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![root.join("sfu/src"), root.join("signaling/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for literal in text.split('"').skip(1).step_by(2) {
                    if literal.starts_with("sfu_")
                        && literal.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        names.insert(literal.to_string());
                    }
                }
            }
        }
    }
    names
}

/// Every `sfu_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("sfu_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end =
            expr[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(expr.len(), |n| start + n);
        if boundary {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn every_dashboard_query_names_a_metric_the_server_registers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let known = registered(root);
    assert!(known.contains("sfu_fleet_joins_total") && known.len() > 40, "the scan finds the metrics: {known:?}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("k8s/grafana/sfu-fleet.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut unknown = Vec::new();
    for q in &queries {
        for name in metric_names(q) {
            let base =
                ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|b| known.contains(*b));
            if !known.contains(&name) && base.is_none() {
                unknown.push(format!("{name} in {q}"));
            }
        }
    }
    assert!(unknown.is_empty(), "queries naming metrics no code registers: {unknown:#?}");
    assert_eq!(metric_names("rate(sfu_a_total[1m]) / xsfu_b + sfu_c_bucket"), ["sfu_a_total", "sfu_c_bucket"]);
}
