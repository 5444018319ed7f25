//! audit-logger: a tamper-evident audit trail of every task event, plus the system's dead
//! letters.
//!
//! * [`subscriptions`]: every business topic and every dead-letter topic, via raw subscriptions.
//! * [`record`]: one entry per event in the task's and in the user's trail, once per event id
//!   (written through [`fanout`], which the dead-letter modules share). Events of any age are
//!   recorded: a first deployment's consumer group replays the retained topics, and that history
//!   belongs in the trails (each entry keeps the event's own time as `occurred_at`).
//! * [`trail`], [`append`], [`append_batch`], [`markers`], [`raw_chunk`]: chunked, append-only
//!   trails in the state store (etag-checked appends, one dedupe marker per entry; see
//!   [`trail`]'s docs for why a crash or a duplicate delivery never loses or doubles an entry;
//!   appends handle a chunk's entries as text).
//! * [`entry`], [`canonical`], [`chain_key`], [`verify`]: the keyed (HMAC-SHA256) hash chain
//!   and its verification, including the stored head.
//! * [`checkpoint`], [`checkpoint_check`]: signed checkpoints on the audit log stream, and the
//!   comparison of the store against them.
//! * [`dead_letters`], [`dead_letter_admin`]: dead-letter records, their reasons (from
//!   `notification-failed`), listing and replay.
//! * [`sink`]: one JSON line per entry on stdout for log shipping.
//! * [`api`], [`auth`]: the admin query API behind `AUDIT_ADMIN_TOKEN`.
//! * [`startup`]: the `service_kit::Service` of every service; where entries go besides the
//!   store (stdout or nowhere) is an [`Overrides`] tests replace.

pub mod api;
pub mod append;
pub mod append_batch;
pub mod append_many;
pub mod auth;
pub mod canonical;
pub mod chain_key;
pub mod checkpoint;
pub mod checkpoint_check;
pub mod context;
pub mod dead_letter_admin;
pub mod dead_letters;
pub mod entry;
pub mod error;
pub mod fanout;
pub mod locks;
pub mod markers;
pub mod raw_chunk;
pub mod record;
pub mod settings;
pub mod sink;
pub mod startup;
pub mod subscriptions;
pub mod trail;
pub mod verify;

pub use error::Error;
pub use settings::Settings;
pub use startup::{Application, Overrides, app};
