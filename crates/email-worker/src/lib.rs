//! email-worker
