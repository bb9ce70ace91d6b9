//! No two distinct model names ever render as one series: generated names full of the
//! characters the text format escapes (or cannot show), through the layer and the
//! exporter's renderer and back through a parser, each come back as themselves under
//! their own series, or are refused, counted, and go to `__overflow__`.

use std::collections::BTreeMap;

use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::prom::Scrape;
use proptest::prelude::*;
use tracing_subscriber::prelude::*;

/// Characters the exposition escapes, control and format characters (Cc, Cf),
/// look-alikes and plain ones.
const ALPHABET: &[char] = &[
    'a', 'b', '3', ' ', '"', '\\', 'n', '\n', '\t', '\r', '{', '}', '=', ',', '#', 'é', '\u{7F}',
    '\u{85}', '\u{AD}', '\u{200B}', '\u{200D}', '\u{202E}', '\u{FEFF}', '\u{2028}',
];

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(ALPHABET), 1..5)
        .prop_map(|chars| chars.into_iter().collect())
}

/// The requests counted per rendered model name, and the anomalies counted.
fn render(names: &[String]) -> (BTreeMap<String, f64>, f64) {
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let layer = LlmSpanLayer::builder()
        .with_recorder(recorder)
        .build()
        .expect("layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for name in names {
            drop(tracing::info_span!(
                "generate",
                model = name.as_str(),
                tokens_in = 1u64,
                tokens_out = 1u64
            ));
        }
    });
    let scrape = Scrape::parse_or_panic(&handle.render());
    let mut requests = BTreeMap::new();
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.name == "llm_requests_total")
    {
        *requests
            .entry(sample.labels["model"].clone())
            .or_insert(0.0) += sample.value;
    }
    (requests, scrape.sum("llm_layer_anomalies_total", &[]))
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn distinct_names_give_distinct_series_or_a_counted_refusal(
        names in proptest::collection::vec(name(), 1..12)
    ) {
        let (requests, anomalies) = render(&names);
        let mut kept = 0.0;
        for (model, count) in &requests {
            if model == "__overflow__" {
                continue;
            }
            // A series holds exactly the requests of one input name, shown as it was.
            let sent = names.iter().filter(|n| *n == model).count() as f64;
            prop_assert_eq!(*count, sent, "{:?} of {:?}", model, names);
            kept += count;
        }
        let refused = requests.get("__overflow__").copied().unwrap_or(0.0);
        prop_assert_eq!(kept + refused, names.len() as f64);
        prop_assert_eq!(anomalies, refused, "each refusal is counted: {:?}", names);
    }
}
