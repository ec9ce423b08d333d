//! Prometheus text exposition (format 0.0.4), written to files for
//! node_exporter's textfile collector or printed by `mhr status`. Pure
//! rendering.

use std::fmt::Write as _;

/// A metric family: its samples share a name, help text and type.
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    samples: Vec<(Vec<(String, String)>, f64)>,
}

/// Collects samples and renders them grouped by metric name, each name's
/// `# HELP` and `# TYPE` once, as the format requires.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, "gauge", labels, value);
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, "counter", labels, value);
    }

    fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(f) => f.samples.push((labels, value)),
            None => self.families.push(Family {
                name: name.into(),
                help: help.into(),
                kind,
                samples: vec![(labels, value)],
            }),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (labels, value) in &f.samples {
                out.push_str(&f.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        out
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_name_and_escapes_labels() {
        let mut e = Exposition::default();
        e.gauge("x_leases", "Leases held.", &[("family", "inet")], 3.0);
        e.counter("x_refusals_total", "Refusals.", &[], 0.0);
        e.gauge("x_leases", "Leases held.", &[("family", "in\"et6")], 0.5);
        let text = e.render();
        assert_eq!(
            text,
            "# HELP x_leases Leases held.\n# TYPE x_leases gauge\n\
             x_leases{family=\"inet\"} 3\nx_leases{family=\"in\\\"et6\"} 0.5\n\
             # HELP x_refusals_total Refusals.\n# TYPE x_refusals_total counter\n\
             x_refusals_total 0\n"
        );
    }
}
