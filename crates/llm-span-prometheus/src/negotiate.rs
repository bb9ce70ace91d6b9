//! What a scraper asked for: the body's format (`Accept`) and encoding
//! (`Accept-Encoding`).

use crate::exposition::Format;

/// The lines of one header as one comma-separated list, as RFC 9110 combines them
/// (lines that are not visible ASCII are left out).
pub(crate) fn joined(lines: hyper::header::GetAll<'_, hyper::header::HeaderValue>) -> String {
    let lines: Vec<&str> = lines.iter().filter_map(|line| line.to_str().ok()).collect();
    lines.join(",")
}

/// The format an `Accept` header prefers: OpenMetrics 1.0 when it weighs
/// `application/openmetrics-text` (version 1.0.0 or none) or `application/*` above every
/// range the text format matches, else the text format 0.0.4. Ties, wildcards, missing and unreadable
/// headers give the text format, the one every scraper reads.
pub(crate) fn format(accept: Option<&str>) -> Format {
    let mut openmetrics: f32 = 0.0;
    let mut text: f32 = 0.0;
    for range in accept.unwrap_or("").split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0;
        let mut version = None;
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => {
                    q = value
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0)
                }
                "version" => version = Some(value.to_owned()),
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text"
                if matches!(version.as_deref(), None | Some("1.0.0")) =>
            {
                openmetrics = openmetrics.max(q)
            }
            "application/*" => openmetrics = openmetrics.max(q),
            "text/plain" if matches!(version.as_deref(), None | Some("0.0.4")) => {
                text = text.max(q)
            }
            "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if openmetrics > text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Whether `accept_encoding` admits gzip: listed with a weight above zero, or covered
/// by `*` and not refused by name. Anything unreadable counts as "no".
pub(crate) fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut gzip = None;
    let mut any = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let weight = weight(parts);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight);
        } else if coding == "*" {
            any = Some(weight);
        }
    }
    gzip.or(any).is_some_and(|w| w > 0.0)
}

/// The `q` weight of one list item's parameters: 1 when absent, 0 when unreadable.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for param in params {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("q") {
                return value
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .unwrap_or(0.0);
            }
        }
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_served_to_scrapers_that_prefer_it() {
        let openmetrics = [
            // Prometheus 2.42's default.
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0",
            "APPLICATION/OPENMETRICS-TEXT;VERSION=\"1.0.0\"",
            "text/plain;q=0.5, application/openmetrics-text;q=0.9",
            "application/openmetrics-text;version=1.0.0;charset=utf-8",
            "application/*",
            "text/plain;q=0.4,application/*;q=0.5",
        ];
        for accept in openmetrics {
            assert_eq!(format(Some(accept)), Format::OpenMetrics, "{accept}");
        }
        let text = [
            // curl, browsers, Prometheus asking for the text format only.
            "*/*",
            "text/plain;version=0.0.4",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5",
            // Equal weights: the text format.
            "application/openmetrics-text;q=0.5,text/plain;q=0.5",
            // A version we do not write.
            "application/openmetrics-text;version=0.0.1",
            "application/openmetrics-text;version=2.0.0",
            // Refused, unreadable, absent.
            "application/openmetrics-text;q=0",
            "application/openmetrics-text;q=abc",
            "application/json",
            "application/*;q=0.5,text/plain;q=0.5",
            "",
            ";;;,,,",
        ];
        for accept in text {
            assert_eq!(format(Some(accept)), Format::Text, "{accept}");
        }
        assert_eq!(format(None), Format::Text);
    }

    #[test]
    fn gzip_is_used_when_a_scraper_admits_it() {
        for yes in [
            "gzip",
            "GZIP",
            "gzip, deflate, br",
            "deflate, gzip;q=1.0, *;q=0.5",
            "identity;q=0.5, gzip;q=0.8",
            "*",
            "br, *;q=0.1",
            "x-gzip",
        ] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip;q=0.0, *",
            "*;q=0",
            "gzip;q=2",
            "gzip;q=abc",
            "gzipped",
        ] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }

    #[test]
    fn wildcards_count_for_the_text_format_and_other_text_versions_do_not() {
        let om = "application/openmetrics-text;version=1.0.0;q=0.5";
        for (accept, expected) in [
            (format!("{om},*/*;q=0.9"), Format::Text),
            (format!("{om},text/*;q=0.9"), Format::Text),
            (format!("{om},*/*;q=0.4"), Format::OpenMetrics),
            (
                format!("{om},text/plain;version=1.0.0;q=0.9"),
                Format::OpenMetrics,
            ),
            (format!("{om},text/plain;version=0.0.4;q=0.9"), Format::Text),
        ] {
            assert_eq!(format(Some(&accept)), expected, "{accept}");
        }
    }
}
