//! Test support: a real HTTP mock upstream (`MockUpstream`) that speaks every provider wire
//! format (OpenAI, Azure OpenAI, Anthropic, Gemini, Ollama) with deterministic answers and can
//! be told to fail in every way an upstream fails; `TcpRelay`, which makes a real server
//! unreachable and back on demand; `TestGateway`, which runs the
//! gateway in process on port 0 with a fresh SQLite file; and `TestClient`, a small HTTP
//! client over hyper for talking to both. Also home of the benchmark binaries
//! (`flowgate-mock-upstream`, `flowgate-loadgen`).

pub mod client;
pub mod gateway;
pub mod relay;
pub mod upstream;

pub use client::{TestClient, TestResponse};
pub use gateway::TestGateway;
pub use relay::TcpRelay;
pub use upstream::{Behaviour, MockReply, MockUpstream, RecordedRequest, ReplyContent, WireFormat};
