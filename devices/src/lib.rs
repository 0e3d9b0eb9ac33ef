//! `ems-devices`.
#![forbid(unsafe_code)]
