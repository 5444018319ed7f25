//! task-api: the REST API that owns tasks.
//!
//! Callers authenticate with a bearer JWT; each sees only their own tasks. Tasks live in the
//! Dapr state store (`task:{id}` plus a per-user index, all read and written through
//! [`repository`]), and every change publishes a task event through an outbox kept in the same
//! state transaction, so a committed change always produces its event and an uncommitted one
//! never does (see [`outbox`]).
//!
//! The service has the shape of every service of the workspace: [`settings`] flattens
//! `service_kit::CommonSettings`, [`startup`] implements `service_kit::Service` (the router, the
//! outbox relay and cleaner under one shutdown), and `main` only loads, traces and runs.

pub mod auth;
pub mod context;
pub mod error;
pub mod json;
pub mod listing;
pub mod model;
pub mod openapi;
pub mod outbox;
pub mod page_merge;
pub mod problem_schema;
pub mod repository;
pub mod request_metrics;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod tasks;

pub use error::ApiError;
pub use settings::Settings;
pub use startup::{Application, StartError, app};
