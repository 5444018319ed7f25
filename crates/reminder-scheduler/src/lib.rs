//! reminder-scheduler
