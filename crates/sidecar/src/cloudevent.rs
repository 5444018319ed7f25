//! cloudevent
