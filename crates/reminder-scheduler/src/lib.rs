//! reminder-scheduler: publishes `task-due-soon` a configurable lead time before a task falls
//! due, once per (task, due date), safely with any number of replicas.
//!
//! * [`apply`]: the task-event subscriptions keep a projection of each task (`task:{id}`,
//!   a [`record::TaskRecord`]),
//!   applied by version, and file open tasks in due-date buckets ([`buckets`]).
//! * [`lease`]: one replica at a time holds the scanner lease (`scheduler-lease`).
//! * [`scanner`]: the holder reads the buckets from its watermark up to `now + lead time`,
//!   checks each candidate against its projection, publishes, then marks it reminded.
//! * [`watermark`], [`filing`]: the watermark never passes a bucket with an unpublished
//!   reminder (whatever the outage length), and an entry filed behind it is moved up to it.
//! * [`clock`]: due dates are compared with an injectable clock so tests never wait.
//! * [`startup`]: the `service_kit::Service` of every service (the HTTP side and the two loops
//!   of [`background`] under one shutdown; the clock is an [`Overrides`]); [`handle`] lets
//!   tests watch the lease and the scans.

pub mod apply;
pub mod background;
pub mod buckets;
pub mod clock;
pub mod context;
pub mod error;
pub mod filing;
pub mod handle;
pub mod lease;
pub mod metrics;
pub mod policy;
pub mod projection;
pub mod record;
pub mod scanner;
pub mod settings;
pub mod startup;
pub mod store;
pub mod tracked;
pub mod watermark;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use handle::Handle;
pub use settings::Settings;
pub use startup::{Application, Overrides, app};
