//! dapr-http
