//! What each slot of an agent directory expects, with a minimal valid example.
//!
//! Every diagnostic points at one of these, so a user always sees a working shape next to the
//! problem. `docs/agent-format.md` shows the same examples; keep them in step.

/// The expectation and a minimal valid example of one slot.
#[derive(Debug)]
pub(crate) struct SlotDoc {
    pub(crate) expected: &'static str,
    pub(crate) example: &'static str,
}

pub(crate) const AGENT_TOML: SlotDoc = SlotDoc {
    expected: "agent.toml: optional `name`, `description`, `model = \"provider/model\"`, \
               and tables [network], [[auth.strategies]], [limits], [providers.<name>], [metadata]",
    example: "name = \"weather-agent\"\n\
              description = \"Answers weather questions.\"\n\
              model = \"openai/gpt-4.1-mini\"",
};

pub(crate) const NETWORK: SlotDoc = SlotDoc {
    expected: "[network] ip_allow_list and trusted_proxies: lists of IP addresses or CIDR ranges",
    example: "[network]\nip_allow_list = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]\ntrusted_proxies = [\"10.0.0.2\"]",
};

pub(crate) const AUTH: SlotDoc = SlotDoc {
    expected: "[[auth.strategies]] with kind `http-basic`, `jwt-hmac`, `jwt-ecdsa` or `oidc`; \
               secrets come from the environment as ${VAR}",
    example: "[[auth.strategies]]\n\
              kind = \"http-basic\"\n\
              username = \"ops\"\n\
              password = \"${ASH_BASIC_PASSWORD}\"",
};

pub(crate) const LIMITS: SlotDoc = SlotDoc {
    expected: "[limits] with positive integers `max_steps_per_turn`, \
               `max_input_tokens_per_session`, `max_output_tokens_per_session`, \
               `session_timeout_ms` and a non-negative number `max_cost_usd_per_session`",
    example: "[limits]\nmax_steps_per_turn = 32\nmax_cost_usd_per_session = 5.0",
};

pub(crate) const PRICES: SlotDoc = SlotDoc {
    expected: "[prices.\"provider/model\"] with non-negative numbers `input` and `output`, and \
               optional `cache_read` and `cache_write` (default: `input`), in USD per million \
               tokens",
    example: "[prices.\"openai/gpt-4.1-mini\"]\ninput = 0.4\noutput = 1.6\ncache_read = 0.1",
};

pub(crate) const PROVIDERS: SlotDoc = SlotDoc {
    expected: "[providers.<name>] with `api` (`openai` or `anthropic`), optional `base_url` \
               (http or https) and `api_key_env` (an environment variable name)",
    example: "[providers.local]\n\
              api = \"openai\"\n\
              base_url = \"http://127.0.0.1:11434/v1\"\n\
              api_key_env = \"LOCAL_API_KEY\"",
};

pub(crate) const NETWORK_CONFIG: SlotDoc = SlotDoc {
    expected: "[network] holds no keys in this version: a network (its mint authorities, witnesses \
               and parameters) is its genesis file, $ASH_HOME/genesis.toml, which `ash admin \
               genesis` writes and `ash join --genesis FILE` installs",
    example: "# $ASH_HOME/genesis.toml\n\
              name = \"my-net\"\n\
              created_at = 1700000000000\n\
              authorities = [\"5866666666666666666666666666666666666666666666666666666666666666\"]",
};

pub(crate) const TUI_CONFIG: SlotDoc = SlotDoc {
    expected: "[tui] with `decide_seconds`: how long the TUI's apply prompt waits before it answers \
               no (half the price), from 10 to 3600",
    example: "[tui]\n\
              decide_seconds = 120",
};

pub(crate) const USER_CONFIG: SlotDoc = SlotDoc {
    expected: "a TOML file with `[providers.<name>]` tables (the same keys as in agent.toml), a \
               `[network]` table and a `[tui]` table",
    example: "[providers.openai]\n\
              base_url = \"https://gateway.example.com/v1\"\n\
              api_key_env = \"GATEWAY_API_KEY\"",
};

pub(crate) const SYSTEM: SlotDoc = SlotDoc {
    expected: "system.md (or instructions.md) holding the base prompt, and optional markdown \
               layers in system/ (or instructions/), joined in file-name order",
    example: "You are a weather-focused assistant. Be concise and accurate.",
};

pub(crate) const SKILL_FLAT: SlotDoc = SlotDoc {
    expected: "skills/<name>.md: optional YAML frontmatter with `description`, then the \
               procedure in markdown; <name> is lowercase letters, digits and hyphens",
    example: "---\n\
              description: Use the weather tool before answering forecast questions.\n\
              ---\n\
              Call the `get_weather` tool before answering.",
};

pub(crate) const SKILL_PACKAGED: SlotDoc = SlotDoc {
    expected: "skills/<name>/SKILL.md with frontmatter `description` (required), optional \
               `name` (equal to the directory name), `license` and string `metadata`",
    example: "---\n\
              name: pdf-forms\n\
              description: Fill PDF forms with the scripts in this skill.\n\
              ---\n\
              Run `scripts/fill.py` with the form and the values.",
};

pub(crate) const TOOL_COMMAND: SlotDoc = SlotDoc {
    expected: "tools/<name>.toml: `description`, `command` (argv; `./` and `../` paths are \
               relative to the tool file), optional `name`, `input_schema` (a JSON Schema \
               object), `timeout_ms`, `sandbox`, `connections` and `approval` (\"required\", \
               \"never\", or [approval] when = [{ pointer, equals | matches | above }])",
    example: "description = \"Get the current weather for a city.\"\n\
              command = [\"sh\", \"../lib/get-weather.sh\"]\n\
              timeout_ms = 10000\n\
              \n\
              [input_schema]\n\
              type = \"object\"\n\
              required = [\"city\"]\n\
              properties.city = { type = \"string\" }",
};

pub(crate) const TOOL_HTTP: SlotDoc = SlotDoc {
    expected: "tools/<name>.toml with kind = \"http\": `description`, `connection` (an http \
               connection), `method`, `path` (starting with `/`, `{field}` placeholders), \
               optional `input_schema`, `timeout_ms`, `response` and `approval`",
    example: "kind = \"http\"\n\
              description = \"Look up an order.\"\n\
              connection = \"shop\"\n\
              method = \"GET\"\n\
              path = \"/orders/{id}\"\n\
              \n\
              [input_schema]\n\
              type = \"object\"\n\
              required = [\"id\"]\n\
              properties.id = { type = \"string\" }",
};

pub(crate) const SANDBOX: SlotDoc = SlotDoc {
    expected: "sandboxes/<name>.toml: optional `description`, `backend` (auto, local, bwrap, \
               podman, docker), `image`, `bootstrap` and `on_session` command lists, \
               `timeout_ms`, `network` (\"none\", \"full\" or a list of hosts) and [limits] \
               (memory_mb, cpu_percent, pids, disk_mb, output_kb), `approval`; the name comes \
               from the file path",
    example: "description = \"Use this isolated repo shell for maintenance tasks.\"\n\
              bootstrap = [\"mkdir -p repo\"]\n\
              on_session = [\"touch .session-ready\"]\n\
              network = [\"pypi.org\", \"files.pythonhosted.org\"]\n\
              \n\
              [limits]\n\
              memory_mb = 1024",
};

pub(crate) const CONNECTION: SlotDoc = SlotDoc {
    expected: "connections/<name>.toml: kind = \"mcp\" with [transport] (type = \
               \"streamable-http\" and url, or type = \"stdio\" and command), or kind = \"http\" \
               with base_url; optional [auth] (none, api-key, basic, bearer), [policy] \
               (timeout_ms, retry_attempts) and, for mcp, [tools] (mode = \"allow\", allow, \
               namespace)",
    example: "kind = \"mcp\"\n\
              \n\
              [transport]\n\
              type = \"streamable-http\"\n\
              url = \"${SNOWFLAKE_MCP_URL}\"\n\
              \n\
              [auth]\n\
              kind = \"bearer\"\n\
              token = \"${SNOWFLAKE_MCP_TOKEN}\"\n\
              \n\
              [tools]\n\
              mode = \"allow\"\n\
              allow = [\"query\"]\n\
              namespace = \"snowflake\"",
};

pub(crate) const SCHEDULE: SlotDoc = SlotDoc {
    expected: "schedules/<name>.md: YAML frontmatter with a 5-field UTC `cron` \
               (minute hour day-of-month month day-of-week), then the prompt",
    example: "---\ncron: \"0 9 * * 1-5\"\n---\nSummarise yesterday's weather alerts.",
};

pub(crate) const SUBAGENT: SlotDoc = SlotDoc {
    expected: "subagents/<id>/: a package with agent.toml (`description` required), \
               system.md, and its own skills/, tools/, sandboxes/, lib/ and subagents/",
    example: "# subagents/researcher/agent.toml\n\
              description = \"Researches a topic and reports sources.\"",
};

pub(crate) const LAYOUT: SlotDoc = SlotDoc {
    expected: "an agent directory: agent/ (nested layout) or the agent files at the root \
               (flat layout), with only the slots agent.toml, system.md, system/, \
               instructions.md, instructions/, skills/, tools/, sandboxes/, connections/, \
               schedules/, subagents/ and lib/",
    example: "agent/\n  agent.toml\n  system.md\n  skills/get-weather.md\n  tools/get-weather.toml",
};

pub(crate) const FILE: SlotDoc = SlotDoc {
    expected: "a regular UTF-8 file inside the agent directory, at most 1 MiB, \
               with a UTF-8 name",
    example: "agent/skills/get-weather.md",
};
