//! Summaries (median, min–max over repetitions), the terminal/Markdown
//! table, the JSON document and the SVG chart.

use serde::Serialize;

use crate::load::{Case, Run};

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub req_per_sec: Stat,
    pub p50_ms: Stat,
    pub p99_ms: Stat,
    pub server_cpu_percent: Stat,
    pub peak_rss_mib: f64,
    pub errors: u64,
    pub runs: Vec<Run>,
}

impl Summary {
    pub fn of(runs: Vec<Run>) -> Option<Summary> {
        let col = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        Some(Summary {
            req_per_sec: Stat::of(&col(|r| r.req_per_sec))?,
            p50_ms: Stat::of(&col(|r| r.p50_ms))?,
            p99_ms: Stat::of(&col(|r| r.p99_ms))?,
            server_cpu_percent: Stat::of(&col(|r| r.server_cpu_percent))?,
            peak_rss_mib: runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max),
            errors: runs.iter().map(|r| r.errors).sum(),
            runs,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub case: Case,
    pub label: &'static str,
    pub connections: usize,
    pub strongroom: Option<Summary>,
    pub peer: Option<Summary>,
    /// Strongroom req/s ÷ peer req/s (medians).
    pub ratio: Option<f64>,
    /// Requests/s the cores allow for this case's signature work.
    pub crypto_limit_req_per_sec: Option<f64>,
    /// Strongroom's median as a share of that limit.
    pub share_of_limit: Option<f64>,
    /// Strongroom's own CPU per request (median CPU ÷ median req/s) as a
    /// multiple of the request's signature work on one core.
    pub cpu_over_sig: Option<f64>,
}

fn rate(s: &Stat) -> String {
    format!("{:.0} ({:.0}–{:.0})", s.median, s.min, s.max)
}

fn ms(s: &Stat) -> String {
    format!("{:.2}", s.median)
}

/// The Markdown table (also printed to the terminal).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| case | conns | Strongroom req/s median (min–max) | p50 ms | p99 ms (min–max) | CPU % | peak RSS MiB | errors | peer req/s median (min–max) | peer p99 ms | peer RSS MiB | ratio | % of crypto limit | server CPU ÷ signature work |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (sr, p50, p99, cpu, rss, err) = match &r.strongroom {
            Some(s) => (
                rate(&s.req_per_sec),
                ms(&s.p50_ms),
                format!(
                    "{:.2} ({:.2}–{:.2})",
                    s.p99_ms.median, s.p99_ms.min, s.p99_ms.max
                ),
                format!("{:.0}", s.server_cpu_percent.median),
                format!("{:.1}", s.peak_rss_mib),
                s.errors.to_string(),
            ),
            None => Default::default(),
        };
        let (pr, pp99, prss) = match &r.peer {
            Some(p) => (
                format!(
                    "{}{}",
                    rate(&p.req_per_sec),
                    if p.errors > 0 {
                        format!(" [{} errors]", p.errors)
                    } else {
                        String::new()
                    }
                ),
                ms(&p.p99_ms),
                format!("{:.0}", p.peak_rss_mib),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let ratio = r.ratio.map_or("–".into(), |x| format!("{x:.2}×"));
        let share = r
            .share_of_limit
            .map_or("–".into(), |x| format!("{:.0} %", x * 100.0));
        let own = r.cpu_over_sig.map_or("–".into(), |x| format!("{x:.1}×"));
        out.push_str(&format!(
            "| {} | {} | {sr} | {p50} | {p99} | {cpu} | {rss} | {err} | {pr} | {pp99} | {prss} | {ratio} | {share} | {own} |\n",
            r.label, r.connections
        ));
    }
    out
}

/// A case at a fixed offered load, on both servers.
#[derive(Debug, Clone, Serialize)]
pub struct PacedRow {
    pub case: Case,
    pub label: &'static str,
    pub connections: usize,
    pub offered_req_per_sec: f64,
    pub strongroom: Summary,
    pub peer: Option<Summary>,
}

pub fn paced_table(rows: &[PacedRow]) -> String {
    let mut out = String::from(
        "| case | conns | offered req/s | Strongroom served req/s | p50 ms | p99 ms (min–max) | peer served req/s | peer p50 ms | peer p99 ms (min–max) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let p99 = |s: &Summary| {
        format!(
            "{:.2} ({:.2}–{:.2})",
            s.p99_ms.median, s.p99_ms.min, s.p99_ms.max
        )
    };
    for r in rows {
        let s = &r.strongroom;
        let (pr, pp50, pp99) = match &r.peer {
            Some(p) => (
                format!("{:.0}", p.req_per_sec.median),
                ms(&p.p50_ms),
                p99(p),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {} | {} | {pr} | {pp50} | {pp99} |\n",
            r.label,
            r.connections,
            r.offered_req_per_sec,
            s.req_per_sec.median,
            ms(&s.p50_ms),
            p99(s),
        ));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A grouped bar chart of median req/s per case at `conns` connections,
/// Strongroom beside the peer, on a log scale (the cases span three orders
/// of magnitude).
pub fn svg_chart(rows: &[Row], conns: usize, title: &str) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.connections == conns).collect();
    let (w, row_h, left, top) = (900.0, 34.0, 330.0, 50.0);
    let h = top + row_h * rows.len() as f64 + 50.0;
    let max = rows
        .iter()
        .flat_map(|r| [&r.strongroom, &r.peer])
        .flatten()
        .map(|s| s.req_per_sec.median)
        .fold(10.0, f64::max);
    let decades = max.log10().ceil().max(1.0);
    let plot_w = w - left - 90.0;
    let x = |v: f64| left + plot_w * (v.max(1.0).log10() / decades);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>\n\
         <rect x=\"{left}\" y=\"28\" width=\"12\" height=\"10\" fill=\"#1f6feb\"/><text x=\"{}\" y=\"37\">Strongroom</text>\n\
         <rect x=\"{}\" y=\"28\" width=\"12\" height=\"10\" fill=\"#d29922\"/><text x=\"{}\" y=\"37\">node-oidc-provider (cluster, in-memory)</text>\n",
        esc(title),
        left + 16.0,
        left + 110.0,
        left + 126.0
    );
    for d in 0..=decades as i32 {
        let v = 10f64.powi(d);
        let xx = x(v);
        s.push_str(&format!(
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            h - 40.0,
            h - 25.0,
            v as u64
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 8.0,
            y + 18.0,
            esc(r.label)
        ));
        for (j, (sum, color)) in [(&r.strongroom, "#1f6feb"), (&r.peer, "#d29922")]
            .into_iter()
            .enumerate()
        {
            let yy = y + 4.0 + 13.0 * j as f64;
            match sum {
                Some(sm) => {
                    let v = sm.req_per_sec.median;
                    s.push_str(&format!(
                        "<rect x=\"{left}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{v:.0}</text>\n",
                        (x(v) - left).max(1.0),
                        x(v) + 4.0,
                        yy + 10.0
                    ));
                }
                None if j == 1 => s.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#888\">peer: n/a</text>\n",
                    left + 4.0,
                    yy + 10.0
                )),
                None => {}
            }
        }
    }
    s.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.1}\" fill=\"#555\">requests (flows) per second, median of the repetitions, log scale; {conns} connections</text>\n</svg>\n",
        h - 8.0
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rps: f64, p99: f64) -> Run {
        Run {
            requests: 10,
            errors: 0,
            req_per_sec: rps,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            server_cpu_percent: 150.0,
            peak_rss_mib: rps / 100.0,
            signed_in_window: 0,
            first_error: None,
        }
    }

    #[test]
    fn median_and_range() {
        assert_eq!(
            Stat::of(&[3.0, 1.0, 2.0]),
            Some(Stat {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(Stat::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[]), None);
        let s = Summary::of(vec![run(100.0, 4.0), run(300.0, 2.0), run(200.0, 9.0)]).unwrap();
        assert_eq!(s.req_per_sec.median, 200.0);
        assert_eq!(s.p99_ms.max, 9.0);
        assert_eq!(s.peak_rss_mib, 3.0, "peak is the max, not the median");
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                case: Case::Discovery,
                label: Case::Discovery.label(),
                connections: 64,
                strongroom: Summary::of(vec![run(30000.0, 3.0)]),
                peer: Summary::of(vec![run(10000.0, 9.0)]),
                ratio: Some(3.0),
                crypto_limit_req_per_sec: None,
                share_of_limit: None,
                cpu_over_sig: None,
            },
            Row {
                case: Case::FullFlow,
                label: Case::FullFlow.label(),
                connections: 64,
                strongroom: Summary::of(vec![run(800.0, 30.0)]),
                peer: None,
                ratio: None,
                crypto_limit_req_per_sec: Some(2000.0),
                share_of_limit: Some(0.4),
                cpu_over_sig: Some(2.25),
            },
        ]
    }

    #[test]
    fn table_shows_ratio_limit_and_missing_peer() {
        let t = table(&rows());
        assert!(
            t.contains("| discovery | 64 | 30000 (30000–30000) |"),
            "{t}"
        );
        assert!(t.contains("3.00×"), "{t}");
        assert!(t.contains("| n/a | n/a | n/a | – | 40 % | 2.2× |"), "{t}");
        assert!(t.contains("| 3.00× | – | – |"), "{t}");
    }

    #[test]
    fn chart_is_svg_with_a_bar_per_measurement() {
        let svg = svg_chart(&rows(), 64, "a <title>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;title&gt;"));
        // 2 legend swatches + 3 bars (the flow has no peer bar) + background.
        assert_eq!(svg.matches("<rect").count(), 6, "{svg}");
        assert!(svg.contains("peer: n/a"));
        assert!(svg_chart(&rows(), 16, "x").contains("</svg>"));
    }
}
