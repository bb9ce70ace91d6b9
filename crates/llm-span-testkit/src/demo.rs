//! What the demo server and the load generator must agree on.

/// Tokens of a prompt, as the demo's fake tokenizer counts them: one per
/// whitespace-separated word. Client and server count the same way, so a load
/// generator knows exactly how many input tokens the server will report.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The demo's fake generator: the `index`-th output token for a prompt seed.
pub fn fake_token(seed: u64, index: u64) -> String {
    const WORDS: [&str; 16] = [
        "the", "model", "streams", "tokens", "while", "metrics", "count", "every", "one",
        "exactly", "and", "latency", "stays", "low", "under", "load",
    ];
    let word = WORDS[(mix(seed ^ index.wrapping_mul(0x9E37_79B9)) % WORDS.len() as u64) as usize];
    format!("{word} ")
}

/// How many tokens the fake generator produces for a prompt before it stops on its own
/// (`finish_reason = "stop"`), if `max_tokens` does not stop it first.
pub fn natural_length(prompt_seed: u64) -> u64 {
    8 + mix(prompt_seed) % 120
}

/// The demo's fake embedding of `text`: a unit vector of `dimensions` components
/// (`f32`, as the OpenAI API sends them), pseudo-random but seeded by the text's
/// [`stable_hash`], so the same text gets the same vector on every run and every server.
/// A token array is embedded as its ids written out, separated by spaces.
pub fn embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let mut rng = Rng::new(stable_hash(text));
    let raw: Vec<f64> = (0..dimensions).map(|_| 2.0 * rng.unit() - 1.0).collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    raw.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

/// A stable 64-bit hash of a text (FNV-1a then a finalizer), the same on every run.
pub fn stable_hash(text: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small seeded PRNG (SplitMix64): reproducible load without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_words() {
        assert_eq!(count_tokens("  a b\tc\n d "), 4);
        assert_eq!(count_tokens(""), 0);
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(fake_token(7, 3), fake_token(7, 3));
        assert_eq!(natural_length(42), natural_length(42));
        assert!((8..128).contains(&natural_length(stable_hash("hello"))));
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        assert_eq!(a.next_u64(), b.next_u64());
        assert!(a.below(10) < 10);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let v = embedding("hello world", 16);
        assert_eq!(v.len(), 16);
        assert_eq!(v, embedding("hello world", 16));
        assert_ne!(v, embedding("hello there", 16));
        let norm: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        assert!((norm - 1.0).abs() < 1e-6, "{norm}");
        assert!(embedding("x", 0).is_empty());
    }
}
