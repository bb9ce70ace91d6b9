//! Per-model token prices and exact cost arithmetic.
//!
//! Prices are kept as whole picodollars (1e-12 USD) per token, which is exactly
//! "USD per million tokens" with six decimals. Costs are integers of picodollars, so
//! sums over any requests, series or replicas are exact.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Highest accepted price: one million USD per million tokens.
const MAX_USD_PER_MILLION: f64 = 1_000_000.0;
const MAX_DECIMALS: usize = 6;

/// Prices of one model, in USD per million tokens.
///
/// ```
/// use llm_span_layer::ModelPrice;
/// let price = ModelPrice::usd_per_million_tokens(3.0, 15.0)?.with_cached_input(0.30)?;
/// # Ok::<(), llm_span_layer::PriceError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    input: u64,
    cached_input: u64,
    output: u64,
}

impl ModelPrice {
    /// Input and output prices in USD per million tokens. Cached input tokens cost
    /// the input price unless [`ModelPrice::with_cached_input`] says otherwise.
    ///
    /// Prices must be finite, non-negative, at most 1,000,000 and have at most six
    /// decimals (one picodollar per token).
    pub fn usd_per_million_tokens(input: f64, output: f64) -> Result<Self, PriceError> {
        let input = pico_per_token(input, "input")?;
        let output = pico_per_token(output, "output")?;
        Ok(Self {
            input,
            cached_input: input,
            output,
        })
    }

    /// The price of input tokens served from the prefix cache, in USD per million tokens.
    pub fn with_cached_input(mut self, usd_per_million: f64) -> Result<Self, PriceError> {
        self.cached_input = pico_per_token(usd_per_million, "cached_input")?;
        Ok(self)
    }

    /// Picodollars per output token.
    pub(crate) fn output_pico(&self) -> u64 {
        self.output
    }

    /// Cost in picodollars. Cached tokens are a subset of input tokens.
    pub(crate) fn cost_pico(&self, input: u64, cached: u64, output: u64) -> u128 {
        let cached = cached.min(input);
        u128::from(input - cached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(output) * u128::from(self.output)
    }
}

fn pico_per_token(usd_per_million: f64, field: &'static str) -> Result<u64, PriceError> {
    let invalid = |reason: &'static str| PriceError::InvalidPrice {
        field,
        value: usd_per_million.to_string(),
        reason,
    };
    if !usd_per_million.is_finite() || usd_per_million < 0.0 {
        return Err(invalid("must be a finite, non-negative number"));
    }
    if usd_per_million > MAX_USD_PER_MILLION {
        return Err(invalid("must be at most 1000000 USD per million tokens"));
    }
    let scaled = usd_per_million * 1e6;
    let rounded = scaled.round();
    // f64 cannot hold most decimals exactly; anything within rounding noise of a whole
    // picodollar is that picodollar, anything further has more than six decimals. Up to
    // 1e12 picodollars that noise is below 1e-3 picodollar.
    // A price that is not zero never rounds to zero (1e-10 is within the noise of 0).
    if (scaled - rounded).abs() > 1e-3 || (rounded == 0.0 && usd_per_million != 0.0) {
        return Err(invalid("has more than 6 decimals"));
    }
    Ok(rounded as u64)
}

fn parse_decimal(text: &str, field: &'static str, line: usize) -> Result<u64, PriceError> {
    let err = |reason: &'static str| PriceError::Parse {
        line,
        message: format!("{field} price {text:?} {reason}"),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(err("is not a number"));
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("is not a non-negative decimal number"));
    }
    if fraction.len() > MAX_DECIMALS {
        return Err(err("has more than 6 decimals"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err("is too large"))?
    };
    if whole as f64 > MAX_USD_PER_MILLION {
        return Err(err("is above 1000000 USD per million tokens"));
    }
    let mut pico = whole * 1_000_000;
    let mut scale = 100_000;
    for digit in fraction.bytes() {
        pico += u64::from(digit - b'0') * scale;
        scale /= 10;
    }
    if pico > (MAX_USD_PER_MILLION as u64) * 1_000_000 {
        return Err(err("is above 1000000 USD per million tokens"));
    }
    Ok(pico)
}

/// Prices per model name.
///
/// Built in code with [`PriceTable::with_model`] or read from a text file with one
/// model per line (`#` starts a comment, prices in USD per million tokens, `-` for
/// "same as input"):
///
/// ```text
/// # model               input   cached_input  output
/// llama-3.1-8b-instruct 0.20    0.05          0.60
/// mistral-7b            0.15    -             0.45
/// ```
///
/// ```
/// use llm_span_layer::PriceTable;
/// let prices = PriceTable::parse("mistral-7b 0.15 - 0.45\n")?;
/// assert_eq!(prices.len(), 1);
/// # Ok::<(), llm_span_layer::PriceError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    prices: HashMap<Box<str>, ModelPrice>,
}

impl PriceTable {
    /// An empty table: every model is unpriced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the price of `model`, replacing an earlier one.
    pub fn with_model(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.prices.insert(model.into().into_boxed_str(), price);
        self
    }

    /// Parses the text format shown above.
    pub fn parse(text: &str) -> Result<Self, PriceError> {
        let mut table = PriceTable::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let columns: Vec<&str> = content.split_whitespace().collect();
            let [model, input, cached, output] = columns[..] else {
                return Err(PriceError::Parse {
                    line,
                    message: format!(
                        "expected 4 columns (model input cached_input output), found {}",
                        columns.len()
                    ),
                });
            };
            let input = parse_decimal(input, "input", line)?;
            let cached_input = if cached == "-" {
                input
            } else {
                parse_decimal(cached, "cached_input", line)?
            };
            let output = parse_decimal(output, "output", line)?;
            if table.prices.contains_key(model) {
                return Err(PriceError::Parse {
                    line,
                    message: format!("model {model:?} is listed twice"),
                });
            }
            table.prices.insert(
                model.into(),
                ModelPrice {
                    input,
                    cached_input,
                    output,
                },
            );
        }
        Ok(table)
    }

    /// Reads and parses a price file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PriceError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Io {
            path: path.display().to_string(),
            message: source.to_string(),
        })?;
        Self::parse(&text)
    }

    /// The price of `model`, if it has one.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.prices.get(model)
    }

    /// Number of priced models.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether no model has a price.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

/// A price that cannot be used, or a price file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriceError {
    /// A price given in code is out of range or too precise.
    InvalidPrice {
        /// `input`, `cached_input` or `output`.
        field: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A line of a price file is malformed.
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The price file could not be read.
    Io {
        /// The path as given.
        path: String,
        /// The operating system's error.
        message: String,
    },
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceError::InvalidPrice {
                field,
                value,
                reason,
            } => write!(f, "{field} price {value} {reason}"),
            PriceError::Parse { line, message } => write!(f, "price file line {line}: {message}"),
            PriceError::Io { path, message } => {
                write!(f, "cannot read price file {path}: {message}")
            }
        }
    }
}

impl std::error::Error for PriceError {}

/// The index of a model's price in a [`PriceIndex`]: small enough to keep per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PriceId(u32);

/// The prices of a [`PriceTable`], numbered, for the layer's hot path.
#[derive(Debug, Default)]
pub(crate) struct PriceIndex {
    prices: Vec<ModelPrice>,
    by_model: HashMap<Box<str>, PriceId>,
}

impl PriceIndex {
    pub(crate) fn new(table: &PriceTable) -> Self {
        let mut index = PriceIndex::default();
        for (model, price) in &table.prices {
            let id = PriceId(index.prices.len() as u32);
            index.prices.push(*price);
            index.by_model.insert(model.clone(), id);
        }
        index
    }

    /// The price of `model`, by name (a hash-map lookup: not for the hot path).
    pub(crate) fn id_of(&self, model: &str) -> Option<PriceId> {
        self.by_model.get(model).copied()
    }

    pub(crate) fn get(&self, id: PriceId) -> Option<&ModelPrice> {
        self.prices.get(id.0 as usize)
    }

    pub(crate) fn len(&self) -> usize {
        self.prices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_prices_round_to_picodollars() {
        let p = ModelPrice::usd_per_million_tokens(0.15, 0.6).expect("valid");
        assert_eq!(
            (p.input, p.cached_input, p.output),
            (150_000, 150_000, 600_000)
        );
        let p = p.with_cached_input(0.075).expect("valid");
        assert_eq!(p.cached_input, 75_000);
        assert!(ModelPrice::usd_per_million_tokens(-1.0, 1.0).is_err());
        assert!(ModelPrice::usd_per_million_tokens(f64::NAN, 1.0).is_err());
        assert!(ModelPrice::usd_per_million_tokens(1.0, 2e6).is_err());
        let err = ModelPrice::usd_per_million_tokens(0.000_000_1, 1.0).expect_err("too precise");
        assert!(err.to_string().contains("more than 6 decimals"), "{err}");
        for too_precise in [
            3.000_000_1,
            1.000_000_4,
            100.123_456_7,
            0.200_000_4,
            1e-10,
            5e-324,
        ] {
            assert!(
                ModelPrice::usd_per_million_tokens(too_precise, 1.0).is_err(),
                "{too_precise}"
            );
        }
        let free = ModelPrice::usd_per_million_tokens(0.0, -0.0).expect("free");
        assert_eq!((free.input, free.output), (0, 0));
        let smallest = ModelPrice::usd_per_million_tokens(0.000_001, 1.0).expect("six decimals");
        assert_eq!(smallest.input, 1);
        let big = ModelPrice::usd_per_million_tokens(999_999.999_999, 1.0).expect("six decimals");
        assert_eq!(big.input, 999_999_999_999);
    }

    #[test]
    fn file_prices_are_exact_decimals() {
        let table =
            PriceTable::parse("# comment\n\nm-a 0.2 0.05 0.6 # trailing\nm-b 1 - 2.000001\n")
                .expect("valid");
        assert_eq!(
            table.get("m-a"),
            Some(&ModelPrice {
                input: 200_000,
                cached_input: 50_000,
                output: 600_000
            })
        );
        assert_eq!(
            table.get("m-b"),
            Some(&ModelPrice {
                input: 1_000_000,
                cached_input: 1_000_000,
                output: 2_000_001
            })
        );
    }

    #[test]
    fn file_errors_name_the_line_and_problem() {
        let cases = [
            ("m 1 2\n", "line 1: expected 4 columns"),
            ("\nm 1 - x\n", "line 2: output price \"x\""),
            ("m -1 - 1\n", "not a non-negative decimal"),
            ("m 1.0000001 - 1\n", "more than 6 decimals"),
            ("m 2000000 - 1\n", "above 1000000"),
            ("m 1 - 1\nm 2 - 2\n", "line 2: model \"m\" is listed twice"),
            ("m . - 1\n", "is not a number"),
        ];
        for (text, expected) in cases {
            let err = PriceTable::parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let err = PriceTable::from_file("/nonexistent/prices.txt").expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/prices.txt"));
    }

    #[test]
    fn cost_counts_cached_tokens_at_their_price() {
        let p = ModelPrice::usd_per_million_tokens(1.0, 2.0)
            .and_then(|p| p.with_cached_input(0.5))
            .expect("valid");
        // 600 uncached * 1e6 + 400 cached * 0.5e6 + 100 out * 2e6 picodollars
        assert_eq!(
            p.cost_pico(1000, 400, 100),
            600_000_000 + 200_000_000 + 200_000_000
        );
        // More cached than input is clamped rather than underflowing.
        assert_eq!(p.cost_pico(10, 50, 0), 10 * 500_000);
    }

    #[test]
    fn code_prices_at_their_limits() {
        // The highest price is accepted, the next picodollar above it is not.
        let top = ModelPrice::usd_per_million_tokens(1_000_000.0, 0.0).expect("at the limit");
        assert_eq!((top.input, top.output), (1_000_000_000_000, 0));
        let err = ModelPrice::usd_per_million_tokens(1_000_000.000_001, 0.0).expect_err("above");
        assert_eq!(
            err.to_string(),
            "input price 1000000.000001 must be at most 1000000 USD per million tokens"
        );
        // Rounding noise up to a thousandth of a picodollar is noise around a whole
        // picodollar; twice that is a seventh decimal. A price that is not zero is never
        // noise around zero: 1e-9 USD per million is refused, not taken as free.
        let noise = ModelPrice::usd_per_million_tokens(0.000_001 + 1e-10, 0.0).expect("noise");
        assert_eq!(noise.input, 1);
        let err = ModelPrice::usd_per_million_tokens(1e-9, 0.0).expect_err("not free");
        assert_eq!(
            err.to_string(),
            "input price 0.000000001 has more than 6 decimals"
        );
        let err = ModelPrice::usd_per_million_tokens(2e-9, 0.0).expect_err("seventh decimal");
        assert_eq!(
            err.to_string(),
            "input price 0.000000002 has more than 6 decimals"
        );
    }

    #[test]
    fn file_prices_at_their_limits() {
        let table = PriceTable::parse("top 1000000 1000000.000000 0.000001\n").expect("limits");
        assert_eq!(
            table.get("top"),
            Some(&ModelPrice {
                input: 1_000_000_000_000,
                cached_input: 1_000_000_000_000,
                output: 1
            })
        );
        for (text, message) in [
            (
                "m 1000000.000001 - 0\n",
                "price file line 1: input price \"1000000.000001\" is above 1000000 USD per million tokens",
            ),
            (
                "m 1000001 - 0\n",
                "price file line 1: input price \"1000001\" is above 1000000 USD per million tokens",
            ),
            (
                "m 0.1234567 - 0\n",
                "price file line 1: input price \"0.1234567\" has more than 6 decimals",
            ),
            (
                "m 99999999999999999999 - 0\n",
                "price file line 1: input price \"99999999999999999999\" is too large",
            ),
        ] {
            assert_eq!(PriceTable::parse(text).expect_err(text).to_string(), message);
        }
        // Six decimals, each digit at its place.
        let table = PriceTable::parse("m 0.123456 .5 7.\n").expect("decimals");
        assert_eq!(
            table.get("m"),
            Some(&ModelPrice {
                input: 123_456,
                cached_input: 500_000,
                output: 7_000_000
            })
        );
    }

    #[test]
    fn tables_count_their_models() {
        let empty = PriceTable::new();
        assert_eq!((empty.len(), empty.is_empty()), (0, true));
        assert_eq!(PriceIndex::new(&empty).len(), 0);
        let price = ModelPrice::usd_per_million_tokens(1.0, 2.0).expect("valid");
        let one = PriceTable::new().with_model("a", price);
        assert_eq!((one.len(), one.is_empty()), (1, false));
        let two = one.with_model("b", price).with_model("a", price);
        assert_eq!((two.len(), two.is_empty()), (2, false));
        let index = PriceIndex::new(&two);
        assert_eq!(index.len(), 2);
        let a = index.id_of("a").expect("a is priced");
        assert_eq!(index.get(a), Some(&price));
        assert_eq!(index.id_of("c"), None);
    }
}
