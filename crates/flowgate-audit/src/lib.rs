//! Tamper-evident audit log core for flowgate.
//!
//! Owns the pieces that make the log verifiable, all pure and free of IO and databases:
//! canonical record encoding ([`canonical`], [`record`]), the RFC 6962 Merkle tree
//! ([`merkle`]), C2SP signed notes and checkpoints ([`note`], [`checkpoint`]), the log
//! appender state machine ([`appender`]), the verifier ([`verify`]), the export file format
//! ([`export`]) and keyed content hashing ([`content`]).
//!
//! Leaves out storage (the SQLite and PostgreSQL stores implement [`source::AuditSource`] and
//! [`merkle::LeafHashSource`]), the write queue and spool, the HTTP API and the CLI.

pub mod appender;
pub mod canonical;
pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod record;
