//! Safety wrappers around devices (being written).
