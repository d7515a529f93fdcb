//! The campaign report as a self-contained HTML page: inline CSS and SVG, no script, no font or
//! image fetched from anywhere, so a reporting job can save it as is and anyone can open it.
//!
//! Sections: a header with the campaign's period, verdict cards (sample-ratio mismatch,
//! satisfaction, each arm's conversion lift), the per-arm table, a forest plot of relative lifts
//! with their intervals, the cumulative conversion rate per arm by day, the cumulative lift with
//! its always-valid (sequential) band, and the Qini curve of a targeting score when one is given.
//! The input is the `campaign_metrics` JSON (with `difference: relative` and `sequential`), the
//! cumulative daily counts per arm and optionally the Qini curves.

use std::fmt::Write;

use serde_json::Value;

use super::effect::{sequential_test, Difference, Statistic};
use super::uplift::Curve;

/// Cumulative counts of one arm up to and including one day.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyArm {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub arm: String,
    /// Users exposed so far.
    pub users: u64,
    /// Of them, users who converted so far.
    pub converted: u64,
}

/// The Qini curves of a targeting score.
#[derive(Debug, Clone, PartialEq)]
pub struct QiniInput {
    pub curve: Curve,
    pub perfect: Curve,
    pub coefficient: Option<f64>,
    /// Where the score came from, for the caption.
    pub source: String,
}

/// What the page shows.
pub struct PageInput<'a> {
    /// `campaign_metrics(campaign, {"difference": "relative", "sequential": true, ...})`.
    pub report: &'a Value,
    /// Cumulative daily counts, in day order.
    pub daily: &'a [DailyArm],
    pub qini: Option<&'a QiniInput>,
    /// When the page was made (shown in the header).
    pub generated: &'a str,
    /// The sequential test's tuning parameter.
    pub tuning: f64,
}

const PALETTE: [&str; 6] = [
    "#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#be123c",
];
const CONTROL: &str = "#6b7280";

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn pct(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |x| format!("{:.*}%", digits, x * 100.0))
}

fn signed_pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:+.1}%", x * 100.0))
}

fn money(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(x) if x.abs() >= 1e6 => format!("{:.2} M", x / 1e6),
        Some(x) if x.abs() >= 1e4 => format!("{:.0}", x),
        Some(x) => format!("{:.2}", x),
    }
}

fn int(v: &Value) -> String {
    match v.as_u64() {
        None => "–".into(),
        Some(n) => {
            let s = n.to_string();
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
    }
}

/// Arm colours: the control grey, the others from the palette in report order.
fn colour_of(arm: &str, control: Option<&str>, arms: &[String]) -> &'static str {
    if Some(arm) == control {
        return CONTROL;
    }
    let i = arms
        .iter()
        .filter(|a| Some(a.as_str()) != control)
        .position(|a| a == arm)
        .unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// About 5 round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 20 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A plot area with linear scales.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn sx(&self, x: f64) -> f64 {
        let (a, b) = self.x;
        let t = if b > a { (x - a) / (b - a) } else { 0.5 };
        self.left + t * (self.w - self.left - self.right)
    }

    fn sy(&self, y: f64) -> f64 {
        let (a, b) = self.y;
        let t = if b > a { (y - a) / (b - a) } else { 0.5 };
        self.h - self.bottom - t * (self.h - self.top - self.bottom)
    }

    fn open(&self, out: &mut String, label: &str) {
        let _ = write!(
            out,
            "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{l}\" \
             xmlns=\"http://www.w3.org/2000/svg\">",
            w = self.w,
            h = self.h,
            l = escape(label)
        );
    }

    /// Horizontal grid lines with labels on the y axis.
    fn y_grid(&self, out: &mut String, fmt: &dyn Fn(f64) -> String) {
        for t in ticks(self.y.0, self.y.1) {
            let y = self.sy(t);
            let _ = write!(
                out,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
                self.left,
                self.w - self.right,
                self.left - 6.0,
                y + 4.0,
                escape(&fmt(t))
            );
        }
    }

    /// Day labels on the x axis (at most about 8).
    fn x_days(&self, out: &mut String, days: &[String]) {
        let every = days.len().div_ceil(8).max(1);
        for (i, d) in days.iter().enumerate() {
            if i % every != 0 && i + 1 != days.len() {
                continue;
            }
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                self.sx(i as f64),
                self.h - self.bottom + 16.0,
                escape(d.get(5..).unwrap_or(d))
            );
        }
    }
}

fn polyline(points: &[(f64, f64)], colour: &str, extra: &str) -> String {
    let p: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.2\" {extra}/>",
        p.join(" ")
    )
}

fn legend(items: &[(String, &str)]) -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (name, colour) in items {
        let _ = write!(
            out,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            escape(name)
        );
    }
    out.push_str("</div>");
    out
}

/// The arms in report order.
fn arm_names(report: &Value) -> Vec<String> {
    report["arms"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["arm"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn header(out: &mut String, r: &Value, generated: &str) {
    let name = r["campaign"].as_str().unwrap_or("campaign");
    let period = &r["period"];
    let from = period["starts_at"]
        .as_str()
        .or(period["first_event"].as_str())
        .unwrap_or("–");
    let to = period["ends_at"]
        .as_str()
        .or(period["last_event"].as_str())
        .unwrap_or("–");
    let _ = write!(
        out,
        "<header><div class=\"kicker\">Campaign report</div><h1>{}</h1>\
         <p class=\"meta\">{}{} → {} · significance level α = {} · {}</p></header>",
        escape(name),
        r["channel"]
            .as_str()
            .map(|c| format!("{} · ", escape(c)))
            .unwrap_or_default(),
        escape(from.get(..10).unwrap_or(from)),
        escape(to.get(..10).unwrap_or(to)),
        num(&r["alpha"]).unwrap_or(0.05),
        escape(generated)
    );
}

fn cards(out: &mut String, r: &Value) {
    out.push_str("<section class=\"cards\">");
    // Sample-ratio mismatch.
    let srm = &r["srm"];
    match srm["mismatch"].as_bool() {
        Some(m) => {
            let _ = write!(
                out,
                "<div class=\"card {}\"><div class=\"label\">Traffic split (SRM)</div>\
                 <div class=\"value\">{}</div><div class=\"sub\">χ² p = {:.3}, {} split</div></div>",
                if m { "bad" } else { "good" },
                if m { "Mismatch" } else { "As planned" },
                num(&srm["p_value"]).unwrap_or(f64::NAN),
                escape(srm["split"].as_str().unwrap_or("planned"))
            );
        }
        None => out.push_str(
            "<div class=\"card\"><div class=\"label\">Traffic split (SRM)</div>\
             <div class=\"value\">–</div><div class=\"sub\">needs two arms</div></div>",
        ),
    }
    // Each arm's conversion lift.
    for c in r["comparisons"].as_array().into_iter().flatten() {
        let cr = &c["conversion_rate"];
        let e = &cr["effect"];
        let sig = cr["sequential"]["significant"].as_bool().unwrap_or(false);
        let lift = num(&e["effect"]);
        let class = match (sig, lift) {
            (true, Some(l)) if l > 0.0 => "good",
            (true, Some(_)) => "bad",
            _ => "",
        };
        let ctw = num(&cr["bayesian"]["chance_to_win"])
            .map(|p| format!(" · chance to win {:.0}%", p * 100.0))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<div class=\"card {class}\"><div class=\"label\">{} vs {}: conversion</div>\
             <div class=\"value\">{}</div><div class=\"sub\">{}{}</div></div>",
            escape(c["arm"].as_str().unwrap_or("")),
            escape(c["control_arm"].as_str().unwrap_or("")),
            signed_pct(lift),
            if sig {
                "significant (sequential)"
            } else {
                "not significant yet (sequential)"
            },
            ctw
        );
    }
    // Satisfaction.
    let s = &r["satisfaction"];
    let _ = write!(
        out,
        "<div class=\"card\"><div class=\"label\">Satisfaction</div><div class=\"value\">{}</div>\
         <div class=\"sub\">{}</div></div>",
        num(&s["mean_sentiment"]).map_or("–".into(), |m| format!("{:.0}% positive", m * 100.0)),
        match s["feedback_count"].as_u64() {
            Some(n) if num(&s["mean_sentiment"]).is_some() => format!("{n} feedback texts"),
            _ => escape(
                s["sentiment_unavailable"]
                    .as_str()
                    .unwrap_or("no feedback for this campaign")
            ),
        }
    );
    out.push_str("</section>");
}

fn arm_table(out: &mut String, r: &Value, arms: &[String], control: Option<&str>) {
    out.push_str(
        "<section><h2>Arms</h2><table><thead><tr><th>Arm</th><th>Users exposed</th>\
         <th>Exposures</th><th>CTR</th><th>Conversion</th><th>Revenue</th><th>Revenue / user</th>\
         <th>Cost</th><th>ROI</th></tr></thead><tbody>",
    );
    for a in r["arms"].as_array().into_iter().flatten() {
        let name = a["arm"].as_str().unwrap_or("");
        let _ = write!(
            out,
            "<tr><td><i class=\"dot\" style=\"background:{}\"></i>{}{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            colour_of(name, control, arms),
            escape(name),
            if Some(name) == control {
                " <span class=\"tag\">control</span>"
            } else {
                ""
            },
            int(&a["users_exposed"]),
            int(&a["exposures"]),
            pct(num(&a["ctr"]), 2),
            pct(num(&a["conversion_rate"]), 2),
            money(num(&a["revenue"])),
            money(num(&a["revenue_per_user"])),
            money(num(&a["cost"])),
            pct(num(&a["roi"]), 0),
        );
    }
    out.push_str("</tbody></table></section>");
}

/// Relative lifts with their intervals, one row per comparison and metric.
fn forest(out: &mut String, r: &Value, arms: &[String], control: Option<&str>) {
    let mut rows: Vec<(String, &'static str, f64, f64, f64, bool)> = Vec::new();
    for c in r["comparisons"].as_array().into_iter().flatten() {
        let arm = c["arm"].as_str().unwrap_or("").to_string();
        for (key, label) in [
            ("conversion_rate", "conversion"),
            ("ctr", "CTR"),
            ("revenue_per_user", "revenue / user"),
        ] {
            let e = &c[key]["effect"];
            if let (Some(m), Some(lo), Some(hi)) = (
                num(&e["effect"]),
                num(&e["ci"]["low"]),
                num(&e["ci"]["high"]),
            ) {
                let sig = e["significant"].as_bool().unwrap_or(false);
                rows.push((arm.clone(), label, m, lo, hi, sig));
            }
        }
    }
    out.push_str("<section><h2>Lift against control</h2>");
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">No comparison with defined intervals yet.</p></section>");
        return;
    }
    let lo = rows.iter().map(|r| r.3).fold(0.0f64, f64::min);
    let hi = rows.iter().map(|r| r.4).fold(0.0f64, f64::max);
    let pad = (hi - lo).max(0.02) * 0.08;
    let row_h = 34.0;
    let f = Frame {
        w: 900.0,
        h: 40.0 + row_h * rows.len() as f64 + 30.0,
        left: 220.0,
        right: 90.0,
        top: 20.0,
        bottom: 30.0,
        x: (lo - pad, hi + pad),
        y: (0.0, 1.0),
    };
    f.open(
        out,
        "Relative lift of each arm against control, with confidence intervals",
    );
    for t in ticks(f.x.0, f.x.1) {
        let x = f.sx(t);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"{}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            f.top,
            f.h - f.bottom,
            if t == 0.0 { "zero" } else { "grid" },
            f.h - f.bottom + 16.0,
            escape(&format!("{:+.0}%", t * 100.0))
        );
    }
    for (i, (arm, label, m, lo, hi, sig)) in rows.iter().enumerate() {
        let y = f.top + 20.0 + row_h * i as f64;
        let colour = colour_of(arm, control, arms);
        let _ = write!(
            out,
            "<text x=\"12\" y=\"{:.1}\" class=\"row\">{} · {}</text>\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" \
             stroke-width=\"3\" stroke-linecap=\"round\"/>\
             <circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"{}\" stroke=\"{colour}\" stroke-width=\"2.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"row value\">{}</text>",
            y + 4.0,
            escape(arm),
            label,
            f.sx(*lo),
            f.sx(*hi),
            f.sx(*m),
            if *sig { colour } else { "#fff" },
            f.w - f.right + 10.0,
            y + 4.0,
            signed_pct(Some(*m)),
        );
    }
    out.push_str("</svg><p class=\"note\">Relative lift (treatment − control) / control with its ");
    let _ = write!(
        out,
        "{:.0}% confidence interval (GrowthBook's t-test, delta method); a filled dot is significant.</p></section>",
        (1.0 - num(&r["alpha"]).unwrap_or(0.05)) * 100.0
    );
}

/// Day labels and, per arm, the cumulative (users, converted) on each day (carried forward).
fn daily_grid(daily: &[DailyArm], arms: &[String]) -> (Vec<String>, Vec<Vec<(u64, u64)>>) {
    let mut days: Vec<String> = daily.iter().map(|d| d.day.clone()).collect();
    days.dedup();
    days.sort();
    days.dedup();
    let mut grid = vec![vec![(0u64, 0u64); days.len()]; arms.len()];
    for d in daily {
        if let (Some(i), Ok(j)) = (
            arms.iter().position(|a| *a == d.arm),
            days.binary_search(&d.day),
        ) {
            grid[i][j] = (d.users, d.converted);
        }
    }
    for row in &mut grid {
        for j in 1..row.len() {
            if row[j].0 == 0 && row[j].1 == 0 {
                row[j] = row[j - 1];
            }
        }
    }
    (days, grid)
}

fn cumulative(out: &mut String, input: &PageInput<'_>, arms: &[String], control: Option<&str>) {
    let (days, grid) = daily_grid(input.daily, arms);
    out.push_str("<section><h2>Cumulative conversion rate</h2>");
    if days.len() < 2 {
        out.push_str("<p class=\"empty\">Fewer than two days of events.</p></section>");
        return;
    }
    let rate = |(u, c): (u64, u64)| (u > 0).then(|| c as f64 / u as f64);
    let max = grid
        .iter()
        .flatten()
        .filter_map(|&p| rate(p))
        .fold(0.0f64, f64::max);
    let f = Frame {
        w: 900.0,
        h: 300.0,
        left: 60.0,
        right: 20.0,
        top: 16.0,
        bottom: 30.0,
        x: (0.0, (days.len() - 1) as f64),
        y: (0.0, (max * 1.15).max(1e-6)),
    };
    f.open(out, "Cumulative conversion rate per arm by day");
    f.y_grid(out, &|t| format!("{:.1}%", t * 100.0));
    f.x_days(out, &days);
    let mut items = Vec::new();
    for (i, arm) in arms.iter().enumerate() {
        let pts: Vec<(f64, f64)> = grid[i]
            .iter()
            .enumerate()
            .filter_map(|(j, &p)| rate(p).map(|r| (f.sx(j as f64), f.sy(r))))
            .collect();
        let colour = colour_of(arm, control, arms);
        out.push_str(&polyline(&pts, colour, ""));
        items.push((arm.clone(), colour));
    }
    out.push_str("</svg>");
    out.push_str(&legend(&items));
    out.push_str("</section>");

    // The lift with its always-valid band, per non-control arm.
    let Some(ci) = control.and_then(|c| arms.iter().position(|a| a == c)) else {
        return;
    };
    let alpha = num(&input.report["alpha"]).unwrap_or(0.05);
    out.push_str("<section><h2>Cumulative lift with its sequential band</h2>");
    let mut series = Vec::new();
    for (i, arm) in arms.iter().enumerate() {
        if i == ci {
            continue;
        }
        let pts: Vec<(usize, f64, f64, f64)> = (0..days.len())
            .filter_map(|j| {
                let (uc, xc) = grid[ci][j];
                let (ut, xt) = grid[i][j];
                let a = Statistic::Proportion {
                    n: uc as f64,
                    sum: xc as f64,
                };
                let b = Statistic::Proportion {
                    n: ut as f64,
                    sum: xt as f64,
                };
                sequential_test(&a, &b, Difference::Absolute, alpha, input.tuning)
                    .ok()
                    .map(|e| (j, e.effect, e.ci.low, e.ci.high))
            })
            .collect();
        series.push((arm.clone(), pts));
    }
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .fold((0.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.3)));
    if series.iter().all(|(_, p)| p.is_empty()) {
        out.push_str(
            "<p class=\"empty\">Not enough conversions in both arms for an interval yet.</p></section>",
        );
        return;
    }
    let pad = (hi - lo).max(1e-4) * 0.08;
    let f = Frame {
        w: 900.0,
        h: 300.0,
        left: 60.0,
        right: 20.0,
        top: 16.0,
        bottom: 30.0,
        x: (0.0, (days.len() - 1) as f64),
        y: (lo - pad, hi + pad),
    };
    f.open(
        out,
        "Cumulative absolute lift of each arm over control with its sequential confidence band",
    );
    f.y_grid(out, &|t| format!("{:+.1} pt", t * 100.0));
    f.x_days(out, &days);
    let zero = f.sy(0.0);
    let _ = write!(
        out,
        "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{zero:.1}\" y2=\"{zero:.1}\" class=\"zero\"/>",
        f.left,
        f.w - f.right
    );
    let mut items = Vec::new();
    for (arm, pts) in &series {
        if pts.is_empty() {
            continue;
        }
        let colour = colour_of(arm, control, arms);
        let upper: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", f.sx(p.0 as f64), f.sy(p.3)))
            .collect();
        let lower: Vec<String> = pts
            .iter()
            .rev()
            .map(|p| format!("{:.1},{:.1}", f.sx(p.0 as f64), f.sy(p.2)))
            .collect();
        let _ = write!(
            out,
            "<polygon points=\"{} {}\" fill=\"{colour}\" fill-opacity=\"0.15\" stroke=\"none\"/>",
            upper.join(" "),
            lower.join(" ")
        );
        let line: Vec<(f64, f64)> = pts.iter().map(|p| (f.sx(p.0 as f64), f.sy(p.1))).collect();
        out.push_str(&polyline(&line, colour, ""));
        items.push((format!("{arm} − control"), colour));
    }
    out.push_str("</svg>");
    out.push_str(&legend(&items));
    let _ = write!(
        out,
        "<p class=\"note\">Conversion rate difference in percentage points with its always-valid \
         {:.0}% confidence sequence (Waudby-Smith et al., tuning {}): it may be read every day; \
         the lift is significant once the band leaves zero.</p></section>",
        (1.0 - alpha) * 100.0,
        input.tuning
    );
}

fn qini(out: &mut String, q: &QiniInput) {
    out.push_str("<section><h2>Targeting: Qini curve</h2>");
    let n = q.curve.x.last().copied().unwrap_or(0.0);
    if q.curve.x.len() < 2 || n <= 0.0 {
        out.push_str("<p class=\"empty\">Too few scored users.</p></section>");
        return;
    }
    let all = q.curve.y.iter().chain(q.perfect.y.iter()).copied();
    let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let f = Frame {
        w: 900.0,
        h: 300.0,
        left: 60.0,
        right: 20.0,
        top: 16.0,
        bottom: 34.0,
        x: (0.0, n),
        y: (lo, (hi * 1.08).max(lo + 1.0)),
    };
    f.open(
        out,
        "Qini curve of the targeting score against random and perfect targeting",
    );
    f.y_grid(out, &|t| format!("{t:.0}"));
    for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{:.0}%</text>",
            f.sx(t * n),
            f.h - f.bottom + 16.0,
            t * 100.0
        );
    }
    // Thin the curve to at most ~400 points.
    let thin = |c: &Curve| -> Vec<(f64, f64)> {
        let step = (c.x.len() / 400).max(1);
        c.x.iter()
            .zip(&c.y)
            .enumerate()
            .filter(|(i, _)| i % step == 0 || *i + 1 == c.x.len())
            .map(|(_, (&x, &y))| (f.sx(x), f.sy(y)))
            .collect()
    };
    let end = q.curve.y.last().copied().unwrap_or(0.0);
    out.push_str(&polyline(
        &[(f.sx(0.0), f.sy(0.0)), (f.sx(n), f.sy(end))],
        CONTROL,
        "stroke-dasharray=\"5 4\"",
    ));
    out.push_str(&polyline(
        &thin(&q.perfect),
        "#16a34a",
        "stroke-opacity=\"0.6\"",
    ));
    out.push_str(&polyline(&thin(&q.curve), PALETTE[0], ""));
    out.push_str("</svg>");
    out.push_str(&legend(&[
        (format!("score ({})", q.source), PALETTE[0]),
        ("perfect".into(), "#16a34a"),
        ("random".into(), CONTROL),
    ]));
    let _ = write!(
        out,
        "<p class=\"note\">Incremental conversions when targeting the top share of users by score \
         (scikit-uplift's Qini curve); Qini coefficient {}.</p></section>",
        q.coefficient.map_or("–".into(), |c| format!("{c:.3}"))
    );
}

const STYLE: &str = "\
*{box-sizing:border-box}body{margin:0;background:#f5f6f8;color:#111827;\
font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}\
main{max-width:960px;margin:0 auto;padding:32px 24px 48px}\
header h1{margin:2px 0 4px;font-size:28px;letter-spacing:-.01em}\
.kicker{text-transform:uppercase;font-size:12px;letter-spacing:.08em;color:#6b7280;font-weight:600}\
.meta{color:#4b5563;margin:0}\
section{background:#fff;border-radius:12px;padding:18px 20px;margin-top:18px;\
box-shadow:0 1px 2px rgba(0,0,0,.06),0 1px 8px rgba(0,0,0,.04)}\
section.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;\
background:none;box-shadow:none;padding:0}\
.card{background:#fff;border-radius:12px;padding:14px 16px;border-top:4px solid #d1d5db;\
box-shadow:0 1px 2px rgba(0,0,0,.06)}\
.card.good{border-top-color:#16a34a}.card.bad{border-top-color:#dc2626}\
.card .label{font-size:13px;color:#6b7280}.card .value{font-size:24px;font-weight:650;margin:2px 0}\
.card .sub{font-size:13px;color:#4b5563}\
h2{font-size:17px;margin:0 0 10px}\
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}\
th,td{padding:8px 10px;text-align:right;border-bottom:1px solid #eef0f3;white-space:nowrap}\
th:first-child,td:first-child{text-align:left}th{font-size:12px;color:#6b7280;font-weight:600}\
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:8px}\
.tag{font-size:11px;background:#f3f4f6;color:#4b5563;border-radius:6px;padding:1px 6px;margin-left:4px}\
svg{display:block;overflow:visible}.grid{stroke:#eef0f3}.zero{stroke:#9ca3af;stroke-dasharray:4 3}\
.tick{font-size:11px;fill:#6b7280}.row{font-size:13px;fill:#111827}.row.value{font-weight:600}\
.legend{display:flex;gap:18px;font-size:13px;color:#374151;margin-top:6px}\
.legend i{display:inline-block;width:14px;height:3px;margin-right:6px;vertical-align:middle}\
.note{font-size:13px;color:#6b7280;margin:8px 0 0}.empty{color:#6b7280}\
footer{font-size:12px;color:#6b7280;margin-top:20px}";

/// The whole page.
pub fn campaign_page(input: &PageInput<'_>) -> String {
    let r = input.report;
    let arms = arm_names(r);
    let control = r["control_arm"].as_str();
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · campaign report</title><style>{STYLE}</style></head><body><main>",
        escape(r["campaign"].as_str().unwrap_or("campaign"))
    );
    header(&mut out, r, input.generated);
    cards(&mut out, r);
    arm_table(&mut out, r, &arms, control);
    forest(&mut out, r, &arms, control);
    cumulative(&mut out, input, &arms, control);
    if let Some(q) = input.qini {
        qini(&mut out, q);
    }
    out.push_str(
        "<footer>pg_persona campaign report. Fixed-sample, sequential and Bayesian results \
         follow GrowthBook's statistics engine (gbstats 0.8.0); the unit of analysis is the \
         exposed user.</footer></main></body></html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_escapes_and_closes_every_element() {
        let report = json!({
            "campaign": "<script>alert(1)</script>", "alpha": 0.05, "control_arm": "control",
            "arms": [{"arm": "control", "users_exposed": 1000}, {"arm": "b&b", "users_exposed": 990}],
            "comparisons": [{"arm": "b&b", "control_arm": "control",
                "conversion_rate": {"effect": {"effect": 0.1, "ci": {"low": -0.05, "high": 0.25}, "significant": false}}}],
            "srm": {"mismatch": false, "p_value": 0.8}, "satisfaction": {}, "period": {},
        });
        let daily = vec![
            DailyArm {
                day: "2026-03-01".into(),
                arm: "control".into(),
                users: 500,
                converted: 20,
            },
            DailyArm {
                day: "2026-03-01".into(),
                arm: "b&b".into(),
                users: 490,
                converted: 25,
            },
            DailyArm {
                day: "2026-03-02".into(),
                arm: "control".into(),
                users: 1000,
                converted: 45,
            },
            DailyArm {
                day: "2026-03-02".into(),
                arm: "b&b".into(),
                users: 990,
                converted: 52,
            },
        ];
        let page = campaign_page(&PageInput {
            report: &report,
            daily: &daily,
            qini: None,
            generated: "now",
            tuning: 5000.0,
        });
        assert!(
            !page.contains("<script"),
            "no script, and user text is escaped"
        );
        assert!(page.contains("&lt;script&gt;") && page.contains("b&amp;b"));
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "nothing is fetched"
        );
        for tag in ["svg", "section", "table", "main", "header", "footer"] {
            let opened = page.matches(&format!("<{tag}")).count();
            let closed = page.matches(&format!("</{tag}>")).count();
            assert!(
                opened > 0 && opened == closed,
                "{tag}: {opened} opened, {closed} closed"
            );
        }
        assert!(page.contains("Cumulative lift with its sequential band"));
        assert!(!page.contains("NaN"));
    }

    #[test]
    fn html_ticks_are_round() {
        assert_eq!(ticks(0.0, 0.1), vec![0.0, 0.02, 0.04, 0.06, 0.08, 0.1]);
        let t = ticks(-0.031, 0.074);
        assert!(t.contains(&0.0) && t.len() <= 8);
    }
}
