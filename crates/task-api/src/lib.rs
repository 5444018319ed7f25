//! task-api
