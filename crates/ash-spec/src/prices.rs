//! What model calls cost: the built-in price table and `[prices."provider/model"]` of
//! `agent.toml`, in micro-dollars per million tokens. Pure data and arithmetic.

use ash_protocol::Usage;

/// Prices of one model, in micro-USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Prompt tokens not served from or written to the cache.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
    /// Prompt tokens read from the cache.
    pub cache_read: u64,
    /// Prompt tokens written to the cache.
    pub cache_write: u64,
}

impl Price {
    /// A price with the cache priced like input.
    pub const fn flat(input: u64, output: u64) -> Self {
        Self { input, output, cache_read: input, cache_write: input }
    }

    /// What `usage` costs, in micro-USD (rounded up). `usage.input_tokens` includes the
    /// cached tokens, as [`Usage`] counts them.
    pub fn cost_micro_usd(&self, usage: &Usage) -> u64 {
        let cached = usage.cache_read_tokens.saturating_add(usage.cache_write_tokens);
        let fresh = usage.input_tokens.saturating_sub(cached);
        let part = |tokens: u64, price: u64| u128::from(tokens).saturating_mul(u128::from(price));
        let total = part(fresh, self.input)
            .saturating_add(part(usage.output_tokens, self.output))
            .saturating_add(part(usage.cache_read_tokens, self.cache_read))
            .saturating_add(part(usage.cache_write_tokens, self.cache_write));
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// Dollars per million tokens as micro-USD per million tokens.
const fn usd(dollars_times_1000: u64) -> u64 {
    dollars_times_1000 * 1000
}

/// `(model, price)`: list prices of common hosted models as published when this table was
/// written (USD per million tokens × 1000 below). Providers change them; `[prices]` in
/// `agent.toml` overrides any entry.
const BUILTIN_PRICES: &[(&str, Price)] = &[
    (
        "anthropic/claude-haiku-4-5",
        Price { input: usd(1000), output: usd(5000), cache_read: usd(100), cache_write: usd(1250) },
    ),
    (
        "anthropic/claude-opus-4-1",
        Price {
            input: usd(15_000),
            output: usd(75_000),
            cache_read: usd(1500),
            cache_write: usd(18_750),
        },
    ),
    (
        "anthropic/claude-sonnet-4-5",
        Price {
            input: usd(3000),
            output: usd(15_000),
            cache_read: usd(300),
            cache_write: usd(3750),
        },
    ),
    (
        "openai/gpt-4.1",
        Price { input: usd(2000), output: usd(8000), cache_read: usd(500), cache_write: usd(2000) },
    ),
    (
        "openai/gpt-4.1-mini",
        Price { input: usd(400), output: usd(1600), cache_read: usd(100), cache_write: usd(400) },
    ),
    (
        "openai/gpt-4.1-nano",
        Price { input: usd(100), output: usd(400), cache_read: usd(25), cache_write: usd(100) },
    ),
    (
        "openai/gpt-4o",
        Price {
            input: usd(2500),
            output: usd(10_000),
            cache_read: usd(1250),
            cache_write: usd(2500),
        },
    ),
    (
        "openai/gpt-4o-mini",
        Price { input: usd(150), output: usd(600), cache_read: usd(75), cache_write: usd(150) },
    ),
    (
        "openai/gpt-5",
        Price {
            input: usd(1250),
            output: usd(10_000),
            cache_read: usd(125),
            cache_write: usd(1250),
        },
    ),
    (
        "openai/gpt-5-mini",
        Price { input: usd(250), output: usd(2000), cache_read: usd(25), cache_write: usd(250) },
    ),
];

/// Providers whose calls cost nothing: local servers and scripted replays.
const FREE_PROVIDERS: &[&str] = &["scripted", "ollama", "llamacpp", "lmstudio", "vllm"];

/// The built-in price of `provider/model`, if the table knows it.
pub fn builtin_price(provider: &str, model: &str) -> Option<Price> {
    if FREE_PROVIDERS.contains(&provider) {
        return Some(Price::flat(0, 0));
    }
    let key = format!("{provider}/{model}");
    BUILTIN_PRICES.iter().find(|(name, _)| *name == key).map(|(_, price)| *price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_count_cached_tokens_at_their_own_price_and_round_up() {
        let price = builtin_price("anthropic", "claude-sonnet-4-5").unwrap_or(Price::flat(0, 0));
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_tokens: 400_000,
            cache_write_tokens: 100_000,
        };
        // 500k fresh × $3 + 100k × $15 + 400k × $0.30 + 100k × $3.75 = 1.5 + 1.5 + 0.12 + 0.375
        assert_eq!(price.cost_micro_usd(&usage), 3_495_000);
        let one = Usage { input_tokens: 1, ..Usage::default() };
        assert_eq!(price.cost_micro_usd(&one), 3);
        assert_eq!(Price::flat(1, 0).cost_micro_usd(&one), 1, "a fraction rounds up");
        assert_eq!(builtin_price("ollama", "qwen2.5"), Some(Price::flat(0, 0)));
        assert_eq!(builtin_price("openai", "gpt-unknown"), None);
        let huge = Usage { input_tokens: u64::MAX, output_tokens: u64::MAX, ..Usage::default() };
        assert_eq!(Price::flat(u64::MAX, u64::MAX).cost_micro_usd(&huge), u64::MAX);
    }
}
