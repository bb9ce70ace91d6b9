//! Zero code for real frameworks: rig-core and genai call the demo server's OpenAI API
//! over HTTP on 127.0.0.1, and the only instrumentation in this process is
//! `registry().with(LlmSpanLayer::new())` and the exporter. The frameworks' own spans
//! (rig's `chat` and `embeddings`, genai's `genai.chat` and `genai.embeddings`) must
//! become metrics that say what each framework returned to its caller: requests by
//! status, input and output tokens, time to first token, finish reasons.
//!
//! Each test drives one framework against its own demo server, under model names of its
//! own, so the two tests share this process's recorder without sharing a series. The
//! demo server is the `inference_server` example (`cargo test --workspace` builds it;
//! alone: `cargo build --example inference_server` first).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use llm_span_layer::LlmSpanLayer;
use llm_span_prometheus::{ExporterBuilder, ExporterHandle};
use llm_span_testkit::demo::count_tokens;
use llm_span_testkit::process::{wait_for, DemoServer};
use llm_span_testkit::prom::{scrape, Scrape};
use tracing_subscriber::prelude::*;

/// This process's `/metrics`: the exporter and the layer, installed once for every test.
fn metrics_addr() -> SocketAddr {
    static EXPORTER: OnceLock<ExporterHandle> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = ExporterBuilder::new()
                .with_listen_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
                .install()
                .expect("install the exporter");
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(LlmSpanLayer::new()),
            )
            .expect("the only subscriber");
            exporter
        })
        .local_addr()
}

/// The demo server, its prefills never failing, serving `models` (fast ones).
fn demo(models: &[&str]) -> DemoServer {
    let specs: Vec<String> = models.iter().map(|m| format!("{m}:0.05:1:8")).collect();
    let mut args = vec!["--error-rate", "0"];
    for spec in &specs {
        args.extend(["--model", spec.as_str()]);
    }
    DemoServer::start(&args)
}

/// Scrapes this process's `/metrics` (off the async runtime's threads) until
/// `llm_requests_total` of `model` reaches `requests`: a span closes when its last clone
/// drops, which a framework's connection task may do a little after the call returned.
async fn scrape_when(model: &'static str, requests: f64) -> Scrape {
    let addr = metrics_addr();
    tokio::task::spawn_blocking(move || {
        let counted = wait_for(Duration::from_secs(10), || {
            let m = scrape(addr);
            (m.sum("llm_requests_total", &[("model", model)]) >= requests).then_some(m)
        });
        counted.unwrap_or_else(|| {
            let m = scrape(addr);
            for sample in &m.samples {
                if sample.labels.get("model").map(String::as_str) == Some(model) {
                    eprintln!("{} {:?} {}", sample.name, sample.labels, sample.value);
                }
            }
            m
        })
    })
    .await
    .expect("scrape")
}

/// Series `name` of `model` with `labels` besides it, 0 when absent.
fn value(m: &Scrape, name: &str, model: &str, labels: &[(&str, &str)]) -> u64 {
    let mut all = vec![("model", model)];
    all.extend_from_slice(labels);
    m.value(name, &all).unwrap_or(0.0) as u64
}

fn statuses(m: &Scrape, model: &str) -> (u64, u64, u64) {
    let status = |s| value(m, "llm_requests_total", model, &[("status", s)]);
    (status("ok"), status("error"), status("cancelled"))
}

fn tokens(m: &Scrape, model: &str) -> (u64, u64) {
    let kind = |t| value(m, "llm_tokens_total", model, &[("type", t)]);
    (kind("input"), kind("output"))
}

// ---------------------------------------------------------------------------------------
// rig-core

mod rig {
    use super::*;
    use rig_core::completion::{CompletionRequest, FinishReason};
    use rig_core::providers::openai::OpenAIConfig;
    use rig_core::streaming::{Item, StreamEvent};

    const CHAT: &str = "rig-chat";
    const EMBED: &str = "rig-embed";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rig_core_calls_become_exact_metrics() {
        metrics_addr();
        let server = demo(&[CHAT, EMBED]);
        let client = OpenAIConfig::new("test-key")
            .with_base_url(format!("http://{}/v1", server.api))
            .client();
        let chat = client.chat(CHAT);

        // Unary, cut by max_tokens.
        let prompt = "hello there from rig";
        let unary = chat
            .call(CompletionRequest::new(prompt).max_tokens(5))
            .await
            .expect("unary chat");
        assert_eq!(unary.usage.input_tokens, Some(count_tokens(prompt)));
        assert_eq!(unary.usage.output_tokens, Some(5));
        assert_eq!(unary.finish_reason(), Some(FinishReason::Length));

        // Streamed to its end: every text fragment, then the usage rig asked for.
        let prompt = "tell me a long story from rig";
        let mut stream = chat
            .stream(CompletionRequest::new(prompt))
            .expect("open the stream");
        let mut fragments = 0u64;
        while let Some(item) = stream.next().await {
            if let Item::Event(StreamEvent::Text { .. }) = item.expect("stream item") {
                fragments += 1;
            }
        }
        let streamed = stream.finish().await.expect("streamed chat");
        assert_eq!(streamed.usage.input_tokens, Some(count_tokens(prompt)));
        assert_eq!(streamed.usage.output_tokens, Some(fragments));
        assert_eq!(streamed.finish_reason(), Some(FinishReason::Stop));

        // An unknown model: the server's 404 is rig's error.
        let error = client
            .chat("no-such-model")
            .call(CompletionRequest::new("hi"))
            .await
            .expect_err("a 404");
        assert!(error.to_string().contains("404"), "{error}");

        // Abandoned after two fragments.
        let mut stream = chat
            .stream(CompletionRequest::new("abandon me after two, rig"))
            .expect("open the stream");
        let mut taken = 0;
        while taken < 2 {
            let item = stream.next().await.expect("an item").expect("no error");
            if let Item::Event(StreamEvent::Text { .. }) = item {
                taken += 1;
            }
        }
        drop(stream);

        // Embeddings of two texts.
        let texts = vec!["the quick brown fox".to_owned(), "jumps".to_owned()];
        let embedded = client
            .embedding(EMBED, None)
            .call(texts)
            .await
            .expect("embeddings");
        assert_eq!(embedded.embeddings.len(), 2);
        assert_eq!(embedded.usage.input_tokens, Some(5));

        let m = scrape_when(CHAT, 3.0).await;
        let m_embed = scrape_when(EMBED, 1.0).await;
        let m_unknown = scrape_when("no-such-model", 1.0).await;
        let input =
            unary.usage.input_tokens.unwrap_or(0) + streamed.usage.input_tokens.unwrap_or(0);
        let output = 5 + fragments;
        // rig records usage on success only: the abandoned stream has no tokens.
        assert_eq!(tokens(&m, CHAT), (input, output), "tokens");
        assert_eq!(statuses(&m, CHAT), (2, 0, 1), "ok, error, cancelled");
        // rig records no first-chunk time: no time to first token either.
        assert_eq!(value(&m, "llm_ttft_seconds_count", CHAT, &[]), 0, "ttft");
        // rig records no finish reason.
        assert_eq!(m.sum("llm_finish_reasons_total", &[("model", CHAT)]), 0.0);
        // rig records nothing on failure: to the layer, a request that ended without an
        // answer, as if its caller had given up.
        assert_eq!(statuses(&m_unknown, "no-such-model"), (0, 0, 1), "the 404");
        assert_eq!(tokens(&m_embed, EMBED), (5, 0), "embeddings tokens");
        assert_eq!(value(&m_embed, "llm_ttft_seconds_count", EMBED, &[]), 0);
        assert_eq!(statuses(&m_embed, EMBED), (1, 0, 0), "embeddings status");
        drop(server);
    }
}

// ---------------------------------------------------------------------------------------
// genai

mod genai_client {
    use super::*;
    use genai::adapter::AdapterKind;
    use genai::chat::{ChatMessage, ChatOptions, ChatRequest, ChatStreamEvent, StopReason};
    use genai::resolver::{AuthData, Endpoint, ServiceTargetResolver};
    use genai::{Client, ModelIden, ServiceTarget};

    const CHAT: &str = "genai-chat";
    const EMBED: &str = "genai-embed";

    /// A genai client that sends every model to the demo server as OpenAI.
    fn client(api: SocketAddr) -> Client {
        let endpoint = format!("http://{api}/v1/");
        let resolver = ServiceTargetResolver::from_resolver_fn(
            move |target: ServiceTarget| -> Result<ServiceTarget, genai::resolver::Error> {
                Ok(ServiceTarget {
                    endpoint: Endpoint::from_owned(endpoint.clone()),
                    auth: AuthData::from_single("test-key"),
                    model: ModelIden::new(AdapterKind::OpenAI, target.model.model_name),
                })
            },
        );
        Client::builder()
            .with_service_target_resolver(resolver)
            .build()
            .expect("genai client")
    }

    fn user(text: &str) -> ChatRequest {
        ChatRequest::new(vec![ChatMessage::user(text)])
    }

    /// What genai returned to its caller, summed up.
    struct Returned {
        input_tokens: u64,
        output_tokens: u64,
        /// Seconds from asking for each stream to seeing its first chunk, both streams.
        first_chunk_seconds: f64,
    }

    /// Drives genai through every case against a demo server serving `chat` and `embed`:
    /// a unary call, a stream read to its end, a model the server does not serve
    /// (`unknown`), a stream abandoned after two chunks, and embeddings of two texts.
    async fn drive(
        chat: &'static str,
        embed: &'static str,
        unknown: &'static str,
    ) -> (DemoServer, Returned) {
        metrics_addr();
        let server = demo(&[chat, embed]);
        let client = client(server.api);

        // Unary, cut by max_tokens.
        let prompt = "hello there from genai";
        let options = ChatOptions::default().with_max_tokens(5);
        let unary = client
            .exec_chat(chat, user(prompt), Some(&options))
            .await
            .expect("unary chat");
        assert_eq!(unary.usage.prompt_tokens, Some(count_tokens(prompt) as i32));
        assert_eq!(unary.usage.completion_tokens, Some(5));
        assert!(
            matches!(&unary.stop_reason, Some(StopReason::MaxTokens(r)) if r == "length"),
            "{:?}",
            unary.stop_reason
        );

        // Streamed to its end, with the usage chunk.
        let prompt = "tell me a long story from genai";
        let options = ChatOptions::default().with_capture_usage(true);
        let asked = Instant::now();
        let mut stream = client
            .exec_chat_stream(chat, user(prompt), Some(&options))
            .await
            .expect("open the stream")
            .stream;
        let mut chunks = 0u64;
        let mut end = None;
        let mut first_chunk_seconds = 0.0;
        while let Some(event) = stream.next().await {
            match event.expect("stream event") {
                ChatStreamEvent::Chunk(_) => {
                    if chunks == 0 {
                        first_chunk_seconds += asked.elapsed().as_secs_f64();
                    }
                    chunks += 1;
                }
                ChatStreamEvent::End(e) => end = Some(e),
                _ => {}
            }
        }
        // genai's span lives as long as its stream.
        drop(stream);
        let end = end.expect("an end event");
        let usage = end.captured_usage.expect("captured usage");
        assert_eq!(usage.prompt_tokens, Some(count_tokens(prompt) as i32));
        assert_eq!(usage.completion_tokens, Some(chunks as i32));
        assert!(
            matches!(&end.captured_stop_reason, Some(StopReason::Completed(r)) if r == "stop"),
            "{:?}",
            end.captured_stop_reason
        );

        // An unknown model: the server's 404 is genai's error.
        let error = client
            .exec_chat(unknown, user("hi"), None)
            .await
            .expect_err("a 404");
        assert!(error.to_string().contains("404"), "{error}");

        // Abandoned after two chunks.
        let asked = Instant::now();
        let mut stream = client
            .exec_chat_stream(chat, user("abandon me after two, genai"), Some(&options))
            .await
            .expect("open the stream")
            .stream;
        let mut taken = 0;
        while taken < 2 {
            if let ChatStreamEvent::Chunk(_) = stream.next().await.expect("an event").expect("ok") {
                if taken == 0 {
                    first_chunk_seconds += asked.elapsed().as_secs_f64();
                }
                taken += 1;
            }
        }
        drop(stream);

        // Embeddings of two texts.
        let texts = vec!["the quick brown fox".to_owned(), "jumps".to_owned()];
        let embedded = client
            .embed_batch(embed, texts, None)
            .await
            .expect("embeddings");
        assert_eq!(embedded.embeddings.len(), 2);
        assert_eq!(embedded.usage.prompt_tokens, Some(5));

        let tokens = |n: Option<i32>| u64::from(n.unwrap_or(0).unsigned_abs());
        let returned = Returned {
            // Usage comes at the end: the abandoned stream has none.
            input_tokens: tokens(unary.usage.prompt_tokens) + tokens(usage.prompt_tokens),
            output_tokens: tokens(unary.usage.completion_tokens) + chunks,
            first_chunk_seconds,
        };
        (server, returned)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn genai_calls_become_exact_metrics() {
        const UNKNOWN: &str = "no-such-model-genai";
        let (_server, returned) = drive(CHAT, EMBED, UNKNOWN).await;
        let m = scrape_when(CHAT, 3.0).await;
        let m_embed = scrape_when(EMBED, 1.0).await;
        let m_unknown = scrape_when(UNKNOWN, 1.0).await;
        assert_eq!(
            tokens(&m, CHAT),
            (returned.input_tokens, returned.output_tokens),
            "tokens"
        );
        assert_eq!(statuses(&m, CHAT), (2, 0, 1), "ok, error, cancelled");
        // gen_ai.response.finish_reasons is a JSON array (`["length"]`).
        let reason = |r| value(&m, "llm_finish_reasons_total", CHAT, &[("reason", r)]);
        assert_eq!((reason("length"), reason("stop")), (1, 1), "finish reasons");
        // genai marks a failure (otel.status_code = "error", error.type).
        assert_eq!(statuses(&m_unknown, UNKNOWN), (0, 1, 0), "the 404");
        assert_eq!(tokens(&m_embed, EMBED), (5, 0), "embeddings tokens");
        assert_eq!(value(&m_embed, "llm_ttft_seconds_count", EMBED, &[]), 0);
    }

    /// The same calls: both streams recorded `gen_ai.response.time_to_first_chunk` (the
    /// abandoned one after its first chunk too), the unary call none; the embeddings
    /// request, answered, is `ok`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn genai_first_chunks_and_embeddings_count_as_the_layer_rules_say() {
        const CHAT: &str = "genai-rules-chat";
        const EMBED: &str = "genai-rules-embed";
        let (_server, returned) = drive(CHAT, EMBED, "no-such-model-genai-rules").await;
        let m = scrape_when(CHAT, 3.0).await;
        let m_embed = scrape_when(EMBED, 1.0).await;
        assert_eq!(value(&m, "llm_ttft_seconds_count", CHAT, &[]), 2, "ttft");
        // Decode speed follows the status rules: the stream read to its end (`ok`) has
        // one, the abandoned one (`cancelled`) none, the unary call no first token.
        for decode in [
            "llm_tokens_per_second_count",
            "llm_time_per_output_token_seconds_count",
        ] {
            assert_eq!(value(&m, decode, CHAT, &[]), 1, "{decode}");
        }
        // The layer's times lie within the caller's: from the span's creation, inside the
        // call, to genai's record of the first chunk, just before the caller sees it. They
        // agree to within a few milliseconds (the sum of both streams, to 10 ms).
        let ttft = m
            .value("llm_ttft_seconds_sum", &[("model", CHAT)])
            .expect("a TTFT sum");
        let caller = returned.first_chunk_seconds;
        assert!(
            ttft <= caller && caller - ttft <= 0.010,
            "the layer's TTFT {ttft} s, the caller's {caller} s"
        );
        assert_eq!(statuses(&m_embed, EMBED), (1, 0, 0), "embeddings status");
    }
}
