//! `agent.toml`: name, description, model, metadata, network, auth, limits, providers.
//!
//! Owns the keys of `agent.toml` and their checks. Inbound network, auth and providers are
//! root-only; in a subagent they are reported and ignored.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use crate::diagnostic::FileDiag;
use crate::ipnet::IpNet;
use crate::load::{Ctx, PackageRole, interpolate};
use crate::names::{is_agent_name, is_env_name, is_slug, lower_kebab_case};
use crate::providers::{BUILTIN_PROVIDERS, SCRIPTED_PROVIDER, builtin_provider};
use crate::slots;
use crate::source::MAX_TEXT_BYTES;
use crate::spec::{
    AuthStrategy, DEFAULT_CLOCK_SKEW_SECONDS, ForwardedHeader, JwtAlgorithm, JwtClaims, Limits,
    ModelRef, Package, Provider, ProviderApi,
};
use crate::toml_doc::{self, Fields};

/// Why unknown keys in `[network]` and `[auth]` are errors.
const ACCESS_CONTROL: &str = "access-control tables accept only the keys ash enforces; a misspelt one would leave the agent open";
/// Largest clock leeway accepted for JWTs (one hour).
const MAX_CLOCK_SKEW_SECONDS: u64 = 3600;
/// HMAC secrets shorter than this are guessable (RFC 7518 §3.2 asks for the hash size).
const MIN_HMAC_SECRET_BYTES: usize = 32;

pub(super) fn load(ctx: &mut Ctx<'_>, path: &Path, role: &PackageRole, package: &mut Package) {
    let Some((rel, src)) = ctx.read(path, &slots::AGENT_TOML) else { return };
    let env = ctx.env;
    let mut d = FileDiag::new(&rel, &src, &slots::AGENT_TOML, &mut ctx.diags);
    let Some(doc) = toml_doc::parse(&src, &mut d) else { return };
    let mut root = Fields::root(&doc);

    if let Some(name) = root.string(&mut d, "name", "a name like `weather-agent`") {
        if is_agent_name(&name.value) {
            package.name = name.value;
        } else {
            d.error(
                "invalid-name",
                Some(name.span),
                format!(
                    "agent name `{}` must be 1-64 lowercase letters, digits, `-`, `_` or `.`; try `{}`",
                    name.value,
                    lower_kebab_case(&name.value)
                ),
                "`name`: lowercase letters, digits, `-`, `_` and `.`",
            );
        }
    }
    match root.string(&mut d, "description", "a sentence saying what the agent does") {
        Some(desc) if desc.value.trim().is_empty() => d.error(
            "empty-description",
            Some(desc.span),
            "`description` is empty",
            "`description`: a sentence saying what the agent does",
        ),
        Some(desc) => package.description = Some(desc.value.trim().to_owned()),
        None if matches!(role, PackageRole::Subagent { .. }) && !root.has("description") => {
            let id = match role {
                PackageRole::Subagent { id, .. } => id.as_str(),
                PackageRole::Root { .. } => "",
            };
            d.doc = &slots::SUBAGENT;
            d.error(
                "subagent-description",
                Some(root.span()),
                format!("subagent `{id}` needs a `description`; the parent model reads it to decide when to delegate"),
                "`description`: a sentence saying what the subagent does",
            );
            d.doc = &slots::AGENT_TOML;
        }
        None => {}
    }
    let mut model_span = None;
    if let Some(model) = root.string(&mut d, "model", "a `provider/model` string") {
        model_span = Some(model.span.clone());
        match ModelRef::parse(&model.value) {
            Ok(parsed) => package.model = Some(parsed),
            Err(why) => d.error(
                "invalid-model",
                Some(model.span),
                why,
                "`model`: `provider/model`, e.g. \"openai/gpt-4.1-mini\" or \"anthropic/claude-sonnet-4-5\"",
            ),
        }
    }
    for (key, value) in root.string_map(&mut d, "metadata") {
        package.metadata.insert(key.value, value.value);
    }

    let root_only = |d: &mut FileDiag<'_>, fields: &Fields<'_, '_>, key: &str| {
        d.warning(
            "root-only",
            Some(fields.span()),
            format!("`{key}` is only read from the root agent's agent.toml; it is ignored here"),
            d.doc.expected,
        );
    };
    let is_root = matches!(role, PackageRole::Root { .. });

    if let Some(mut network) = root.table(&mut d, "network", "a table") {
        d.doc = &slots::NETWORK;
        if is_root {
            let list = network.strings(&mut d, "ip_allow_list", "a list of IPs or CIDR ranges");
            package.ip_allow_list = ip_nets(&mut d, &network, "ip_allow_list", list);
            let proxies =
                network.strings(&mut d, "trusted_proxies", "a list of IPs or CIDR ranges");
            package.trusted_proxies = ip_nets(&mut d, &network, "trusted_proxies", proxies);
            if let Some(header) = network.string(
                &mut d,
                "forwarded_header",
                "`x-forwarded-for`, `forwarded` or `x-real-ip`",
            ) {
                match ForwardedHeader::parse(&header.value) {
                    None => d.error(
                        "invalid-value",
                        Some(header.span),
                        format!("unknown forwarding header `{}`", header.value),
                        "`forwarded_header`: `x-forwarded-for` (default), `forwarded` or `x-real-ip`",
                    ),
                    Some(_) if package.trusted_proxies.is_empty() => d.error(
                        "invalid-value",
                        Some(header.span),
                        "`forwarded_header` has no effect without `trusted_proxies`; name the proxies or remove it",
                        "`trusted_proxies` listing the reverse proxies in front of ash",
                    ),
                    Some(parsed) => package.forwarded_header = parsed,
                }
            }
            network.finish_strict(&mut d, ACCESS_CONTROL);
        } else {
            root_only(&mut d, &network, "network");
        }
        d.doc = &slots::AGENT_TOML;
    }

    if let Some(mut auth) = root.table(&mut d, "auth", "a table") {
        d.doc = &slots::AUTH;
        if is_root {
            let strategies =
                auth.tables(&mut d, "strategies", "an array of tables `[[auth.strategies]]`");
            if strategies.is_empty() && auth.has("strategies") {
                d.error(
                    "invalid-value",
                    Some(auth.span()),
                    "`auth.strategies` is empty, which would leave the agent open; add a strategy or remove `[auth]`",
                    "at least one `[[auth.strategies]]` table",
                );
            }
            for strategy in strategies {
                if let Some(parsed) = auth_strategy(&mut d, env, strategy) {
                    package.auth.push(parsed);
                }
            }
            auth.finish_strict(&mut d, ACCESS_CONTROL);
        } else {
            root_only(&mut d, &auth, "auth");
        }
        d.doc = &slots::AGENT_TOML;
    }

    if let Some(limits) = root.table(&mut d, "limits", "a table") {
        d.doc = &slots::LIMITS;
        package.limits = parse_limits(&mut d, limits);
        d.doc = &slots::AGENT_TOML;
    }

    if let Some(mut prices) =
        root.table(&mut d, "prices", "a table of `[prices.\"provider/model\"]`")
    {
        d.doc = &slots::PRICES;
        package.prices = parse_prices(&mut d, &mut prices);
        d.doc = &slots::AGENT_TOML;
    }

    if let Some(mut providers) = root.table(&mut d, "providers", "a table of `[providers.<name>]`")
    {
        d.doc = &slots::PROVIDERS;
        if is_root {
            package.providers = parse_providers(&mut d, &mut providers);
        } else {
            root_only(&mut d, &providers, "providers");
        }
        d.doc = &slots::AGENT_TOML;
    }
    // A misspelt `[auth]` or `[network]` ignored would leave the agent open: unknown keys at
    // the top of agent.toml are errors.
    root.finish_strict(
        &mut d,
        "agent.toml accepts only the keys ash reads (free-form values go in `[metadata]`)",
    );

    let mut script = None;
    if let Some(model) = &package.model {
        let provider = model.provider();
        if provider == SCRIPTED_PROVIDER {
            script = check_script(&mut d, path, model.model(), model_span.clone());
        } else if builtin_provider(provider).is_none() && !package.providers.contains_key(provider)
        {
            let names: Vec<&str> = BUILTIN_PROVIDERS.iter().map(|p| p.name).collect();
            d.warning(
                "unknown-provider",
                model_span.clone(),
                format!(
                    "model provider `{provider}` is neither built in ({}, {SCRIPTED_PROVIDER}) nor declared in [providers.{provider}]",
                    names.join(", ")
                ),
                "a built-in provider or a `[providers.<name>]` table",
            );
        }
    }
    if let (Some(_), Some(model)) = (package.limits.max_cost_micro_usd_per_session, &package.model)
        && !package.prices.contains_key(&model.to_string())
        && crate::prices::builtin_price(model.provider(), model.model()).is_none()
    {
        d.doc = &slots::PRICES;
        d.error(
            "unpriced-model",
            model_span,
            format!(
                "`limits.max_cost_usd_per_session` needs the price of `{model}`, which ash does not know; a budget it cannot count would not be enforced"
            ),
            format!("[prices.\"{model}\"] with `input` and `output` in USD per million tokens"),
        );
    }
    if let Some(script) = script {
        // Hashed like any authored file, so editing the script changes the manifest.
        ctx.tree.hash_file(&script, MAX_TEXT_BYTES, &slots::FILE, &mut ctx.diags);
    }
}

/// `scripted/<file>`: the script must be a relative path to a file beside `agent.toml`.
fn check_script(
    d: &mut FileDiag<'_>,
    agent_toml: &Path,
    script: &str,
    span: Option<Range<usize>>,
) -> Option<PathBuf> {
    let relative = Path::new(script);
    let package_dir = agent_toml.parent().unwrap_or(Path::new("."));
    let why = if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        format!(
            "script path `{script}` must stay inside the agent directory (no `..`, no leading `/`)"
        )
    } else if !package_dir.join(relative).is_file() {
        format!("script `{script}` does not exist next to agent.toml")
    } else {
        return Some(package_dir.join(relative));
    };
    d.error(
        "scripted-model",
        span,
        why,
        "`model`: \"scripted/<file>\" naming a JSONL script in the package, e.g. \"scripted/scripts/demo.jsonl\"",
    );
    None
}

/// `[prices."provider/model"]` tables: USD per million tokens.
fn parse_prices(
    d: &mut FileDiag<'_>,
    prices: &mut Fields<'_, '_>,
) -> BTreeMap<String, crate::prices::Price> {
    let mut out = BTreeMap::new();
    for name in prices.keys() {
        let Some(mut table) = prices.table(d, &name, "a table") else { continue };
        if let Err(why) = ModelRef::parse(&name) {
            d.error("invalid-name", Some(table.span()), why, "`[prices.\"provider/model\"]`");
            continue;
        }
        let mut micro = |t: &mut Fields<'_, '_>, key: &str| {
            t.non_negative_number(d, key).and_then(|usd| {
                if usd.value > 1e6 {
                    d.error(
                        "out-of-range",
                        Some(usd.span),
                        format!("`{}` is above a million dollars per million tokens", t.name(key)),
                        "a price in USD per million tokens, e.g. 0.4",
                    );
                    return None;
                }
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "checked 0..=1e6 above"
                )]
                Some((usd.value * 1e6).round() as u64)
            })
        };
        let has = |t: &Fields<'_, '_>, key: &str| t.has(key);
        let (needs_input, needs_output) = (!has(&table, "input"), !has(&table, "output"));
        let input = micro(&mut table, "input");
        let output = micro(&mut table, "output");
        let cache_read = micro(&mut table, "cache_read");
        let cache_write = micro(&mut table, "cache_write");
        for (missing, key) in [(needs_input, "input"), (needs_output, "output")] {
            if missing {
                table.missing(d, key, "a price in USD per million tokens, e.g. 0.4");
            }
        }
        table.finish_strict(d, "a price ash does not know would not be counted");
        if let (Some(input), Some(output)) = (input, output) {
            let price = crate::prices::Price {
                input,
                output,
                cache_read: cache_read.unwrap_or(input),
                cache_write: cache_write.unwrap_or(input),
            };
            out.insert(name, price);
        }
    }
    out
}

/// `[providers.<name>]` tables, in `agent.toml` or the user's config file.
pub(crate) fn parse_providers(
    d: &mut FileDiag<'_>,
    providers: &mut Fields<'_, '_>,
) -> BTreeMap<String, Provider> {
    let mut out = BTreeMap::new();
    for name in providers.keys() {
        let Some(table) = providers.table(d, &name, "a table") else { continue };
        if !is_slug(&name) {
            d.error(
                "invalid-name",
                Some(table.span()),
                format!("provider name `{name}` must be lowercase letters, digits, `-` or `_`"),
                "`[providers.<name>]` with a lowercase name",
            );
            continue;
        }
        if let Some(provider) = parse_provider(d, &name, table) {
            out.insert(name, provider);
        }
    }
    out
}

fn parse_provider(d: &mut FileDiag<'_>, name: &str, mut table: Fields<'_, '_>) -> Option<Provider> {
    let default_api =
        if name == "anthropic" { ProviderApi::Anthropic } else { ProviderApi::OpenAi };
    let api = match table.string(d, "api", "`openai` or `anthropic`") {
        None => default_api,
        Some(api) => match api.value.as_str() {
            "openai" => ProviderApi::OpenAi,
            "anthropic" => ProviderApi::Anthropic,
            other => {
                d.error(
                    "invalid-value",
                    Some(api.span),
                    format!("unknown provider api `{other}`"),
                    "`api`: `openai` (chat completions) or `anthropic` (messages)",
                );
                return None;
            }
        },
    };
    let mut ok = true;
    let base_url = table.string(d, "base_url", "an http(s) URL");
    if let Some(url) = &base_url
        && let Err(why) = check_url(&url.value)
    {
        ok = false;
        d.error(
            "invalid-url",
            Some(url.span.clone()),
            format!("`base_url`: {why}"),
            "`base_url`: an http or https URL",
        );
    }
    let api_key_env = table.string(d, "api_key_env", "an environment variable name");
    if let Some(var) = &api_key_env
        && !is_env_name(&var.value)
    {
        ok = false;
        d.error(
            "invalid-value",
            Some(var.span.clone()),
            format!("`api_key_env` = `{}` is not an environment variable name", var.value),
            "`api_key_env`: letters, digits and `_`, e.g. \"OPENAI_API_KEY\"",
        );
    }
    table.finish(d);
    ok.then(|| Provider {
        api,
        base_url: base_url.map(|u| u.value),
        api_key_env: api_key_env.map(|v| v.value),
    })
}

fn parse_limits(d: &mut FileDiag<'_>, mut limits: Fields<'_, '_>) -> Limits {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let out = Limits {
        max_steps_per_turn: limits
            .integer(d, "max_steps_per_turn", 1, 10_000)
            .and_then(|n| u32::try_from(n.value).ok()),
        max_input_tokens_per_session: limits
            .integer(d, "max_input_tokens_per_session", 1, 1 << 40)
            .map(|n| n.value),
        max_output_tokens_per_session: limits
            .integer(d, "max_output_tokens_per_session", 1, 1 << 40)
            .map(|n| n.value),
        max_cost_micro_usd_per_session: limits
            .non_negative_number(d, "max_cost_usd_per_session")
            .and_then(|usd| {
                // Budgets above a billion dollars are a typo, not a budget.
                if usd.value > 1e9 {
                    d.error(
                        "out-of-range",
                        Some(usd.span),
                        "`max_cost_usd_per_session` is above 1e9 USD",
                        "`max_cost_usd_per_session`: a number of US dollars, e.g. 5.0",
                    );
                    return None;
                }
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "checked 0..=1e9 above"
                )]
                let micro = (usd.value * 1e6).round() as u64;
                Some(micro)
            }),
        session_timeout_ms: limits
            .integer(d, "session_timeout_ms", 1000, 365 * DAY_MS)
            .map(|n| n.value),
    };
    limits.finish(d);
    out
}

fn auth_strategy(
    d: &mut FileDiag<'_>,
    env: &std::collections::BTreeMap<String, String>,
    mut fields: Fields<'_, '_>,
) -> Option<AuthStrategy> {
    let kind =
        fields.required_string(d, "kind", "`http-basic`, `jwt-hmac`, `jwt-ecdsa` or `oidc`")?;
    // Every key is read before the verdict, so unknown keys are reported with other errors.
    let parse = || match kind.value.as_str() {
        "http-basic" => {
            let username = fields.required_string(d, "username", "a user name");
            let password = fields.required_string(d, "password", "\"${ENV_VAR}\"");
            let password =
                password.and_then(|p| interpolate(d, env, &fields.name("password"), &p, true));
            let password = password.filter(|p| {
                if p.expose().is_empty() {
                    d.error(
                        "invalid-value",
                        Some(fields.span()),
                        format!("`{}` is empty, so anyone could log in", fields.name("password")),
                        "`password`: \"${ENV_VAR}\" holding a non-empty password",
                    );
                }
                !p.expose().is_empty()
            });
            let username = username.and_then(|u| {
                if u.value.is_empty() || u.value.contains(':') {
                    d.error(
                        "invalid-value",
                        Some(u.span),
                        "`username` must be non-empty and must not contain `:`",
                        "`username`: a name without `:`",
                    );
                    None
                } else {
                    Some(u.value)
                }
            });
            Some(AuthStrategy::HttpBasic { username: username?, password: password? })
        }
        "jwt-hmac" => {
            let claims = jwt_claims(d, &mut fields);
            let algorithm = algorithm(
                d,
                &mut fields,
                &[JwtAlgorithm::Hs256, JwtAlgorithm::Hs384, JwtAlgorithm::Hs512],
            );
            let secret = fields.required_string(d, "secret", "\"${ENV_VAR}\"");
            let secret = secret.and_then(|s| {
                let resolved = interpolate(d, env, &fields.name("secret"), &s, true)?;
                if resolved.expose().len() < MIN_HMAC_SECRET_BYTES {
                    d.error(
                        "weak-secret",
                        Some(s.span),
                        format!("the HMAC secret is shorter than {MIN_HMAC_SECRET_BYTES} bytes; anyone who guesses it can sign tokens"),
                        format!("`secret`: at least {MIN_HMAC_SECRET_BYTES} random bytes"),
                    );
                    return None;
                }
                Some(resolved)
            });
            Some(AuthStrategy::JwtHmac { claims: claims?, algorithm: algorithm?, secret: secret? })
        }
        "jwt-ecdsa" => {
            let claims = jwt_claims(d, &mut fields);
            let algorithm = algorithm(d, &mut fields, &[JwtAlgorithm::Es256, JwtAlgorithm::Es384]);
            let key = fields.required_string(d, "public_key", "a PEM public key");
            let key = key.and_then(|k| {
                let resolved = interpolate(d, env, &fields.name("public_key"), &k, false)?;
                if resolved.expose().trim_start().starts_with("-----BEGIN PUBLIC KEY-----") {
                    Some(resolved)
                } else {
                    d.error(
                        "invalid-value",
                        Some(k.span),
                        "`public_key` is not a PEM public key",
                        "`public_key`: \"-----BEGIN PUBLIC KEY-----\\n…\\n-----END PUBLIC KEY-----\"",
                    );
                    None
                }
            });
            Some(AuthStrategy::JwtEcdsa {
                claims: claims?,
                algorithm: algorithm?,
                public_key: key?,
            })
        }
        "oidc" => {
            let claims = jwt_claims(d, &mut fields);
            let url =
                fields.required_string(d, "discovery_url", "the issuer's discovery document URL");
            let url = url.and_then(|u| {
                let resolved = interpolate(d, env, &fields.name("discovery_url"), &u, false)?;
                match check_url(resolved.expose()).and_then(|()| https_or_loopback(resolved.expose())) {
                    Ok(()) => Some(resolved),
                    Err(why) => {
                        d.error(
                            "invalid-url",
                            Some(u.span),
                            format!("`discovery_url`: {why}"),
                            "`discovery_url`: an https URL ending in /.well-known/openid-configuration",
                        );
                        None
                    }
                }
            });
            Some(AuthStrategy::Oidc { claims: claims?, discovery_url: url? })
        }
        other => {
            d.error(
                "invalid-value",
                Some(kind.span),
                format!("unknown auth strategy kind `{other}`"),
                "`kind`: `http-basic`, `jwt-hmac`, `jwt-ecdsa` or `oidc`",
            );
            None
        }
    };
    let strategy = parse();
    fields.finish_strict(d, ACCESS_CONTROL);
    strategy
}

/// Addresses and CIDR ranges of the `[network]` list `key`; an explicitly empty list is an
/// error (it would read as "nobody" but mean "everybody").
fn ip_nets(
    d: &mut FileDiag<'_>,
    network: &Fields<'_, '_>,
    key: &str,
    list: Option<Vec<crate::toml_doc::Located<String>>>,
) -> Vec<IpNet> {
    if list.as_ref().is_some_and(Vec::is_empty) {
        d.error(
            "invalid-value",
            Some(network.span()),
            format!(
                "`{}` is empty; remove it, or list addresses and CIDR ranges",
                network.name(key)
            ),
            "IPv4/IPv6 addresses or CIDR ranges such as \"10.0.0.0/8\"",
        );
    }
    let mut out = Vec::new();
    for entry in list.unwrap_or_default() {
        match IpNet::parse(&entry.value) {
            Ok(net) => out.push(net),
            Err(why) => d.error(
                "invalid-ip",
                Some(entry.span),
                why,
                "IPv4/IPv6 addresses or CIDR ranges such as \"10.0.0.0/8\"",
            ),
        }
    }
    out
}

fn jwt_claims(d: &mut FileDiag<'_>, fields: &mut Fields<'_, '_>) -> Option<JwtClaims> {
    let issuer = fields.required_string(d, "issuer", "the expected `iss` claim");
    let audiences = if fields.has("audiences") {
        fields.strings(d, "audiences", "a list of accepted `aud` values")
    } else {
        fields.missing(d, "audiences", "a list of accepted `aud` values");
        None
    };
    if let Some(list) = &audiences
        && list.is_empty()
    {
        d.error(
            "invalid-value",
            Some(fields.span()),
            format!("`{}` is empty, so no token could pass", fields.name("audiences")),
            "`audiences`: at least one accepted `aud` value",
        );
        return None;
    }
    let subjects = fields.strings(d, "subjects", "a list of `sub` patterns (`*` matches anything)");
    if subjects.as_ref().is_some_and(Vec::is_empty) {
        d.error(
            "invalid-value",
            Some(fields.span()),
            format!(
                "`{}` is empty; leave it out to accept every subject, or list the accepted ones",
                fields.name("subjects")
            ),
            "`subjects`: `sub` patterns such as \"worker:*\"",
        );
        return None;
    }
    let skew = fields.integer(d, "clock_skew_seconds", 0, MAX_CLOCK_SKEW_SECONDS);
    Some(JwtClaims {
        issuer: issuer?.value,
        audiences: audiences?.into_iter().map(|a| a.value).collect(),
        subjects: subjects.unwrap_or_default().into_iter().map(|s| s.value).collect(),
        clock_skew_seconds: skew.map_or(DEFAULT_CLOCK_SKEW_SECONDS, |s| s.value),
    })
}

fn algorithm(
    d: &mut FileDiag<'_>,
    fields: &mut Fields<'_, '_>,
    allowed: &[JwtAlgorithm],
) -> Option<JwtAlgorithm> {
    let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
    let Some(given) = fields.string(d, "algorithm", "a JWT algorithm name") else {
        return allowed.first().copied();
    };
    let found = allowed.iter().copied().find(|a| a.as_str() == given.value);
    if found.is_none() {
        d.error(
            "invalid-value",
            Some(given.span),
            format!("algorithm `{}` is not accepted here", given.value),
            format!("`algorithm`: one of {}", names.join(", ")),
        );
    }
    found
}

/// Keys that decide who may call the agent are fetched over TLS; plain `http://` only reaches
/// this machine (a local provider in development and tests).
fn https_or_loopback(url: &str) -> Result<(), &'static str> {
    if crate::tls_or_loopback(url) {
        Ok(())
    } else {
        Err("must use https:// (plain http:// is accepted only for a loopback issuer)")
    }
}

/// Checks that `url` is an absolute http(s) URL with a host. Never echoes the URL (it may hold
/// a token after interpolation).
pub(super) fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    Ok(())
}
