//! email-worker: a person gets an email when a task is created, and again when it is about to
//! fall due.
//!
//! The worker subscribes (through its Dapr sidecar, in its own consumer group) to `task-created`
//! and `task-due-soon`, renders a text + HTML email per event from templates, and sends it over
//! SMTP (or into a folder of `.eml` files for local runs). Each event produces one email even
//! though delivery is at least once: a claim in the worker's own state store guards every send
//! (see [`ledger`]). The outcome is announced as `notification-sent` or `notification-failed`;
//! events that can never succeed are dead-lettered.
//!
//! Modules: [`settings`] (configuration), [`templates`] and [`compose`] (the message),
//! [`mailer`] and [`smtp_pool`] (the transport), [`ledger`] (one email per event), [`worker`]
//! (one event, end to end), [`batch`] (a bulk delivery: claims in one transaction per group), [`notify`] (announcements), [`subscriber`] (the subscription
//! table), [`staleness`] (old triggers, e.g. a first deployment's replay, get no email),
//! [`startup`] (the `service_kit::Service` of every service).

pub mod batch;
pub mod compose;
pub mod counters;
pub mod error;
pub mod ledger;
pub mod mailer;
pub mod notify;
pub mod settings;
pub mod smtp_pool;
pub mod staleness;
pub mod startup;
pub mod subscriber;
pub mod templates;
pub mod worker;

pub use error::Error;
pub use settings::Settings;
pub use startup::Application;
