//! The live run on the topology: traffic on two models, the slow one paged through
//! vmalert and Alertmanager and resolved, exact counters and the same quantiles in both
//! stores, an outage of the store and of an agent, and a dead replica.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use llm_span_testkit::process::{unix_time, wait_for, Load};
use llm_span_testkit::prometheus::{encode, Api};
use llm_span_testkit::{http, shipped};
use serde_json::Value;

use crate::configs::alert_expr;
use crate::replicas::load;
use crate::topology::{Tools, Topology};
use crate::totals::Totals;
use crate::webhook::Notification;

/// Raw samples of every series matching `selector` between two times, from
/// VictoriaMetrics' export API: `(labels, timestamps in seconds)`.
fn export(api: &Api, selector: &str, start: f64, end: f64) -> Vec<(Value, Vec<f64>)> {
    let path = format!(
        "/api/v1/export?match%5B%5D={}&start={start:.3}&end={end:.3}",
        encode(selector)
    );
    let response = http::get(api.addr, &path);
    assert_eq!(response.status, 200, "{}", response.body);
    response
        .body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("export JSON");
            let mut times: Vec<f64> = v["timestamps"]
                .as_array()
                .expect("timestamps")
                .iter()
                .filter_map(Value::as_f64)
                .map(|ms| ms / 1e3)
                .collect();
            times.sort_by(f64::total_cmp);
            (v["metric"].clone(), times)
        })
        .collect()
}

fn largest_gap(times: &[f64], start: f64, end: f64) -> f64 {
    let mut points = vec![start];
    points.extend(times.iter().copied().filter(|t| *t > start && *t < end));
    points.push(end);
    points.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// The notifications for HighTTFT of `model` with `status`.
/// Which bucket of a histogram with these upper bounds a value falls in: how many bounds lie
/// below it (a value on a bound belongs to that bound's bucket, as `le` says).
fn bucket_index(bounds: &[f64], value: f64) -> usize {
    bounds.iter().filter(|&&bound| bound < value).count()
}

fn high_ttft(n: &Notification, model: &str, status: &str) -> bool {
    n.path == "/pager"
        && n.body["status"] == status
        && n.alerts()
            .iter()
            .any(|(a, m, s)| a == "HighTTFT" && m == model && s == status)
}

#[test]
fn three_replicas_two_agents_one_store_one_pager() {
    let Some(tools) = Tools::find() else {
        return;
    };
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let mut t = Topology::start(&tools);
    let (central, local) = (t.central(), t.local());
    phase("topology up");

    // Both stores see all three replicas (through the agents' basic auth, for the central one).
    for api in [&central, &local] {
        let up = wait_for(Duration::from_secs(30), || {
            let up = api.values(r#"up{job="llm"}"#, &["instance"]);
            (up.len() == 3 && up.values().all(|v| *v == 1.0)).then_some(())
        });
        assert!(
            up.is_some(),
            "{}: {:?}",
            api.name,
            api.values("up", &["instance", "job"])
        );
    }
    let instances = central.values(r#"up{job="llm"}"#, &["host", "instance"]);
    assert_eq!(
        instances
            .keys()
            .filter(|k| k[0] == "host-a" && k[1].starts_with("host-a:"))
            .count(),
        2,
        "{instances:?}"
    );
    assert_eq!(
        instances
            .keys()
            .filter(|k| k[0] == "host-b" && k[1].starts_with("host-b:"))
            .count(),
        1,
        "{instances:?}"
    );
    phase("all replicas scraped by both stores");

    // 1. Traffic on both models, both fast. First three requests per model and replica,
    //    and their scrape: Prometheus and VictoriaMetrics alike take a series' first
    //    sample as its start, so what a new series counted before its first scrape is in
    //    the totals but in no rate or increase (HighTTFT's traffic guard among them).
    let mut totals = Totals::default();
    for model in ["fast", "slow"] {
        let spec = Load {
            concurrency: 1,
            ..load(1, 3)
        };
        t.load_all(&mut totals, spec, &["--models", model]);
    }
    for api in [&central, &local] {
        let born = wait_for(Duration::from_secs(30), || {
            (api.scalar("count(llm_ttft_seconds_count)") == Some(6.0)).then_some(())
        });
        assert!(
            born.is_some(),
            "{}: no TTFT series for every model and replica",
            api.name
        );
    }
    t.load_all(&mut totals, load(2, 60), &[]);
    phase("warm-up load done");

    // 2. The slow model slows down: prefill at 30 ms a token puts many first tokens
    //    above 2 s. More than 1 % of its first tokens in the window are enough for p99.
    t.set_speed("slow", 30.0, 1.0);
    let slow_ttfts = (0..3)
        .find_map(|round| {
            let spec = Load {
                concurrency: 5,
                ..load(3 + round, 5)
            };
            t.load_all(&mut totals, spec, &["--models", "slow"]);
            totals.wait_until_equal(&central, Duration::from_secs(30), &t.replicas);
            let over = central.scalar(concat!(
                r#"sum(llm_ttft_seconds_count{model="slow"})"#,
                r#" - sum(llm_ttft_seconds_bucket{model="slow",le="2"})"#
            ))?;
            (over >= 3.0).then_some(over)
        })
        .expect("slow first tokens above 2 s");
    phase(&format!(
        "{slow_ttfts} slow first tokens above 2 s, central counters exact"
    ));

    // 3. HighTTFT reaches the pager through vmalert and Alertmanager.
    let firing = t
        .webhook
        .wait(Duration::from_secs(90), |n| high_ttft(n, "slow", "firing"))
        .unwrap_or_else(|| panic!("no HighTTFT page: {:#?}", t.webhook.received()));
    assert_eq!(firing["receiver"], "llm-pager");
    let alert = &firing["alerts"][0]["labels"];
    assert_eq!(alert["severity"], "page", "{alert}");
    assert_eq!(firing["groupLabels"]["model"], "slow", "{}", firing.body);
    assert_eq!(
        firing["groupLabels"]["alertname"], "HighTTFT",
        "{}",
        firing.body
    );
    let p99 = |api: &Api| api.values("model:llm_ttft_seconds:p99_5m", &["model"]);
    let (central_p99, local_p99) = (p99(&central), p99(&local));
    phase(&format!(
        "HighTTFT{{model=\"slow\"}} paged; recorded p99 TTFT: \
         vmalert {central_p99:?}, prometheus {local_p99:?}"
    ));
    // Both engines put each model on the same side of the threshold, and record nearly
    // the same value: the same rule over the same samples, but evaluated at two moments, and
    // MetricsQL's rate() does not extrapolate to the window's edges as PromQL's does. So the
    // two interpolate within one bucket, or in neighbouring ones when the 99th rank sits near
    // a bound: a relative margin is no measure of that (a fast model's p99 of 0.0219 against
    // 0.0188 is the same bucket, 0.01 to 0.025). (The buckets behind both are compared
    // exactly below.)
    let get =
        |p99: &BTreeMap<Vec<String>, f64>, model: &str| p99.get(&vec![model.to_owned()]).copied();
    for p99 in [&central_p99, &local_p99] {
        assert!(
            get(p99, "slow").is_some_and(|v| v > 2.0),
            "vmalert {central_p99:?}, prometheus {local_p99:?}"
        );
        assert!(
            get(p99, "fast").is_some_and(|v| v < 2.0),
            "vmalert {central_p99:?}, prometheus {local_p99:?}"
        );
    }
    let bounds: Vec<f64> = central
        .values("sum by (le) (llm_ttft_seconds_bucket)", &["le"])
        .into_keys()
        .filter_map(|le| le[0].parse().ok())
        .collect();
    for (model, central) in &central_p99 {
        let local = local_p99[model];
        let (central_bucket, local_bucket) = (
            bucket_index(&bounds, *central),
            bucket_index(&bounds, local),
        );
        assert!(
            central_bucket.abs_diff(local_bucket) <= 1,
            "{model:?}: vmalert recorded p99 {central} (bucket {central_bucket}), \
             prometheus {local} (bucket {local_bucket}) of {bounds:?}"
        );
    }

    // 4. The slow model recovers; enough fast first tokens push it back under 1 %.
    t.set_speed("slow", 0.05, 1.0);
    let needed = (100.0 * slow_ttfts) as u64 + 30;
    t.load_all(
        &mut totals,
        load(6, needed.div_ceil(3)),
        &["--models", "slow"],
    );
    phase(&format!("recovery load done ({needed} requests)"));
    let resolved = t
        .webhook
        .wait(Duration::from_secs(90), |n| {
            high_ttft(n, "slow", "resolved")
        })
        .unwrap_or_else(|| panic!("no resolved HighTTFT: {:#?}", t.webhook.received()));
    assert_eq!(resolved["receiver"], "llm-pager");
    phase("resolved notification received");

    // 5. Exact counters in both stores; every recording rule's series in the central one;
    //    the same buckets, so the same quantiles, centrally and locally.
    totals.wait_until_equal(&central, Duration::from_secs(30), &t.replicas);
    totals.wait_until_equal(&local, Duration::from_secs(30), &t.replicas);
    // Among them streams the clients walked away from, counted to the token received.
    assert!(totals.1 > 0, "no client aborted a stream: {totals:?}");
    let recording = shipped::read("deploy/prometheus/rules/llm-recording.yml");
    let records: Vec<&str> = recording
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .collect();
    assert!(records.len() >= 15, "{records:?}");
    for record in &records {
        let found = wait_for(Duration::from_secs(10), || {
            (!central.query(record).is_empty()).then_some(())
        });
        assert!(found.is_some(), "no {record} in the central store");
    }
    for metric in ["llm_ttft_seconds", "llm_e2e_latency_seconds"] {
        let buckets = format!("sum by (model, le) ({metric}_bucket)");
        let same = wait_for(Duration::from_secs(15), || {
            let c = central.values(&buckets, &["model", "le"]);
            (c == local.values(&buckets, &["model", "le"])).then_some(c)
        })
        .unwrap_or_else(|| panic!("{metric} buckets differ"));
        assert!(same.len() >= 40, "{same:?}");
        for q in [0.5, 0.9, 0.99] {
            let query = format!("histogram_quantile({q}, sum by (le, model) ({metric}_bucket))");
            let (c, l) = (
                central.values(&query, &["model"]),
                local.values(&query, &["model"]),
            );
            assert_eq!(c.len(), 2, "{query}: {c:?}");
            for (model, value) in &c {
                let other = l[model];
                assert!(
                    (value - other).abs() <= 1e-9 * value.abs().max(1.0),
                    "{query} {model:?}: central {value}, prometheus {other}"
                );
            }
        }
    }
    phase(&format!(
        "counters exact in both stores ({} aborted streams); {} recording series \
         centrally; quantiles agree",
        totals.1,
        records.len()
    ));

    // 6. Host B's agent crashes (SIGKILL) and at the same moment the central store stops
    //    (SIGTERM); the load goes on against every replica. Then both come back, the
    //    agent on its old write-ahead log.
    let outage_start = unix_time().as_secs_f64();
    t.agents[1].kill();
    t.victoria.stop();
    t.load_all(&mut totals, load(7, 40), &[]);
    std::thread::sleep(Duration::from_secs_f64(
        (outage_start + 10.0 - unix_time().as_secs_f64()).max(0.0),
    ));
    let outage_end = unix_time().as_secs_f64();
    t.victoria.start();
    t.agents[1].restart();
    phase(&format!(
        "central store and host-b's agent back after {:.1} s",
        outage_end - outage_start
    ));
    // No increment is lost: the counters are cumulative, and the first scrape of the
    // restarted agent carries everything counted while it was dead.
    totals.wait_until_equal(&central, Duration::from_secs(45), &t.replicas);
    assert_eq!(
        central.scalar("sum(resets(llm_requests_total[15m]))"),
        Some(0.0),
        "a counter went backwards"
    );
    // Host A's agent kept scraping into its write-ahead log while the store was down and
    // delivered every sample of the outage once it was back.
    let delivered = wait_for(Duration::from_secs(20), || {
        let series = export(
            &central,
            r#"up{job="llm",host="host-a"}"#,
            outage_start,
            outage_end,
        );
        (series.len() == 2
            && series
                .iter()
                .all(|(_, times)| largest_gap(times, outage_start, outage_end) <= 2.5))
        .then_some(series)
    });
    let series = export(
        &central,
        r#"up{job="llm",host="host-a"}"#,
        outage_start,
        outage_end,
    );
    assert!(
        delivered.is_some(),
        "host-a's scrapes during the outage are missing: {:?}",
        series
            .iter()
            .map(|(m, t)| (
                m["instance"].clone(),
                t.len(),
                largest_gap(t, outage_start, outage_end)
            ))
            .collect::<Vec<_>>()
    );
    // Host B's agent scraped nothing while it was dead: a gap in its series, but no lost
    // increment. (Prometheus 2.42 does not re-send, after a restart, what it had not sent
    // before a crash: remote write resumes at the restart, prometheus/prometheus#8809.)
    let host_b = export(
        &central,
        r#"up{job="llm",host="host-b"}"#,
        outage_start - 10.0,
        unix_time().as_secs_f64(),
    );
    assert_eq!(host_b.len(), 1, "{host_b:?}");
    let times = &host_b[0].1;
    let last_before = times
        .iter()
        .copied()
        .filter(|t| *t < outage_start)
        .fold(f64::NAN, f64::max);
    let first_after = times.iter().copied().find(|t| *t > outage_start);
    let first_after = first_after.expect("host-b's agent scrapes again after its restart");
    phase(&format!(
        "outage: host-a delivered every scrape late; host-b's samples stop {:.1} s before \
         the crash, resume {:.1} s after the restart; counters exact",
        outage_start - last_before,
        first_after - outage_end
    ));

    // 7. A replica dies: the shipped LlmMetricsDown expression, run as MetricsQL by the
    //    store and as PromQL by the plain Prometheus, names the same instance once per
    //    model it served (its `for:` of 2 minutes keeps it from paging in this test).
    let dead = t.replicas.pop().expect("replica on host-b");
    let dead_port = dead.metrics.port().to_string();
    drop(dead);
    let expr = alert_expr("LlmMetricsDown");
    for api in [&central, &local] {
        let down = wait_for(Duration::from_secs(30), || {
            let down = api.values(&expr, &["job", "instance", "model"]);
            (down.len() == 2).then_some(down)
        })
        .unwrap_or_else(|| panic!("{}: {expr} finds no down instance", api.name));
        let keys: Vec<&Vec<String>> = down.keys().collect();
        for (key, model) in keys.iter().zip(["fast", "slow"]) {
            assert_eq!(key[0], "llm", "{down:?}");
            assert!(key[1].ends_with(&format!(":{dead_port}")), "{down:?}");
            assert_eq!(key[2], model, "{down:?}");
        }
    }
    phase("a dead replica: LlmMetricsDown's expression agrees in both stores");

    // Only the slow model paged, and only HighTTFT; the fast model never alerted.
    let received = t.webhook.received();
    for n in &received {
        for (alertname, model, _) in n.alerts() {
            assert!(model != "fast", "the fast model alerted: {:#?}", n.body);
            if n.path == "/pager" {
                assert_eq!(
                    (alertname.as_str(), model.as_str()),
                    ("HighTTFT", "slow"),
                    "{:#?}",
                    n.body
                );
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "scale-out end-to-end took {elapsed:?} ({} notifications)",
        received.len()
    );
    assert!(elapsed < Duration::from_secs(240), "took {elapsed:?}");
}
