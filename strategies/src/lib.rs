//! `ems-strategies`: layer 5, economics. **Not implemented yet** (issue #5); this crate holds
//! no code so that nothing can depend on behaviour that does not exist. See `README.md` for the
//! module plan.
#![forbid(unsafe_code)]
