//! Naming rules: how file paths become model-visible names, and which names are valid.
//!
//! Owns the lowering algorithm (`lower_snake_case`) and the shape checks for tool, skill,
//! sandbox, connection, subagent and agent names. Pure functions over strings.

/// Tool names the runtime defines itself; authored tools may not take them.
pub const RESERVED_TOOL_NAMES: &[&str] = &[
    "activate_skill",
    "bash",
    "edit_file",
    "load_skill",
    "read_file",
    "search_files",
    "write_file",
];

/// Longest model-visible tool name (OpenAI and Anthropic both accept 64).
pub const MAX_TOOL_NAME_LEN: usize = 64;

/// HTTP headers a connection's caller may not set (a tool's input, an OpenAPI header
/// parameter, a command tool through the runtime): the connection's credentials, what the
/// transport decides, and what servers and gateways route or authorize by.
pub const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-method-override",
];

/// Whether `name` is a name every model provider takes for a tool (`^[A-Za-z0-9_-]{1,64}$`):
/// the rule for what the model may see and call, which an MCP tool's lowered name
/// (`<namespace>__<remote-name>`) must meet. Authored names are stricter ([`is_tool_name`]).
pub fn is_model_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Lowers a path or identifier to `lower_snake_case`: separators (`/`, `-`, `.`, spaces and any
/// other non-alphanumeric character) and camelCase boundaries become `_`, letters are lowered,
/// repeated `_` collapse and leading/trailing `_` are trimmed.
///
/// ```
/// assert_eq!(ash_spec::lower_snake_case("repo-shell"), "repo_shell");
/// assert_eq!(ash_spec::lower_snake_case("getWeather"), "get_weather");
/// assert_eq!(ash_spec::lower_snake_case("HTTPServer v2"), "http_server_v2");
/// ```
pub fn lower_snake_case(input: &str) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len() + 4);
    for (idx, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && idx > 0 {
                let prev = chars[idx - 1];
                let next_is_lower = chars.get(idx + 1).is_some_and(char::is_ascii_lowercase);
                let boundary = prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_is_lower);
                if boundary {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push('_');
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == '_' && collapsed.ends_with('_') {
            continue;
        }
        collapsed.push(c);
    }
    collapsed.trim_matches('_').to_owned()
}

/// Lowers to kebab-case, the shape of skill and agent names.
pub(crate) fn lower_kebab_case(input: &str) -> String {
    lower_snake_case(input).replace('_', "-")
}

/// `^[a-z][a-z0-9_]{0,63}$`: what model providers accept as a function name, lowered.
pub fn is_tool_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= MAX_TOOL_NAME_LEN
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Lowercase letters, digits and single hyphens, at most 64 characters (`get-weather`).
pub(crate) fn is_skill_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A slug for sandboxes, connections and subagents: starts with a lowercase letter or digit,
/// then lowercase letters, digits, `-` and `_`, at most 64 characters.
pub(crate) fn is_slug(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// An agent name: a slug that may also contain `.`.
pub(crate) fn is_agent_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`, the shape of an environment variable name.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_follows_the_documented_rules() {
        let cases = [
            ("get-weather", "get_weather"),
            ("get_weather", "get_weather"),
            ("getWeather", "get_weather"),
            ("GetWeather", "get_weather"),
            ("repo-shell", "repo_shell"),
            ("ops/repo.shell", "ops_repo_shell"),
            ("  Spaced  Out ", "spaced_out"),
            ("HTTPServer", "http_server"),
            ("v2Api", "v2_api"),
            ("--__--", ""),
            ("météo", "m_t_o"),
        ];
        let got: Vec<(&str, String)> =
            cases.iter().map(|(i, _)| (*i, lower_snake_case(i))).collect();
        let want: Vec<(&str, String)> = cases.iter().map(|(i, o)| (*i, (*o).to_owned())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn name_shapes() {
        assert!(is_tool_name("get_weather"));
        assert!(!is_tool_name("Get_weather"));
        assert!(!is_tool_name("1tool"));
        assert!(!is_tool_name(&"a".repeat(65)));
        assert!(is_skill_name("get-weather"));
        assert!(!is_skill_name("get--weather"));
        assert!(!is_skill_name("Get"));
        assert!(is_slug("repo-shell"));
        assert!(!is_slug("-x"));
        assert!(is_env_name("ASH_BASIC_PASSWORD"));
        assert!(!is_env_name("1X"));
        assert!(is_agent_name("weather-agent.v2"));
    }
}
