//! Tamper-evident audit log core for flowgate.
//!
//! Owns the pieces that make the log verifiable, all free of databases and runtimes:
//! canonical record encoding ([`canonical`], [`record`]), the RFC 6962 Merkle tree
//! ([`merkle`]), C2SP signed notes and tlog checkpoints ([`note`], [`checkpoint`]), the pure
//! log appender ([`appender`]), the verifier ([`verify`]), the export file format
//! ([`export`]), keyed content hashing ([`content`]), kept content sealed under tenant data keys
//! ([`sealed`]) and the store-facing trait with its async
//! drivers ([`source`]).
//!
//! Leaves out storage (the SQLite and PostgreSQL stores implement [`source::AuditSource`]),
//! the write queue, group commit and spool, the HTTP API and the CLI.
//!
//! Typical use by the gateway:
//! - writer task: [`appender::LogAppender::append`] per record, store the returned bytes,
//!   leaf hash and optional checkpoint note in one transaction; call
//!   [`appender::LogAppender::tick`] on a timer; persist [`appender::LogAppender::state`]
//!   or rebuild it from the store at start.
//! - `audit verify`: [`source::verify_source`] (store) or [`export::verify_export`] (file);
//!   map errors to exit codes with [`verify::VerifyError::exit_code`].
//! - `audit proof`: [`source::prove_inclusion`] into a [`proof::InclusionBundle`], which an
//!   auditor checks offline with [`proof::InclusionBundle::verify`].

pub mod appender;
pub mod canonical;
pub mod checkpoint;
pub mod content;
pub mod export;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod record;
mod scan;
pub mod sealed;
pub mod source;
pub mod verify;
