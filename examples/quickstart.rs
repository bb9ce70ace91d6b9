use llm_span_layer::LlmSpanLayer;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

// Stand-ins for your own types: the span reads only the model name and the token counts.
struct Request {
    model: String,
    prompt_tokens: u32,
}

struct Completion {
    text: String,
    output_tokens: u32,
}

#[tracing::instrument(skip_all, fields(model = %req.model, tokens_in = req.prompt_tokens, tokens_out = Empty))]
async fn generate(req: Request) -> Result<Completion, std::io::Error> {
    // ... prefill ...
    tracing::info!(first_token = true);
    // ... decode ...
    let completion = Completion {
        text: "Paris is the capital of France.".to_owned(),
        output_tokens: 7,
    };
    tracing::Span::current().record("tokens_out", completion.output_tokens);
    Ok(completion)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _metrics = llm_span_prometheus::install()?; // http://127.0.0.1:9000/metrics; keep the handle
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer()) // your existing setup
        .with(LlmSpanLayer::new()) // the one added line
        .init();

    let request = Request {
        model: "llama-3.1-8b-instruct".to_owned(),
        prompt_tokens: 12,
    };
    let completion = generate(request).await?;
    println!("{}", completion.text);

    tokio::signal::ctrl_c().await?; // serve /metrics until Ctrl-C
    Ok(())
}
