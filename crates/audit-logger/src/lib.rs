//! audit-logger
