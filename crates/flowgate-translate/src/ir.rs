//! The neutral intermediate representation (IR) every dialect translates to and from.
//!
//! Owns the request, response, usage and stream-event types. It holds no wire-format knowledge:
//! each dialect module converts between its JSON and these types. Invariants worth knowing:
//! - tool-call arguments are always JSON text (`ToolCall::arguments`), exactly as produced by the
//!   model, so no re-serialisation changes them;
//! - JSON schemas and other opaque JSON are kept as `RawValue` and copied byte for byte;
//! - `Usage::input_tokens` counts every prompt token, cached or not (OpenAI's meaning); the
//!   Anthropic codec splits it back into `input_tokens` + cache fields.

use serde_json::value::RawValue;

/// The two API dialects clients speak to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ingress {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`POST /v1/messages`, `/v1/messages/count_tokens`).
    Anthropic,
}

/// The wire format of an upstream provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamKind {
    /// OpenAI Chat Completions, including any compatible server and Azure OpenAI (which differs
    /// only in URL and headers).
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini `generateContent` / `streamGenerateContent?alt=sse`.
    Gemini,
    /// Ollama native `/api/chat` (NDJSON stream).
    Ollama,
}

impl UpstreamKind {
    /// Reads a configuration `kind` (`openai`, `anthropic`, `gemini`, `ollama`); `None` for
    /// anything else (such as the gateway's own `mock`).
    pub fn from_config_name(name: &str) -> Option<Self> {
        match name {
            "openai" | "azure" | "azure-openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            "gemini" => Some(Self::Gemini),
            "ollama" => Some(Self::Ollama),
            _ => None,
        }
    }

    /// The upstream kind that speaks the ingress dialect natively, for the pass-through path.
    pub fn native_for(ingress: Ingress) -> Self {
        match ingress {
            Ingress::OpenAi => Self::OpenAi,
            Ingress::Anthropic => Self::Anthropic,
        }
    }

    /// True when bodies can be passed through unchanged (apart from `model`).
    pub fn is_native_for(self, ingress: Ingress) -> bool {
        self == Self::native_for(ingress)
    }
}

/// Who authored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// System or developer instructions. Dialects with a separate system field hoist these.
    System,
    User,
    Assistant,
    /// A message carrying only tool results (OpenAI `role: "tool"`).
    Tool,
}

/// One chat message.
#[derive(Debug, Clone)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
    /// OpenAI's optional participant name; Anthropic has no equivalent.
    pub name: Option<String>,
}

/// One content part of a message.
#[derive(Debug, Clone)]
pub enum Part {
    Text {
        text: String,
        /// Anthropic prompt-caching marker, kept verbatim. A caching hint only: dialects with
        /// automatic caching (OpenAI, Gemini, Ollama) need no equivalent.
        cache_control: Option<Box<RawValue>>,
    },
    Image(Image),
    ToolCall(ToolCall),
    ToolResult(ToolResult),
    /// Anthropic extended-thinking block; only an Anthropic upstream can take it back.
    Thinking {
        thinking: String,
        signature: Option<String>,
    },
    /// Anthropic redacted-thinking block; only an Anthropic upstream can take it back.
    RedactedThinking {
        data: String,
    },
}

impl Part {
    /// A plain text part without cache marker.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text {
            text: text.into(),
            cache_control: None,
        }
    }
}

/// An image input.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub source: ImageSource,
    /// OpenAI's `detail` hint (`low`/`high`/`auto`); other dialects have no equivalent hint.
    pub detail: Option<String>,
}

/// Where the image bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A remote URL the upstream fetches itself.
    Url(String),
    /// Inline base64 data (OpenAI `data:` URLs are parsed into this).
    Base64 { media_type: String, data: String },
}

/// A tool (function) call made by the assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (an object), exactly as the model produced them.
    pub arguments: String,
}

/// The result of a tool call, sent back by the client.
#[derive(Debug, Clone)]
pub struct ToolResult {
    pub call_id: String,
    /// Text and image parts only.
    pub content: Vec<Part>,
    /// Anthropic's `is_error`; OpenAI has no flag (the codec prefixes the text instead).
    pub is_error: bool,
}

/// A tool the model may call.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object, verbatim.
    pub parameters: Option<Box<RawValue>>,
    /// OpenAI structured-outputs `strict` flag.
    pub strict: Option<bool>,
    /// Anthropic prompt-caching marker, verbatim.
    pub cache_control: Option<Box<RawValue>>,
}

/// How the model must use the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Must call some tool (OpenAI `required`, Anthropic `any`, Gemini `ANY`).
    Required,
    /// Must call this tool.
    Tool(String),
}

/// Requested output format.
#[derive(Debug, Clone)]
pub enum ResponseFormat {
    Text,
    /// Any JSON object (OpenAI `json_object`).
    JsonObject,
    /// JSON matching a schema (OpenAI `json_schema`).
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Option<Box<RawValue>>,
        strict: Option<bool>,
    },
}

/// A field that only the dialect it came from understands (for example OpenAI `logit_bias`).
/// Encoders for that dialect write it back; encoders for other dialects refuse it with
/// `TranslateError::Unsupported` rather than dropping it.
#[derive(Debug, Clone)]
pub struct DialectField {
    pub dialect: Ingress,
    pub name: &'static str,
    pub value: Box<RawValue>,
}

/// A chat request in neutral form.
#[derive(Debug, Clone, Default)]
pub struct IrRequest {
    /// The model name the client asked for (the gateway resolves it to an upstream model).
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)` forbids parallel tool calls.
    pub parallel_tool_calls: Option<bool>,
    /// Number of choices; `None` means 1.
    pub n: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub seed: Option<i64>,
    pub response_format: Option<ResponseFormat>,
    pub stream: bool,
    /// The client asked for usage in the stream (OpenAI `stream_options.include_usage`).
    /// Upstream requests always ask for usage; this only controls what the client is sent.
    pub include_usage: bool,
    /// End-user identifier (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// OpenAI `metadata` (stored-completions tags); no effect on generation.
    pub metadata: Option<Box<RawValue>>,
    /// Anthropic `thinking` configuration, verbatim.
    pub thinking: Option<Box<RawValue>>,
    /// Fields only the ingress dialect understands.
    pub dialect_fields: Vec<DialectField>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end of turn.
    Stop,
    /// A client stop sequence matched.
    StopSequence,
    /// The token limit was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// A provider safety filter stopped the output.
    ContentFilter,
    /// The model refused (Anthropic `refusal`).
    Refusal,
    /// Anthropic `pause_turn` (a server-side tool loop paused).
    Pause,
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// All prompt tokens, including cache reads and cache writes.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache (subset of `input_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's cache (Anthropic; subset of `input_tokens`).
    pub cache_creation_tokens: u64,
    /// True when the upstream reported nothing and the gateway estimated the numbers.
    pub estimated: bool,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Anthropic's `input_tokens`: prompt tokens that were neither read from nor written to
    /// the cache.
    pub fn uncached_input(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_tokens)
            .saturating_sub(self.cache_creation_tokens)
    }
}

/// One answer candidate.
#[derive(Debug, Clone)]
pub struct Choice {
    pub index: u32,
    /// Text, tool-call and thinking parts, in the order the model produced them.
    pub parts: Vec<Part>,
    pub finish_reason: Option<FinishReason>,
    /// The stop sequence that matched, when the upstream says which one.
    pub stop_sequence: Option<String>,
}

/// A complete (non-streamed) answer in neutral form.
#[derive(Debug, Clone, Default)]
pub struct IrResponse {
    pub id: String,
    /// The model the upstream says answered.
    pub model: String,
    /// Unix seconds, when the upstream says.
    pub created: Option<u64>,
    pub choices: Vec<Choice>,
    /// `None` when the upstream reported no usage (see `estimate`).
    pub usage: Option<Usage>,
}

/// One event of a streamed answer in neutral form: what stream decoders produce and stream
/// encoders consume. A screener may sit between them and rewrite `TextDelta`s.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The answer started. Input usage is filled in when the upstream reports it up front.
    Start {
        id: String,
        model: String,
        usage: Option<Usage>,
    },
    /// Assistant text for one choice.
    TextDelta { choice: u32, text: String },
    /// A tool call began. `index` counts tool calls within the choice from 0.
    ToolCallStart {
        choice: u32,
        index: u32,
        id: String,
        name: String,
    },
    /// Anthropic extended-thinking text (only when the client asked for thinking, which only
    /// an Anthropic upstream can produce). OpenAI clients are never sent it.
    ThinkingDelta { choice: u32, text: String },
    /// The signature that closes a thinking block.
    ThinkingSignature { choice: u32, signature: String },
    /// A redacted-thinking block, whole.
    RedactedThinking { choice: u32, data: String },
    /// A fragment of the JSON arguments of tool call `index`.
    ToolCallDelta {
        choice: u32,
        index: u32,
        arguments: String,
    },
    /// A choice finished.
    Finish {
        choice: u32,
        reason: FinishReason,
        stop_sequence: Option<String>,
    },
    /// Cumulative usage so far (the last one wins).
    Usage(Usage),
    /// The upstream reported an error inside the stream.
    Error {
        kind: crate::apierror::ErrorKind,
        message: String,
    },
    /// The upstream stream completed normally.
    Done,
}
