//! The scale-out topology of `deploy/`, proven live on one machine: three replicas of the
//! demo server on two "hosts", one Prometheus agent per host remote-writing to
//! VictoriaMetrics, vmalert evaluating the shipped rules against it and Alertmanager
//! delivering to a webhook receiver inside this test; beside them a plain Prometheus
//! scraping the same replicas, to compare with. Also: every config of the topology
//! passes its checker, the Kubernetes `PrometheusRule` is exactly what
//! `scripts/gen-prometheusrule.sh` makes of the rule files, and Alertmanager routes,
//! groups and inhibits as `deploy/alertmanager/alertmanager.yml` says.
//!
//! Needs Debian's `prometheus`, `prometheus-alertmanager` and `victoria-metrics`. A test
//! whose tool is missing says so on stderr and passes, unless `LLM_SPAN_REQUIRE_TOOLS=1`
//! (as in `.ci/run`): then it fails naming the package (`llm_span_testkit::tools`).
//!
//! The running configs are the shipped files with only addresses, file paths, intervals
//! and one `for:` duration substituted, each substitution required to match exactly once
//! (see `topology::Topology::write_configs`); the rule expressions are the shipped ones.
//!
//! Every process is started here and stopped by PID when its handle drops; everything
//! listens on 127.0.0.1, on ports picked by binding port 0.
//!
//! The modules: `configs` derives the running configs from the shipped files and
//! `checkers` checks the shipped ones with their tools; `alertmanager` routes, groups and
//! inhibits alerts fed by hand to a `webhook`; `replicas` are the demo servers and their
//! load, `topology` starts them with the agents, the store, vmalert, Alertmanager and a
//! plain Prometheus, and `scenario` runs the live test on it, comparing the stores with
//! the clients' `totals`.

mod alertmanager;
mod checkers;
mod configs;
mod replicas;
mod scenario;
mod topology;
mod totals;
mod webhook;
